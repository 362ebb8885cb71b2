"""Where the time of an `mstgan upscale` run goes: the command itself, in this process, with
timestamps on every model output and on the encoder thread's calls.

Prints the interval between model outputs in the steady state (after the first 5), how long
the model's `push` calls and the encoder thread's conversion and `write` calls take (wall and
their own thread's CPU time), and when the last output came against when the job ended (what
is left is x264 flushing its lookahead).

    OMP_NUM_THREADS=2 python benchmarks/timeline.py upscale clip.mkv --scale 4 --precision int8 -o out.mkv -y -q

``MSTGAN_ENCODER_THREADS=N`` forces the encoder's thread count (0: x264's own choice).
Used for the steady-state numbers of benchmarks/RESULTS.md (2026-11-22, OpenMP waits).
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from collections import defaultdict

from mstgan_cli.job.omp import prefer_passive_waits

prefer_passive_waits()  # as the mstgan command does, before torch loads OpenMP

import mstgan_cli.job.upscale as pipeline  # noqa: E402
from mstgan_cli.media.encode import VideoEncoder  # noqa: E402
from mstgan_cli.runtime.engine import ModelUpscaler  # noqa: E402
from mstgan_cli.runtime.window import WindowStream  # noqa: E402

events: dict[str, list[tuple[float, float, float]]] = defaultdict(list)


def timed(owner: object, name: str, key: str) -> None:
    f = getattr(owner, name)

    def wrapper(*args, **kwargs):
        t, c = time.perf_counter(), time.thread_time()
        try:
            return f(*args, **kwargs)
        finally:
            events[key].append((t, time.perf_counter(), time.thread_time() - c))
    setattr(owner, name, wrapper)


def main() -> None:
    timed(VideoEncoder, "_to_frame", "convert")
    timed(VideoEncoder, "write", "write (convert + x264)")
    timed(WindowStream, "push", "model push")
    process = ModelUpscaler.process

    def stamped(self, frames):
        for out in process(self, frames):
            events["out"].append((time.perf_counter(), 0.0, 0.0))
            yield out
    ModelUpscaler.process = stamped
    if "MSTGAN_ENCODER_THREADS" in os.environ:
        pipeline.encoder_threads = lambda *a, **k: int(os.environ["MSTGAN_ENCODER_THREADS"])
    from mstgan_cli.cli import app

    t0 = time.perf_counter()
    try:
        app(sys.argv[1:])
    except SystemExit:
        pass
    t1 = time.perf_counter()
    outs = [t for t, _, _ in events["out"]]
    if len(outs) < 8:
        raise SystemExit("too few frames for a steady state (need 8 or more)")
    print(f"job {t1 - t0:.1f} s; first output at {outs[0] - t0:.1f} s, last at {outs[-1] - t0:.1f} s; {len(outs)} frames")
    gaps = [b - a for a, b in zip(outs[5:], outs[6:])]
    print(f"steady state: {statistics.median(gaps) * 1e3:.0f} ms per frame (median), {statistics.mean(gaps) * 1e3:.0f} mean")
    for key in ("model push", "convert", "write (convert + x264)"):
        xs = events[key][5:]
        if xs:
            print(f"{key:24s} {len(events[key])} calls: wall {statistics.median(b - a for a, b, _ in xs) * 1e3:.1f} ms, "
                  f"own CPU {statistics.median(c for _, _, c in xs) * 1e3:.1f} ms (medians)")


if __name__ == "__main__":
    main()
