"""Stage 1 of training (fidelity): the generator alone, no discriminator."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..model.generator import MSTGANGenerator
from .config import TrainConfig
from .losses import PerceptualLoss, charbonnier, flow_losses, flow_supervision


class FidelityPhase:
    """Stage 1: the generator alone on Charbonnier-L1 (+ perceptual, + steadiness), with flow
    regularisation."""

    extra_frames = 0  # frames the sampler must draw beyond the window

    def __init__(self, model: MSTGANGenerator, cfg: TrainConfig, device: torch.device) -> None:
        self.model, self.cfg = model, cfg
        if cfg.stage == 1 and cfg.w_steady > 0:
            self.extra_frames = 1  # two windows one frame apart per sample
        gate = list(model.gate.parameters()) if getattr(model, "gate", None) is not None else []
        if gate:
            # a compression gate added to trained weights starts from nothing: at the fine-tuning lr
            # of the rest it learns only the prior strength in 500 steps; it gets cfg.gate_lr_scale x
            # (0 freezes it: a fine-tune that keeps a calibrated gate as it is)
            ids = {id(p) for p in gate}
            groups = [{"params": [p for p in model.parameters() if id(p) not in ids]}]
            if cfg.gate_lr_scale > 0:
                groups.append({"params": gate, "lr_scale": cfg.gate_lr_scale, "lr": cfg.lr * cfg.gate_lr_scale})
            else:
                for p in gate:
                    p.requires_grad_(False)
        else:
            groups = [{"params": list(model.parameters())}]
        self.opt = torch.optim.Adam(groups, lr=cfg.lr, betas=(0.9, 0.99))
        self.perceptual = PerceptualLoss(device, cfg.vgg_layers.split(",")) if cfg.w_perceptual > 0 else None
        if self.perceptual is not None:
            # a perceptual loss trades some PSNR for sharpness, so checkpoints are no longer chosen
            # on PSNR: the training loop measures the starting weights here once (LPIPS, tOF, tLP)
            # and :meth:`score` ranks by LPIPS among checkpoints that keep their fidelity
            self.reference: dict | None = None

    def set_lr(self, lr: float) -> None:
        for gr in self.opt.param_groups:
            gr["lr"] = lr * gr.get("lr_scale", 1.0)

    def generator_losses(self, lr: torch.Tensor, hr: torch.Tensor, flow: torch.Tensor | None = None,
                         flow_weight: torch.Tensor | None = None, strength: torch.Tensor | None = None,
                         ) -> tuple[torch.Tensor, dict, torch.Tensor]:
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
        if cfg.w_gate > 0 and self.model.gate is not None and strength is not None:
            # the gate is told how hard each window was compressed (binary cross-entropy against
            # the known strength, at every position of its map): it must learn to see compression,
            # not just whatever helps the pixel loss on this batch
            logits = self.model.gate.logits(lr[:, lr.shape[1] // 2])
            l_gate = F.binary_cross_entropy_with_logits(logits, strength.view(-1, 1, 1, 1).expand_as(logits))
            loss = loss + cfg.w_gate * l_gate
            parts["gate"] = l_gate.item()
        if self.perceptual is not None:
            sr_p, hr_p, share = sr, hr, 1.0
            if cfg.perceptual_on == "compressed" and strength is not None:
                # only the windows whose LR went through an encoder; scaled by their share of the
                # batch, so each of them feels the weight it would with perceptual_on="all"
                keep = strength > 0
                sr_p, hr_p, share = sr[keep], hr[keep], keep.float().mean()
            if sr_p.shape[0]:
                l_per = self.perceptual(*_crop(cfg.perceptual_crop, sr_p, hr_p))
                loss = loss + cfg.w_perceptual * share * l_per
                parts["perceptual"] = l_per.item()
        return loss, parts, sr

    def step(self, lr: torch.Tensor, hr: torch.Tensor, flow: torch.Tensor | None = None,
             flow_weight: torch.Tensor | None = None, strength: torch.Tensor | None = None) -> dict:
        """One optimisation step on a batch: lr (B, T, 3, h, w), hr (B, T, 3, sh, sw); the known
        motion (:class:`~mstgan_cli.train.data.Batch`) supervises the flows when cfg.w_flow > 0, the
        known compression strength the generator's compression gate when cfg.w_gate > 0."""
        if self.extra_frames:
            loss, parts = self._steady_losses(lr, hr, flow, flow_weight, strength)
        else:
            loss, parts, _ = self.generator_losses(lr, hr[:, lr.shape[1] // 2], flow, flow_weight, strength)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        return parts

    def _steady_losses(self, lr: torch.Tensor, hr: torch.Tensor, flow: torch.Tensor | None,
                       flow_weight: torch.Tensor | None, strength: torch.Tensor | None) -> tuple[torch.Tensor, dict]:
        """cfg.w_steady: runs of T+1 frames give two windows one frame apart, [0, T) and [1, T+1),
        with centres c-1 and c (c = (T+1)//2, the run's centre, which its known flow starts from).
        Both outputs get the losses of :meth:`generator_losses`; the steadiness loss asks the change
        between them to match the ground truth's, |(y_c - y_c-1) - (x_c - x_c-1)|. Codec noise that
        differs from frame to frame, and a gate whose reading jumps between I and P frames, show up
        there as flicker, which per-frame losses never see."""
        b, n = lr.shape[:2]
        t, c = n - 1, n // 2
        wins = torch.cat([lr[:, :t], lr[:, 1:]])
        targets = torch.cat([hr[:, c - 1], hr[:, c]])
        f2 = w2 = None
        if flow is not None and flow_weight is not None:
            # the known motion starts from the run's centre: the second window's centre. The first
            # window's is not known, so it gets no flow supervision or teacher forcing (weight 0)
            f2 = torch.cat([torch.zeros_like(flow[:, 1:]), flow[:, 1:]])
            w2 = torch.cat([torch.zeros_like(flow_weight[:, 1:]), flow_weight[:, 1:]])
        s2 = strength.repeat(2) if strength is not None else None
        loss, parts, sr = self.generator_losses(wins, targets, f2, w2, s2)
        l_steady = ((sr[b:] - sr[:b]) - (hr[:, c] - hr[:, c - 1])).abs().mean()
        parts["steady"] = l_steady.item()
        return loss + self.cfg.w_steady * l_steady, parts

    def eval_model(self) -> MSTGANGenerator:
        """The weights that are validated and saved as best.pt."""
        return self.model

    def begin(self) -> None:
        """Called once the weights are loaded (resumed or --init), before the first step."""

    def state_dict(self) -> dict:
        return {"opt": self.opt.state_dict(), **({"reference": self.reference} if hasattr(self, "reference") else {})}

    def load_state_dict(self, state: dict) -> None:
        self.opt.load_state_dict(state["opt"])
        if hasattr(self, "reference"):
            self.reference = state.get("reference")

    def score(self, v: dict) -> float:
        """Higher is better: validation PSNR-Y; with a perceptual loss, :func:`held_fidelity_score`."""
        ref = getattr(self, "reference", None)
        if ref is None or "lpips" not in v:
            return v["psnr_y"]
        return held_fidelity_score(v, ref, self.cfg.psnr_slack)


def _crop(size: int, *xs: torch.Tensor) -> list[torch.Tensor]:
    """The same random size x size window of each (B, C, H, W) tensor (all of them if size is 0 or
    not smaller): the VGG16 of the perceptual loss costs several times the generator on a whole
    patch, and a window per batch keeps every sample in the loss."""
    h, w = xs[0].shape[-2:]
    if not size or (size >= h and size >= w):
        return list(xs)
    ch, cw = min(size, h), min(size, w)
    y, x = (int(torch.randint(0, n - c + 1, ())) for n, c in ((h, ch), (w, cw)))
    return [t[..., y:y + ch, x:x + cw] for t in xs]


def temporal_overshoot(v: dict, ref: dict) -> float:
    """How far a checkpoint's tOF and tLP exceed the starting weights' ``ref``, as summed relative
    excess (0 when neither is higher)."""
    return sum(max(0.0, v[k] / ref[k] - 1.0) for k in ("tof", "tlp100") if k in v and ref.get(k))


def held_fidelity_score(v: dict, ref: dict, slack: float) -> float:
    """Higher is better: minus LPIPS, for a checkpoint that keeps the fidelity of the starting
    weights ``ref``: mean PSNR-Y at most ``slack`` dB below theirs, no clip's gain over bicubic more
    than 0.1 dB below min(0, theirs), tOF and tLP no higher. Checkpoints that break the PSNR rules
    rank below every one that keeps them (graded by the dB lost), then those that break the temporal
    ones (graded by how far they overshoot), so a sharper picture is never bought with fidelity or
    flicker."""
    lost = max(0.0, ref["psnr_y"] - slack - v["psnr_y"])
    lost += sum(max(0.0, min(0.0, ref[k]) - 0.1 - val) for k, val in v.items()
                if k.startswith("gain_") and k in ref)
    over = temporal_overshoot(v, ref)
    return -v["lpips"] - ((10.0 + lost) if lost > 0 else 0.0) - ((1.0 + over) if over > 0 else 0.0)
