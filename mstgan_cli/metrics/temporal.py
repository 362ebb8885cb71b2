"""Temporal metrics of TecoGAN (Chu et al. 2020): tOF and tLP. Lower is better; 0 for a perfect copy.

For each pair of consecutive frames (t-1, t):

* tOF: optical flow of the output pair and of the ground-truth pair (OpenCV Farneback on 8-bit
  grey, TecoGAN's parameters 0.5, 3, 15, 3, 5, 1.2, 0), mean over pixels of the Euclidean norm of
  their difference (in pixels).
* tLP: |LPIPS(out_{t-1}, out_t) - LPIPS(gt_{t-1}, gt_t)| with LPIPS-Alex v0.1; papers print it x100.

Both are averaged over pairs. As in TecoGAN's ``metrics.py``, the flow fields / frames are first
centre-cropped to a multiple of 32 with at least 8 px removed on every side (``tecogan_crop``).
The classes take frames one pair at a time and keep only the previous frame, so a video of any
length streams through them.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from ..errors import MstganError
from .image import as_image_tensor, to_uint8_hwc
from .lpips import LPIPS, cached_lpips

FARNEBACK_PARAMS = (0.5, 3, 15, 3, 5, 1.2, 0)  # pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, flags


def tecogan_crop(h: int, w: int) -> tuple[slice, slice]:
    """TecoGAN's ``crop_8x8``: centred window, a multiple of 32, at least 8 px in from each side.

    Frames too small for it (under 48 px) are left whole.
    """

    def one(n: int) -> slice:
        m = (n // 32) * 32
        while m > n - 16:
            m -= 32
        if m <= 0:
            return slice(0, n)
        o = (n - m) // 2
        return slice(o, o + m)

    return one(h), one(w)


def _cv2():
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - cv2 is a declared dependency
        raise MstganError("tOF needs OpenCV: pip install opencv-python-headless") from exc
    return cv2


def to_grey_u8(frame) -> np.ndarray:
    """RGB frame ((3, H, W) float [0, 1] tensor, or (H, W, 3) uint8 array) -> (H, W) uint8 grey.

    Grey is OpenCV's ``COLOR_RGB2GRAY`` (0.299 R + 0.587 G + 0.114 B), as TecoGAN computed it.
    """
    if isinstance(frame, np.ndarray) and frame.dtype == np.uint8:
        rgb = np.ascontiguousarray(frame)
    else:
        rgb = to_uint8_hwc(frame)
    assert rgb.ndim == 3 and rgb.shape[2] == 3, f"expected one RGB frame, got {rgb.shape}"
    return _cv2().cvtColor(rgb, _cv2().COLOR_RGB2GRAY)


def farneback_flow(prev_grey: np.ndarray, next_grey: np.ndarray) -> np.ndarray:
    """Dense flow (H, W, 2) float32 in pixels from ``prev_grey`` to ``next_grey`` (uint8 (H, W))."""
    return _cv2().calcOpticalFlowFarneback(prev_grey, next_grey, None, *FARNEBACK_PARAMS)


class TemporalOF:
    """Streaming tOF: call :meth:`update` with each (output, ground-truth) frame pair in order.

    Frames: (3, H, W) float RGB [0, 1] tensors or (H, W, 3) uint8 arrays; output and ground truth of
    one time step must have the same size. ``values`` holds one number per consecutive pair.
    """

    def __init__(self, crop: bool = True) -> None:
        self.crop = crop
        self.values: list[float] = []
        self._prev: tuple[np.ndarray, np.ndarray] | None = None

    def reset(self) -> None:
        self.values.clear()
        self._prev = None

    def update(self, out_frame, gt_frame) -> float | None:
        """Add time step t; returns tOF of the pair (t-1, t), or None for the first frame."""
        out_g, gt_g = to_grey_u8(out_frame), to_grey_u8(gt_frame)
        if out_g.shape != gt_g.shape:
            raise ValueError(f"output {out_g.shape} and ground truth {gt_g.shape} differ in size")
        prev, self._prev = self._prev, (out_g, gt_g)
        if prev is None:
            return None
        if prev[0].shape != out_g.shape:
            raise ValueError(f"frame size changed from {prev[0].shape} to {out_g.shape}")
        flow_out = farneback_flow(prev[0], out_g)
        flow_gt = farneback_flow(prev[1], gt_g)
        if self.crop:
            ys, xs = tecogan_crop(*out_g.shape)
            flow_out, flow_gt = flow_out[ys, xs], flow_gt[ys, xs]
        diff = flow_out.astype(np.float64) - flow_gt
        value = float(np.sqrt((diff * diff).sum(axis=-1)).mean())
        self.values.append(value)
        return value

    @property
    def value(self) -> float:
        """Mean over the pairs seen so far (NaN before the second frame)."""
        return float(np.mean(self.values)) if self.values else float("nan")


class TemporalLP:
    """Streaming tLP (plain, not x100): :meth:`update` with each (output, ground-truth) pair in order.

    Frames: (3, H, W) float RGB [0, 1] tensors (or uint8 (H, W, 3) arrays). ``model``: a loaded
    :class:`LPIPS`; default the cached LPIPS-Alex on the device of the first frame. Keeps the
    previous frames' LPIPS features, so each frame goes through the network once.
    """

    def __init__(self, model: LPIPS | None = None, crop: bool = True) -> None:
        self.model = model
        self.crop = crop
        self.values: list[float] = []
        self._prev: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None

    def reset(self) -> None:
        self.values.clear()
        self._prev = None

    def _prepare(self, frame: torch.Tensor) -> torch.Tensor:
        if self.crop:
            ys, xs = tecogan_crop(frame.shape[-2], frame.shape[-1])
            frame = frame[:, ys, xs]
        return frame[None].float()

    def update(self, out_frame, gt_frame) -> float | None:
        """Add time step t; returns tLP of the pair (t-1, t), or None for the first frame."""
        out_t, gt_t = as_image_tensor(out_frame), as_image_tensor(gt_frame)
        assert out_t.dim() == 3, f"expected one frame (3, H, W), got {tuple(out_t.shape)}"
        if out_t.shape != gt_t.shape:
            raise ValueError(f"output {tuple(out_t.shape)} and ground truth {tuple(gt_t.shape)} differ")
        out_t, gt_t = self._prepare(out_t), self._prepare(gt_t)
        if self.model is None:
            self.model = cached_lpips("alex", out_t.device)
        with torch.no_grad():
            feats = (self.model.features(out_t), self.model.features(gt_t.to(out_t.device)))
        return self.update_features(*feats)

    def update_features(self, out_feats: list[torch.Tensor], gt_feats: list[torch.Tensor]) -> float | None:
        """Same as :meth:`update` for frames already run through ``LPIPS.features``."""
        prev, self._prev = self._prev, (out_feats, gt_feats)
        if prev is None:
            return None
        assert self.model is not None, "update_features needs the LPIPS model given to the constructor"
        with torch.no_grad():
            d_out = self.model.distance(prev[0], out_feats)
            d_gt = self.model.distance(prev[1], gt_feats)
        value = float((d_out - d_gt).abs().item())
        self.values.append(value)
        return value

    @property
    def value(self) -> float:
        """Mean over the pairs seen so far (NaN before the second frame)."""
        return float(np.mean(self.values)) if self.values else float("nan")

    @property
    def value100(self) -> float:
        """:attr:`value` x 100, the scale TecoGAN's tables use."""
        return 100.0 * self.value


def tof(out_frames: Iterable, gt_frames: Iterable, crop: bool = True) -> float:
    """tOF of an output clip against its ground truth (iterables of frames, consumed in step).

    Frames: (3, H, W) float RGB [0, 1] tensors or (H, W, 3) uint8 arrays. Lower is better.
    """
    acc = TemporalOF(crop=crop)
    for o, g in _zip_strict(out_frames, gt_frames):
        acc.update(o, g)
    return acc.value


def tlp(out_frames: Iterable, gt_frames: Iterable, crop: bool = True, model: LPIPS | None = None) -> float:
    """tLP (plain scale) of an output clip against its ground truth; see :func:`tlp100`."""
    acc = TemporalLP(model=model, crop=crop)
    for o, g in _zip_strict(out_frames, gt_frames):
        acc.update(o, g)
    return acc.value


def tlp100(out_frames: Iterable, gt_frames: Iterable, crop: bool = True, model: LPIPS | None = None) -> float:
    """tLP x 100, as printed in TecoGAN's tables (e.g. 0.668 for TecoGAN on Vid4)."""
    return 100.0 * tlp(out_frames, gt_frames, crop=crop, model=model)


def _zip_strict(a: Iterable, b: Iterable):
    sentinel = object()
    ia, ib = iter(a), iter(b)
    while True:
        x, y = next(ia, sentinel), next(ib, sentinel)
        if x is sentinel and y is sentinel:
            return
        if x is sentinel or y is sentinel:
            raise ValueError("output and ground-truth clips have different lengths")
        yield x, y
