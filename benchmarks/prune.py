"""Pruned generator against its parent, side by side: cost, quality and speed in one run.

- cost: parameters and FLOPs per input pixel (streaming, as ``mstgan upscale`` runs it);
- quality: PSNR-Y (crop = scale) on the validation clips, frames ``--skip`` .. ``--skip+--frames-1``
  streamed through ``ModelUpscaler`` in fp32 (the frames ``benchmarks/precision.py`` uses), plus
  the fine-tuning run's own validation windows from ``prune.json`` when given;
- speed: steady-state seconds per frame at ``--speed-size`` (LR), batch 1, for each backend,
  measured in turns with :func:`precision.interleaved_speed` (background load hits both alike).

    python benchmarks/prune.py --pruned weights/mstgan-x4-pruned.pt --summary runs/x4-pruned/prune.json

Writes ``--out``/prune.md and prune.json.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from precision import VAL, clip_frames, interleaved_speed  # noqa: E402

from mstgan_cli.metrics import psnr_y  # noqa: E402
from mstgan_cli.model.checkpoint import load_generator  # noqa: E402
from mstgan_cli.model.generator import count_params  # noqa: E402
from mstgan_cli.model.registry import flops_per_pixel  # noqa: E402
from mstgan_cli.options import RuntimeTuning  # noqa: E402
from mstgan_cli.runtime.engine import ModelUpscaler  # noqa: E402

KEEP = RuntimeTuning(keep_freed_memory=True)  # freed memory kept, as the mstgan command does

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parent", type=Path, default=REPO / "weights" / "mstgan-x4.pt")
    ap.add_argument("--pruned", type=Path, required=True)
    ap.add_argument("--summary", type=Path, help="the pruning run's prune.json (its validation windows)")
    ap.add_argument("--clips", nargs="*", type=Path)
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--skip", type=int, default=10)
    ap.add_argument("--speed-size", default="480x272")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--backends", default="eager,compile")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    models = {"parent": load_generator(args.parent)[0], "pruned": load_generator(args.pruned)[0]}
    s = models["parent"].config.scale
    clips = args.clips or sorted(VAL.glob("*.mkv"))
    evals = {c.stem: clip_frames(c, args.skip, args.frames + 4, s) for c in clips}
    rows = {}
    for name, m in models.items():
        up = ModelUpscaler(copy.deepcopy(m), device="cpu", precision="fp32", backend="eager", tuning=KEEP)
        psnrs = {}
        for clip, (hr, lr) in evals.items():
            sr = torch.stack(list(up.process(iter(lr))))
            psnrs[clip] = float(psnr_y(sr[:args.frames], hr[:args.frames], crop=s).mean())
        rows[name] = {"params": count_params(m), "flops_per_pixel": flops_per_pixel(m.config)["streaming"],
                      "psnr_y": statistics.mean(psnrs.values()), "psnr_y_per_clip": psnrs}
    w, h = (int(v) for v in args.speed_size.split("x"))
    src = next(iter(evals.values()))[1]
    frames = [F.interpolate(src[i % len(src)][None], size=(h, w), mode="bicubic", align_corners=False)[0].clamp(0, 1)
              for i in range(8)]
    ups = {(name, b): ModelUpscaler(copy.deepcopy(m), device="cpu", precision="fp32", backend=b, tuning=KEEP)
           for b in args.backends.split(",") for name, m in models.items()}
    speeds = interleaved_speed(ups, frames, args.rounds)
    for (name, b), v in speeds.items():
        rows[name][b] = v
    if args.summary:
        summary = json.loads(args.summary.read_text())
        if "val" not in summary:
            raise SystemExit(f"{args.summary}: the fine-tuning has not finished")
        rows["parent"]["val_windows_psnr_y"] = summary["parent_val"]["psnr_y"]
        rows["pruned"]["val_windows_psnr_y"] = summary["val"]["psnr_y"]
        rows["pruned"]["before_finetune_val_windows_psnr_y"] = summary["pruned_val_before_finetune"]["psnr_y"]
    meta = {"date": datetime.date.today().isoformat(), "machine": f"{platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores, torch {torch.__version__}, {args.threads} threads",
            "parent": str(args.parent), "pruned": str(args.pruned), "clips": [c.name for c in clips],
            "frames": f"{args.skip}..{args.skip + args.frames - 1}", "speed_size": args.speed_size,
            "loadavg": os.getloadavg()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "prune.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    p, q = rows["parent"], rows["pruned"]
    lines = [f"Parent {args.parent.name} vs pruned {args.pruned.name}; {meta['date']}, {meta['machine']}; "
             f"PSNR-Y on {', '.join(meta['clips'])} frames {meta['frames']} (x{s}, crop {s}); speed at "
             f"{args.speed_size} LR, batch 1, fp32.", "",
             "| | parent | pruned | change |", "|---|---:|---:|---:|",
             f"| parameters | {p['params']:,} | {q['params']:,} | {q['params'] / p['params'] - 1:+.1%} |",
             f"| MFLOP per input pixel | {p['flops_per_pixel'] / 1e6:.3f} | {q['flops_per_pixel'] / 1e6:.3f} | "
             f"{q['flops_per_pixel'] / p['flops_per_pixel'] - 1:+.1%} |",
             f"| PSNR-Y, val frames {meta['frames']} (dB) | {p['psnr_y']:.3f} | {q['psnr_y']:.3f} | "
             f"{q['psnr_y'] - p['psnr_y']:+.3f} dB |"]
    if "val_windows_psnr_y" in q:
        lines.append(f"| PSNR-Y, training's validation windows (dB) | {p['val_windows_psnr_y']:.3f} | "
                     f"{q['val_windows_psnr_y']:.3f} | {q['val_windows_psnr_y'] - p['val_windows_psnr_y']:+.3f} dB |")
    for b in args.backends.split(","):
        lines.append(f"| s/frame, fp32 {b} | {p[b]['s_per_frame']:.3f} | {q[b]['s_per_frame']:.3f} | "
                     f"{p[b]['s_per_frame'] / q[b]['s_per_frame']:.2f}x faster |")
    text = "\n".join(lines)
    (args.out / "prune.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
