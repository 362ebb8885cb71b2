"""Reports of measurements: per-frame CSV, JSON that strict parsers accept, markdown tables, and a
PNG plot of per-frame curves.

The plot needs matplotlib, which is optional (``pip install matplotlib``, or the ``dev`` extra):
without it :func:`plot_curves` returns False and writes nothing, so the caller can say so.
"""
from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

METRIC_LABELS = {"psnr_y": "PSNR-Y (dB)", "ssim_y": "SSIM-Y", "lpips": "LPIPS", "tof": "tOF",
                 "tlp": "tLP", "vmaf": "VMAF"}
HIGHER_IS_BETTER = {"psnr_y": True, "ssim_y": True, "vmaf": True, "lpips": False, "tof": False,
                    "tlp": False}


def jsonable(obj: Any) -> Any:
    """``obj`` with every non-finite float made strict-JSON safe: NaN -> None, +/-inf -> "inf" /
    "-inf" (PSNR of identical frames is infinite); Paths -> str; tuples -> lists."""
    if isinstance(obj, float):
        if math.isnan(obj):
            return None
        if math.isinf(obj):
            return "inf" if obj > 0 else "-inf"
        return obj
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def dumps(obj: Any) -> str:
    """Strict JSON (no NaN/Infinity tokens), indented."""
    return json.dumps(jsonable(obj), indent=2, allow_nan=False)


def write_json(obj: Any, path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    p.write_text(dumps(obj) + "\n", encoding="utf-8")
    return p


def write_csv(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str],
              columns: Sequence[str] | None = None) -> Path:
    """One row per dict; columns default to the keys of the first row (then any new ones).
    None / NaN are written as empty cells, floats with full precision."""
    cols = list(columns) if columns is not None else []
    if columns is None:
        for row in rows:
            cols += [k for k in row if k not in cols]
    p = Path(path)
    with open(p, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for row in rows:
            w.writerow([_cell(row.get(c)) for c in cols])
    return p


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v)


def fmt(value: Any, key: str = "", digits: int = 4) -> str:
    """A metric for a table: dB with 2 decimals, tLP x100, others 4 significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if not isinstance(value, (int, float)):
        return str(value)
    if math.isinf(value):
        return "inf"
    if key == "psnr_y" or key == "vmaf":
        return f"{value:.2f}"
    if key == "tlp":
        return f"{100 * value:.3f}"
    if key == "ssim_y":
        return f"{value:.4f}"
    return f"{value:.{digits}g}"


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table of already formatted cells."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(lines)


def metric_header(key: str) -> str:
    label = {"tlp": "tLP×100"}.get(key, METRIC_LABELS.get(key, key))
    arrow = "↑" if HIGHER_IS_BETTER.get(key, True) else "↓"
    return f"{label} {arrow}" if key in HIGHER_IS_BETTER else label


def plot_curves(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str], title: str = "",
                keys: Sequence[str] | None = None) -> bool:
    """Per-frame curves, one panel per metric (x: frame), as a PNG at ``path``.

    Returns False (and writes nothing) when matplotlib is not installed.
    """
    try:
        import matplotlib
        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    keys = [k for k in (keys or METRIC_LABELS) if any(_finite(r.get(k)) for r in rows)]
    n = max(1, len(keys))
    fig, axes = plt.subplots(n, 1, figsize=(8, 1.8 * n + 0.6), sharex=True, squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        pts = [(r.get("frame", i), r[key]) for i, r in enumerate(rows) if _finite(r.get(key))]
        xs, ys = zip(*pts) if pts else ((), ())
        ax.plot(xs, ys, lw=1.2, marker="." if len(xs) < 60 else None)
        ax.set_ylabel(METRIC_LABELS.get(key, key), fontsize=9)
        ax.grid(alpha=0.3)
        if pts:
            mean = sum(ys) / len(ys)
            ax.axhline(mean, color="grey", lw=0.8, ls="--")
            ax.text(1.0, 1.0, f"mean {fmt(mean, key) if key != 'tlp' else f'{mean:.4g}'}",
                    transform=ax.transAxes, ha="right", va="bottom", fontsize=8)
    axes[-1, 0].set_xlabel("frame")
    return _save(fig, path, title)


def plot_flicker(pairs: Sequence[Mapping[str, Any]], path: str | os.PathLike[str], title: str = "") -> bool:
    """Flicker per frame pair as a PNG: the output's and the reference's warping errors in one
    panel (scene cuts as vertical lines), their ratio below, the motion deviation when measured.
    ``pairs``: dicts with frame, output, reference, motion, cut. False without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    from ..metrics.flicker import flicker_ratio

    xs = [p["frame"] for p in pairs]
    has_motion = any(_finite(p.get("motion")) for p in pairs)
    n = 3 if has_motion else 2
    fig, axes = plt.subplots(n, 1, figsize=(8, 1.9 * n + 0.6), sharex=True, squeeze=False)
    ax = axes[0, 0]
    ax.plot(xs, [p["output"] for p in pairs], lw=1.2, label="output")
    ax.plot(xs, [p["reference"] for p in pairs], lw=1.2, label="bicubic reference")
    ax.set_ylabel("warping error\n(luma levels)", fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    ratios = [flicker_ratio(p["output"], p["reference"]) for p in pairs]
    axes[1, 0].plot(xs, ratios, lw=1.2, color="tab:red")
    axes[1, 0].axhline(1.0, color="grey", lw=0.8, ls="--")
    axes[1, 0].set_ylabel("flicker ratio", fontsize=9)
    if has_motion:
        axes[2, 0].plot(xs, [p.get("motion") for p in pairs], lw=1.2, color="tab:green")
        axes[2, 0].set_ylabel("motion deviation\n(px)", fontsize=9)
    for a in axes[:, 0]:
        a.grid(alpha=0.3)
        for p in pairs:
            if p.get("cut"):
                a.axvline(p["frame"], color="black", lw=0.8, ls=":")
    axes[-1, 0].set_xlabel("frame (pair: frame - 1, frame)")
    return _save(fig, path, title)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


__all__ = ["HIGHER_IS_BETTER", "METRIC_LABELS", "dumps", "fmt", "jsonable", "markdown_table",
           "metric_header", "plot_curves", "plot_flicker", "write_csv", "write_json"]


def _save(fig: Any, path: str | os.PathLike[str], title: str) -> bool:
    """Title, tight layout, write the PNG, free the figure."""
    import matplotlib.pyplot as plt

    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(Path(path), dpi=100)
    plt.close(fig)
    return True
