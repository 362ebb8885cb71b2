"""What exact alignment is worth: the generator with its own flows, with the true motion (oracle)
and with every window holding only its centre frame, on sub-pixel pans over the validation photos
(the true flow of a pan is one vector per frame); and a short fine-tune on photo windows aligned
with the true flow (``--true-flow 1`` of ``mstgan train``) or with its own (control).

    # measure a checkpoint (3 val photos x 3 windows, 480x256 pans, x4)
    .venv/bin/python benchmarks/alignment_oracle.py eval runs/x4-clean/best.pt
    # the same pans through H.264 CRF 23 first
    .venv/bin/python benchmarks/alignment_oracle.py eval weights/mstgan-x4-lossy.pt --degrade h264:23
    # fine-tune it 800 steps on photo windows (batch 16, patch 32, lr 1e-4), then measure the result
    .venv/bin/python benchmarks/alignment_oracle.py finetune runs/x4-clean/best.pt oracle /tmp/ft_oracle.pt
    .venv/bin/python benchmarks/alignment_oracle.py finetune runs/x4-clean/best.pt own /tmp/ft_own.pt

Results: benchmarks/results/alignment/ (RESULTS.md, "What the neighbours are worth").
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mstgan_cli.model.checkpoint import load_generator  # noqa: E402
from mstgan_cli.train.data import PAN_STEPS, Sources, WindowSampler, photo_pan, read_photo_rgb  # noqa: E402
from mstgan_cli.train.degrade import degrade_clip, downscale  # noqa: E402
from mstgan_cli.train.losses import charbonnier  # noqa: E402
from mstgan_cli.train.loop import _psnr_y  # noqa: E402


def evaluate(ckpt: Path, val: Path, degrade: str = "bicubic") -> dict:
    g, _ = load_generator(ckpt)
    t, s = g.config.window, g.config.scale
    res: dict[str, list[float]] = {"own": [], "oracle": [], "centre": [], "bicubic": []}
    photos = sorted(p for p in (val / "photos").glob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    for i, p in enumerate(photos):
        step = PAN_STEPS[i % len(PAN_STEPS)]
        hr = torch.from_numpy(photo_pan(read_photo_rgb(p), step, 9, (480, 256))).permute(0, 3, 1, 2).float() / 255
        lr = downscale(hr, s) if degrade == "bicubic" else degrade_clip(hr, s, degrade)
        for c in (t // 2, 4, 8 - t // 2):
            win = lr[c - t // 2:c + t // 2 + 1][None]
            with torch.no_grad():
                pyr = g.encode(win[0])
                feats = [tuple(q[j:j + 1] for q in pyr) for j in range(t)]
                oracle = [None if k == t // 2 else
                          torch.tensor([-(k - t // 2) * step[0] / s, -(k - t // 2) * step[1] / s]).view(1, 2, 1, 1)
                          .expand(1, 2, *lr.shape[-2:]).contiguous() for k in range(t)]
                outs = {"own": g.reconstruct(win[:, t // 2], feats, g.window_flows(win)),
                        "oracle": g.reconstruct(win[:, t // 2], feats, oracle),
                        "centre": g(lr[c][None, None].expand(1, t, -1, -1, -1).contiguous()),
                        "bicubic": F.interpolate(lr[c][None], scale_factor=s, mode="bicubic", align_corners=False)}
            for k, o in outs.items():
                res[k].append(_psnr_y(o.clamp(0, 1), hr[c][None], s))
    mean = {k: float(np.mean(v)) for k, v in res.items()}
    return {**mean, "gain_own": mean["own"] - mean["centre"], "gain_oracle": mean["oracle"] - mean["centre"]}


def finetune(ckpt: Path, mode: str, out: Path, data: Path, steps: int = 800) -> None:
    torch.manual_seed(0)
    g, _ = load_generator(ckpt)
    g.train()
    sampler = WindowSampler(Sources.load(data, ROOT / ".data/cache"), g.config.scale, g.config.window, 32, seed=5,
                            video_fraction=0.0, fast_motion=0.3, max_speed=16)
    opt = torch.optim.Adam(g.parameters(), lr=1e-4, betas=(0.9, 0.99))
    t0, acc = time.time(), 0.0
    for k in range(1, steps + 1):
        lr, hr, flow = sampler.batch(16)[:3]
        b, t = lr.shape[:2]
        pyr = g.encode(lr.reshape(b * t, *lr.shape[2:]))
        feats = [tuple(p.reshape(b, t, *p.shape[1:])[:, i] for p in pyr) for i in range(t)]
        flows = [None if i == t // 2 else flow[:, i] for i in range(t)] if mode == "oracle" else g.window_flows(lr)
        loss = charbonnier(g.reconstruct(lr[:, t // 2], feats, flows), hr[:, t // 2])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(g.parameters(), 1.0)
        opt.step()
        acc += loss.item()
        if k % 100 == 0:
            print(mode, k, round(acc / 100, 5), f"{time.time() - t0:.0f}s", flush=True)
            acc = 0.0
    torch.save({"config": g.config.to_dict(), "state_dict": g.state_dict()}, out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("eval")
    e.add_argument("checkpoint", type=Path)
    e.add_argument("--degrade", default="bicubic",
                   help="the LR pans: bicubic, or h264:CRF (the protocol's; the pan encoded as one stream)")
    f = sub.add_parser("finetune")
    f.add_argument("checkpoint", type=Path)
    f.add_argument("mode", choices=("oracle", "own"))
    f.add_argument("out", type=Path)
    f.add_argument("--steps", type=int, default=800)
    for p in (e, f):
        p.add_argument("--val", type=Path, default=Path("../shared/data/val"))
        p.add_argument("--data", type=Path, default=Path("../shared/data/train"))
        p.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.cmd == "finetune":
        finetune(args.checkpoint, args.mode, args.out, args.data, args.steps)
        args.checkpoint = args.out
    r = evaluate(args.checkpoint, args.val, getattr(args, "degrade", "bicubic"))
    print(f"{args.checkpoint}: PSNR-Y own {r['own']:.2f}, oracle {r['oracle']:.2f}, centre only {r['centre']:.2f}, "
          f"bicubic {r['bicubic']:.2f}; neighbours add {r['gain_own']:+.2f} (own flow), {r['gain_oracle']:+.2f} (true flow)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
