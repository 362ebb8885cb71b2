"""One compiled stage, two or more AOTInductor packages of it, timed interleaved in one process.

On this VM timings drift by tens of percent from minute to minute, so package variants (e.g.
built with and without ``--warps grid-sample``) are compared by calling them in turns:
``--rounds`` rounds of ``--calls`` calls each, on the same random inputs (batch 1, ``--size``),
with freed memory kept as in a real run. Prints min / first quartile / median ms per call.

    MSTGAN_CACHE_DIR=/tmp/a mstgan upscale clip.mp4 --precision int8 -o /tmp/a.mkv -y
    MSTGAN_CACHE_DIR=/tmp/b mstgan upscale clip.mp4 --precision int8 --warps grid-sample -o /tmp/b.mkv -y
    python benchmarks/stage_ab.py window /tmp/a/aot/window-*.pt2 /tmp/b/aot/window-*.pt2
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from mstgan_cli.model.checkpoint import load_generator
from mstgan_cli.model.registry import model_path
from mstgan_cli.runtime.backends.aot import _runner
from mstgan_cli.runtime.memory import keep_freed_memory
from mstgan_cli.runtime.parts import sample_inputs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stage", choices=["encode", "flows", "window"])
    ap.add_argument("packages", nargs="+", type=Path)
    ap.add_argument("--model", default="mstgan-x4-lossy", help="the model the packages were built for")
    ap.add_argument("--size", default="480x272", help="LR frame size WxH")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--calls", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    keep_freed_memory()
    torch.set_num_threads(a.threads)
    w, h = (int(v) for v in a.size.split("x"))
    model, _ = load_generator(model_path(a.model))
    inputs = tuple(t.contiguous(memory_format=torch.channels_last) for t in sample_inputs(model, 1, h, w)[a.stage])
    runs = [_runner(p) for p in a.packages]
    times: dict[Path, list[float]] = {p: [] for p in a.packages}
    with torch.inference_mode():
        for run in runs:  # warm up
            run(*inputs)
            run(*inputs)
        for _ in range(a.rounds):
            for p, run in zip(a.packages, runs):
                t0 = time.perf_counter()
                for _ in range(a.calls):
                    run(*inputs)
                times[p].append((time.perf_counter() - t0) / a.calls)
    for p in a.packages:
        ts = sorted(times[p])
        print(f"{p.name:32s} min {ts[0] * 1e3:.0f}  q1 {ts[len(ts) // 4] * 1e3:.0f}  median {ts[len(ts) // 2] * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
