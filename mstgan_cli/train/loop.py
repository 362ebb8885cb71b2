"""The staged training loop. Resumable at any step, seeded, CUDA when present.

Stage 1 (fidelity): generator alone on Charbonnier-L1 (+ optional VGG perceptual loss), with a
photometric warping loss and a smoothness term on the flows.
Stage 2 (GAN): see ``train/adversarial.py``.

A run directory holds ``last.pt`` (everything needed to resume), ``best.pt`` (best validation
score), ``log.jsonl`` (one JSON object per logged step or validation) and ``curves.png``.
"""
from __future__ import annotations

import json
import logging
import math
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..model.blocks import flow_warp
from ..model.checkpoint import atomic_save
from ..model.generator import GeneratorConfig, MSTGANGenerator
from .data import Sources, WindowSampler, load_val_clips
from .degrade import DegradeConfig, Degrader
from .plot import plot_curves

log = logging.getLogger("mstgan_cli")


@dataclass
class TrainConfig:
    data: str = "../shared/data/train"
    val: str = "../shared/data/val"
    out: str = "runs/x4"
    cache: str = ".data/cache"
    scale: int = 4
    window: int = 5
    generator: dict = field(default_factory=dict)  # overrides of GeneratorConfig
    stage: int = 1
    steps: int = 60_000          # length of the learning-rate schedule
    batch: int = 16
    patch: int = 32              # low-resolution patch side
    lr: float = 3e-4
    warmup: int = 300
    seed: int = 0
    val_every: int = 500
    val_frames: int = 8          # validation windows per clip
    ckpt_minutes: float = 5.0
    w_warp: float = 0.05         # photometric loss of the flows
    w_smooth: float = 0.005      # flow smoothness (optical-flow regularisation)
    w_flow: float = 0.0          # supervision of the flow network by the virtual camera's known motion
    w_perceptual: float = 0.0
    vgg_layers: str = "relu1_2,relu2_2,relu3_3"  # VGG16 feature maps of the perceptual loss
    w_adv: float = 0.005         # stage 2: adversarial (hinge) weight
    w_temporal: float = 0.5      # stage 2: consecutive-frame change must match the ground truth
    w_pingpong: float = 0.5      # stage 2: the reversed window must give the same frame
    w_ftemporal: float = 0.0     # stage 2: the same as w_temporal, on VGG features (tLP's space)
    w_tflow: float = 0.0         # stage 2: motion between consecutive outputs must match the ground
                                 # truth's (a frozen copy of the starting flow network measures both)
    ema: float = 0.0             # stage 2: decay of an exponential moving average of the weights,
                                 # which is what is validated and released (0: off)
    noise: float = 0.1           # stage 2: instance noise std on D's inputs at the start...
    noise_steps: int = 5000      # ...annealed linearly to zero over this many steps
    init: str = ""               # start from these generator weights (e.g. stage 2 from stage 1)
    degrade: str = "bicubic"     # LR of the training windows: "bicubic" (the protocol's) or
                                 # "realworld" (train.degrade: real encoders, blur, noise, kernels)
    degrade_config: dict = field(default_factory=dict)  # overrides of DegradeConfig ("realworld")
    val_degrade: str = "bicubic"  # validation sets, comma-separated: bicubic, h264:CRF
    max_speed: float = 6.0       # virtual camera: fastest motion, HR pixels per frame
    fast_motion: float = 0.3     # virtual camera: share of fast windows
    threads: int = 0             # CPU threads (0: torch default)
    max_minutes: float = 0.0     # stop (after saving) when this much wall time has passed
    until: int = 0               # stop (after saving) at this step (0: at `steps`)


# settings a resumed run may change (each (re)start records them in log.jsonl): where and how long it
# runs, how often it is validated, and the length of the schedule (to extend a run); not what it learns from
RESUMABLE_CHANGES = frozenset({"out", "data", "val", "cache", "threads", "max_minutes", "until", "ckpt_minutes",
                               "steps", "val_every"})


def changed_settings(saved: dict, now: dict) -> dict:
    """Settings of `now` that differ from the run's `saved` ones and would change what it learns:
    {name: (saved, now)}. Settings added to TrainConfig since the run was saved count as unchanged
    when they hold their default."""
    defaults = asdict(TrainConfig())
    out = {}
    for k, v in now.items():
        if k in RESUMABLE_CHANGES:
            continue
        old = saved.get(k, defaults.get(k))
        if old != v:
            out[k] = (old, v)
    return out


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


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 2 % of the peak over cfg.steps."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    p = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * p)))


def _luma(x: torch.Tensor) -> torch.Tensor:
    """BT.601 luma on the 16-235 scale of (..., 3, H, W) RGB in [0, 1]."""
    return 16.0 + 65.481 * x[..., 0, :, :] + 128.553 * x[..., 1, :, :] + 24.966 * x[..., 2, :, :]


def _psnr_y(a: torch.Tensor, b: torch.Tensor, crop: int) -> float:
    # both as 8-bit images, as they would be written to a file
    ya, yb = _luma((a.clamp(0, 1) * 255).round() / 255), _luma((b * 255).round() / 255)
    if crop:
        ya, yb = ya[..., crop:-crop, crop:-crop], yb[..., crop:-crop, crop:-crop]
    mse = ((ya - yb) ** 2).mean().item()
    return 10 * math.log10(255.0**2 / max(mse, 1e-10))


def pad_to_multiple(x: torch.Tensor, m: int) -> tuple[torch.Tensor, int, int]:
    """Replicate-pad the last two dims up to multiples of m. Returns (padded, h, w) of the original."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % m, (-w) % m
    if ph or pw:
        lead = x.shape[:-3]
        x = F.pad(x.reshape(-1, *x.shape[-3:]), (0, pw, 0, ph), mode="replicate").reshape(*lead, x.shape[-3], h + ph, w + pw)
    return x, h, w


@torch.no_grad()
def validate(model: MSTGANGenerator, clips, frames_per_clip: int, device: torch.device,
             lpips: bool = False) -> dict:
    """PSNR-Y (border crop = scale) of the model and of bicubic on fixed windows of each clip.

    With ``lpips`` (stage 2) also LPIPS (AlexNet) and the temporal metrics of TecoGAN: each window
    is paired with the window one frame earlier, and tOF and tLP (x100) are taken over these
    consecutive output pairs against the ground truth, so a GAN that buys sharpness with flicker
    shows it at validation time."""
    lp = tof_acc = tlp_acc = None
    if lpips:
        from ..metrics import load_lpips
        from ..metrics.temporal import TemporalLP, TemporalOF
        lp = load_lpips().to(device)
        tof_acc, tlp_acc = TemporalOF(), TemporalLP(model=lp)
    lps, tofs, tlps = [], [], []
    model.eval()
    s, t = model.config.scale, model.config.window
    res: dict = {}
    ours, bic = [], []

    def sr(i: int) -> torch.Tensor:
        win = lr[i - t // 2: i + t // 2 + 1][None].to(device)
        x, h, w = pad_to_multiple(win, model.config.size_multiple)
        return model(x)[..., : h * s, : w * s].clamp(0, 1).cpu()

    for name, lr, hr in clips:
        first = t // 2 + (1 if lp is not None else 0)  # room for the previous window
        idx = np.linspace(first, len(lr) - 1 - t // 2, frames_per_clip).round().astype(int)
        po, pb = [], []
        for i in idx:
            out = sr(i)
            ref = hr[i][None]
            po.append(_psnr_y(out, ref, s))
            if lp is not None:
                lps.append(float(lp(out.to(device), ref.to(device)).mean()))
                tof_acc.reset()
                tlp_acc.reset()
                for o, g in ((sr(i - 1)[0], hr[i - 1]), (out[0], hr[i])):
                    tof_acc.update(o, g)
                    tlp_acc.update(o.to(device), g.to(device))
                tofs.append(tof_acc.value)
                tlps.append(tlp_acc.value100)
            up = F.interpolate(lr[i][None], scale_factor=s, mode="bicubic", align_corners=False)
            pb.append(_psnr_y(up.clamp(0, 1), ref, s))
        res[f"psnr_{name}"] = float(np.mean(po))
        res[f"gain_{name}"] = float(np.mean(po) - np.mean(pb))
        ours += po
        bic += pb
    res["psnr_y"] = float(np.mean(ours))
    res["gain"] = float(np.mean(ours) - np.mean(bic))
    if lps:
        res["lpips"] = float(np.mean(lps))
        res["tof"] = float(np.mean(tofs))
        res["tlp100"] = float(np.mean(tlps))
    model.train()
    return res


class _StopFlag:
    def __init__(self) -> None:
        self.stop = False
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handler)

    def _handler(self, *_):
        self.stop = True


class FidelityStage:
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
        sr, flows = self.model.forward_with_flows(lr)
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


def train(cfg: TrainConfig, on_log: Callable[[dict], None] | None = None) -> Path:
    """Run (or resume) a training run; returns the run directory. Stops cleanly on SIGINT/SIGTERM,
    at cfg.steps, or after cfg.max_minutes, always leaving a resumable last.pt."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(cfg.seed)
    gcfg = GeneratorConfig(scale=cfg.scale, window=cfg.window, **cfg.generator)
    model = MSTGANGenerator(gcfg).to(device)
    if cfg.stage == 1:
        stage = FidelityStage(model, cfg, device)
    else:
        from .adversarial import AdversarialStage
        stage = AdversarialStage(model, cfg, device)
    if cfg.degrade not in ("bicubic", "realworld"):
        raise ValueError(f"degrade must be bicubic or realworld, not {cfg.degrade!r}")
    degrader = Degrader(cfg.scale, DegradeConfig.from_dict(cfg.degrade_config)) if cfg.degrade == "realworld" else None
    sources = Sources.load(Path(cfg.data), Path(cfg.cache))
    sampler = WindowSampler(sources, cfg.scale, cfg.window + stage.extra_frames, cfg.patch, cfg.seed,
                            degrader=degrader, fast_motion=cfg.fast_motion, max_speed=cfg.max_speed)
    val_clips = [c for d in cfg.val_degrade.split(",")
                 for c in load_val_clips(Path(cfg.val), cfg.scale, cache=Path(cfg.cache), degrade=d.strip())]
    step, best = 0, None
    last = out / "last.pt"
    started = "init" if cfg.init else "fresh"
    if last.exists():
        started = "resume"
        ck = torch.load(last, map_location=device, weights_only=False)
        changed = changed_settings(ck.get("train_config", {}), asdict(cfg))
        if changed:
            raise ValueError(f"{last} was trained with other settings; resume with the run's own "
                             "(see its config.json) or train into a new folder: "
                             + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in sorted(changed.items())))
        model.load_state_dict(ck["model"])
        stage.load_state_dict(ck)
        sampler.load_state(ck["sampler"])
        torch.set_rng_state(ck["torch_rng"])
        step, best = ck["step"], ck.get("best")
        log.info("resumed %s at step %d", last, step)
    elif cfg.init:
        ck = torch.load(cfg.init, map_location=device, weights_only=True)  # weights only: no pickled code runs
        sd = ck["state_dict"] if "state_dict" in ck else ck["model"]
        own = model.state_dict()
        fits = {k: v.float() for k, v in sd.items() if k in own and own[k].shape == v.shape}
        model.load_state_dict(fits, strict=False)
        # e.g. an x2 model started from x4 weights: everything but the upsampling layer carries over
        log.info("initialised from %s: %d tensors, fresh: %s", cfg.init, len(fits),
                 sorted(set(own) - set(fits)) or "none")
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=1))

    def save(path: Path) -> None:
        atomic_save({"model": model.state_dict(), **stage.state_dict(), "sampler": sampler.state(),
                     "torch_rng": torch.get_rng_state(), "step": step, "best": best,
                     "config": gcfg.to_dict(), "train_config": asdict(cfg)}, path)

    def emit(rec: dict) -> None:
        with open(out / "log.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
        if on_log:
            on_log(rec)

    stage.begin()
    # where this process started: a run may be resumed many times, or from a copied checkpoint
    emit({"step": step, "start": started, "sources": {"clips": len(sources.videos), "photos": len(sources.photos)},
          "settings": {k: v for k, v in asdict(cfg).items() if k in RESUMABLE_CHANGES}})
    if hasattr(stage, "reference") and stage.reference is None:
        # stage 2: measure the starting weights once; checkpoints must not be less stable in time
        stage.reference = validate(stage.eval_model(), val_clips, cfg.val_frames, device, lpips=True)
        emit({"step": step, "reference": stage.reference})
    stop = _StopFlag()
    t0 = last_save = tick = time.time()
    tick_step, acc = step, {}
    model.train()
    end = min(cfg.steps, cfg.until) if cfg.until else cfg.steps
    while step < end and not stop.stop:
        lr_now = lr_at(step, cfg)
        stage.set_lr(lr_now)
        b = sampler.batch(cfg.batch)
        parts = stage.step(*(x.to(device, non_blocking=True) for x in b))
        step += 1
        for k, v in parts.items():
            acc[k] = acc.get(k, 0.0) + v
        if step % 50 == 0:
            now = time.time()
            emit({"step": step, "lr": lr_now, "it_s": (step - tick_step) / (now - tick),
                  **{k: v / (step - tick_step) for k, v in acc.items()}})
            tick, tick_step, acc = now, step, {}
        if step % cfg.val_every == 0 or step == end:
            v = validate(stage.eval_model(), val_clips, cfg.val_frames, device, lpips=cfg.stage != 1)
            score = stage.score(v)
            is_best = best is None or score > best
            if is_best:
                best = score
                atomic_save({"config": gcfg.to_dict(), "state_dict": stage.eval_model().state_dict(),
                             "step": step, "val": v},
                            out / "best.pt")
            emit({"step": step, "val": v, "best": is_best})
            plot_curves(out)
            save(last)
            last_save = time.time()
        if time.time() - last_save > cfg.ckpt_minutes * 60:
            save(last)
            last_save = time.time()
        if cfg.max_minutes and time.time() - t0 > cfg.max_minutes * 60:
            break
    save(last)
    log.info("stopped at step %d (best validation score %s)", step, best)
    return out


class PerceptualLoss:
    """VGG16 feature loss (L1 between the given relu feature maps), frozen ImageNet weights.
    ``features`` exposes the maps themselves (stage 2 compares their changes over time)."""

    def __init__(self, device: torch.device, layers: list[str]) -> None:
        from ..model.vgg import load_vgg_features

        self.vgg = load_vgg_features(layers=layers).to(device).eval()
        for p in self.vgg.parameters():
            p.requires_grad_(False)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.vgg(x)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fx, fy = self.vgg(x), self.vgg(y)
        return sum((a - b).abs().mean() for a, b in zip(fx, fy)) / len(fx)

