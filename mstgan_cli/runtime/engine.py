"""The generator as a FrameUpscaler: device, precision and backend choice, padding, tiling, batching."""
from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import BackendError
from ..model.generator import MSTGANGenerator
from ..options import RuntimeTuning
from .backends import Parts, compiled_parts, eager_parts, resolve_backend
from .memory import keep_freed_memory
from .parts import part_modules
from .window import WindowStream, iter_chunks, pad_frames

log = logging.getLogger("mstgan_cli")

# the dtype of the tensors between parts; int8 quantises inside the convolutions only
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": torch.float32}
TILE_OVERLAP = 16  # LR pixels of context on each side of a tile (covers flow and receptive field)


def resolve_device(device: str) -> torch.device:
    """'auto' -> the first CUDA GPU if there is one, else the CPU. Raises BackendError for a GPU
    that is not there."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise BackendError(f"unknown device {device!r} (use auto, cpu, cuda or cuda:N)") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BackendError(f"--device {device}: no CUDA GPU is available here (torch {torch.__version__})")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise BackendError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type != "cpu":
        raise BackendError(f"unsupported device {device!r}")
    return dev


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' -> fp16 on CUDA, fp32 on the CPU. Checks the combination is supported.

    Why fp32 on the CPU: measured on the 2-core AVX512-BF16/VNNI CPU without AMX
    (benchmarks/RESULTS.md), bf16 is no faster than fp32 there, and int8 (2.0-2.6x fp32 eager
    model only, about 2x end to end, -0.04 dB PSNR-Y) needs a calibration and a compiled build:
    `auto` keeps the output independent of what the cache holds."""
    if precision == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise BackendError("fp16 needs a CUDA GPU; on the CPU use --precision fp32, bf16 or int8")
    if precision == "int8" and device.type != "cpu":
        raise BackendError("int8 is quantised for the CPU (oneDNN); on a GPU use --precision fp16")
    if precision not in DTYPES:
        raise BackendError(f"unknown precision {precision!r} (auto, fp32, bf16, fp16, int8)")
    return precision


@dataclass
class _Tile:
    y0: int; y1: int; x0: int; x1: int          # LR region fed to the network (with context)
    cy0: int; cy1: int; cx0: int; cx1: int      # LR region this tile is responsible for
    stream: WindowStream


def _spans(size: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Split [0, size) into cores of at most `tile`, each with `overlap` context where possible.
    Returns (start, end, core_start, core_end)."""
    if tile <= 0 or size <= tile:
        return [(0, size, 0, size)]
    out = []
    for c0 in range(0, size, tile):
        c1 = min(size, c0 + tile)
        out.append((max(0, c0 - overlap), min(size, c1 + overlap), c0, c1))
    return out


class ModelUpscaler:
    """Runs an MST-GAN generator over a stream of frames.

    process(frames): frames (3, H, W) float32 RGB [0, 1] CPU tensors -> (3, s*H, s*W), same count.
    `tile` (LR pixels, 0 = whole frame) bounds memory for large frames; `batch` windows run at once.
    `backend`: auto, eager, compile or tensorrt (see :mod:`.backends`). The compiled parts are
    built on the first frames (an int8 model without stored calibration calibrates on them) and
    kept for later calls. `int8_qparams`: the stored INT8 calibration of these weights, if any.
    `tuning` (:class:`~mstgan_cli.options.RuntimeTuning`): how it runs; by default it leaves
    malloc as it is (the ``mstgan`` command asks it to keep freed memory on the CPU).
    """

    def __init__(self, model: MSTGANGenerator, device: str = "auto", precision: str = "auto",
                 batch: int = 1, tile: int = 0, backend: str = "auto",
                 int8_qparams: Path | None = None, tuning: RuntimeTuning | None = None) -> None:
        self.device = resolve_device(device)
        self.tuning = tuning or RuntimeTuning()
        if self.device.type == "cpu" and self.tuning.keep_freed_memory:
            keep_freed_memory()  # per-frame buffers are reused instead of page-faulted in again
        self.precision = resolve_precision(precision, self.device)
        self.backend = resolve_backend(backend, self.device, self.precision)
        # on the CPU, `auto` may still switch to compile once the job's length is known (expect())
        self._auto_cpu = backend == "auto" and self.device.type == "cpu" and self.precision != "int8"
        self.dtype = DTYPES[self.precision]
        # channels-last lets oneDNN (CPU) and cuDNN (GPU) pick their fastest convolution kernels
        self.model = model.to(self.device, self.dtype, memory_format=torch.channels_last).eval()
        self.model.flownet.float()  # flows stay fp32 (cheap; see parts.FlowPart)
        self.scale = model.config.scale
        self.batch = max(1, batch)
        self.tile = tile
        self.int8_qparams = int8_qparams
        self._parts: dict[tuple[int, int], Parts] = {}
        log.debug("model on %s at %s, %s backend, batch %d, tile %d", self.device, self.precision,
                  self.backend, self.batch, tile)

    def expect(self, frames: int | None, height: int, width: int) -> None:
        """Tell the upscaler how much work is coming (frames of height x width, low resolution), so
        that ``--backend auto`` on the CPU compiles the model when that pays back. No effect once
        the first frames have run, or with an explicit backend."""
        if not self._auto_cpu or self._parts:
            return
        from .backends import auto_cpu_backend

        built = self.compiled_cached()
        chosen = auto_cpu_backend(self.precision, frames, height, width, built)
        if chosen != self.backend:
            log.info("backend auto: %s (%s)", chosen, "built before" if built else
                     f"{frames} frames of {width}x{height}: building it pays back")
            self.backend = chosen

    def compiled_cached(self) -> bool:
        """The compiled (AOTInductor) packages of this model at this precision are in the cache
        (fp32/bf16 on the CPU; int8 packages also depend on the calibration)."""
        if self.device.type != "cpu" or self.precision == "int8":
            return False
        from .backends.aot import package_paths

        return all(p.is_file() for p in package_paths(self._digest, self.precision,
                                                      gather_warps=self.tuning.gather_warps).values())

    @functools.cached_property
    def _digest(self) -> str:
        """The weights' hash, which keys the compiled packages and the int8 calibration."""
        from ..compress.int8 import model_hash

        return model_hash(self.model)

    def _settle_backend(self) -> None:
        """`auto` on the CPU takes the compiled model when it is built, even when expect() was
        never told the job's length (a pipe). Decided before the first frames."""
        if self._auto_cpu and not self._parts and self.backend == "eager" and self.compiled_cached():
            log.info("backend auto: compile (built before)")
            self.backend = "compile"

    def _limits(self) -> tuple[int, int]:
        """The largest batch and LR tile side the parts take (0: any). The CPU's compiled
        packages are built for at most aot.MAX_BATCH windows of aot.MAX_SIDE pixels a side."""
        if self.backend == "compile" and self.device.type == "cpu":
            from .backends.aot import MAX_BATCH, MAX_SIDE

            return MAX_BATCH, MAX_SIDE
        return 0, 0

    def _tile_for(self, h: int, w: int) -> int:
        """The tile size for (h, w) LR frames: `tile`, made small enough for the backend."""
        _, side = self._limits()
        m = self.model.config.size_multiple
        if not side or max(h + (-h) % m, w + (-w) % m) <= side:
            return self.tile
        core = (side - 2 * TILE_OVERLAP) // m * m  # a tile with its context, padded, still fits
        if self.tile and self.tile <= core:
            return self.tile
        log.info("frames of %dx%d are larger than the compiled model takes (%d pixels a side): "
                 "processing them in tiles of %d", w, h, side, core)
        return core

    def parts(self, h: int, w: int, head: list[torch.Tensor] | None = None) -> Parts:
        """The parts for padded (h, w) tiles, built on first use. Only TensorRT engines depend on
        the size; `head` (first LR frames) calibrates an int8 model that has no stored calibration."""
        self._settle_backend()
        key = (h, w) if self.backend == "tensorrt" else (0, 0)
        if key not in self._parts:
            if self.backend == "tensorrt":
                from .backends.tensorrt import tensorrt_parts

                st = tensorrt_parts(self.model, self.precision, self.device, self.batch, h, w)
            elif self.backend == "compile" and self.device.type == "cpu":
                st = self._aot_parts(head)
            elif self.backend == "compile":
                st = compiled_parts(part_modules(self.model))
            else:
                st = eager_parts(self.model)
            self._parts[key] = st
        return self._parts[key]

    def _aot_parts(self, head: list[torch.Tensor] | None) -> Parts:
        """CPU compile: the parts as AOTInductor packages, cached across runs (:mod:`.backends.aot`).
        For int8 the package also depends on the calibration, which is found (or made on `head`,
        the first frames) before the cache is looked at."""
        from ..compress import int8
        from .backends.aot import aot_parts

        digest, gather, bf16 = self._digest, self.tuning.gather_warps, self.tuning.int8_bf16
        if self.precision != "int8":
            return aot_parts(self.model, self.precision, self.dtype, digest, lambda: part_modules(self.model),
                              gather_warps=gather)
        built: dict[str, torch.nn.Module] = {}
        stored = int8.stored_qparams(digest, self.int8_qparams)
        if stored is None:  # calibrate on the first frames now (this caches the calibration)
            built = int8.quantize(self.model, self.int8_qparams, head, gather, bf16)
            stored = int8.stored_qparams(digest, self.int8_qparams)
            assert stored is not None, "a fresh int8 calibration is cached"
        extra = {"qparams": int8.qparams_digest(stored), **int8.versions(),
                 "activations": "bf16" if int8.bf16_activations_enabled(bf16) else "fp32"}
        return aot_parts(self.model, "int8", torch.float32, digest,
                          lambda: built or int8.quantize(self.model, self.int8_qparams, head, gather, bf16),
                          extra, gather_warps=gather)

    @torch.inference_mode()
    def process(self, frames: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
        tiles: list[_Tile] | None = None
        h = w = 0
        m = self.model.config.size_multiple
        head: list[torch.Tensor] | None = None
        if self.precision == "int8" and not self._parts:
            from ..compress.int8 import CALIBRATION_FRAMES

            frames = iter(frames)
            head = list(itertools.islice(frames, CALIBRATION_FRAMES))
            frames = itertools.chain(head, frames)
        self._settle_backend()
        max_batch, _ = self._limits()
        batch = min(self.batch, max_batch) if max_batch else self.batch
        for chunk in iter_chunks(frames, batch):
            # frames stay fp32: the parts cast them where the network's precision applies
            x = torch.stack(chunk).to(self.device, torch.float32).contiguous(memory_format=torch.channels_last)
            if tiles is None:
                h, w = x.shape[-2:]
                tile = self._tile_for(h, w)
                spans = [(ys, xs) for ys in _spans(h, tile, TILE_OVERLAP) for xs in _spans(w, tile, TILE_OVERLAP)]
                ph = max(y1 - y0 for (y0, y1, _, _), _ in spans)
                pw = max(x1 - x0 for _, (x0, x1, _, _) in spans)
                parts = self.parts(ph + (-ph) % m, pw + (-pw) % m, head)
                head = None
                tiles = [_Tile(y0, y1, x0, x1, cy0, cy1, cx0, cx1, WindowStream(self.model, batch, parts=parts))
                         for (y0, y1, cy0, cy1), (x0, x1, cx0, cx1) in spans]
            assert x.shape[-2:] == (h, w), "all frames of a stream must have the same size"
            outs = [t.stream.push(pad_frames(x[..., t.y0:t.y1, t.x0:t.x1], m)) for t in tiles]
            yield from self._stitch(tiles, outs, h, w)
        if tiles is not None:
            yield from self._stitch(tiles, [t.stream.finish() for t in tiles], h, w)

    def _stitch(self, tiles: list[_Tile], outs: list[list[torch.Tensor]], h: int, w: int) -> Iterator[torch.Tensor]:
        s = self.scale
        n = len(outs[0])
        assert all(len(o) == n for o in outs), "tiles fell out of step"
        for k in range(n):
            if len(tiles) == 1:
                frame = outs[0][k][0, :, : h * s, : w * s]
            else:
                frame = torch.empty(3, h * s, w * s, dtype=outs[0][k].dtype, device=outs[0][k].device)
                for t, o in zip(tiles, outs):
                    oy, ox = (t.cy0 - t.y0) * s, (t.cx0 - t.x0) * s
                    frame[:, t.cy0 * s:t.cy1 * s, t.cx0 * s:t.cx1 * s] = \
                        o[k][0, :, oy:oy + (t.cy1 - t.cy0) * s, ox:ox + (t.cx1 - t.cx0) * s]
            yield frame.float().clamp_(0.0, 1.0).cpu()
