"""Training curves from a run's log.jsonl, as a PNG (needs matplotlib, from the `dev` extra)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger("mstgan_cli")


def read_log(run: Path) -> tuple[list[dict], list[dict]]:
    """(training records, validation records) of a run."""
    train, val = [], []
    f = Path(run) / "log.jsonl"
    for line in f.read_text().splitlines() if f.exists() else []:
        rec = json.loads(line)
        if "reference" in rec or "start" in rec:  # stage 2's starting weights; a (re)start marker
            continue
        (val if "val" in rec else train).append(rec)
    return train, val


def plot_curves(run: Path, out: Path | None = None) -> Path | None:
    """Loss terms and validation scores against the step. Returns the PNG path (None without
    matplotlib or without records)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("matplotlib is not installed: no curves (pip install 'mstgan[dev]')")
        return None
    train, val = read_log(run)
    if not train:
        return None
    out = Path(out or Path(run) / "curves.png")
    keys = [k for k in train[-1] if k not in ("step", "lr", "it_s")]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    steps = [r["step"] for r in train]
    for k in keys:
        axes[0].plot(steps, [r.get(k, float("nan")) for r in train], label=k)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("step")
    axes[0].set_title("training losses")
    axes[0].legend(fontsize=8)
    if val:
        vs = [r["step"] for r in val]
        for k in sorted(val[-1]["val"]):
            if k.startswith("gain"):
                axes[1].plot(vs, [r["val"].get(k, float("nan")) for r in val], label=f"{k} (dB over bicubic)")
        tests = [r for r in val if "test" in r]
        for k in sorted(tests[-1]["test"]) if tests else []:
            if k.startswith("gain_"):
                axes[1].plot([r["step"] for r in tests], [r["test"].get(k, float("nan")) for r in tests], "--",
                             label=f"test {k[5:]}")
        tg = [r for r in val if "temporal_gain" in r["val"]]
        if tg:  # what the neighbours add (window against centre only)
            axes[1].plot([r["step"] for r in tg], [r["val"]["temporal_gain"] for r in tg], "k:",
                         label="temporal gain (window vs centre only)")
            tt = [r for r in tg if "temporal_gain" in r.get("test", {})]
            if tt:
                axes[1].plot([r["step"] for r in tt], [r["test"]["temporal_gain"] for r in tt], "k-.",
                             label="test temporal gain")
        if "flow_epe" in val[-1]["val"]:  # stage 0: the flow alone
            axes[1].plot(vs, [r["val"].get("flow_epe_ratio", float("nan")) for r in val],
                         label="flow error / no-motion error (val)")
            tf = [r for r in val if "flow_epe_ratio" in r.get("test", {})]
            if tf:
                axes[1].plot([r["step"] for r in tf], [r["test"]["flow_epe_ratio"] for r in tf], "--",
                             label="flow error / no-motion error (test)")
        if "lpips" in val[-1]["val"]:
            ax2 = axes[1].twinx()
            ax2.plot(vs, [r["val"].get("lpips", float("nan")) for r in val], "k--", label="LPIPS")
            ax2.set_ylabel("LPIPS")
        axes[1].axhline(0, color="grey", lw=0.5)
        axes[1].set_xlabel("step")
        axes[1].set_title("validation" + (" and test (dashed)" if tests else "") + " (PSNR-Y gain over bicubic)")
        axes[1].legend(fontsize=8)
    fig.tight_layout()
    tmp = out.with_name("." + out.name)
    fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    tmp.replace(out)
    return out
