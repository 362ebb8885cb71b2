"""Stage 0 of training (flow): the flow network alone, on the virtual camera's known motion.

Why a stage of its own: trained jointly with the generator, the flow network hardly learns to
estimate motion (measured on runs/x4-clean and the shipped mstgan-x4: a pure pan of one LR pixel
comes out as 0.1 to 0.4 px, the error on the training windows is 0.8x that of predicting no motion
at all), so the neighbours are barely aligned and add little. Here every other weight is frozen,
only photo windows are drawn (their flow is known) and the flows are supervised exactly as the
generator uses them: neighbour flows chained from the centre.
"""
from __future__ import annotations

import torch

from ..model.generator import MSTGANGenerator
from .config import TrainConfig
from .losses import flow_losses, flow_supervision


@torch.no_grad()
def validate_flow(model: MSTGANGenerator, windows) -> dict:
    """Mean |predicted - true| flow (LR pixels) on fixed photo windows (a data.Batch), and
    the same for predicting no motion, as a yardstick."""
    lr, gt, weight = windows.lr, windows.flow, windows.flow_weight
    model.eval()
    flows = model.window_flows(lr)
    epe = float(flow_supervision(flows, gt, weight))
    zero = float(flow_supervision([None if f is None else torch.zeros_like(f) for f in flows], gt, weight))
    model.train()
    return {"flow_epe": epe, "flow_epe_zero": zero, "flow_epe_ratio": epe / max(zero, 1e-9)}


class FlowPhase:
    """Stage 0: Adam on the flow network's weights only; loss = flow supervision + w_warp x the
    photometric loss + w_smooth x the smoothness of the flows."""

    extra_frames = 0
    photos_only = True  # the sampler draws photo windows only (their motion is known)

    def __init__(self, model: MSTGANGenerator, cfg: TrainConfig, device: torch.device) -> None:
        self.model, self.cfg = model, cfg
        for p in model.parameters():
            p.requires_grad_(False)
        for p in model.flownet.parameters():
            p.requires_grad_(True)
        self.opt = torch.optim.Adam(model.flownet.parameters(), lr=cfg.lr, betas=(0.9, 0.99))

    def set_lr(self, lr: float) -> None:
        for gr in self.opt.param_groups:
            gr["lr"] = lr

    def step(self, lr: torch.Tensor, hr: torch.Tensor, flow: torch.Tensor | None = None,
             flow_weight: torch.Tensor | None = None, strength: torch.Tensor | None = None) -> dict:
        flows = self.model.window_flows(lr)
        l_flow = flow_supervision(flows, flow, flow_weight)
        l_warp, l_smooth = flow_losses(lr, flows)
        loss = l_flow + self.cfg.w_warp * l_warp + self.cfg.w_smooth * l_smooth
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.flownet.parameters(), 1.0)
        self.opt.step()
        return {"flow": l_flow.item(), "warp": l_warp.item(), "smooth": l_smooth.item()}

    def eval_model(self) -> MSTGANGenerator:
        return self.model

    def begin(self) -> None:
        """Called once the weights are loaded (resumed or --init), before the first step."""

    def state_dict(self) -> dict:
        return {"opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.opt.load_state_dict(state["opt"])

    @staticmethod
    def score(v: dict) -> float:
        """Higher is better: minus the flow error on the validation photo windows."""
        return -v["flow_epe"]
