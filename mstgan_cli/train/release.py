"""Turn a training run into shipped weights: a compact checkpoint plus its model card."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from ..model.checkpoint import export_generator
from ..model.generator import GeneratorConfig, MSTGANGenerator, count_params
from ..evaluate.protocol import protocol_markdown, run_protocol
from ..evaluate.report import jsonable
from ..model.registry import PRECISIONS, flops_per_pixel
from .degrade import DegradeConfig

log = logging.getLogger("mstgan_cli")


def run_summary(run: Path, upto: int | None = None) -> dict:
    """Steps, wall hours and the training configuration of a run, from its log and config; only
    its first `upto` steps when given (a model started from that step of a run that went on)."""
    steps, seconds, last_val, first, sources = 0, 0.0, None, 0, None
    log_file = run / "log.jsonl"
    if log_file.exists():
        prev = 0
        for i, line in enumerate(log_file.read_text().splitlines()):
            rec = json.loads(line)
            if upto is not None and rec.get("step", 0) > upto:
                break
            if "start" in rec:  # a (re)start: steps before it were not trained in this stretch
                prev = rec["step"]
                if i == 0:  # the run began from another run's checkpoint at this step
                    first = rec["step"]
            if "it_s" in rec and rec["it_s"] > 0:
                seconds += (rec["step"] - prev) / rec["it_s"]
                prev = rec["step"]
            if "sources" in rec:
                sources = rec["sources"]
            if "val" in rec and isinstance(rec["val"], dict):
                last_val = rec["val"]
            steps = max(steps, rec.get("step", 0))
    cfg = json.loads((run / "config.json").read_text()) if (run / "config.json").exists() else {}
    steps -= first  # a run begun from another run's checkpoint counts only its own steps
    out = {"steps": steps, "train_hours": round(seconds / 3600, 2), "last_val": last_val, "train_config": cfg}
    if sources:
        out["sources"] = sources
    return out


def trained_on(history: list[dict]) -> str:
    """What the runs behind a model saw: its sources (as logged at their starts) and degradations."""
    last = history[-1] if history else {}
    tc = last.get("train_config", {})
    src = last.get("sources")
    what = (f"{tc.get('data', 'shared/data/train')}: {src['clips']} real clips + {src['photos']} photos "
            "(clips made of them by a virtual camera)") if src else \
        "shared/data/train of the time: 6 real clips + 42 photos (clips made of them by a virtual camera)"
    dc = DegradeConfig.from_dict(tc.get("degrade_config"))
    if tc.get("degrade") != "realworld":
        deg = "antialiased bicubic downscaling"
    elif dc.p_clean + dc.p_h264 >= 1.0 - 1e-9:  # no mixed windows (Degrader.kind)
        lo, hi = dc.h264_crf
        deg = (f"antialiased bicubic downscaling ({dc.p_clean:.0%} of the windows), then H.264 "
               f"(x264) at CRF {lo}-{hi} (the rest)")
    else:
        deg = ("real-world degradations (train.degrade: H.264/MPEG-2/JPEG at random quality, blur, noise, "
               "resize kernels; clean bicubic and bicubic + H.264 as cases)")
    return f"{what}; degradation: {deg}"


def release(checkpoint: Path, out: Path, kind: str, description: str, metrics: dict | None = None,
            runs: list[Path | tuple[Path, int]] | None = None) -> dict:
    """Write `out` (fp16 checkpoint with meta) from a run's best.pt/last.pt, or from shipped weights
    (re-measuring them: their training history and step are kept). Returns the meta."""
    ck = torch.load(checkpoint, map_location="cpu", weights_only=True)
    cfg = GeneratorConfig(**ck["config"])
    model = MSTGANGenerator(cfg)
    model.load_state_dict(ck.get("state_dict") or ck["model"])
    shipped = ck.get("meta") if ck.get("format") else None  # re-measuring shipped weights
    history = shipped["training"] if shipped else \
        [run_summary(*r) if isinstance(r, tuple) else run_summary(r) for r in (runs or [checkpoint.parent])]
    meta = {
        "kind": kind,
        "description": description,
        "params": count_params(model),
        "flops_per_pixel": flops_per_pixel(cfg),
        "precisions": PRECISIONS,
        "trained_on": shipped.get("trained_on") if shipped else trained_on(history),
        "training": history,
        "checkpoint_step": shipped.get("checkpoint_step") if shipped else ck.get("step"),
        # a change made to the trained weights after training (tools/calibrate_gate.py), or none
        "calibration": shipped.get("calibration") if shipped else ck.get("calibration"),
        # two runs' weights blended after training (tools/interpolate_weights.py), or none
        "interpolation": shipped.get("interpolation") if shipped else ck.get("interpolation"),
        "metrics": metrics or {},
    }
    export_generator(model, out, meta)
    log.info("wrote %s (%d parameters)", out, meta["params"])
    return meta


def test_section(summary: dict) -> list[str]:
    """Markdown lines of a model's test-split numbers (weights/NAME.test.json)."""
    lines = ["", "## Quality on the test split", "",
             f"`../shared/data/test` ({summary.get('clips', '?')} clips: its videos and a sub-pixel pan over each "
             "photo; nothing trained, chose a checkpoint or calibrated on them), x4, fp32; from "
             f"`{summary.get('source', '?')}` (`benchmarks/quality.py`). Gains are PSNR-Y over bicubic on the same "
             "input; the temporal gain is the model against itself on windows holding only their centre frame.", "",
             "| input | PSNR-Y | gain | worst clip | LPIPS | LPIPS / bicubic | tOF | tLP×100 | temporal gain |",
             "|---|---|---|---|---|---|---|---|---|"]
    for deg, r in summary.get("inputs", {}).items():
        tg = r.get("temporal_gain")
        lines.append(f"| {deg} | {r['psnr_y']:.2f} | {r['gain']:+.2f} | {r['worst_clip_gain']:+.2f} | "
                     f"{r['lpips']:.4f} | {r['lpips_ratio']:.2f}x | {r['tof']:.3f} | {100 * r['tlp']:.3f} | "
                     + ("-" if tg is None else f"{tg:+.2f}") + " |")
    return lines


def model_card(name: str, meta: dict, protocol: dict | None, test: dict | None = None) -> str:
    """The model card (markdown) of shipped weights: what it is, cost, training, measured quality."""
    fl = meta["flops_per_pixel"]
    lines = [f"# {name}", "", meta.get("description", ""), "",
             "## Cost", "",
             f"- parameters: {meta['params']:,}",
             f"- FLOPs per input pixel: {fl['streaming'] / 1e6:.3f} M streaming (per-frame features and "
             f"neighbour flows cached, as `mstgan upscale` runs it), {fl['window'] / 1e6:.3f} M when a "
             "window is computed from scratch",
             f"- precisions: {', '.join(meta.get('precisions', []))}", "",
             "## Training", "", f"- data: {meta.get('trained_on', '')}"]
    for i, h in enumerate(meta.get("training", [])):
        tc = h.get("train_config", {})
        lines.append(f"- run {i + 1}: stage {tc.get('stage', '?')}, {h['steps']:,} steps of {tc.get('batch', '?')} "
                     f"windows of {tc.get('window', '?')} frames ({tc.get('patch', '?')}px LR patches), "
                     f"{h['train_hours']} h on 2 CPU cores (no GPU was available), peak lr {tc.get('lr', '?')}"
                     + (f", initialised from `{tc['init']}`" if tc.get("init") else ""))
    lines.append(f"- shipped checkpoint: step {meta.get('checkpoint_step')}")
    blend = meta.get("interpolation")
    if blend:
        lines.append(f"- interpolated after training (`tools/interpolate_weights.py`): {1 - blend['alpha']:g} x "
                     f"`{blend['from']}` + {blend['alpha']:g} x `{blend['to']}`; {blend.get('why', '')}")
    cal = meta.get("calibration")
    if cal:
        moved = ", ".join(f"`{k}` {v:+g}" for k, v in cal.items() if isinstance(v, (int, float)))
        lines.append(f"- calibrated after training (`tools/calibrate_gate.py`, from `{cal.get('source', '?')}`): "
                     f"{moved}; {cal.get('why', '')}")
    lines += test_section(test) if test else ["", "## Quality on the test split", "", "Not measured yet."]
    if protocol:
        n = protocol.get("max_frames")
        frames = f"the first {n} frames of each" if n else "every frame"
        lines += ["", "## On the validation clips", "",
                  "These clips chose the checkpoint (and calibrated INT8), so they flatter it: the numbers "
                  "show what selection saw, not the quality to expect.", "",
                  f"On the validation clips ({frames}), `python tools/ship_weights.py {name}`, i.e. "
                  f"`mstgan eval --protocol x{protocol['scale']} ../shared/data/val/videos/*.mkv"
                  + (f" -n {n}" if n else "") + "`:", "", protocol_markdown(protocol)]
    return "\n".join(lines) + "\n"


def ship(checkpoint: Path, name: str, kind: str, description: str, runs: list[Path | tuple[Path, int]],
         clips: list[Path], weights: Path, max_frames: int | None = None,
         methods: list[str] | None = None, protocol: dict | None = None) -> dict:
    """Release a checkpoint as weights/NAME.pt, measure it with the benchmark protocol on `clips`
    (or take the given `protocol` result), store the numbers in its meta and write weights/NAME.md.
    `runs`: the training runs behind it, oldest first; (run, step) for a run it left at that step."""
    path = weights / f"{name}.pt"
    meta = release(checkpoint, path, kind, description, runs=runs)
    scale = GeneratorConfig(**torch.load(path, weights_only=True)["config"]).scale
    if protocol is None:
        protocol = run_protocol(clips, scale, methods={name: str(path), **{m: m for m in (methods or ["bicubic", "lanczos"])}},
                                max_frames=max_frames, device="cpu")
    strict = jsonable(protocol)
    meta = release(checkpoint, path, kind, description, runs=runs,
                   metrics={"protocol": {"mean": strict["mean"],
                                         "clips": {c["name"]: c["methods"] for c in strict["clips"]}}})
    tj = weights / f"{name}.test.json"
    (weights / f"{name}.md").write_text(model_card(name, meta, protocol,
                                                   json.loads(tj.read_text()) if tj.is_file() else None))
    (weights / f"{name}.protocol.json").write_text(json.dumps(strict, indent=1))
    return meta
