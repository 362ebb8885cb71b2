"""The contract between the media pipeline and whatever makes frames bigger.

An upscaler consumes a stream of low-resolution frames and yields the same number of
high-resolution frames, in the same order. Frames are ``torch.Tensor`` of shape (3, H, W),
dtype float32, RGB in [0, 1], on the CPU. A multi-frame model needs look-ahead, so an
upscaler may hold back a few frames before it yields the first one; it must flush them
when the input ends.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F


@runtime_checkable
class FrameUpscaler(Protocol):
    """Anything that turns a stream of frames into a stream of frames ``scale`` times larger."""

    scale: int

    def process(self, frames: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
        """(3, H, W) float32 RGB in [0, 1] -> (3, scale*H, scale*W), one out per one in."""
        ...


class InterpolationUpscaler:
    """Classic single-frame resampling (bicubic/bilinear), the baseline every model must beat."""

    def __init__(self, scale: int, mode: str = "bicubic") -> None:
        assert scale >= 1, "scale must be a positive integer"
        self.scale = scale
        self.mode = mode

    def process(self, frames: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
        for frame in frames:
            extra = {} if self.mode in ("nearest", "area") else {"align_corners": False}
            out = F.interpolate(frame[None], scale_factor=self.scale, mode=self.mode, **extra)
            yield out[0].clamp_(0.0, 1.0)
