"""What a model's compression gate sees: its mean strength on each validation clip as clean RGB,
clean through 4:2:0 chroma (no encoder: what a lossless video file holds), H.264 at a few CRFs
decoded as `mstgan upscale` and training decode them (interpolated chroma), and CRF 23 decoded with
repeated chroma (PyAV's to_ndarray, training's decode before 2026-12-07).

    .venv/bin/python benchmarks/gate_sees.py runs/x4-gate2/best.pt --out runs/x4-gate2/gate_sees.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from chroma_decode import encode_decode  # noqa: E402
from mstgan_cli.model.checkpoint import load_generator  # noqa: E402
from mstgan_cli.train.data import load_val_clips  # noqa: E402
from mstgan_cli.train.degrade import chroma_420, compress_video  # noqa: E402
from mstgan_cli.train.loop import pad_to_multiple  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--split", default="val", choices=["val", "test"])
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model, _ = load_generator(args.model)
    if model.gate is None:
        raise SystemExit(f"{args.model} has no compression gate")
    clips = load_val_clips(ROOT.parent / "shared/data" / args.split, 4, cache=ROOT / ".data/cache",
                           prefix=f"{args.split}_", pans=True)
    inputs = {"clean RGB": lambda x: x, "clean 4:2:0": chroma_420,
              **{f"h264:{c}": (lambda x, c=c: compress_video(x, "h264", c)) for c in (16, 23, 28, 34)},
              "h264:23 (chroma repeated, training's decode before 2026-12-07)": lambda x: encode_decode(x, 23)[0]}
    res: dict = {"model": str(args.model), "split": args.split, "strength": {}}
    with torch.no_grad():
        for name, lr, _ in clips:
            row = {}
            for label, f in inputs.items():
                x, _, _ = pad_to_multiple(f(lr[:8]), model.config.size_multiple)
                row[label] = round(float(torch.sigmoid(model.gate.logits(x)).mean()), 3)
            res["strength"][name] = row
            print(name, row, flush=True)
    args.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
