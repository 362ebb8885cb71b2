"""Stage 2: adversarial training with the spatio-temporal discriminator.

Loss of the generator = pixel (Charbonnier) + perceptual (VGG) + temporal + Ping-Pong
+ flow regularisation + adversarial (hinge). Each sample is a run of T+2 frames, so the
generator produces three consecutive output frames (the triplet the discriminator judges).

- temporal loss: the change between consecutive outputs must match the change between the
  ground-truth frames, |(y_t - y_t-1) - (x_t - x_t-1)|;
- feature-temporal loss (optional): the same on VGG feature maps, the space tLP measures flicker
  in; it needs the VGG features of all three frames, so the perceptual loss then covers all three;
- motion loss (optional): the optical flow between consecutive outputs must match the flow between
  the ground-truth frames (what tOF compares), both measured by a frozen copy of the generator's
  flow network as it was when the stage began;
- Ping-Pong loss: the window played backwards must give the same centre frame (L2);
- an exponential moving average of the weights (optional) is what gets validated and released:
  it averages out the step-to-step jitter adversarial training adds;
- instance noise on the discriminator's inputs, annealed to zero, against collapse.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from ..model.discriminator import SpatioTemporalDiscriminator, upscale_flow
from ..model.generator import MSTGANGenerator
from .config import TrainConfig
from .fidelity import FidelityPhase, temporal_overshoot
from .losses import PerceptualLoss, charbonnier, flow_losses


def _frozen_copy(module: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(module).eval().requires_grad_(False)


def feature_losses(vgg: PerceptualLoss, sr3: torch.Tensor, hr3: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Perceptual loss over all frames of (B, 3, 3, H, W) triplets, and the feature-temporal loss:
    the change of each VGG map between consecutive outputs must match the ground truth's."""
    b, n = sr3.shape[:2]
    fs = vgg.features(sr3.flatten(0, 1))
    with torch.no_grad():
        fh = vgg.features(hr3.flatten(0, 1))
    per = sr3.new_zeros(())
    ft = sr3.new_zeros(())
    for a, r in zip(fs, fh):
        a, r = a.unflatten(0, (b, n)), r.unflatten(0, (b, n))
        per = per + (a - r).abs().mean()
        ft = ft + ((a[:, 1:] - a[:, :-1]) - (r[:, 1:] - r[:, :-1])).abs().mean()
    return per / len(fs), ft / len(fs)


def motion_loss(flownet: torch.nn.Module, sr3: torch.Tensor, hr3: torch.Tensor) -> torch.Tensor:
    """Mean |flow(output pair) - flow(ground-truth pair)| over the consecutive pairs of (B, 3, 3, H, W)
    triplets, in HR pixels."""
    a, b = sr3[:, 1:].flatten(0, 1), sr3[:, :-1].flatten(0, 1)
    with torch.no_grad():
        ref = flownet(hr3[:, 1:].flatten(0, 1), hr3[:, :-1].flatten(0, 1))
    return (flownet(a, b) - ref).abs().mean()


class AdversarialPhase(FidelityPhase):
    extra_frames = 2

    def __init__(self, model: MSTGANGenerator, cfg: TrainConfig, device: torch.device) -> None:
        super().__init__(model, cfg, device)
        self.disc = SpatioTemporalDiscriminator().to(device)
        self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=cfg.lr, betas=(0.5, 0.99))
        self.steps_done = 0
        if cfg.w_ftemporal > 0 and self.perceptual is None:
            self.perceptual = PerceptualLoss(device, cfg.vgg_layers.split(","))
        # frozen copies: the weight average, and the flow network of the motion loss; each starts at
        # the weights training begins with (begin()) unless a checkpoint restores it
        self.ema = _frozen_copy(model) if cfg.ema > 0 else None
        self.motion = _frozen_copy(model.flownet) if cfg.w_tflow > 0 else None
        self._restored: set[str] = set()

    def eval_model(self) -> MSTGANGenerator:
        return self.ema if self.ema is not None else self.model

    def begin(self) -> None:
        """Training starts: an average not restored from a checkpoint starts at the current weights
        (those just loaded with --init), not at the random ones the stage was built around."""
        for name, source in (("ema", self.model), ("motion", self.model.flownet)):
            if getattr(self, name) is not None and name not in self._restored:
                getattr(self, name).load_state_dict(source.state_dict())

    def set_lr(self, lr: float) -> None:
        super().set_lr(lr)
        for gr in self.opt_d.param_groups:
            gr["lr"] = lr

    def step(self, lr: torch.Tensor, hr: torch.Tensor, flow: torch.Tensor | None = None,
             flow_weight: torch.Tensor | None = None, strength: torch.Tensor | None = None) -> dict:
        """One step of both networks; the known motion and compression of the batch are not used in
        this stage."""
        cfg, g = self.cfg, self.model
        b, n = lr.shape[:2]
        t = n - 2
        s = g.config.scale
        # three overlapping windows -> three consecutive outputs (centres 1 .. 3 of the run)
        wins = torch.cat([lr[:, k:k + t] for k in range(3)])             # (3B, T, 3, h, w)
        sr, flows = g.forward_with_flows(wins)                            # (3B, 3, sh, sw)
        sr3 = sr.view(3, b, *sr.shape[1:]).transpose(0, 1)                # (B, 3, 3, sh, sw)
        c = n // 2
        hr3 = hr[:, c - 1:c + 2]
        lr3 = lr[:, c - 1:c + 2]
        lr_up3 = F.interpolate(lr3.flatten(0, 1), scale_factor=float(s), mode="bicubic",
                               align_corners=False).view_as(hr3)
        # flows of the middle window, from its centre to the previous and the next frame
        mid = slice(b, 2 * b)
        fl = torch.stack([upscale_flow(flows[t // 2 - 1][mid], s), upscale_flow(flows[t // 2 + 1][mid], s)], 1)
        fl = fl.detach()

        l_pix = charbonnier(sr3, hr3)
        l_temp = ((sr3[:, 1:] - sr3[:, :-1]) - (hr3[:, 1:] - hr3[:, :-1])).abs().mean()
        if cfg.w_pingpong > 0:
            sr_rev = g(lr[:, 1:1 + t].flip(1))
            l_pp = F.mse_loss(sr_rev, sr3[:, 1])
        else:  # off: no reversed pass (a symmetric window is nearly reverse-invariant anyway)
            l_pp = sr3.new_zeros(())
        l_warp, l_smooth = flow_losses(wins, flows)
        noise = cfg.noise * max(0.0, 1.0 - self.steps_done / max(1, cfg.noise_steps))
        self.disc.requires_grad_(False)
        l_adv = -self.disc(sr3, lr_up3, fl, noise).mean()
        loss = (l_pix + cfg.w_temporal * l_temp + cfg.w_pingpong * l_pp + cfg.w_warp * l_warp
                + cfg.w_smooth * l_smooth + cfg.w_adv * l_adv)
        parts = {"pix": l_pix.item(), "temporal": l_temp.item(), "pingpong": l_pp.item(),
                 "warp": l_warp.item(), "smooth": l_smooth.item(), "adv": l_adv.item()}
        if self.motion is not None:
            l_mot = motion_loss(self.motion, sr3, hr3)
            loss = loss + cfg.w_tflow * l_mot
            parts["tflow"] = l_mot.item()
        if self.perceptual is not None and cfg.w_ftemporal > 0:
            l_per, l_ft = feature_losses(self.perceptual, sr3, hr3)
            loss = loss + cfg.w_perceptual * l_per + cfg.w_ftemporal * l_ft
            parts.update(perceptual=l_per.item(), ftemporal=l_ft.item())
        elif self.perceptual is not None:
            l_per = self.perceptual(sr3[:, 1], hr3[:, 1])  # the middle frame: a third of the cost
            loss = loss + cfg.w_perceptual * l_per
            parts["perceptual"] = l_per.item()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(g.parameters(), 1.0)
        self.opt.step()
        if self.ema is not None:
            with torch.no_grad():
                for e, p in zip(self.ema.parameters(), g.parameters()):
                    e.lerp_(p, 1.0 - cfg.ema)

        # discriminator: hinge loss on real vs generated triplets
        self.disc.requires_grad_(True)
        d_real = self.disc(hr3, lr_up3, fl, noise)
        d_fake = self.disc(sr3.detach(), lr_up3, fl, noise)
        l_d = F.relu(1.0 - d_real).mean() + F.relu(1.0 + d_fake).mean()
        self.opt_d.zero_grad(set_to_none=True)
        l_d.backward()
        self.opt_d.step()
        self.steps_done += 1
        parts.update(d=l_d.item(), d_real=d_real.mean().item(), d_fake=d_fake.mean().item())
        return parts

    # validation metrics of the starting (stage 1) weights: the temporal bar the GAN must not cross
    reference: dict | None = None

    def state_dict(self) -> dict:
        return {"opt": self.opt.state_dict(), "disc": self.disc.state_dict(),
                "opt_d": self.opt_d.state_dict(), "stage2_steps": self.steps_done,
                "reference": self.reference,
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "motion": self.motion.state_dict() if self.motion is not None else None}

    def load_state_dict(self, state: dict) -> None:
        self.opt.load_state_dict(state["opt"])
        if "disc" in state:
            self.disc.load_state_dict(state["disc"])
            self.opt_d.load_state_dict(state["opt_d"])
            self.steps_done = state.get("stage2_steps", 0)
            self.reference = state.get("reference")
            for name in ("ema", "motion"):
                if getattr(self, name) is not None and state.get(name) is not None:
                    getattr(self, name).load_state_dict(state[name])
                    self._restored.add(name)

    def score(self, v: dict) -> float:
        """Higher is better: minus LPIPS. Checkpoints that fall below bicubic on any clip, or whose
        tOF or tLP is worse than the starting weights' (the fidelity model's), rank below every
        checkpoint that does neither, graded by how far they overshoot."""
        worse = any(val < 0 for k, val in v.items() if k.startswith("gain_"))
        over = temporal_overshoot(v, self.reference) if self.reference is not None else 0.0
        return -v["lpips"] - (10.0 if worse else 0.0) - ((1.0 + over) if over > 0 else 0.0)
