"""Backends: how the three stages of the generator run (see :mod:`mstgan_cli.runtime.stages`).

- ``eager``: PyTorch as written. Starts at once; the reference every other backend is tested against.
- ``compile``: ``torch.compile`` (Inductor: C++/OpenMP on the CPU, Triton on CUDA). Fuses the
  elementwise work between convolutions; the first run of a shape compiles (minutes on a small
  CPU; Inductor's on-disk cache makes later runs start in seconds). INT8 on the CPU always runs
  here: the quantised graph becomes fused oneDNN int8 convolutions only through Inductor.
- ``tensorrt``: torch-tensorrt (the ``[tensorrt]`` extra), CUDA only; engines cached on disk.

``auto`` picks TensorRT on CUDA when installed, else compile on CUDA. On the CPU it picks compile
for INT8 (which needs it), and for fp32/bf16 once the job is known to be long enough for compiling
to pay back (:func:`auto_cpu_backend`: compiled fp32 is ~1.7x faster but the first build of a
frame size takes most of a minute), else eager (the measurements: ``benchmarks/RESULTS.md``).
"""
from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ...errors import BackendError
from ...model.generator import MSTGANGenerator
from ..stages import stage_modules

BACKENDS = ("auto", "eager", "compile", "tensorrt")


@dataclass
class Stages:
    """Callables for the three stages, with the signatures of :mod:`..stages`."""

    encode: Callable[..., tuple[torch.Tensor, ...]]
    flows: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    window: Callable[..., torch.Tensor]
    backend: str = "eager"


def eager_stages(model: MSTGANGenerator) -> Stages:
    mods = stage_modules(model)
    return Stages(mods["encode"], mods["flows"], mods["window"], "eager")


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
        raise BackendError("int8 runs through torch.compile (fused oneDNN int8 kernels); "
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


# Low-resolution pixel-frames from which `auto` compiles on the CPU. Measured (benchmarks/RESULTS.md,
# 2-core CPU): eager fp32 costs ~7.5 us per LR pixel-frame, compiled ~4.4 us, and a fresh compile
# ~45 s, so compiling pays back from ~15 M pixel-frames; twice that leaves a margin for slower
# compiles and bigger CPUs (e.g. 480x272: ~230 frames; 960x540: ~58 frames).
AUTO_COMPILE_MIN_WORK = 30e6


def auto_cpu_backend(precision: str, frames: int | None, height: int, width: int) -> str:
    """What ``--backend auto`` runs on the CPU for `frames` frames of height x width (LR)."""
    if precision == "int8":
        return "compile"
    if frames and frames * height * width >= AUTO_COMPILE_MIN_WORK \
            and compile_available(torch.device("cpu")) is None:
        return "compile"
    return "eager"


class _Frozen:
    """A torch.compile'd module whose (re)compilations run with Inductor's freezing on: weights
    become constants, so oneDNN gets pre-packed weights and the int8 patterns fuse. (Passed as
    ``options={"freezing": True}`` instead, the int8 weight pre-packing fails in torch 2.13.)"""

    def __init__(self, module: torch.nn.Module) -> None:
        self.compiled = torch.compile(module)

    def __call__(self, *args: torch.Tensor):
        import torch._inductor.config as inductor_config

        with inductor_config.patch(freezing=True):
            return self.compiled(*args)


def compiled_stages(modules: dict[str, torch.nn.Module], device: torch.device) -> Stages:
    """torch.compile each stage (with freezing on the CPU)."""
    wrap = _Frozen if device.type == "cpu" else torch.compile
    comp = {k: wrap(m) for k, m in modules.items()}
    return Stages(comp["encode"], comp["flows"], comp["window"], "compile")


__all__ = ["AUTO_COMPILE_MIN_WORK", "BACKENDS", "Stages", "auto_cpu_backend", "eager_stages", "compiled_stages", "resolve_backend",
           "tensorrt_available", "compile_available"]
