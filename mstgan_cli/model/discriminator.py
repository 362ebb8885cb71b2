"""Spatio-temporal discriminator (training only), after TecoGAN's D_s,t.

It judges triplets of consecutive high-resolution frames, together with the two neighbours
warped onto the middle frame and the bicubic upscale of the low-resolution triplet as a
condition: unrealistic detail shows in the frames, unrealistic temporal change in the
difference between a frame and its warped neighbours.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .blocks import flow_warp


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.utils.spectral_norm(nn.Conv2d(cin, cout, 4 if stride == 2 else 3, stride, 1)),
                         nn.LeakyReLU(0.2, inplace=True))


class SpatioTemporalDiscriminator(nn.Module):
    """forward(hr, lr_up, flows): hr (B, 3, 3, H, W) triplet, lr_up (B, 3, 3, H, W) bicubic upscale of
    the LR triplet, flows (B, 2, 2, H, W): flows from the middle frame to the previous and to the next
    frame (HR pixels). Returns patch logits (B, 1, H/16, W/16)."""

    def __init__(self, ch: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            _block(27, ch, 1), _block(ch, ch, 2), _block(ch, 2 * ch, 2), _block(2 * ch, 2 * ch, 2),
            _block(2 * ch, 4 * ch, 2), nn.Conv2d(4 * ch, 1, 3, 1, 1))

    def forward(self, hr: torch.Tensor, lr_up: torch.Tensor, flows: torch.Tensor,
                noise: float = 0.0) -> torch.Tensor:
        assert hr.shape[1] == 3 and lr_up.shape == hr.shape, "expects triplets (B, 3, 3, H, W)"
        warped_prev = flow_warp(hr[:, 0], flows[:, 0])
        warped_next = flow_warp(hr[:, 2], flows[:, 1])
        x = torch.cat([hr.flatten(1, 2), warped_prev, hr[:, 1], warped_next, lr_up.flatten(1, 2)], dim=1)
        if noise > 0:  # instance noise: blurs the line between real and fake early on, against collapse
            x = x + noise * torch.randn_like(x)
        return self.net(x * 2.0 - 1.0)


def upscale_flow(flow: torch.Tensor, scale: int) -> torch.Tensor:
    """LR flow (B, 2, h, w) in LR pixels -> HR flow (B, 2, s*h, s*w) in HR pixels."""
    return F.interpolate(flow, scale_factor=float(scale), mode="bilinear", align_corners=False) * scale
