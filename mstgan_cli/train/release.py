"""Turn a training run into shipped weights: a compact checkpoint plus its model card."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from ..model.checkpoint import export_generator
from ..model.generator import GeneratorConfig, MSTGANGenerator, count_params
from ..model.registry import PRECISIONS, flops_per_pixel

log = logging.getLogger("mstgan_cli")


def run_summary(run: Path) -> dict:
    """Steps, wall hours and the training configuration of a run, from its log and config."""
    steps, seconds, last_val = 0, 0.0, None
    log_file = run / "log.jsonl"
    if log_file.exists():
        prev = 0
        for line in log_file.read_text().splitlines():
            rec = json.loads(line)
            if "it_s" in rec and rec["it_s"] > 0:
                seconds += (rec["step"] - prev) / rec["it_s"]
                prev = rec["step"]
            if "val" in rec:
                last_val = rec["val"]
            steps = max(steps, rec.get("step", 0))
    cfg = json.loads((run / "config.json").read_text()) if (run / "config.json").exists() else {}
    return {"steps": steps, "train_hours": round(seconds / 3600, 2), "last_val": last_val, "train_config": cfg}


def release(checkpoint: Path, out: Path, kind: str, description: str, metrics: dict | None = None,
            runs: list[Path] | None = None) -> dict:
    """Write `out` (fp16 checkpoint with meta) from a run's best.pt/last.pt. Returns the meta."""
    ck = torch.load(checkpoint, map_location="cpu", weights_only=False)
    cfg = GeneratorConfig(**ck["config"])
    model = MSTGANGenerator(cfg)
    model.load_state_dict(ck.get("state_dict") or ck["model"])
    history = [run_summary(r) for r in (runs or [checkpoint.parent])]
    meta = {
        "kind": kind,
        "description": description,
        "params": count_params(model),
        "flops_per_pixel": flops_per_pixel(cfg),
        "precisions": PRECISIONS,
        "trained_on": "shared/data/train: 6 real clips + 42 photos (synthetic camera motion); "
                      "degradation: antialiased bicubic downscaling",
        "training": history,
        "checkpoint_step": ck.get("step"),
        "metrics": metrics or {},
    }
    export_generator(model, out, meta)
    log.info("wrote %s (%d parameters)", out, meta["params"])
    return meta
