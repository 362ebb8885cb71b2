"""Backends: how the three parts of the generator run (see :mod:`mstgan_cli.runtime.parts`).

- ``eager``: PyTorch as written. Starts at once; the reference every other backend is tested against.
- ``compile``: Inductor. On the CPU the parts are compiled ahead of time by AOTInductor into
  packages kept on disk (:mod:`.aot`): the first run of a model at a precision builds them (about
  2 minutes on 2 cores), every later run, at any frame size, loads them in milliseconds. On CUDA,
  ``torch.compile`` (Triton). INT8 on the CPU always runs here: the quantised graph becomes fused
  oneDNN int8 convolutions only through Inductor.
- ``tensorrt``: torch-tensorrt (the ``[tensorrt]`` extra), CUDA only; engines cached on disk.

``auto`` picks TensorRT on CUDA when installed, else compile on CUDA. On the CPU it picks compile
for INT8 (which needs it); for fp32/bf16 it picks compile when the packages are already built, or
when the job is long enough for the build to pay back within it (:func:`auto_cpu_backend`;
compiled fp32 is ~1.6x faster than eager), else eager (the measurements: ``benchmarks/RESULTS.md``).
"""
from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ...errors import BackendError
from ...model.generator import MSTGANGenerator
from ..parts import part_modules

BACKENDS = ("auto", "eager", "compile", "tensorrt")


@dataclass
class Parts:
    """Callables for the three parts, with the signatures of :mod:`..parts`."""

    encode: Callable[..., tuple[torch.Tensor, ...]]
    flows: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    window: Callable[..., torch.Tensor]
    backend: str = "eager"


def eager_parts(model: MSTGANGenerator) -> Parts:
    mods = part_modules(model)
    return Parts(mods["encode"], mods["flows"], mods["window"], "eager")


def tensorrt_available() -> bool:
    """torch-tensorrt is installed (it is imported only when used)."""
    return importlib.util.find_spec("torch_tensorrt") is not None


def compile_available(device: torch.device) -> str | None:
    """None when torch.compile can build kernels for `device`, else why not."""
    if device.type == "cuda":
        return None if importlib.util.find_spec("triton") is not None else "Triton is not installed"
    if not any(shutil.which(cc) for cc in ("g++", "c++", "clang++")):
        return "no C++ compiler (g++) is installed; Inductor builds CPU kernels with one"
    return None


def resolve_backend(backend: str, device: torch.device, precision: str) -> str:
    """The backend to use for a request; raises BackendError for one that cannot run here."""
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r} (use {', '.join(BACKENDS)})")
    if backend == "auto":
        if precision == "int8":
            backend = "compile"
        elif device.type == "cuda":
            backend = "tensorrt" if tensorrt_available() else \
                ("compile" if compile_available(device) is None else "eager")
        else:
            return "eager"
    if backend == "eager" and precision == "int8":
        raise BackendError("int8 runs compiled (fused oneDNN int8 kernels); "
                           "use --backend compile or auto")
    if backend == "compile":
        why = compile_available(device)
        if why:
            raise BackendError(f"--backend compile: {why}")
    if backend == "tensorrt":
        if device.type != "cuda":
            raise BackendError("--backend tensorrt needs a CUDA GPU (use --device cuda)")
        if not tensorrt_available():
            raise BackendError("--backend tensorrt: torch-tensorrt is not installed "
                               "(pip install 'mstgan[tensorrt]'), or use --backend auto")
        if precision == "int8":
            raise BackendError("int8 is a CPU precision here; with TensorRT use fp16 or fp32")
    return backend


# Low-resolution pixel-frames from which `auto` builds the compiled packages on the CPU. Measured
# end to end (benchmarks/RESULTS.md, 2-core CPU, x4 at 480x272, freed memory kept): eager fp32
# ~6.5 us per LR pixel-frame, compiled ~5.0 us, and building the three packages ~160 s once, so a
# job of ~110 M pixel-frames pays the build back by itself (480x272: ~840 frames; 960x540: ~210
# frames). Smaller jobs stay eager unless the packages were built before (`--backend compile`
# once builds them for good).
AUTO_COMPILE_MIN_WORK = 110e6


def auto_cpu_backend(precision: str, frames: int | None, height: int, width: int, built: bool = False) -> str:
    """What ``--backend auto`` runs on the CPU for `frames` frames of height x width (LR), `built`
    saying whether the compiled packages of this model and precision are in the cache already."""
    if precision == "int8":
        return "compile"
    if compile_available(torch.device("cpu")) is not None:
        return "eager"
    if built or (frames and frames * height * width >= AUTO_COMPILE_MIN_WORK):
        return "compile"
    return "eager"


def compiled_parts(modules: dict[str, torch.nn.Module]) -> Parts:
    """torch.compile each part (CUDA; the CPU compiles ahead of time, see :mod:`.aot`)."""
    comp = {k: torch.compile(m) for k, m in modules.items()}
    return Parts(comp["encode"], comp["flows"], comp["window"], "compile")


__all__ = ["AUTO_COMPILE_MIN_WORK", "BACKENDS", "Parts", "auto_cpu_backend", "eager_parts", "compiled_parts", "resolve_backend",
           "tensorrt_available", "compile_available"]
