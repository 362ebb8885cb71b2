"""Inference runtime: sliding window with caching, tiling, precision and device handling."""
from __future__ import annotations

from ..errors import ModelError
from ..options import RuntimeTuning
from .engine import ModelUpscaler, resolve_device, resolve_precision
from .upscaler import FrameUpscaler, InterpolationUpscaler


def load_upscaler(model: str | None = None, scale: int | None = None, device: str = "auto",
                  precision: str = "auto", window: int | None = None, batch: int = 1,
                  tile: int = 0, backend: str = "auto", tuning: RuntimeTuning | None = None) -> ModelUpscaler:
    """Build the upscaler for a shipped model name or a checkpoint path.

    model None -> the default model for `scale` (4 when both are None). A `scale` or `window`
    that contradicts the checkpoint is a ModelError (a window is a property of the weights).
    `tuning`: see :class:`mstgan_cli.options.RuntimeTuning`.
    """
    from ..model.checkpoint import load_generator
    from ..model.registry import default_model, model_path

    name = model or default_model(scale or 4)
    path = model_path(name)
    net, _meta = load_generator(path)
    cfg = net.config
    if scale is not None and scale != cfg.scale:
        raise ModelError(f"model {name} upscales x{cfg.scale}, not x{scale}")
    if window is not None and window != cfg.window:
        raise ModelError(f"model {name} was trained with a window of {cfg.window} frames, not {window}")
    up = ModelUpscaler(net, device=device, precision=precision, batch=batch, tile=tile,
                       backend=backend, int8_qparams=path.with_suffix(".int8.json"), tuning=tuning)
    up.name = name  # what ran, for messages and reports ("mstgan-x4-lossy", not the alias "mstgan")
    return up


__all__ = ["FrameUpscaler", "InterpolationUpscaler", "ModelUpscaler", "load_upscaler",
           "resolve_device", "resolve_precision"]
