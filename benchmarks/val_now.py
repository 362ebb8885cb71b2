"""Checkpoints measured as a training run validates (``train.loop.validate``: 8 fixed windows per
clip, clean + H.264 CRF 23, videos and photo pans of the split) with today's degradation code: to
compare a run's logged val numbers with a model measured under another version of the code (e.g.
before training decoded 4:2:0 as the product does).

    .venv/bin/python benchmarks/val_now.py weights/mstgan-x4-lossy.pt --out runs/x4-gate3/lossy_val.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mstgan_cli.model.checkpoint import load_generator  # noqa: E402
from mstgan_cli.train.data import load_val_clips  # noqa: E402
from mstgan_cli.train.loop import validate  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+",
                    help="checkpoints; PATH@D also measures PATH with its compression gate's logit bias moved by D "
                         "(a gate calibrated to read everything as less compressed: D < 0)")
    ap.add_argument("--split", default="val", choices=["val", "test"])
    ap.add_argument("--degrade", default="bicubic,h264:23")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--temporal", action="store_true",
                    help="also LPIPS, tOF and tLP, as runs with a perceptual or steadiness loss validate "
                         "(each window then starts one frame later, so PSNR-Y differs a little)")
    ap.add_argument("--per-clip", action="store_true",
                    help="with --temporal: also tOF and tLP of each clip (each clip validated on its own: "
                         "tof_<clip>, tlp100_<clip>)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    clips = [c for d in args.degrade.split(",")
             for c in load_val_clips(ROOT.parent / "shared/data" / args.split, 4, cache=ROOT / ".data/cache",
                                     degrade=d, prefix=f"{args.split}_", pans=True)]
    res = {"split": args.split, "degrade": args.degrade, "models": {}}
    for m in args.models:
        path, _, offset = m.partition("@")
        model, _ = load_generator(Path(path))
        if offset:
            with torch.no_grad():
                model.gate.to_logit.bias += float(offset)
        res["models"][m] = v = validate(model, clips, 8, torch.device("cpu"), lpips=args.temporal)
        if args.temporal and args.per_clip:
            for c in clips:
                one = validate(model, [c], 8, torch.device("cpu"), lpips=True)
                v[f"tof_{c[0]}"], v[f"tlp100_{c[0]}"] = one["tof"], one["tlp100"]
        print(m, f"PSNR-Y {v['psnr_y']:.3f}", *(f"{k} {v[k]:.4f}" for k in ("lpips", "tof", "tlp100") if k in v), " ".join(f"{k[5:]} {x:+.2f}" for k, x in v.items() if k.startswith("gain_")),
              flush=True)
    args.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
