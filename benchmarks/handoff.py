"""The encoder thread's hand-off: a model frame (3, H, W) float -> YCbCr for x264, two ways.

- interleaved (before): ``stages.to_array`` to (H, W, 3) uint8, an ``rgb24`` frame, swscale;
- planar (now): ``media.encode.gbr_frame`` writes the rounded values into a ``gbrp`` frame's
  planes, swscale.

Both through ``VideoEncoder._to_frame`` (the same swscale flags and colour as a real run), on one
thread, alternating; checks that the YCbCr planes are identical, prints median ms per frame.

    python benchmarks/handoff.py [--size 1920x1088] [--rounds 10]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from mstgan_cli.media.colour import Colour
from mstgan_cli.media.encode import VideoEncoder, gbr_frame, plan_encoder
from mstgan_cli.options import EncodeSettings
from mstgan_cli.job.pipeline import to_array


def pixels(plane) -> np.ndarray:
    """The visible bytes of an 8-bit plane (its rows are padded to line_size)."""
    return np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, :plane.width]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="1920x1088", help="frame size WxH")
    ap.add_argument("--rounds", type=int, default=10)
    a = ap.parse_args()
    w, h = (int(v) for v in a.size.split("x"))
    frame = torch.rand(3, h, w, generator=torch.Generator().manual_seed(0))
    ways = {"interleaved (to_array, rgb24)": lambda enc: enc._to_frame(to_array(frame, False)),
            "planar (gbr_frame, gbrp)": lambda enc: enc._to_frame(gbr_frame(frame.numpy(), False))}
    with tempfile.TemporaryDirectory() as tmp:
        enc = VideoEncoder(Path(tmp) / "x.mkv", plan_encoder(EncodeSettings(), ".mkv", False), size=(w, h),
                           src_size=(w, h), time_base=Fraction(1, 25), rate=Fraction(25), colour=Colour("bt709", "tv"))
        try:
            outs = [f(enc) for f in ways.values()]
            same = all(np.array_equal(pixels(p), pixels(q)) for p, q in zip(outs[0].planes, outs[1].planes))
            times: dict[str, list[float]] = {k: [] for k in ways}
            for _ in range(a.rounds):
                for k, f in ways.items():
                    t = time.perf_counter()
                    f(enc)
                    times[k].append(time.perf_counter() - t)
        finally:
            enc.abort()
    print(f"{w}x{h}, identical YCbCr: {same}")
    for k, ts in times.items():
        print(f"{k:32s} median {np.median(ts) * 1e3:.1f} ms, min {min(ts) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
