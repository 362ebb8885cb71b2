"""Checkpoints that describe themselves: {"format", "config", "state_dict", "meta"}.

Loaded with ``weights_only=True``: nothing in a checkpoint can run code.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelError
from .generator import GeneratorConfig, MSTGANGenerator

FORMAT = "mstgan-generator/1"


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary name, then rename: a crash never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(obj, tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def export_generator(model: MSTGANGenerator, path: Path, meta: dict, half: bool = True) -> None:
    """Write a shippable checkpoint (fp16 storage by default: half the size, no measurable loss)."""
    sd = {k: (v.half() if half and v.is_floating_point() else v).contiguous().cpu()
          for k, v in model.state_dict().items()}
    atomic_save({"format": FORMAT, "config": model.config.to_dict(), "state_dict": sd, "meta": meta}, path)


def read_checkpoint(path: Path) -> dict:
    """The raw checkpoint dict, validated."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt, truncated or not a torch file
        raise ModelError(f"cannot read checkpoint {path}: {e}") from e
    weights = (ckpt.get("state_dict") or ckpt.get("model")) if isinstance(ckpt, dict) else None
    if isinstance(weights, dict) and ckpt.get("format") is None and isinstance(ckpt.get("config"), dict):
        # a training run's best.pt (or a last.pt that loads safely): usable as it is, to try it
        return {"format": FORMAT, "config": ckpt["config"], "state_dict": weights,
                "meta": {"kind": "training checkpoint", "checkpoint_step": ckpt.get("step")}}
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ModelError(f"{path} is not an mstgan generator checkpoint")
    return ckpt


def load_generator(path: Path) -> tuple[MSTGANGenerator, dict]:
    """Build the generator a checkpoint describes and load its weights (fp32, CPU, eval mode).
    Returns (model, meta)."""
    ckpt = read_checkpoint(path)
    try:
        model = MSTGANGenerator(GeneratorConfig(**ckpt["config"]))
        model.load_state_dict({k: v.float() if v.is_floating_point() else v
                               for k, v in ckpt["state_dict"].items()})
    except (TypeError, RuntimeError) as e:
        raise ModelError(f"{path}: weights do not match the architecture: {e}") from e
    return model.eval(), ckpt.get("meta", {})
