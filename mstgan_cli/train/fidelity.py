"""Stage 1 of training (fidelity): the generator alone, no discriminator."""
from __future__ import annotations

import torch

from ..model.generator import MSTGANGenerator
from .config import TrainConfig
from .losses import PerceptualLoss, charbonnier, flow_losses, flow_supervision


class FidelityPhase:
    """Stage 1: the generator alone on Charbonnier-L1 (+ perceptual), with flow regularisation."""

    extra_frames = 0  # frames the sampler must draw beyond the window

    def __init__(self, model: MSTGANGenerator, cfg: TrainConfig, device: torch.device) -> None:
        self.model, self.cfg = model, cfg
        self.opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
        self.perceptual = PerceptualLoss(device, cfg.vgg_layers.split(",")) if cfg.w_perceptual > 0 else None

    def set_lr(self, lr: float) -> None:
        for gr in self.opt.param_groups:
            gr["lr"] = lr

    def generator_losses(self, lr: torch.Tensor, hr: torch.Tensor, flow: torch.Tensor | None = None,
                         flow_weight: torch.Tensor | None = None) -> tuple[torch.Tensor, dict, torch.Tensor]:
        """lr (B, T, 3, h, w), hr (B, 3, sh, sw) centre frame -> (loss, parts, sr)."""
        cfg = self.cfg
        align = None
        if cfg.true_flow > 0 and flow is not None and flow_weight is not None:
            # teacher-forced alignment: in a share of the windows whose motion is known (photo
            # windows) the neighbours are aligned with the true flow, so the fusion learns what
            # exact alignment is worth (the flow network is still supervised on its own flows)
            known = flow_weight.flatten(1).sum(1) > 0
            use = (known & (torch.rand(known.shape, device=lr.device) < cfg.true_flow)).view(-1, 1, 1, 1)
            if bool(use.any()):
                def align(pred):
                    return [None if f is None else torch.where(use, flow[:, i], f) for i, f in enumerate(pred)]
        sr, flows = self.model.forward_with_flows(lr, align)
        l_pix = charbonnier(sr, hr)
        l_warp, l_smooth = flow_losses(lr, flows)
        loss = l_pix + cfg.w_warp * l_warp + cfg.w_smooth * l_smooth
        parts = {"pix": l_pix.item(), "warp": l_warp.item(), "smooth": l_smooth.item()}
        if cfg.w_flow > 0 and flow is not None:
            l_flow = flow_supervision(flows, flow, flow_weight)
            loss = loss + cfg.w_flow * l_flow
            parts["flow"] = l_flow.item()
        if self.perceptual is not None:
            l_per = self.perceptual(sr, hr)
            loss = loss + cfg.w_perceptual * l_per
            parts["perceptual"] = l_per.item()
        return loss, parts, sr

    def step(self, lr: torch.Tensor, hr: torch.Tensor, flow: torch.Tensor | None = None,
             flow_weight: torch.Tensor | None = None) -> dict:
        """One optimisation step on a batch: lr (B, T, 3, h, w), hr (B, T, 3, sh, sw); the known
        motion (:class:`~mstgan_cli.train.data.Batch`) supervises the flows when cfg.w_flow > 0."""
        loss, parts, _ = self.generator_losses(lr, hr[:, lr.shape[1] // 2], flow, flow_weight)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        return parts

    def eval_model(self) -> MSTGANGenerator:
        """The weights that are validated and saved as best.pt."""
        return self.model

    def begin(self) -> None:
        """Called once the weights are loaded (resumed or --init), before the first step."""

    def state_dict(self) -> dict:
        return {"opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.opt.load_state_dict(state["opt"])

    @staticmethod
    def score(v: dict) -> float:
        """Higher is better: validation PSNR-Y."""
        return v["psnr_y"]
