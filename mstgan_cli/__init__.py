"""mstgan: multi-frame video super-resolution (MST-GAN) streamed through FFmpeg.

The library under the ``mstgan`` command. A whole file, every other stream copied::

    from pathlib import Path
    from mstgan_cli import Target, UpscaleOptions, upscale_file

    result = upscale_file("in.mp4", UpscaleOptions(output=Path("out.mp4"), target=Target.parse("1080p")))
    print(result.output, result.frames, result.size)

Frames you already have, through a shipped model (or a checkpoint path)::

    from mstgan_cli import load_model

    up = load_model("mstgan-x4", device="cpu")    # a ModelUpscaler
    big = list(up.process(frames))  # (3, H, W) float32 RGB in [0, 1] -> (3, 4H, 4W), same count

A folder: :func:`upscale_folder` with :class:`FolderOptions`; the shipped models:
:func:`list_models`. Errors are :class:`MstganError` subclasses, each with its ``exit_code``.
The library logs to ``logging.getLogger("mstgan_cli")`` and reports progress through callbacks;
it never prints. Names are imported on first use, so ``import mstgan_cli`` stays cheap (no torch).
"""
from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

logging.getLogger("mstgan_cli").addHandler(logging.NullHandler())

# public name -> module it lives in (imported when the name is first used)
_EXPORTS = {
    "upscale_file": ".job.upscale", "UpscaleResult": ".job.upscale", "Progress": ".job.upscale",
    "upscale_folder": ".job.archive", "FolderOptions": ".job.archive", "FolderResult": ".job.archive", "Shard": ".job.archive",
    "UpscaleOptions": ".options", "EncodeSettings": ".options", "Target": ".options",
    "Precision": ".options", "Backend": ".options", "RuntimeTuning": ".options",
    "list_models": ".job.plan",
    "MstganError": ".errors", "InputError": ".errors", "OutputError": ".errors", "FFmpegError": ".errors",
    "ModelError": ".errors", "BackendError": ".errors", "IntegrityError": ".errors", "EXIT_CODES": ".errors",
}
_ALIASES = {"load_model": (".runtime", "load_upscaler")}

__all__ = ["__version__", "load_model", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module, attr = _EXPORTS[name], name
    elif name in _ALIASES:
        module, attr = _ALIASES[name]
    else:
        raise AttributeError(f"module 'mstgan_cli' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), attr)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names come from __getattr__
    from .job.archive import FolderOptions, FolderResult, Shard, upscale_folder
    from .errors import (EXIT_CODES, BackendError, FFmpegError, InputError, IntegrityError, ModelError,
                         MstganError, OutputError)
    from .options import Backend, EncodeSettings, Precision, RuntimeTuning, Target, UpscaleOptions
    from .job.upscale import Progress, UpscaleResult, upscale_file
    from .job.plan import list_models
    from .runtime import load_upscaler as load_model
