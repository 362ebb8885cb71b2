"""Losses of the generator shared by both training phases: pixel (Charbonnier), the flows'
photometric and smoothness terms, the supervision of the flows by known motion, and the VGG16
perceptual loss."""
from __future__ import annotations

import torch

from ..model.blocks import flow_warp


def charbonnier(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    return torch.sqrt((x - y) ** 2 + eps * eps).mean()


def flow_losses(lr: torch.Tensor, flows: list[torch.Tensor | None]) -> tuple[torch.Tensor, torch.Tensor]:
    """Photometric loss (each neighbour warped onto the centre with its flow) and total variation
    of the flows. lr (B, T, 3, h, w)."""
    c = lr.shape[1] // 2
    warp = lr.new_zeros(())
    smooth = lr.new_zeros(())
    n = 0
    for i, f in enumerate(flows):
        if f is None:
            continue
        warp = warp + (flow_warp(lr[:, i], f) - lr[:, c]).abs().mean()
        smooth = smooth + (f[..., 1:, :] - f[..., :-1, :]).abs().mean() + (f[..., 1:] - f[..., :-1]).abs().mean()
        n += 1
    return warp / n, smooth / n


def flow_supervision(flows: list[torch.Tensor | None], gt: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean |predicted - true| flow (LR pixels) where the true motion is known.
    flows: T entries (None at the centre) of (B, 2, h, w); gt (B, T, 2, h, w); weight (B, T, 1, h, w)."""
    err = gt.new_zeros(())
    n = gt.new_zeros(())
    for i, f in enumerate(flows):
        if f is None:
            continue
        w = weight[:, i]
        err = err + ((f - gt[:, i]).abs() * w).sum()
        n = n + 2 * w.sum()
    return err / n.clamp(min=1.0)




class PerceptualLoss:
    """VGG16 feature loss (L1 between the given relu feature maps), frozen ImageNet weights.
    ``features`` exposes the maps themselves (stage 2 compares their changes over time).

    ``layers == ["lpips"]``: the LPIPS v0.1 distance on its VGG16 trunk instead (unit-normalised
    relu1_2..relu5_3 maps weighted by LPIPS' learned heads), batch mean. Evaluation reports LPIPS on
    AlexNet, so training on the VGG variant does not optimise the reported metric itself.
    """

    def __init__(self, device: torch.device, layers: list[str]) -> None:
        self.lpips = None
        if list(layers) == ["lpips"]:
            from ..metrics.lpips import load_lpips

            self.lpips = load_lpips("vgg").to(device).eval()
            return
        from ..model.vgg import load_vgg_features

        self.vgg = load_vgg_features(layers=layers).to(device).eval()
        for p in self.vgg.parameters():
            p.requires_grad_(False)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.lpips.features(x) if self.lpips is not None else self.vgg(x)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.lpips is not None:
            return self.lpips(x, y).mean()
        fx, fy = self.vgg(x), self.vgg(y)
        return sum((a - b).abs().mean() for a, b in zip(fx, fy)) / len(fx)
