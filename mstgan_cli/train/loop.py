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
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..metrics.image import psnr_y
from ..model.checkpoint import atomic_save
from ..model.generator import GeneratorConfig, MSTGANGenerator, load_matching
from .config import RESUMABLE_CHANGES, TrainConfig, changed_settings
from .data import Sources, WindowSampler, load_val_clips
from .degrade import DegradeConfig, Degrader
from .fidelity import FidelityPhase
from .losses import PerceptualLoss, charbonnier, flow_losses, flow_supervision
from .plot import plot_curves

log = logging.getLogger("mstgan_cli")

# the loop's collaborators, importable from here as before
__all__ = ["FidelityPhase", "PerceptualLoss", "RESUMABLE_CHANGES", "TrainConfig", "changed_settings",
           "charbonnier", "flow_losses", "flow_supervision", "pad_to_multiple", "train", "validate"]


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 2 % of the peak over cfg.steps."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    p = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * p)))


def _psnr_y(a: torch.Tensor, b: torch.Tensor, crop: int) -> float:
    """PSNR-Y of (1, 3, H, W) images, both as 8-bit pictures, as they would be written to a file."""
    def u8(x: torch.Tensor) -> torch.Tensor:
        return (x.clamp(0, 1) * 255).round().to(torch.uint8)

    return float(psnr_y(u8(a), u8(b), crop)[0])


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

    Also the temporal gain (issue 17, item 4): the model's PSNR-Y on each window minus its PSNR-Y
    on the same window with every frame replaced by the centre (what the neighbours add),
    ``tgain_<clip>`` and ``temporal_gain``.

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
    ours, bic, alone = [], [], []

    def sr(i: int, centre_only: bool = False) -> torch.Tensor:
        win = (lr[i][None].expand(t, *lr.shape[1:]) if centre_only else lr[i - t // 2: i + t // 2 + 1])[None].to(device)
        x, h, w = pad_to_multiple(win, model.config.size_multiple)
        return model(x)[..., : h * s, : w * s].clamp(0, 1).cpu()

    for name, lr, hr in clips:
        first = t // 2 + (1 if lp is not None else 0)  # room for the previous window
        idx = np.linspace(first, len(lr) - 1 - t // 2, frames_per_clip).round().astype(int)
        po, pb, pc = [], [], []
        for i in idx:
            out = sr(i)
            ref = hr[i][None]
            po.append(_psnr_y(out, ref, s))
            pc.append(_psnr_y(sr(i, centre_only=True), ref, s))
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
        if getattr(model, "gate", None) is not None:
            # what the compression gate sees in this clip (0: clean, 0.5: CRF 24, see
            # degrade.compression_strength): a diagnosis, not part of any score
            x, _, _ = pad_to_multiple(lr[idx].to(device), model.config.size_multiple)
            res[f"gate_{name}"] = float(torch.sigmoid(model.gate.logits(x)).mean())
        res[f"psnr_{name}"] = float(np.mean(po))
        res[f"gain_{name}"] = float(np.mean(po) - np.mean(pb))
        res[f"tgain_{name}"] = float(np.mean(po) - np.mean(pc))
        ours += po
        bic += pb
        alone += pc
    res["psnr_y"] = float(np.mean(ours))
    res["gain"] = float(np.mean(ours) - np.mean(bic))
    res["temporal_gain"] = float(np.mean(ours) - np.mean(alone))
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
    if cfg.stage == 0:
        from .flow import FlowPhase
        phase = FlowPhase(model, cfg, device)
    elif cfg.stage == 1:
        phase = FidelityPhase(model, cfg, device)
    else:
        from .adversarial import AdversarialPhase
        phase = AdversarialPhase(model, cfg, device)
    if cfg.w_gate > 0 and model.gate is None:
        raise ValueError("--gate supervises the compression gate, and this generator has none: "
                         "add one with --generator '{\"gate\": 16}'")
    if cfg.degrade not in ("bicubic", "realworld"):
        raise ValueError(f"degrade must be bicubic or realworld, not {cfg.degrade!r}")
    degrader = Degrader(cfg.scale, DegradeConfig.from_dict(cfg.degrade_config)) if cfg.degrade == "realworld" else None
    sources = Sources.load(Path(cfg.data), Path(cfg.cache))
    photos_only = getattr(phase, "photos_only", False)
    if photos_only and not sources.photos:
        raise ValueError(f"stage {cfg.stage} learns from photo windows (known motion): no photos under {cfg.data}")
    sampler = WindowSampler(sources, cfg.scale, cfg.window + phase.extra_frames, cfg.patch, cfg.seed,
                            video_fraction=0.0 if photos_only else 0.5,
                            degrader=degrader, fast_motion=cfg.fast_motion, max_speed=cfg.max_speed)
    if cfg.stage == 0:
        # the flow alone is judged on fixed photo windows of the validation (and test) photos
        from .flow import validate_flow

        def windows(root: str, seed: int):
            src = Sources.load(Path(root), Path(cfg.cache))
            if not src.photos:
                raise ValueError(f"stage 0 validates on photo windows: no photos under {root}")
            return WindowSampler(src, cfg.scale, cfg.window, cfg.patch * 2, seed, video_fraction=0.0,
                                 degrader=degrader, fast_motion=cfg.fast_motion, max_speed=cfg.max_speed).batch(64)
        val_clips = windows(cfg.val, 1_000_003)
        test_clips = windows(cfg.test, 1_000_033) if cfg.test else None
        val_names = ["photo windows"]

        def measure(m, clips):
            return validate_flow(m, clips)
    else:
        # videos and photo pans: real video gives the neighbours little to add, a sub-pixel pan a lot
        val_clips = [c for d in cfg.val_degrade.split(",")
                     for c in load_val_clips(Path(cfg.val), cfg.scale, cache=Path(cfg.cache), degrade=d.strip(),
                                             pans=True)]
        test_clips = [c for d in cfg.val_degrade.split(",") if cfg.test
                      for c in load_val_clips(Path(cfg.test), cfg.scale, cache=Path(cfg.cache), degrade=d.strip(),
                                              prefix="test_", pans=True)]
        val_names = [name for name, _, _ in val_clips]

        def measure(m, clips, lpips: bool = cfg.stage != 1 or cfg.w_perceptual > 0 or cfg.w_steady > 0):
            return validate(m, clips, cfg.val_frames, device, lpips=lpips)
    step, best, rescored = 0, None, None
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
        phase.load_state_dict(ck)
        sampler.load_state(ck["sampler"])
        torch.set_rng_state(ck["torch_rng"])
        step, best = ck["step"], ck.get("best")
        log.info("resumed %s at step %d", last, step)
        if ck.get("val_names") != val_names and (out / "best.pt").exists():
            # the validation set changed (clips added to the split, or pans since they joined):
            # the best score so far is re-measured on the new set, so the next checkpoints are
            # compared with best.pt like with like
            kept = torch.load(out / "best.pt", map_location=device, weights_only=True)
            judge = MSTGANGenerator(GeneratorConfig(**kept["config"])).to(device)
            judge.load_state_dict(kept["state_dict"])
            old_best, best = best, phase.score(measure(judge, val_clips))
            rescored = {"best_step": kept.get("step"), "from": old_best, "to": best}
            log.info("validation set changed: best.pt (step %s) re-measured, score %s -> %s",
                     kept.get("step"), old_best, best)
    elif cfg.init:
        ck = torch.load(cfg.init, map_location=device, weights_only=True)  # weights only: no pickled code runs
        sd = ck["state_dict"] if "state_dict" in ck else ck["model"]
        fits, grown = load_matching(model, sd)
        # e.g. an x2 model started from x4 weights: everything but the upsampling layer carries over;
        # a deeper trunk started from a shallower one: the new blocks start as the identity
        log.info("initialised from %s: %d tensors, fresh: %s, grown (start as identity): %s", cfg.init,
                 len(fits), sorted(set(model.state_dict()) - set(fits)) or "none", grown or "none")
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=1))

    def save(path: Path) -> None:
        atomic_save({"model": model.state_dict(), **phase.state_dict(), "sampler": sampler.state(),
                     "torch_rng": torch.get_rng_state(), "step": step, "best": best, "val_names": val_names,
                     "config": gcfg.to_dict(), "train_config": asdict(cfg)}, path)

    def emit(rec: dict) -> None:
        with open(out / "log.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
        if on_log:
            on_log(rec)

    phase.begin()
    # where this process started: a run may be resumed many times, or from a copied checkpoint
    emit({"step": step, "start": started, "sources": {"clips": len(sources.videos), "photos": len(sources.photos)},
          "settings": {k: v for k, v in asdict(cfg).items() if k in RESUMABLE_CHANGES},
          **({"rescored_best": rescored} if rescored else {})})
    if hasattr(phase, "reference") and phase.reference is None:
        # stage 2, or stage 1 with a perceptual loss: measure the starting weights once; checkpoints
        # must not be less stable in time (nor, in stage 1, less faithful)
        phase.reference = validate(phase.eval_model(), val_clips, cfg.val_frames, device, lpips=True)
        emit({"step": step, "reference": phase.reference})
    stop = _StopFlag()
    t0 = last_save = tick = time.time()
    tick_step, acc = step, {}
    model.train()
    end = min(cfg.steps, cfg.until) if cfg.until else cfg.steps
    while step < end and not stop.stop:
        lr_now = lr_at(step, cfg)
        phase.set_lr(lr_now)
        b = sampler.batch(cfg.batch)
        parts = phase.step(*(x.to(device, non_blocking=True) for x in b))
        step += 1
        for k, v in parts.items():
            acc[k] = acc.get(k, 0.0) + v
        if step % 50 == 0:
            now = time.time()
            emit({"step": step, "lr": lr_now, "it_s": (step - tick_step) / (now - tick),
                  **{k: v / (step - tick_step) for k, v in acc.items()}})
            tick, tick_step, acc = now, step, {}
        if step % cfg.val_every == 0 or step == end:
            v = measure(phase.eval_model(), val_clips)
            score = phase.score(v)
            is_best = best is None or score > best
            if is_best:
                best = score
                atomic_save({"config": gcfg.to_dict(), "state_dict": phase.eval_model().state_dict(),
                             "step": step, "val": v},
                            out / "best.pt")
            rec = {"step": step, "val": v, "best": is_best, "score": score}
            if test_clips:  # logged only: nothing is chosen on it
                rec["test"] = measure(phase.eval_model(), test_clips)
            emit(rec)
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
