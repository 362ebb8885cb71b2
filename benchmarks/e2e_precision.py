"""End to end: `mstgan upscale` itself in each precision x backend, side by side in one run.

`benchmarks/precision.py` times the model stream alone; this times the whole command a user runs
(probe, decode, model, encode with the default encoder settings, remux, integrity check) as a
subprocess, on a clip of ``--size`` LR frames (frames of a training clip resized; a synthetic pan
when ``../shared`` is absent), upscaled x4 (``--scale 4``, no further resize).

The runs use a fresh mstgan cache. Each configuration first runs once on a few frames: its
first run, which builds what it keeps (the compiled packages, the int8 calibration when none is
shipped), timed as "first run s". Then on ``--short`` and ``--long`` frames, ``--rounds``
times, the configurations taken in turns so background load hits all alike, as a user's later
runs. Reported per configuration (medians):

- "job s": wall time of the ``--long`` job, start-up (loading, compiling from the cache,
  loading compiled packages) included;
- "s/frame": (long - short) / (frames between): what each further frame costs end to end.
  Both clips must be longer than x264's lookahead (``medium``: 40 frames, plus B-frames): x264
  holds that many frames before it encodes the first, so a 40-frame job encodes every frame in
  the final flush, after the model is done and on one thread, and a 10 -> 40 difference adds
  that serial encode to the model's time instead of measuring the steady state (defaults 60, 160);
- speed-ups of both against fp32 eager.

``--release-memory-too`` adds every configuration again with ``--release-freed-memory``
(glibc hands large freed buffers back to the kernel after every frame, as before
``mstgan_cli/runtime/memory.py``), and ``--grid-sample-too`` every compiled one with
``--warps grid-sample`` (warps compiled from ``grid_sample``, as before
``mstgan_cli.model.blocks.gather_warp``), and ``--spin-waits-too`` every one with
``GOMP_SPINCOUNT=300000`` (OpenMP threads spin at barriers, as before ``mstgan_cli/omp.py``), and
``--int8-fp32-activations-too`` int8 with ``--int8-activations fp32`` (fp32 between the int8
convolutions, as before ``mstgan_cli.compress.int8.bf16_activations``), in the same rounds.

    python benchmarks/e2e_precision.py --out benchmarks/results

Writes ``--out``/e2e_precision.md and e2e_precision.json.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mstgan_cli.job.omp import USER_CHOICES

REPO = Path(__file__).resolve().parents[1]
CONFIGS = [("fp32", "eager"), ("bf16", "eager"), ("fp32", "compile"), ("bf16", "compile"), ("int8", "compile")]
# --release-memory-too: these again with --release-freed-memory (glibc hands large freed
# buffers back to the kernel after every frame, as before mstgan_cli.runtime.memory)
RELEASE = "release"
# --grid-sample-too: the compiled ones again with --warps grid-sample (warps traced as
# grid_sample, as before model.blocks.gather_warp)
GRID = "grid"
# --spin-waits-too: all again with GOMP_SPINCOUNT=300000, GNU OpenMP's own default (threads spin
# at barriers before they sleep), which the command keeps when a user sets it (mstgan_cli.job.omp)
SPIN = "spin"
# --int8-fp32-activations-too: int8 again with --int8-activations fp32 (fp32 between the int8
# convolutions, as before compress.int8.bf16_activations)
F32ACT = "f32act"
VARIANTS = {RELEASE: "freed memory released (before)", GRID: "warps by grid_sample (before)",
            SPIN: "OpenMP waits spinning (before)", F32ACT: "fp32 between int8 convolutions (before)"}


def write_source(path: Path, frames: int, size: tuple[int, int], source: Path | None) -> None:
    """A lossless FFV1 clip of `frames` frames at `size` (W, H)."""
    import av
    from PIL import Image

    w, h = size
    imgs: list[np.ndarray] = []
    if source is not None and source.exists():
        with av.open(str(source)) as c:
            for f in c.decode(video=0):
                imgs.append(np.asarray(f.to_image().resize((w, h), Image.BICUBIC)))
                if len(imgs) == frames:
                    break
    rng = np.random.default_rng(0)
    base = np.asarray(Image.fromarray((rng.random((h // 4, w // 4 + frames, 3)) * 255).astype(np.uint8))
                      .resize((w + 4 * frames, h), Image.BICUBIC))
    while len(imgs) < frames:  # a pan, when the clip is missing or short
        i = len(imgs)
        imgs.append(np.ascontiguousarray(base[:, 4 * i:4 * i + w]))
    with av.open(str(path), "w") as c:
        s = c.add_stream("ffv1", rate=25)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for img in imgs:
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def run_job(src: Path, out: Path, key: str, model: str, threads: int, cache: Path) -> float:
    precision, backend, *variant = key.split("-")
    cmd = [sys.executable, "-m", "mstgan_cli", "upscale", str(src), "--scale", "4", "--model", model,
           "--precision", precision, "--backend", backend, "--device", "cpu", "-o", str(out), "-y", "-q"]
    # the command's hidden measurement switches (mstgan_cli.options.RuntimeTuning)
    cmd += (["--release-freed-memory"] if RELEASE in variant else []) + \
        (["--warps", "grid-sample"] if GRID in variant else []) + \
        (["--int8-activations", "fp32"] if F32ACT in variant else [])
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(REPO), MSTGAN_CACHE_DIR=str(cache))
    for k in USER_CHOICES:
        env.pop(k, None)  # the command's own choice, unless the variant asks for the old one
    if SPIN in variant:
        env["GOMP_SPINCOUNT"] = "300000"
    t = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stderr[-2000:]}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="mstgan-x4-lossy")
    ap.add_argument("--size", default="480x272", help="LR frame size WxH")
    ap.add_argument("--short", type=int, default=60)
    ap.add_argument("--long", type=int, default=160)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", help="comma-separated precision-backend pairs, e.g. fp32-eager,int8-compile")
    ap.add_argument("--release-memory-too", action="store_true",
                    help="also run each configuration with --release-freed-memory (rows '...-release')")
    ap.add_argument("--grid-sample-too", action="store_true",
                    help="also run each compiled configuration with --warps grid-sample (rows '...-grid')")
    ap.add_argument("--spin-waits-too", action="store_true",
                    help="also run each configuration with GOMP_SPINCOUNT=300000 (rows '...-spin')")
    ap.add_argument("--int8-fp32-activations-too", action="store_true",
                    help="also run int8 with --int8-activations fp32 (rows 'int8-compile-f32act')")
    ap.add_argument("--source", type=Path, default=REPO.parent / "shared/data/train/videos/cockatoo.mkv")
    ap.add_argument("--out", type=Path, default=None, help="folder for e2e_precision.md/json (default: print only)")
    a = ap.parse_args()
    keys = [f"{p}-{b}" for p, b in CONFIGS if not a.only or f"{p}-{b}" in a.only.split(",")]
    keys += ([f"{k}-{RELEASE}" for k in keys] if a.release_memory_too else []) + \
        ([f"{k}-{GRID}" for k in keys if k.endswith("compile")] if a.grid_sample_too else []) + \
        ([f"{k}-{SPIN}" for k in keys] if a.spin_waits_too else []) + \
        ([f"{k}-{F32ACT}" for k in keys if k == "int8-compile"] if a.int8_fp32_activations_too else [])
    w, h = (int(v) for v in a.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        srcs = {}
        for n in (3, a.short, a.long):
            srcs[n] = tmp / f"src{n}.mkv"
            write_source(srcs[n], n, (w, h), a.source)
        first = {k: run_job(srcs[3], tmp / "warm.mkv", k, a.model, a.threads, tmp / "cache")
                 for k in keys}  # first runs: build what later runs load
        walls: dict[str, dict[int, list[float]]] = {k: {a.short: [], a.long: []} for k in keys}
        started = datetime.datetime.now(datetime.timezone.utc)
        load0 = os.getloadavg()[0]
        for _ in range(a.rounds):
            for n in (a.short, a.long):
                for k in keys:
                    walls[k][n].append(run_job(srcs[n], tmp / "out.mkv", k, a.model, a.threads, tmp / "cache"))
        load1 = os.getloadavg()[0]
    rows = {}
    for key, d in walls.items():
        short, long_ = statistics.median(d[a.short]), statistics.median(d[a.long])
        rows[key] = {"first_s": first[key], "job_s": long_, "short_s": short,
                     "s_per_frame": (long_ - short) / (a.long - a.short)}
    base = rows.get("fp32-eager")
    lines = [f"`mstgan upscale` x4 of {a.long} (and {a.short}) {a.size} frames, model {a.model}, {a.threads} threads, "
             f"median of {a.rounds} round(s); {platform.processor() or platform.machine()}; "
             f"{started:%Y-%m-%d %H:%M} UTC, load average {load0:.1f} -> {load1:.1f}.", "",
             "| precision | backend | variant | first run s (3 frames) | job s | job speed-up | s/frame "
             "| per-frame speed-up |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for key, r in rows.items():
        p, b, *variant = key.split("-")
        js = f"{base['job_s'] / r['job_s']:.2f}x" if base else "-"
        fs = f"{base['s_per_frame'] / r['s_per_frame']:.2f}x" if base else "-"
        what = ", ".join(VARIANTS[v] for v in variant) or "as shipped"
        lines.append(f"| {p} | {b} | {what} | {r['first_s']:.1f} | {r['job_s']:.1f} | {js} | {r['s_per_frame']:.3f} "
                     f"| {fs} |")
    text = "\n".join(lines)
    print(text)
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "e2e_precision.md").write_text(text + "\n")
        (a.out / "e2e_precision.json").write_text(json.dumps(
            {"args": {k: str(v) for k, v in vars(a).items()}, "first": first, "walls": walls, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
