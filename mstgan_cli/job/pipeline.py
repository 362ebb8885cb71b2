"""Decode -> upscale -> encode as three overlapping stages, for one stretch of frames.

Threads and bounded queues: a decoder thread feeds low-resolution frames, the calling thread runs
the model (so Ctrl-C lands there), an encoder thread resizes, converts and encodes. Memory stays
bounded by the queue sizes; no frame touches the disk.

Every frame carries a ``keep`` flag: frames decoded only as context for a multi-frame model
(the neighbours of a segment's first and last frames) go through the model, and their outputs
are dropped instead of encoded.
"""
from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ModelError, MstganError
from ..media.encode import VideoEncoder, gbr_frame, scaled_for_rounding
from .plan import frame_budget
from ..runtime.upscaler import FrameUpscaler


@dataclass(frozen=True)
class LowResFrame:
    """A decoded frame on its way: ``rgb`` (H, W, 3) uint8/uint16 full-range RGB, its ``pts`` in
    the decoder's time base, and whether its output is wanted (``keep``) or only its context."""

    rgb: np.ndarray
    pts: int
    keep: bool = True


_END = object()


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _put(q: queue.Queue[object], item: object, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue[object], stop: threading.Event) -> object:
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set():
                return _END


# Conversions go through numpy: on the CPU it is several times faster than torch for these
# layout changes (HWC <-> CHW) and dtype casts, and it releases the GIL while it works.
def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8/uint16 RGB -> (3, H, W) float32 in [0, 1]."""
    chw = rgb.transpose(2, 0, 1).astype(np.float32)
    chw *= 1.0 / (65535.0 if rgb.dtype == np.uint16 else 255.0)
    return torch.from_numpy(chw)


def to_array(frame: torch.Tensor, deep: bool) -> np.ndarray:
    """(3, H, W) float RGB in [0, 1] -> (H, W, 3) uint16 (``deep``) or uint8, rounded. (The
    encoder thread uses :func:`.media.encode.gbr_frame`: the same pixels, kept planar.)"""
    chw = scaled_for_rounding(frame.detach().to("cpu", torch.float32).numpy(), deep)
    return np.ascontiguousarray(chw.astype(np.uint16 if deep else np.uint8).transpose(1, 2, 0))


EncoderFactory = Callable[[tuple[int, int]], VideoEncoder]
"""Opens the encoder, given the (width, height) of the model's output frames."""


class Pipeline:
    """One run of the three stages. :meth:`run` returns when every kept frame is encoded and
    the encoder closed; ``written`` then holds the input pts of the encoded frames, in order."""

    def __init__(self, upscaler: FrameUpscaler, lr_size: tuple[int, int], deep: bool,
                 open_encoder: EncoderFactory, on_frame: Callable[[int], None] | None = None) -> None:
        self.upscaler, self.lr_size, self.deep = upscaler, lr_size, deep
        self.open_encoder, self.on_frame = open_encoder, on_frame
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.encoder: VideoEncoder | None = None
        self.written: list[int] = []

    def _decode(self, frames: Iterable[LowResFrame], q: queue.Queue[object]) -> None:
        try:
            for f in frames:
                if not _put(q, (to_tensor(f.rgb), f.pts, f.keep), self.stop):
                    return
            _put(q, _END, self.stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            _put(q, _Failed(exc), self.stop)

    def _encode(self, q: queue.Queue[object], src_size: tuple[int, int]) -> None:
        try:
            while not self.stop.is_set():
                item = _get(q, self.stop)
                if item is _END:
                    break
                frame, pts = item  # type: ignore[misc]
                if self.encoder is None:
                    self.encoder = self.open_encoder(src_size)
                self.encoder.write(gbr_frame(frame.detach().to("cpu", torch.float32).numpy(), self.deep), pts)
                self.written.append(pts)
                if self.on_frame:
                    self.on_frame(len(self.written))
            if self.encoder is not None and not self.stop.is_set():
                self.encoder.close()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self.errors.append(exc)
            self.stop.set()

    def run(self, frames: Iterable[LowResFrame], halt: Callable[[], None]) -> None:
        """Push ``frames`` (iterated on the decoder thread) through the model into the encoder.
        ``halt`` stops the frame source early (any thread). Re-raises the first failure here."""
        up_w, up_h = self.lr_size
        scale = int(self.upscaler.scale)
        src_size = (up_w * scale, up_h * scale)
        in_q: queue.Queue[object] = queue.Queue(maxsize=frame_budget(up_w, up_h))
        out_q: queue.Queue[object] = queue.Queue(maxsize=frame_budget(*src_size))
        pending: deque[tuple[int, bool]] = deque()
        threads = [threading.Thread(target=self._decode, args=(frames, in_q),
                                    name="mstgan-decode", daemon=True),
                   threading.Thread(target=self._encode, args=(out_q, src_size),
                                    name="mstgan-encode", daemon=True)]

        def inputs() -> Iterator[torch.Tensor]:
            while True:
                item = _get(in_q, self.stop)
                if item is _END:
                    return
                if isinstance(item, _Failed):
                    raise item.exc
                tensor, pts, keep = item  # type: ignore[misc]
                pending.append((pts, keep))
                yield tensor

        for t in threads:
            t.start()
        ok = False
        try:
            for out in self.upscaler.process(inputs()):
                if tuple(out.shape) != (3, src_size[1], src_size[0]):
                    raise ModelError(f"the model returned a {tuple(out.shape)} frame, expected "
                                     f"(3, {src_size[1]}, {src_size[0]})")
                if not pending:
                    raise ModelError("the model returned more frames than it was given")
                pts, keep = pending.popleft()
                if keep and not _put(out_q, (out, pts), self.stop):
                    break  # the encoder failed; its error is raised below
            else:
                if not self.stop.is_set():  # (if set, the encoder failed: report that instead)
                    if pending:
                        raise ModelError(f"the model held back {len(pending)} frame(s) at the end")
                    _put(out_q, _END, self.stop)
                    threads[1].join()
                    ok = not self.errors
        finally:
            if not ok:
                self.stop.set()
                halt()
            for t in threads:
                t.join(timeout=60)
            if not ok and self.encoder is not None:
                self.encoder.abort()
        if self.errors:
            raise self.errors[0]
        if not ok:
            raise MstganError("the upscale stopped before the end of the video")
