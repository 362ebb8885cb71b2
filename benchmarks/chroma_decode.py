"""Does the decoder's chroma upsampling change what a model gains on compressed input?

Training windows and the protocol's ``h264:CRF`` decode 4:2:0 through PyAV's ``to_ndarray`` (FFmpeg's
swscale with its defaults: each chroma sample repeated over two pixels), while ``mstgan upscale``
decodes files with ``scale=flags=bicubic+accurate_rnd+full_chroma_int+full_chroma_inp``
(``media.decode``): interpolated chroma. (Since 2026-12-07 training and the protocol decode as the
product does, ``train.degrade.DECODE_SCALE``.) The same x264 streams of a split's clips and photo pans
(``train.data.load_val_clips``, as the training's logged curves see them) are decoded both ways and
each model is measured on 8 fixed windows per clip (``train.loop.validate``: PSNR-Y and its gain
over bicubic from the same decoded input).

    .venv/bin/python benchmarks/chroma_decode.py --models weights/mstgan-x4-lossy.pt --split test \
        --out benchmarks/results/chroma-decode/lossy-test.json
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
from mstgan_cli.train import degrade as D  # noqa: E402
from mstgan_cli.train.data import load_val_clips  # noqa: E402
from mstgan_cli.train.loop import validate  # noqa: E402

def encode_decode(x: torch.Tensor, crf: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One x264 stream of x (N, 3, h, w) at ``crf``, decoded to RGB twice: with each chroma sample
    repeated over a pixel pair (PyAV's to_ndarray, what training used until 2026-12-07) and with
    interpolated chroma (D.DECODE_SCALE, as `mstgan upscale` decodes files and training now does)."""
    yuv = D.encode_decode_yuv(x, "h264", crf)
    repeated = D._from_u8(np.stack([f.to_ndarray(format="rgb24") for f in yuv]))
    return repeated, D._from_u8(D._to_rgb(yuv))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", required=True, help="comma-separated checkpoints")
    ap.add_argument("--split", default="test", choices=["val", "test"])
    ap.add_argument("--crf", type=int, default=23)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    root = ROOT.parent / "shared/data" / args.split
    clips = load_val_clips(root, 4, cache=ROOT / ".data/cache", prefix=f"{args.split}_", pans=True)
    both = [(n, *encode_decode(lr, args.crf), hr) for n, lr, hr in clips]
    pyav = [(n, a, hr) for n, a, _, hr in both]
    product = [(n, b, hr) for n, _, b, hr in both]
    res: dict = {"split": args.split, "crf": args.crf, "windows_per_clip": 8,
                 "input_difference_levels": {n: float((a - b).abs().mean() * 255)
                                             for (n, a, _), (_, b, _) in zip(pyav, product)},
                 "models": {}}
    for m in args.models.split(","):
        model, _ = load_generator(Path(m))
        res["models"][m] = {"pyav_repeated_chroma": validate(model, pyav, 8, torch.device("cpu")),
                            "product_interpolated_chroma": validate(model, product, 8, torch.device("cpu"))}
        a, b = res["models"][m]["pyav_repeated_chroma"], res["models"][m]["product_interpolated_chroma"]
        print(f"{m}: gain {a['gain']:+.3f} (training's decode) vs {b['gain']:+.3f} (mstgan upscale's); "
              f"PSNR-Y {a['psnr_y']:.3f} vs {b['psnr_y']:.3f}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
