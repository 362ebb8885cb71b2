"""How well a generator's flow network estimates motion: pure sub-pixel pans over the validation
photos (the true flow is one vector per frame), and the virtual camera's windows of the training
loop (pans, zooms, rotations, moving objects).

For each checkpoint: per pan speed, the slope of predicted against true flow (x and y; 1 = right,
0 = blind) and the mean error, of the centre->neighbour flows the generator uses (chained from
neighbour flows); and the error on 64 validation photo windows next to the error of predicting no
motion (what ``mstgan train --stage 0`` validates on).

    .venv/bin/python benchmarks/flow_accuracy.py weights/mstgan-x4.pt runs/x4-clean/best.pt \
        --out benchmarks/results/flow-accuracy
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mstgan_cli.model.checkpoint import load_generator  # noqa: E402
from mstgan_cli.train.data import Sources, WindowSampler, photo_pan, read_photo_rgb  # noqa: E402
from mstgan_cli.train.degrade import downscale  # noqa: E402
from mstgan_cli.train.flow import validate_flow  # noqa: E402

SPEEDS = (1.0, 2.0, 4.0, 8.0)  # HR pixels per frame of the pans


def pan_slopes(model, photos: list[Path], speed: float, rng: np.random.Generator) -> dict:
    """Slope of predicted on true centre->neighbour flow over pans at `speed` in random directions."""
    pred, true = [], []
    t, s = model.config.window, model.config.scale
    for p in photos:
        img = read_photo_rgb(p)
        for _ in range(4):
            a = rng.uniform(0, 2 * np.pi)
            step = (speed * np.cos(a), speed * np.sin(a))
            hr = torch.from_numpy(photo_pan(img, step, t, (384, 256))).permute(0, 3, 1, 2).float() / 255
            lr = downscale(hr, s)[None]
            with torch.no_grad():
                flows = model.window_flows(lr)
            for k, f in enumerate(flows):
                if f is None:
                    continue
                pred.append(f[0, :, 4:-4, 4:-4].mean(dim=(1, 2)).numpy())
                true.append(-(k - t // 2) * np.array(step) / s)  # frame k shows the view moved by k steps
    pred, true = np.array(pred), np.array(true)
    slope = (pred * true).sum(0) / (true ** 2).sum(0)
    return {"speed_hr_px": speed, "true_mean_abs_lr_px": float(np.abs(true).mean()),
            "slope_x": float(slope[0]), "slope_y": float(slope[1]), "mean_error_lr_px": float(np.abs(pred - true).mean())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--val", default="../shared/data/val")
    ap.add_argument("--cache", default=".data/cache")
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    photos = sorted(p for p in (Path(args.val) / "photos").glob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    res = {"val": args.val, "photos": [p.name for p in photos], "models": {}}
    for ck in args.checkpoints:
        model, _ = load_generator(Path(ck))
        windows = WindowSampler(Sources.load(Path(args.val), Path(args.cache)), model.config.scale, model.config.window,
                                64, 1_000_003, video_fraction=0.0, max_speed=16.0).batch(64)
        rng = np.random.default_rng(0)
        res["models"][ck] = {"pans": [pan_slopes(model, photos, v, rng) for v in SPEEDS],
                             "windows": validate_flow(model, windows)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "flow_accuracy.json").write_text(json.dumps(res, indent=1))
    lines = ["| checkpoint | pan speed (HR px/frame) | slope x | slope y | mean error (LR px) |", "|---|---|---|---|---|"]
    for ck, r in res["models"].items():
        for p in r["pans"]:
            lines.append(f"| {ck} | {p['speed_hr_px']:g} | {p['slope_x']:.2f} | {p['slope_y']:.2f} | {p['mean_error_lr_px']:.3f} |")
    lines += ["", "| checkpoint | error on val photo windows (LR px) | predicting no motion | ratio |", "|---|---|---|---|"]
    for ck, r in res["models"].items():
        w = r["windows"]
        lines.append(f"| {ck} | {w['flow_epe']:.3f} | {w['flow_epe_zero']:.3f} | {w['flow_epe_ratio']:.2f}x |")
    (out / "flow_accuracy.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
