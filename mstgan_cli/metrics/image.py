"""Full-reference per-image metrics on the luma channel: PSNR-Y and SSIM-Y.

Conventions (those of the VSR literature: MATLAB ``rgb2ycbcr`` / BasicSR ``test_y_channel``):
Y = 16 + 65.481 R + 128.553 G + 24.966 B with RGB in [0, 1], i.e. BT.601 luma on the 16-235 scale,
kept in float (not rounded to integers). PSNR uses MAX = 255; SSIM is Wang et al. 2004 with an 11x11
Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, L = 255, averaged over the 'valid' region, which
is what MATLAB ``ssim_index`` and ``skimage.metrics.structural_similarity(gaussian_weights=True,
sigma=1.5, use_sample_covariance=False, data_range=255)`` compute.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

_Y_WEIGHTS = (65.481, 128.553, 24.966)


def as_image_tensor(img: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Bring an image (or batch) to a float RGB tensor (..., 3, H, W) in [0, 1].

    Accepts a float tensor (..., 3, H, W) in [0, 1] (returned as is, cast to float32 if half), a
    uint8 tensor (..., 3, H, W), or a numpy array (H, W, 3) / (B, H, W, 3), uint8 in [0, 255] or
    float in [0, 1].
    """
    if isinstance(img, np.ndarray):
        assert img.ndim in (3, 4) and img.shape[-1] == 3, f"expected (..., H, W, 3), got {img.shape}"
        t = torch.from_numpy(np.ascontiguousarray(img)).movedim(-1, -3)
    elif isinstance(img, torch.Tensor):
        t = img
    else:
        raise TypeError(f"expected a torch.Tensor or numpy.ndarray, got {type(img).__name__}")
    assert t.dim() in (3, 4) and t.shape[-3] == 3, f"expected (..., 3, H, W), got {tuple(t.shape)}"
    if t.dtype == torch.uint8:
        return t.float() / 255.0
    if not t.is_floating_point():
        raise TypeError(f"unsupported image dtype {t.dtype}")
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def to_uint8_hwc(img: torch.Tensor) -> np.ndarray:
    """(3, H, W) float RGB [0, 1] tensor (or anything :func:`as_image_tensor` takes) -> (H, W, 3) uint8."""
    t = as_image_tensor(img)
    assert t.dim() == 3, f"expected one image (3, H, W), got {tuple(t.shape)}"
    return (t.detach().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def rgb_to_y(img: torch.Tensor) -> torch.Tensor:
    """Luma of RGB [0, 1] (..., 3, H, W) -> (..., H, W) in float64 on the 16-235 scale."""
    x = img.to(torch.float64)
    r, g, b = x.unbind(-3)
    return 16.0 + _Y_WEIGHTS[0] * r + _Y_WEIGHTS[1] * g + _Y_WEIGHTS[2] * b


def _pair_y(a, b, crop: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
    ta, tb = as_image_tensor(a), as_image_tensor(b)
    if ta.shape != tb.shape:
        raise ValueError(f"image shapes differ: {tuple(ta.shape)} vs {tuple(tb.shape)}")
    single = ta.dim() == 3
    ya, yb = rgb_to_y(ta), rgb_to_y(tb.to(ta.device))
    if single:
        ya, yb = ya[None], yb[None]
    if crop:
        assert crop > 0 and 2 * crop < min(ya.shape[-2:]), f"crop {crop} too large for {tuple(ya.shape[-2:])}"
        ya, yb = ya[..., crop:-crop, crop:-crop], yb[..., crop:-crop, crop:-crop]
    return ya, yb, single  # (B, H, W) float64


def psnr_y(a, b, crop: int = 0) -> torch.Tensor:
    """PSNR in dB of the luma (Y, 16-235 scale, MAX = 255) between two RGB images.

    ``a``, ``b``: (3, H, W) or (B, 3, H, W) float RGB in [0, 1] (or see :func:`as_image_tensor`).
    ``crop``: border pixels removed on every side first. Returns a float64 tensor: () for one image,
    (B,) for a batch; ``inf`` where the images are identical.
    """
    ya, yb, single = _pair_y(a, b, crop)
    mse = (ya - yb).pow(2).mean(dim=(-2, -1))
    out = 10.0 * torch.log10(255.0**2 / mse)  # mse == 0 -> inf
    return out[0] if single else out


def _gaussian_1d(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    ax = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(ax**2) / (2 * sigma**2))
    return g / g.sum()  # outer(g, g) is MATLAB's fspecial('gaussian', 11, 1.5)


def ssim_y(a, b, crop: int = 0) -> torch.Tensor:
    """SSIM (Wang et al., Gaussian 11x11, sigma 1.5) of the luma between two RGB images.

    Same inputs and return shape as :func:`psnr_y`; 1.0 for identical images.
    """
    ya, yb, single = _pair_y(a, b, crop)
    assert min(ya.shape[-2:]) >= 11, f"SSIM needs at least 11x11 pixels, got {tuple(ya.shape[-2:])}"
    x, y = ya[:, None], yb[:, None]  # (B, 1, H, W)
    stack = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # (B, 5, H, W)
    g = _gaussian_1d().to(x.device)
    # The window is separable: two 11-tap passes, 'valid' as MATLAB filter2(..., 'valid').
    stack = F.conv2d(stack, g.view(1, 1, 1, -1).expand(5, 1, 1, 11).contiguous(), groups=5)
    stack = F.conv2d(stack, g.view(1, 1, -1, 1).expand(5, 1, 11, 1).contiguous(), groups=5)
    mu_x, mu_y, exx, eyy, exy = stack.unbind(1)
    sxx, syy, sxy = exx - mu_x**2, eyy - mu_y**2, exy - mu_x * mu_y
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    out = ssim_map.mean(dim=(-2, -1))
    return out[0] if single else out


def psnr_from_mse(mse: float, max_value: float = 255.0) -> float:
    """PSNR in dB for a mean squared error on a scale whose peak is ``max_value``."""
    return math.inf if mse == 0 else 10.0 * math.log10(max_value**2 / mse)
