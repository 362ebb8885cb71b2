"""Video quality metrics: PSNR-Y, SSIM-Y, LPIPS, and TecoGAN's temporal tOF / tLP.

Library code: no printing. Images are (3, H, W) or (B, 3, H, W) float RGB tensors in [0, 1]
(uint8 tensors and (H, W, 3) uint8 numpy arrays are converted by :func:`as_image_tensor`).
"""
from __future__ import annotations

from .frame import SUMMARY_KEYS, FrameMetrics
from .image import as_image_tensor, psnr_y, rgb_to_y, ssim_y, to_uint8_hwc
from .lpips import LPIPS, load_lpips, lpips
from .temporal import TemporalLP, TemporalOF, farneback_flow, tecogan_crop, tlp, tlp100, tof

__all__ = [
    "LPIPS",
    "SUMMARY_KEYS",
    "FrameMetrics",
    "TemporalLP",
    "TemporalOF",
    "as_image_tensor",
    "farneback_flow",
    "load_lpips",
    "lpips",
    "psnr_y",
    "rgb_to_y",
    "ssim_y",
    "tecogan_crop",
    "tlp",
    "tlp100",
    "to_uint8_hwc",
    "tof",
]
