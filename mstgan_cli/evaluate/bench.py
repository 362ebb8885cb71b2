"""Throughput of each stage of an upscale, and of the whole, for each configuration asked for.

Stages, each timed on its own over the same N frames so their costs can be compared:

* ``decode``: FFmpeg decoding of the clip into RGB arrays (media.decode);
* ``preprocess``: RGB uint8 arrays -> (3, H, W) float32 tensors (on the model's device);
* ``model``: the upscaler over those tensors, per (backend, precision, batch) configuration,
  after a short warm-up; GFLOP/s = the model's streaming FLOPs per input pixel (model registry)
  x input pixels x frames / seconds;
* ``postprocess``: (3, sH, sW) float frames -> uint8 RGB arrays;
* ``encode``: H.264 encoding of the upscaled frames with the default encoder settings;
* ``end-to-end``: :func:`mstgan_cli.job.upscale.upscale_file` on the clip (overlapping stages,
  muxing included) per configuration.

Memory: ``rss_peak_mb`` is the highest resident set size sampled (every 5 ms) while the stage ran;
the process's lifetime peak (``resource.getrusage``) is reported once; ``cuda_peak_mb`` is
``torch.cuda.max_memory_allocated`` for stages on a GPU.

Backends are a registry (:data:`BACKENDS`): ``eager`` and ``compile`` everywhere, ``tensorrt``
where torch-tensorrt is installed (registered at the bottom of this module); a new backend is one
more builder function with the same signature.
"""
from __future__ import annotations

import logging
import math
import os
import resource
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch

from ..errors import BackendError, InputError, MstganError
from ..runtime.upscaler import FrameUpscaler, InterpolationUpscaler

log = logging.getLogger("mstgan_cli")

STAGES = ("decode", "preprocess", "model", "postprocess", "encode", "end-to-end")
BASELINES = ("bicubic", "bilinear", "nearest", "lanczos")


@dataclass(frozen=True)
class BenchConfig:
    """One configuration of the model stage."""

    backend: str
    precision: str
    batch: int
    device: str

    @property
    def label(self) -> str:
        return f"{self.backend}/{self.precision}/b{self.batch}"


def _eager(model: str, scale: int, config: BenchConfig, tile: int) -> FrameUpscaler:
    """The plain PyTorch runtime (runtime.ModelUpscaler), or a baseline by name."""
    if model in BASELINES:
        if model == "lanczos":
            from .protocol import LanczosUpscaler
            return LanczosUpscaler(scale)
        return InterpolationUpscaler(scale, model)
    from ..runtime import load_upscaler
    name = None if model == "mstgan" else model
    return load_upscaler(name, scale=scale, device=config.device, precision=config.precision,
                         batch=config.batch, tile=tile)


BACKENDS: dict[str, Callable[[str, int, BenchConfig, int], FrameUpscaler]] = {"eager": _eager}


@dataclass(frozen=True)
class BenchProgress:
    """Which stage (and configuration, for model / end-to-end stages) is being measured."""

    stage: str
    config: str | None
    index: int
    total: int


class _PeakRss:
    """Samples this process's resident set size in a thread; ``peak`` in bytes."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mstgan-rss", daemon=True)
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def _sample(self) -> int:
        try:
            with open("/proc/self/statm", "rb") as f:
                return int(f.read().split()[1]) * self._page
        except (OSError, ValueError, IndexError):
            return _lifetime_peak_rss()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            self._stop.wait(self.interval)

    def __enter__(self) -> _PeakRss:
        self.peak = self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._sample())


def _lifetime_peak_rss() -> int:
    """Peak RSS of this process so far, in bytes (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if os.uname().sysname == "Darwin" else peak * 1024


def _sync(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def _row(stage: str, frames: int, seconds: float, rss: int, config: BenchConfig | None = None,
         pixels: int | None = None, flops_per_pixel: float | None = None,
         cuda_peak: int | None = None) -> dict[str, Any]:
    fps = frames / seconds if seconds > 0 else math.inf
    gflops = (flops_per_pixel * pixels * frames / seconds / 1e9
              if flops_per_pixel and pixels and seconds > 0 else None)
    return {"stage": stage, "backend": config.backend if config else None,
            "precision": config.precision if config else None,
            "batch": config.batch if config else None, "frames": frames, "seconds": seconds,
            "fps": fps, "gflops": gflops, "rss_peak_mb": rss / 2**20,
            "cuda_peak_mb": cuda_peak / 2**20 if cuda_peak is not None else None}


def _model_flops(upscaler: FrameUpscaler) -> float | None:
    model = getattr(upscaler, "model", None)
    config = getattr(model, "config", None)
    if config is None:
        return None
    try:
        from ..model.registry import flops_per_pixel
        return float(flops_per_pixel(config)["streaming"])
    except Exception as exc:  # noqa: BLE001 - FLOP counting is a nicety
        log.warning("cannot count the model's FLOPs: %s", exc)
        return None


def _model_device(upscaler: FrameUpscaler) -> torch.device | None:
    dev = getattr(upscaler, "device", None)
    return dev if isinstance(dev, torch.device) else None


def configs(backends: Sequence[str], precisions: Sequence[str], batches: Sequence[int],
            device: str) -> list[BenchConfig]:
    """Every combination asked for; BackendError for a backend this build lacks."""
    for b in backends:
        if b not in BACKENDS:
            raise BackendError(f"backend {b!r} is not available in this version "
                               f"(available: {', '.join(BACKENDS)})")
    for n in batches:
        if n < 1:
            raise ValueError(f"batch sizes must be at least 1, got {n}")
    return [BenchConfig(b, p, n, device) for b in backends for p in precisions for n in batches]


def run_bench(input: str | os.PathLike[str] | None = None, size: tuple[int, int] = (480, 270),
              frames: int = 24, model: str = "mstgan", scale: int = 4,
              backends: Sequence[str] = ("eager",), precisions: Sequence[str] = ("fp32",),
              batches: Sequence[int] = (1,), device: str = "auto", tile: int = 0,
              end_to_end: bool = True, warmup: int = 2,
              upscaler_factory: Callable[[BenchConfig], FrameUpscaler] | None = None,
              progress: Callable[[BenchProgress], None] | None = None) -> dict[str, Any]:
    """Measure every stage (module docstring) on ``input`` (first ``frames`` frames) or, without
    one, on a generated testsrc2 clip of ``size`` (w, h) and ``frames`` frames.

    ``model``: "mstgan" (the shipped weights for ``scale``), a shipped name or checkpoint path,
    or a baseline (bicubic, lanczos, ...). ``upscaler_factory`` replaces the backend registry
    (tests, experiments). A configuration that fails (e.g. bf16 unsupported) is recorded in
    ``errors`` and the others still run.

    Returns {"input", "generated", "size": [w, h], "frames", "scale", "model", "device",
    "flops_per_pixel", "rows": [{stage, backend, precision, batch, frames, seconds, fps, gflops,
    rss_peak_mb, cuda_peak_mb}], "process_peak_rss_mb", "errors": {config label: message}}.
    """
    from ..media.decode import VideoDecoder
    from ..media.encode import VideoEncoder, plan_encoder
    from ..media.frames import make_test_clip, rgb_to_tensor, tensor_to_rgb8
    from ..media.probe import probe
    from ..options import EncodeSettings, UpscaleOptions
    from ..job.upscale import upscale_file
    from ..job.plan import output_colour
    from ..runtime.engine import resolve_device

    if frames < 1:
        raise ValueError("frames must be at least 1")
    cfgs = configs(backends, precisions, batches, device)
    build = upscaler_factory or (lambda c: BACKENDS[c.backend](model, scale, c, tile))
    steps = 4 + (2 if end_to_end else 1) * len(cfgs)
    step = 0

    def report(stage: str, config: BenchConfig | None = None) -> None:
        nonlocal step
        step += 1
        if progress:
            progress(BenchProgress(stage, config.label if config else None, step, steps))

    rows: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="mstgan-bench-") as tmp:
        work = Path(tmp)
        generated = input is None
        if generated:
            w, h = size
            if w % 2 or h % 2:
                raise InputError(f"--size {w}x{h}: width and height must be even")
            src = make_test_clip(work / f"testsrc2_{w}x{h}.mp4", size, frames)
        else:
            src = Path(input)
        info = probe(src)

        # decode -------------------------------------------------------------------------------
        report("decode")
        arrays = []
        with _PeakRss() as rss:
            t0 = time.perf_counter()
            decoder = VideoDecoder(info, info.video.colour.resolved(info.video.height))
            with decoder:
                for frame in decoder:
                    arrays.append(frame.rgb)
                    if len(arrays) == frames:
                        decoder.kill()
                        break
            seconds = time.perf_counter() - t0
        if not arrays:
            raise InputError(f"no frames could be decoded from {src}")
        n = len(arrays)
        rows.append(_row("decode", n, seconds, rss.peak))
        h, w = arrays[0].shape[:2]

        # preprocess ---------------------------------------------------------------------------
        report("preprocess")
        dev = resolve_device(device)
        with _PeakRss() as rss:
            t0 = time.perf_counter()
            tensors = [rgb_to_tensor(a).to(dev) for a in arrays]
            _sync(dev)
            seconds = time.perf_counter() - t0
        rows.append(_row("preprocess", n, seconds, rss.peak))
        tensors = [t.cpu() for t in tensors]  # upscalers take CPU frames (FrameUpscaler contract)

        # model, per configuration --------------------------------------------------------------
        flops: float | None = None
        built: dict[BenchConfig, FrameUpscaler] = {}
        for c in cfgs:
            report("model", c)
            try:
                up = build(c)
                if flops is None:
                    flops = _model_flops(up)
                mdev = _model_device(up)
                if warmup:
                    for _ in up.process(tensors[:warmup]):
                        pass
                if mdev is not None and mdev.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(mdev)
                with _PeakRss() as rss:
                    t0 = time.perf_counter()
                    count = sum(1 for _ in up.process(iter(tensors)))
                    _sync(mdev)
                    seconds = time.perf_counter() - t0
                cuda_peak = torch.cuda.max_memory_allocated(mdev) if mdev is not None and mdev.type == "cuda" else None
                if count != n:
                    raise MstganError(f"the model returned {count} frames for {n}")
                rows.append(_row("model", n, seconds, rss.peak, c, w * h, flops, cuda_peak))
                built[c] = up
            except (MstganError, RuntimeError, ValueError) as exc:
                log.warning("%s: %s", c.label, exc)
                errors[c.label] = str(exc).splitlines()[0]
        s = int(next(iter(built.values())).scale) if built else scale

        # postprocess and encode, on bicubic frames of the model's output size, one at a time;
        # each has its own clock, memory is sampled over both
        report("postprocess")
        report("encode")
        big = InterpolationUpscaler(s, "bicubic")
        plan = plan_encoder(EncodeSettings(), ".mp4", False)
        out_size = (w * s, h * s)
        rate = info.video.avg_rate or Fraction(25)
        post_seconds = enc_seconds = 0.0
        with _PeakRss() as rss:
            t0 = time.perf_counter()
            enc = VideoEncoder(work / "encode.mp4", plan, size=out_size, src_size=out_size,
                               time_base=1 / rate, rate=rate,
                               colour=output_colour(info.video.colour, out_size[1]))
            enc_seconds += time.perf_counter() - t0
            for i, hr in enumerate(big.process(iter(tensors))):
                t0 = time.perf_counter()
                rgb = tensor_to_rgb8(hr)
                t1 = time.perf_counter()
                enc.write(rgb, i)
                t2 = time.perf_counter()
                post_seconds += t1 - t0
                enc_seconds += t2 - t1
            t0 = time.perf_counter()
            enc.close()
            enc_seconds += time.perf_counter() - t0
        rows.append(_row("postprocess", n, post_seconds, rss.peak))
        rows.append(_row("encode", n, enc_seconds, rss.peak))

        # end to end, per configuration ----------------------------------------------------------
        if end_to_end:
            clip = src
            if not generated and n < (info.video.estimated_frames or n):
                clip = _first_frames(src, n, work)
            for c, up in built.items():
                report("end-to-end", c)
                mdev = _model_device(up)
                if mdev is not None and mdev.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(mdev)
                options = UpscaleOptions(output=work / f"e2e_{len(rows)}.mp4", scale=s, overwrite=True)
                try:
                    with _PeakRss() as rss:
                        result = upscale_file(clip, options, factory=lambda _scale, up=up: up)
                except MstganError as exc:
                    errors[f"end-to-end {c.label}"] = str(exc).splitlines()[0]
                    continue
                cuda_peak = torch.cuda.max_memory_allocated(mdev) if mdev is not None and mdev.type == "cuda" else None
                rows.append(_row("end-to-end", result.frames, result.seconds, rss.peak, c, w * h,
                                 flops, cuda_peak))
    return {"input": None if generated else str(src), "generated": generated, "size": [w, h],
            "frames": n, "scale": s, "model": model, "device": str(dev),
            "flops_per_pixel": flops, "rows": rows,
            "process_peak_rss_mb": _lifetime_peak_rss() / 2**20, "errors": errors}


def _first_frames(src: Path, n: int, work: Path) -> Path:
    """The first n frames of ``src`` as a lossless clip, so end-to-end runs the same frames."""
    from ..media.frames import RawVideoWriter, read_timed_frames
    from ..media.probe import probe

    rate = probe(src).video.avg_rate or Fraction(25)
    frames: Iterator[torch.Tensor] = (f for _, f in read_timed_frames(src, n))
    out = work / "first_frames.mkv"
    first = next(frames)
    with RawVideoWriter(out, (first.shape[-1], first.shape[-2]), rate, lossless=True) as wr:
        wr.write(first)
        for f in frames:
            wr.write(f)
    return out


def bench_markdown(result: dict[str, Any]) -> str:
    """The rows as one markdown table."""
    from .report import fmt, markdown_table

    headers = ["stage", "backend", "precision", "batch", "frames", "seconds", "fps", "GFLOP/s",
               "peak RSS MB", "CUDA peak MB"]
    rows = [[r["stage"], r["backend"] or "", r["precision"] or "", r["batch"] or "", r["frames"],
             f"{r['seconds']:.3f}", fmt(r["fps"], digits=4), fmt(r["gflops"], digits=4),
             f"{r['rss_peak_mb']:.0f}", fmt(r["cuda_peak_mb"], digits=4)] for r in result["rows"]]
    w, h = result["size"]
    title = (f"Benchmark: {result['frames']} frames of {w}x{h} "
             f"({'generated testsrc2' if result['generated'] else result['input']}), model "
             f"{result['model']} x{result['scale']} on {result['device']}")
    text = f"{title}\n\n{markdown_table(headers, rows)}"
    if result["errors"]:
        text += "\n\nFailed: " + "; ".join(f"{k} ({v})" for k, v in result["errors"].items())
    return text


__all__ = ["BACKENDS", "BenchConfig", "BenchProgress", "STAGES", "bench_markdown", "configs", "run_bench"]


# --- runtime backends (issue #5): eager, compile, tensorrt of runtime.backends -------------------
def _runtime_backend(backend: str) -> Callable[[str, int, BenchConfig, int], FrameUpscaler]:
    """A BACKENDS builder running the shipped model on `backend` (baselines as in _eager). The
    backend is pinned: a plain load_upscaler would pick "auto" (compile for int8, TensorRT on CUDA)."""
    def build(model: str, scale: int, config: BenchConfig, tile: int) -> FrameUpscaler:
        if model in BASELINES:
            return _eager(model, scale, config, tile)
        from ..runtime import load_upscaler
        return load_upscaler(None if model == "mstgan" else model, scale=scale, device=config.device,
                             precision=config.precision, batch=config.batch, tile=tile, backend=backend)
    return build


def _register_runtime_backends() -> None:
    from ..runtime.backends import tensorrt_available  # TensorRT only where torch-tensorrt is installed
    names = ("eager", "compile", "tensorrt") if tensorrt_available() else ("eager", "compile")
    BACKENDS.update({b: _runtime_backend(b) for b in names})


_register_runtime_backends()
