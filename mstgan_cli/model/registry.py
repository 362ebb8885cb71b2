"""The shipped weights: where they are, what they can do, which one a request picks."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..errors import ModelError
from .checkpoint import read_checkpoint
from .generator import GeneratorConfig, MSTGANGenerator, count_params

DEFAULT_MODEL = {4: "mstgan-x4-lossy", 2: "mstgan-x2"}  # the best on compressed input (test split): weights/*.md, README
PRECISIONS = ["fp32", "bf16", "fp16"]
# Models once shipped and since withdrawn: name -> why, and what to use instead. Asking for one is
# an error that says so (not "unknown model"), and `mstgan models` never lists it.
RETIRED = {
    "mstgan-x4-gan": (
        "model 'mstgan-x4-gan' was retired on 2026-12-07: on the test split it was no more perceptual "
        "than the fidelity models (LPIPS 0.244 against mstgan-x4-clean's 0.218). Use mstgan-x4-lossy "
        "(the default, for compressed video) or mstgan-x4-clean (for clean sources)"),
}


def weights_dir() -> Path:
    """$MSTGAN_WEIGHTS_DIR, else the repository's weights/ folder."""
    env = os.environ.get("MSTGAN_WEIGHTS_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "weights"


def model_path(name: str) -> Path:
    """A shipped model's checkpoint path by name, or the path itself when `name` is a file."""
    p = Path(name)
    if p.suffix in (".pt", ".pth") or p.exists():
        if not p.is_file():
            raise ModelError(f"model file not found: {p}")
        return p
    if name in RETIRED:
        raise ModelError(RETIRED[name])
    f = weights_dir() / f"{name}.pt"
    if not f.is_file():
        known = ", ".join(m["name"] for m in list_models()) or "none installed"
        raise ModelError(f"unknown model {name!r} (shipped: {known})")
    return f


def default_model(scale: int) -> str:
    """The model a plain run uses for a given factor."""
    if scale not in DEFAULT_MODEL:
        raise ModelError(f"no shipped model for x{scale} (shipped factors: {sorted(DEFAULT_MODEL)})")
    return DEFAULT_MODEL[scale]


def flops_per_pixel(config: GeneratorConfig, size: int = 64) -> dict:
    """FLOPs per input (LR) pixel, measured by counting: 'streaming' is the cost of one new frame
    with per-frame features and neighbour flows cached (as the runtime does), 'window' the cost of
    recomputing everything for each window."""
    model = MSTGANGenerator(config).eval()
    t = config.window
    x = torch.rand(1, t, 3, size, size)
    with torch.no_grad():
        with FlopCounterMode(display=False) as full:
            model(x)
        feats = [model.encode(x[:, i]) for i in range(t)]
        with FlopCounterMode(display=False) as per_frame:
            model.encode(x[:, 0])
            model.pair_flows(x[:, 0], x[:, 1])
        fl = [model.pair_flows(x[:, i], x[:, i + 1]) for i in range(t - 1)]
        with FlopCounterMode(display=False) as per_window:
            flows = model.flows_to_centre([f[0] for f in fl], [f[1] for f in fl])
            model.reconstruct(x[:, t // 2], feats, flows)
    px = size * size
    return {"streaming": (per_frame.get_total_flops() + per_window.get_total_flops()) / px,
            "window": full.get_total_flops() / px}


def _precisions(meta: dict, path: Path) -> list[str]:
    """The precisions a checkpoint runs at: those of its release, and int8 (CPU), which any
    checkpoint can use: with its shipped calibration, or calibrated on the first frames of an input."""
    out = [p for p in meta.get("precisions", PRECISIONS) if p != "int8"]
    return out + ["int8" if path.with_suffix(".int8.json").is_file() else "int8 (calibrates on the input)"]


def test_metrics(checkpoint: Path) -> dict:
    """The model's quality on the test split, from NAME.test.json beside its weights (written by
    ``benchmarks/quality.py --weights-summary``): {"split": "test", "source": result folder,
    "inputs": {"bicubic" | "h264:23" | ...: {"psnr_y", "gain", "lpips", "lpips_ratio", "tof", "tlp",
    "temporal_gain"?}}}; {} when it was not measured there. The validation numbers in a checkpoint's
    meta chose it and are not a quality claim, so they are not listed."""
    import json

    f = checkpoint.with_suffix(".test.json")
    if not f.is_file():
        return {}
    try:
        return json.loads(f.read_text())
    except (OSError, ValueError):
        return {}


def list_models() -> list[dict]:
    """Every shipped generator: name, scale, window, params, FLOPs per input pixel, precisions,
    metrics measured on the test split (:func:`test_metrics`; {} when not measured), path."""
    out = []
    d = weights_dir()
    for f in sorted(d.glob("mstgan-*.pt")) if d.is_dir() else []:
        if f.stem in RETIRED:  # an old copy left in a weights folder
            continue
        try:
            ck = read_checkpoint(f)
        except ModelError:
            continue
        meta = ck.get("meta", {})
        cfg = GeneratorConfig(**ck["config"])
        out.append({
            "name": f.stem, "scale": cfg.scale, "window": cfg.window,
            "params": meta.get("params") or sum(v.numel() for v in ck["state_dict"].values() if v.is_floating_point()),
            "flops_per_pixel": meta.get("flops_per_pixel", {}).get("streaming"),
            "precisions": _precisions(meta, f),
            "kind": meta.get("kind", ""), "metrics": test_metrics(f),
            "default": DEFAULT_MODEL.get(cfg.scale) == f.stem, "path": str(f),
        })
    return out


__all__ = ["RETIRED", "test_metrics", "list_models", "model_path", "default_model", "flops_per_pixel", "weights_dir", "count_params"]
