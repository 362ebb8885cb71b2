"""Streaming evaluation of a video against its reference: per-frame rows and a clip summary."""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

import numpy as np
import torch

from .image import as_image_tensor, psnr_y, ssim_y
from .lpips import LPIPS, cached_lpips
from .temporal import TemporalLP, TemporalOF, tecogan_crop

SUMMARY_KEYS = ("psnr_y", "ssim_y", "lpips", "tof", "tlp")

A = TypeVar("A")
B = TypeVar("B")


class LengthMismatch(ValueError):
    """Two frame streams that should pair up do not: ``counts`` holds how many frames each had
    (the longer one read to its end)."""

    def __init__(self, counts: tuple[int, int]) -> None:
        super().__init__(f"one stream has {counts[0]} frames, the other {counts[1]}")
        self.counts = counts


def zip_exact(a: Iterable[A], b: Iterable[B]) -> Iterator[tuple[A, B]]:
    """Pairs of ``a`` and ``b`` in order; :class:`LengthMismatch` when one runs out first."""
    sentinel = object()
    it_a, it_b = iter(a), iter(b)
    n = 0
    while True:
        x, y = next(it_a, sentinel), next(it_b, sentinel)
        if x is sentinel and y is sentinel:
            return
        if x is sentinel or y is sentinel:
            rest = 1 + sum(1 for _ in (it_b if x is sentinel else it_a))
            raise LengthMismatch((n, n + rest) if x is sentinel else (n + rest, n))
        yield x, y  # type: ignore[misc]
        n += 1


class FrameMetrics:
    """Accumulates (output, reference) frame pairs, one at a time, in display order.

    Each :meth:`update` returns a row ``{"frame", "psnr_y", "ssim_y", "lpips", "tof", "tlp"}``
    (floats; ``tof``/``tlp`` are None for the first frame, LPIPS/tLP are None with
    ``lpips_net=None``, temporal ones None with ``temporal=False``). :meth:`summary` gives the mean of
    each column over the frames (pairs for tof/tlp) under the keys of :data:`SUMMARY_KEYS`; tLP is on
    the plain scale (x100 for TecoGAN's tables).

    Frames: (3, H, W) float RGB [0, 1] tensors (or (H, W, 3) uint8 arrays), output and reference of
    one step the same size. ``crop``: border removed for PSNR/SSIM/LPIPS. ``temporal_crop``: TecoGAN's
    centre crop for tOF/tLP. LPIPS runs without autograd on the device of the frames (or ``device``);
    each frame's LPIPS features are computed once and reused by tLP when both use the same region.
    Memory: the previous frame pair and its features, plus the rows.
    """

    def __init__(
        self,
        crop: int = 0,
        lpips_net: str | None = "alex",
        temporal: bool = True,
        temporal_crop: bool = True,
        device: torch.device | str | None = None,
        lpips_model: LPIPS | None = None,
    ) -> None:
        self.crop = crop
        self.lpips_net = lpips_net
        self.temporal = temporal
        self.temporal_crop = temporal_crop
        self.device = torch.device(device) if device is not None else None
        self._model = lpips_model
        self._tof = TemporalOF(crop=temporal_crop) if temporal else None
        self._tlp: TemporalLP | None = None
        self.rows: list[dict[str, Any]] = []

    def _lpips_model(self, device: torch.device) -> LPIPS:
        if self._model is None:
            self._model = cached_lpips(self.lpips_net or "alex", device)
        return self._model

    def update(self, out, ref) -> dict[str, Any]:
        """Add the next frame pair; returns its row (also appended to :attr:`rows`)."""
        o, r = as_image_tensor(out), as_image_tensor(ref)
        assert o.dim() == 3, f"expected one frame (3, H, W), got {tuple(o.shape)}"
        if o.shape != r.shape:
            raise ValueError(f"output {tuple(o.shape)} and reference {tuple(r.shape)} differ in size")
        device = self.device or o.device
        o, r = o.to(device), r.to(device)
        row: dict[str, Any] = {
            "frame": len(self.rows),
            "psnr_y": float(psnr_y(o, r, crop=self.crop)),
            "ssim_y": float(ssim_y(o, r, crop=self.crop)),
            "lpips": None,
            "tof": None,
            "tlp": None,
        }
        if self.lpips_net is not None:
            model = self._lpips_model(device)
            c = self.crop
            frame_region = (slice(c, -c), slice(c, -c)) if c else (slice(None), slice(None))
            with torch.no_grad():
                fo = model.features(o[None, :, frame_region[0], frame_region[1]].float())
                fr = model.features(r[None, :, frame_region[0], frame_region[1]].float())
                row["lpips"] = float(model.distance(fo, fr).item())
                if self.temporal:
                    if self._tlp is None:
                        self._tlp = TemporalLP(model=model, crop=self.temporal_crop)
                    t_region = tecogan_crop(*o.shape[-2:]) if self.temporal_crop else (slice(None), slice(None))
                    if _region_differs(t_region, frame_region, o.shape[-2:]):
                        fo = model.features(o[None, :, t_region[0], t_region[1]].float())
                        fr = model.features(r[None, :, t_region[0], t_region[1]].float())
                    row["tlp"] = self._tlp.update_features(fo, fr)
        if self._tof is not None:
            row["tof"] = self._tof.update(o, r)
        self.rows.append(row)
        return row

    def summary(self) -> dict[str, float]:
        """Means over the frames seen: psnr_y (dB), ssim_y, lpips, tof (px), tlp (plain); NaN if none."""
        out = {}
        for key in SUMMARY_KEYS:
            vals = [row[key] for row in self.rows if row[key] is not None]
            out[key] = float(np.mean(vals)) if vals else math.nan
        return out

    @property
    def n_frames(self) -> int:
        return len(self.rows)


def _region_differs(a: tuple[slice, slice], b: tuple[slice, slice], hw: tuple[int, int]) -> bool:
    """Whether two (rows, cols) slices select different pixels of an (H, W) frame."""
    return any(sa.indices(n) != sb.indices(n) for sa, sb, n in zip(a, b, hw))
