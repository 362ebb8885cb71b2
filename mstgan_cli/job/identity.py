"""Stable names for "these settings" and "this input", so finished work can be recognised.

``settings_hash`` covers what decides the output's pictures and file: model (a checkpoint file by
its content), size (scale or target), window, precision and encoder settings. How the work is
executed (device, batch, tile) is left out, so a folder finished on one machine counts as
finished on another; resumable segments also check those (see :func:`run_key`), since mixing
pieces computed at different numerics would not be identical to one uninterrupted run.

``source_fingerprint`` reads the size and the first and last MiB of a file: cheap on a large
archive, and it survives copying to another machine (modification times do not).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .. import __version__
from ..options import UpscaleOptions

_EDGE = 1 << 20


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def source_fingerprint(path: Path) -> str:
    """16 hex digits from the size and the first and last MiB of ``path``."""
    h = hashlib.sha256()
    size = path.stat().st_size
    h.update(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(_EDGE))
        if size > _EDGE:
            f.seek(max(_EDGE, size - _EDGE))
            h.update(f.read(_EDGE))
    return h.hexdigest()[:16]


def _model_identity(model: str) -> str:
    p = Path(model)
    if p.is_file():  # a checkpoint path: its content counts, not its name
        return "file:" + source_fingerprint(p)
    return model.strip().lower()


def settings(options: UpscaleOptions) -> dict[str, Any]:
    """The settings that decide an output, as plain data (also written into reports)."""
    target = options.effective_target
    return {"model": _model_identity(options.model), "scale": options.scale,
            "target": None if target is None else [target.width, target.height,
                                                   target.follow_orientation],
            "window": options.window, "precision": options.precision.value,
            "encode": asdict(options.encode), **_deinterlace(options)}


def _deinterlace(options: UpscaleOptions) -> dict[str, str]:
    # only where it is not the default, so the names of settings from before it existed stay
    return {} if options.deinterlace.value == "auto" else {"deinterlace": options.deinterlace.value}


def settings_hash(options: UpscaleOptions) -> str:
    """16 hex digits naming :func:`settings`."""
    return _digest(settings(options))


def run_key(options: UpscaleOptions, source: Path, **extra: Any) -> str:
    """Names one resumable run: settings, execution (device, batch, tile), the input's
    fingerprint, the mstgan version and whatever the caller adds (segment plan)."""
    return _digest({"settings": settings(options), "device": options.device,
                    "batch": options.batch, "tile": options.tile, "version": __version__,
                    "source": source_fingerprint(source), **extra})
