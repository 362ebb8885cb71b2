"""The generator as a FrameUpscaler: device and precision choice, padding, tiling, batching."""
from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch

from ..errors import BackendError
from ..model.generator import MSTGANGenerator
from .window import WindowStream, iter_chunks, pad_frames

log = logging.getLogger("mstgan_cli")

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
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
    """'auto' -> fp16 on CUDA, fp32 on the CPU. Checks the combination is supported."""
    if precision == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise BackendError("fp16 needs a CUDA GPU; on the CPU use --precision fp32 or bf16")
    if precision == "int8":
        raise BackendError("int8 needs a quantised model, which this version does not ship yet; "
                           "use --precision fp32 or bf16 (CPU), fp16 (CUDA)")
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
    """

    def __init__(self, model: MSTGANGenerator, device: str = "auto", precision: str = "auto",
                 batch: int = 1, tile: int = 0) -> None:
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.dtype = DTYPES[self.precision]
        # channels-last lets oneDNN (CPU) and cuDNN (GPU) pick their fastest convolution kernels
        self.model = model.to(self.device, self.dtype, memory_format=torch.channels_last).eval()
        self.scale = model.config.scale
        self.batch = max(1, batch)
        self.tile = tile
        log.debug("model on %s at %s, batch %d, tile %d", self.device, self.precision, self.batch, tile)

    @torch.inference_mode()
    def process(self, frames: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
        tiles: list[_Tile] | None = None
        h = w = 0
        m = self.model.config.size_multiple
        for chunk in iter_chunks(frames, self.batch):
            x = torch.stack(chunk).to(self.device, self.dtype).contiguous(memory_format=torch.channels_last)
            if tiles is None:
                h, w = x.shape[-2:]
                tiles = [_Tile(y0, y1, x0, x1, cy0, cy1, cx0, cx1, WindowStream(self.model, self.batch))
                         for (y0, y1, cy0, cy1) in _spans(h, self.tile, TILE_OVERLAP)
                         for (x0, x1, cx0, cx1) in _spans(w, self.tile, TILE_OVERLAP)]
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
