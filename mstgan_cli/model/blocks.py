"""Building blocks of the MST-GAN generator: convolutions, flow warping, flow composition.

Everything here uses only ops that torch.export and TensorRT handle well (conv, depthwise conv,
pixel_shuffle, interpolate, grid_sample, elementwise); no I/O, no device choices.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def act() -> nn.Module:
    return nn.LeakyReLU(0.1, inplace=True)


class ResBlock(nn.Module):
    """Main-path residual block: two full 3x3 convolutions. (B, C, H, W) -> (B, C, H, W).

    ``mid``: channels between the two convolutions (default C; fewer after structured pruning)."""

    def __init__(self, ch: int, mid: int | None = None) -> None:
        super().__init__()
        mid = mid or ch
        self.conv1 = nn.Conv2d(ch, mid, 3, 1, 1)
        self.conv2 = nn.Conv2d(mid, ch, 3, 1, 1)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(x)))


class DSConv(nn.Module):
    """Depthwise-separable convolution (depthwise kxk, then pointwise 1x1): the cheap layer
    used everywhere off the main path. (B, Cin, H, W) -> (B, Cout, H/stride, W/stride)."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.dw = nn.Conv2d(cin, cin, k, stride, k // 2, groups=cin)
        self.pw = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))


class DetailBlock(nn.Module):
    """Residual detail-enhancement block: depthwise-separable convs with a learned per-pixel,
    per-channel gate that decides how much re-amplified detail to add back.
    (B, C, H, W) -> (B, C, H, W). ``mid``: channels inside the body (default C)."""

    def __init__(self, ch: int, mid: int | None = None) -> None:
        super().__init__()
        mid = mid or ch
        self.body = nn.Sequential(DSConv(ch, mid), act(), DSConv(mid, ch))
        self.gate = nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        detail = self.body(x)
        return x + detail * torch.sigmoid(self.gate(x))


def base_grid(h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """Pixel coordinates (1, 2, H, W): channel 0 is x, channel 1 is y."""
    ys = torch.arange(h, device=like.device, dtype=like.dtype).view(1, 1, h, 1).expand(1, 1, h, w)
    xs = torch.arange(w, device=like.device, dtype=like.dtype).view(1, 1, 1, w).expand(1, 1, h, w)
    return torch.cat([xs, ys], dim=1)


def flow_warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward warp: out(p) = x(p + flow(p)), bilinear, border padding.

    x: (B, C, H, W); flow: (B, 2, H, W) in pixels (x, y). Returns (B, C, H, W) in x's dtype.
    Computed in fp32 whatever the dtypes: a bf16 grid misplaces samples by up to half a pixel at
    160 px (fp16 at ~2000 px), and torch 2.13's CPU bf16 grid_sample returns garbage for
    channels-last inputs.
    """
    b, _, h, w = x.shape
    assert flow.shape[-2:] == (h, w), f"flow {tuple(flow.shape)} does not match features {tuple(x.shape)}"
    flow = flow.float()
    coords = base_grid(h, w, flow) + flow
    # normalise to [-1, 1] with align_corners=True: pixel 0 -> -1, pixel W-1 -> +1
    gx = coords[:, 0] * (2.0 / max(w - 1, 1)) - 1.0
    gy = coords[:, 1] * (2.0 / max(h - 1, 1)) - 1.0
    grid = torch.stack([gx, gy], dim=-1)  # (B, H, W, 2)
    out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.to(x.dtype)


def compose_flow(f_ab: torch.Tensor, f_bc: torch.Tensor) -> torch.Tensor:
    """Chain two flows: f_ac(p) = f_ab(p) + f_bc(p + f_ab(p)). All (B, 2, H, W) in pixels."""
    return f_ab + flow_warp(f_bc, f_ab)


def resize_flow(flow: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Resize a flow field to (h, w), scaling its vectors accordingly. (B, 2, H, W) -> (B, 2, h, w)."""
    fh, fw = flow.shape[-2:]
    out = F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False)
    scale = torch.tensor([w / fw, h / fh], device=flow.device, dtype=flow.dtype).view(1, 2, 1, 1)
    return out * scale
