"""Does the pipeline hide decode and encode behind the model? Model-only fps vs end-to-end fps.

Requirement: on the CPU, end-to-end ``mstgan upscale --scale 4`` must reach >= 90 % of the
model-only fps on the same clip.

Same run, same weights, same settings (CPU, --precision/--backend as given, batch 1):

- model only: the clip is decoded first (FFmpeg, as the pipeline does) into memory, then its
  frames stream through ``ModelUpscaler`` with nothing else running;
- end to end: ``upscale_file`` (what ``mstgan upscale --scale 4 -o out.mkv`` calls): decoder
  thread + model + encoder thread (x264, default settings) with its queues;
- fps of both over the same steady span: from the output of frame ``--warmup`` to the last
  output produced by a push (the model's end-of-clip flush and the final mux/integrity check are
  left out of both). End to end, an output counts when the encoder has taken it.

    python benchmarks/pipeline_overlap.py [CLIP] --configs fp32-eager,fp32-compile,int8-compile --out benchmarks/results
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from mstgan_cli.job.omp import prefer_passive_waits

prefer_passive_waits()  # as the mstgan command does, before torch loads OpenMP

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from precision import model_file  # noqa: E402

from mstgan_cli.media.decode import VideoDecoder  # noqa: E402
from mstgan_cli.media.probe import probe  # noqa: E402
from mstgan_cli.options import Backend, Precision, RuntimeTuning, UpscaleOptions  # noqa: E402
from mstgan_cli.job.upscale import upscale_file  # noqa: E402
from mstgan_cli.runtime import load_upscaler  # noqa: E402
from mstgan_cli.job.pipeline import to_tensor  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO / "examples" / "cockatoo_320x180.mp4"


def fps(stamps: list[tuple[int, float]], first: int, last: int) -> float:
    """Frames per second between the stamps of output `first` and output `last` (1-based)."""
    t = dict(stamps)
    a = max(k for k in t if k <= first)
    b = max(k for k in t if k <= last)
    return (b - a) / (t[b] - t[a])


def measure(clip: Path, path: Path, label: str, precision: str, backend: str, warmup: int) -> dict:
    info = probe(clip)
    up = load_upscaler(str(path), scale=4, device="cpu", precision=precision, backend=backend,
                       tuning=RuntimeTuning(keep_freed_memory=True))  # as the command does
    r = up.model.config.window // 2
    with VideoDecoder(info, info.video.colour.resolved(info.video.height)) as dec:
        frames = [to_tensor(f.rgb) for f in dec]
    n = len(frames)
    last = n - r  # outputs after this come from the end-of-clip flush
    list(up.process(frames[:2 * r + 2]))  # build/compile the stages before anything is timed

    stamps: list[tuple[int, float]] = []
    t0 = time.perf_counter()
    c0 = time.process_time()
    for i, _ in enumerate(up.process(iter(frames)), 1):
        stamps.append((i, time.perf_counter() - t0))
    model_cpu = time.process_time() - c0
    model_fps = fps(stamps, warmup, last)

    e2e: list[tuple[int, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        opts = UpscaleOptions(output=Path(tmp) / "out.mkv", scale=4, model=str(path), device="cpu",
                              precision=Precision(precision), backend=Backend(backend))
        c0 = time.process_time()
        result = upscale_file(clip, opts, factory=lambda s: up,
                              progress=lambda p: e2e.append((p.frames, p.elapsed)) if p.stage == "upscaling" else None)
        e2e_cpu = time.process_time() - c0
    e2e_fps = fps(e2e, warmup, last)
    return {"clip": clip.name, "frames": n, "size": f"{info.video.width}x{info.video.height}",
            "model": label, "precision": precision, "backend": backend,
            "model_only_fps": model_fps, "end_to_end_fps": e2e_fps, "ratio": e2e_fps / model_fps,
            "model_only_cpu_s": model_cpu, "end_to_end_cpu_s_in_process": e2e_cpu,
            "end_to_end_total_s": result.seconds, "torch_threads": torch.get_num_threads(),
            "meets_90_percent": e2e_fps / model_fps >= 0.9}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clip", nargs="?", type=Path, default=CLIP)
    ap.add_argument("--model", help="checkpoint (default: weights/mstgan-x4.pt, else runs/x4/best.pt)")
    ap.add_argument("--configs", default="fp32-eager,fp32-compile,int8-compile",
                    help="comma-separated precision-backend pairs")
    ap.add_argument("--warmup", type=int, default=3, help="outputs before the timed span")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args()
    path, label = model_file(args.model)
    rows = []
    for cfg in args.configs.split(","):
        precision, backend = cfg.split("-")
        rows.append(measure(args.clip, path, label, precision, backend, args.warmup))
        print(json.dumps(rows[-1]), flush=True)
    meta = {"date": datetime.date.today().isoformat(),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
            "loadavg": os.getloadavg()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pipeline_overlap.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    lines = ["| clip | precision/backend | model only fps | end to end fps | ratio |", "|---|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['clip']} ({r['size']}, {r['frames']} frames, x4) | {r['precision']}/{r['backend']} | "
                     f"{r['model_only_fps']:.3f} | {r['end_to_end_fps']:.3f} | {r['ratio']:.1%} |")
    text = "\n".join(lines)
    (args.out / "pipeline_overlap.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
