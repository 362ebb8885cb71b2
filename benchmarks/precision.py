"""Precision x backend on this machine: quality change against fp32 and speed-up, side by side.

For each configuration (fp32/bf16 eager, fp32/bf16 torch.compile, int8 = PT2E + compile on
the CPU; fp16 and TensorRT where a CUDA GPU is present):

- quality: the validation clips (``../shared/data/val/videos``), downscaled x4 with the
  benchmark degradation (``train.data.downscale``), streamed through ``ModelUpscaler`` exactly as
  ``mstgan upscale`` does; PSNR-Y (crop = scale) of frames ``--skip`` .. ``--skip+--frames-1``
  against the originals, mean over frames and clips, and the change against fp32 eager.
- INT8 calibration: frames 0 .. ``--calib-frames-1`` of the same clips (disjoint from the
  evaluated frames), written as the int8 sidecar (``--sidecar``; default a temporary file).
- speed: frames of a validation clip resized to ``--speed-size`` (LR), batch 1. "s/frame" is
  the median wall time of one steady-state push (one frame encoded, one pair of flows, one
  window reconstructed: what a video pays per frame), over ``--rounds`` pushes taken in turns
  with the other configurations (background load on a shared machine hits all alike); "CPU
  s/frame" the median process CPU time of a push; "start s" the time to the first output of a
  fresh upscaler (building/compiling its stages; Inductor's on-disk cache shortens later runs).
  Speed-up = fp32 eager s/frame / this s/frame.
- ``--baseline CHECKPOINT``: another model's fp32 eager timed in the same rounds (a speed budget
  set by another model, e.g. a larger model's int8 against the shipped model's fp32 eager); its
  row gives "vs baseline" = baseline s/frame / this s/frame for every row.
- ``--int8-fp32-activations-too``: int8 again with ``RuntimeTuning(int8_bf16=False)`` (fp32 between the
  int8 convolutions, as before ``compress.int8.bf16_activations``), side by side.

Writes ``--out``/precision.md and precision.json.

    python benchmarks/precision.py --out benchmarks/results
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from mstgan_cli.compress import int8
from mstgan_cli.metrics import psnr_y
from mstgan_cli.model.checkpoint import load_generator
from mstgan_cli.options import RuntimeTuning
from mstgan_cli.runtime.engine import ModelUpscaler
from mstgan_cli.train.data import downscale, read_video_rgb

REPO = Path(__file__).resolve().parents[1]
VAL = REPO.parent / "shared" / "data" / "val" / "videos"
WEIGHTS = REPO / "weights" / "mstgan-x4.pt"
BEST = REPO / "runs" / "x4" / "best.pt"


def model_file(arg: str | None) -> tuple[Path, str]:
    """The checkpoint to measure: --model, else the shipped weights, else the best checkpoint of
    the x4 run released into a temporary file."""
    if arg:
        return Path(arg), arg
    if WEIGHTS.is_file():
        return WEIGHTS, str(WEIGHTS.relative_to(REPO))
    from mstgan_cli.train.release import release

    out = Path(tempfile.mkdtemp()) / "best-x4.pt"
    release(BEST, out, "benchmark", "runs/x4/best.pt for the precision benchmark")
    step = torch.load(BEST, map_location="cpu", weights_only=True).get("step")
    return out, f"runs/x4/best.pt (step {step})"


def clip_frames(path: Path, start: int, n: int, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """HR frames start..start+n-1 (n, 3, H, W) cropped to multiples of scale, and their LR."""
    hr = torch.from_numpy(read_video_rgb(path, start + n)[start:]).permute(0, 3, 1, 2).float() / 255
    h, w = hr.shape[-2] // scale * scale, hr.shape[-1] // scale * scale
    hr = hr[..., :h, :w].contiguous()
    return hr, downscale(hr, scale)


def configs(cuda: bool) -> list[tuple[str, str, str]]:
    """(device, precision, backend), fp32 eager first (the reference)."""
    out = [("cpu", "fp32", "eager"), ("cpu", "bf16", "eager"), ("cpu", "fp32", "compile"),
           ("cpu", "bf16", "compile"), ("cpu", "int8", "compile")]
    if cuda:
        from mstgan_cli.runtime.backends import tensorrt_available

        out += [("cuda", "fp32", "eager"), ("cuda", "fp16", "eager"), ("cuda", "fp16", "compile")]
        if tensorrt_available():
            out += [("cuda", "fp16", "tensorrt")]
    return out


F32ACT = "fp32 activations"  # the variant of --int8-fp32-activations-too
BASELINE = "baseline"  # the row of --baseline


def tuning(variant: str) -> RuntimeTuning:
    """How a configuration's upscaler runs: freed memory kept, as ``mstgan upscale`` does on the
    CPU, and the variant's switch."""
    return RuntimeTuning(keep_freed_memory=True, int8_bf16=variant != F32ACT)


def interleaved_speed(ups: dict[tuple, ModelUpscaler], frames: list[torch.Tensor], rounds: int) -> dict[tuple, dict]:
    """Steady-state seconds per frame of each upscaler, measured in turns: every round, each
    configuration pushes one new frame (one frame encoded, one pair of flows, one window
    reconstructed) through its own stream, so background load on a shared machine hits all
    configurations alike. Also the time to the first output of a fresh upscaler ("start": the
    build/compile of its stages) and process CPU seconds per push."""
    from mstgan_cli.runtime.window import WindowStream, pad_frames

    streams, out = {}, {}
    for key, up in ups.items():
        t0 = time.perf_counter()
        next(iter(up.process(iter(frames))))  # builds (compiles) the stages for this size
        start = time.perf_counter() - t0
        x = [pad_frames(f[None], up.model.config.size_multiple).to(up.device, torch.float32)
             .contiguous(memory_format=torch.channels_last) for f in frames]
        ws = WindowStream(up.model, 1, parts=up.parts(*x[0].shape[-2:]))
        with torch.inference_mode():
            for f in x[:up.model.config.window]:  # fill the window
                ws.push(f)
        streams[key] = (ws, x)
        out[key] = {"start_s": start, "wall": [], "cpu": []}
    with torch.inference_mode():
        for i in range(rounds):
            for key, (ws, x) in streams.items():
                t0, c0 = time.perf_counter(), time.process_time()
                ws.push(x[i % len(x)])
                if ups[key].device.type == "cuda":
                    torch.cuda.synchronize()
                out[key]["wall"].append(time.perf_counter() - t0)
                out[key]["cpu"].append(time.process_time() - c0)
    return {k: {"start_s": v["start_s"], "s_per_frame": statistics.median(v["wall"]),
                "min_s_per_frame": min(v["wall"]), "cpu_s_per_frame": statistics.median(v["cpu"]),
                "timed_frames": rounds} for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="checkpoint (default: weights/mstgan-x4.pt, else runs/x4/best.pt)")
    ap.add_argument("--clips", nargs="*", type=Path, help="HR validation clips (default: ../shared/data/val/videos/*.mkv)")
    ap.add_argument("--frames", type=int, default=6, help="evaluated frames per clip")
    ap.add_argument("--skip", type=int, default=10, help="first evaluated frame (frames before it calibrate int8)")
    ap.add_argument("--calib-frames", type=int, default=8)
    ap.add_argument("--speed-size", default="480x272", help="LR frame size WxH for the speed columns")
    ap.add_argument("--speed-frames", type=int, default=8, help="distinct frames cycled through")
    ap.add_argument("--rounds", type=int, default=12, help="timed pushes per configuration, interleaved")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", help="comma-separated precision-backend pairs, e.g. fp32-eager,int8-compile")
    ap.add_argument("--int8-fp32-activations-too", action="store_true",
                    help="also int8 with RuntimeTuning(int8_bf16=False) (fp32 between the int8 convolutions)")
    ap.add_argument("--baseline", help="another checkpoint, timed in fp32 eager in the same rounds")
    ap.add_argument("--sidecar", type=Path, help="write the int8 calibration here (e.g. weights/mstgan-x4.int8.json)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    path, label = model_file(args.model)
    base, _ = load_generator(path)
    s = base.config.scale
    clips = args.clips or sorted(VAL.glob("*.mkv"))
    if not clips:
        raise SystemExit(f"no validation clips in {VAL}; pass --clips")
    evals = {c.stem: clip_frames(c, args.skip, args.frames + 4, s) for c in clips}
    # int8 calibration on frames before the evaluated ones
    sidecar = args.sidecar or Path(tempfile.mkdtemp()) / "model.int8.json"
    t0 = time.perf_counter()
    prepared = int8.prepare(copy.deepcopy(base))
    n = int8.calibrate(prepared, base, [list(clip_frames(c, 0, args.calib_frames, s)[1]) for c in clips])
    int8.write_qparams(sidecar, int8.model_hash(base), int8.observed_qparams(prepared),
                       f"{n} frames: frames 0..{args.calib_frames - 1} of {', '.join(c.name for c in clips)}, "
                       f"downscaled x{s} (train.data.downscale)")
    calib_s = time.perf_counter() - t0
    del prepared
    w, h = (int(v) for v in args.speed_size.split("x"))
    src = evals[next(iter(evals))][1]
    speed_frames = [F.interpolate(src[i % len(src)][None], size=(h, w), mode="bicubic", align_corners=False)[0].clamp(0, 1)
                    for i in range(args.speed_frames)]
    wanted = set(args.only.split(",")) if args.only else None
    ups = {}
    for device, precision, backend in configs(torch.cuda.is_available()):
        if wanted and f"{precision}-{backend}" not in wanted and (precision, backend) != ("fp32", "eager"):
            continue
        variants = [""] + ([F32ACT] if precision == "int8" and args.int8_fp32_activations_too else [])
        for variant in variants:
            ups[(device, precision, backend, variant)] = ModelUpscaler(
                copy.deepcopy(base), device=device, precision=precision, backend=backend, int8_qparams=sidecar,
                tuning=tuning(variant))
    if args.baseline:
        other, _ = load_generator(Path(args.baseline))
        ups[("cpu", "fp32", "eager", BASELINE)] = ModelUpscaler(other, device="cpu", precision="fp32",
                                                               backend="eager", tuning=tuning(""))
    speeds = interleaved_speed(ups, speed_frames, args.rounds)
    rows = []
    for (device, precision, backend, variant), up in ups.items():
        psnrs = {}
        for name, (hr, lr) in evals.items():
            sr = torch.stack(list(up.process(iter(lr))))
            ev = slice(0, args.frames)  # the clip's end (mirrored window) is left out
            psnrs[name] = float(psnr_y(sr[ev], hr[ev], crop=s).mean())
        rows.append({"device": device, "precision": precision, "backend": backend, "variant": variant,
                     "psnr_y": statistics.mean(psnrs.values()), "psnr_y_per_clip": psnrs,
                     **speeds[(device, precision, backend, variant)]})
        print(json.dumps(rows[-1]), flush=True)
    ref = rows[0]
    for r in rows:
        r["delta_db"] = r["psnr_y"] - ref["psnr_y"]
        r["speedup"] = ref["s_per_frame"] / r["s_per_frame"]
        r["cpu_speedup"] = ref["cpu_s_per_frame"] / r["cpu_s_per_frame"]
    base_row = next((r for r in rows if r["variant"] == BASELINE), None)
    if base_row:
        for r in rows:
            r["vs_baseline"] = base_row["s_per_frame"] / r["s_per_frame"]
    meta = {"date": datetime.date.today().isoformat(), "machine": f"{platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores, torch {torch.__version__}, {args.threads} threads",
            "model": label, "clips": [c.name for c in clips], "frames": f"{args.skip}..{args.skip + args.frames - 1}",
            "baseline": args.baseline, "speed_size": args.speed_size, "int8_calibration_s": round(calib_s, 1),
            "loadavg": os.getloadavg()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "precision.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    lines = [f"Model {label}; PSNR-Y on {', '.join(meta['clips'])} (frames {meta['frames']}, x{s}, crop {s}); "
             f"speed at {args.speed_size} LR, batch 1, {args.threads} threads; {meta['date']}; "
             f"{meta['machine']}." + (f" Baseline: {args.baseline} (its PSNR-Y on the same frames)." if base_row else ""), "",
             "| device | precision | backend | PSNR-Y dB | Δ vs fp32 dB | s/frame | speed-up | CPU s/frame | start s |"
             + (" vs baseline |" if base_row else ""),
             "|---|---|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if base_row else "")]
    for r in rows:
        backend = f"{r['backend']} ({r['variant']})" if r["variant"] else r["backend"]
        lines.append(f"| {r['device']} | {r['precision']} | {backend} | {r['psnr_y']:.3f} | {r['delta_db']:+.3f} | "
                     f"{r['s_per_frame']:.3f} | {r['speedup']:.2f}x | {r['cpu_s_per_frame']:.3f} | {r['start_s']:.0f} |"
                     + (f" {r['vs_baseline']:.2f}x |" if base_row else ""))
    text = "\n".join(lines)
    (args.out / "precision.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
