"""Quality on the test split: the numbers of the model cards, the README and `mstgan models`.

The test split (``../shared/data/test``: clips and photos nothing trains, selects or calibrates on)
is measured as:

* its videos, as they are (HR = the clip);
* a photo pan per photo: a 960x540 view sliding over the photo by a fixed sub-pixel step per frame
  (30 frames, bicubic resampling of the photo, written as lossless PNG frames), the classic case
  for multi-frame super-resolution;

each under the protocol's degradations (``mstgan eval --protocol x4 --degrade ...``): clean
(antialiased bicubic), h264:23, h264:28 and realworld (blur + noise + H.264), for the given models
next to bicubic, lanczos and the installed peers, with ``--temporal-gain`` (each model also on
windows holding only their centre frame) on the clean and h264:23 inputs.

    .venv/bin/python benchmarks/quality.py --models runs/x4-realworld/best.pt \
        --out benchmarks/results/quality-x4-realworld

writes ``protocol_x4[_DEGRADE].{json,md}`` per degradation and ``summary.md`` into ``--out``.
Stop a training run first: the protocol wants the CPU to itself only for its fps column, but the
numbers come quicker.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mstgan_cli.evaluate.protocol import protocol_markdown, run_protocol  # noqa: E402
from mstgan_cli.evaluate.report import write_json  # noqa: E402
from mstgan_cli.train.data import PAN_STEPS, photo_pan, read_photo_rgb  # noqa: E402

DEGRADES = ("bicubic", "h264:23", "h264:28", "realworld")
GAIN_ON = ("bicubic", "h264:23")
def write_pan(photo: Path, folder: Path, step: tuple[float, float], frames: int = 30,
              size: tuple[int, int] = (960, 540)) -> Path:
    """A pan over `photo` (:func:`mstgan_cli.train.data.photo_pan`) as PNG frames in `folder`
    (made once; reused when complete)."""
    from PIL import Image

    done = folder / ".complete"
    if done.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    arr = photo_pan(read_photo_rgb(photo), step, frames, size)
    for k, a in enumerate(arr):
        Image.fromarray(a).save(folder / f"{k:06d}.png")
    done.write_text(json.dumps({"photo": str(photo), "step": step, "size": [arr.shape[2], arr.shape[1]],
                                "frames": frames}))
    return folder


def test_clips(test: Path, cache: Path) -> list[Path]:
    clips = sorted(p for p in (test / "videos").glob("*") if p.suffix.lower() in {".mkv", ".mp4", ".mov", ".webm"})
    photos = sorted(p for p in (test / "photos").glob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    for i, p in enumerate(photos):
        clips.append(write_pan(p, cache / f"pan_{p.stem}", PAN_STEPS[i % len(PAN_STEPS)]))
    return clips


def summary_table(results: dict[str, dict], models: list[str]) -> str:
    """One row per (degradation, method): mean PSNR-Y gain over bicubic, worst clip's gain,
    LPIPS as a ratio of bicubic's, tOF and tLP, and the temporal gain."""
    lines = ["| input | method | PSNR-Y | gain vs bicubic | worst clip | LPIPS | LPIPS / bicubic | tOF | tLP×100 | temporal gain |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for deg, res in results.items():
        bic = res["mean"]["bicubic"]
        for m, s in res["mean"].items():
            if m.endswith("centre-only"):
                continue
            gains = [c["methods"][m]["psnr_y"] - c["methods"]["bicubic"]["psnr_y"] for c in res["clips"]
                     if m in c["methods"]]
            tg = res.get("temporal_gain", {}).get(m, {}).get("mean")
            lines.append(f"| {deg} | {m} | {s['psnr_y']:.2f} | {s['psnr_y'] - bic['psnr_y']:+.2f} | "
                         f"{min(gains):+.2f} | {s['lpips']:.4f} | {s['lpips'] / bic['lpips']:.2f}x | "
                         f"{s['tof']:.3f} | {100 * s['tlp']:.3f} | " + ("" if tg is None else f"{tg:+.2f}") + " |")
    return "\n".join(lines)


def model_summary(results: dict[str, dict], model: str, source: str) -> dict:
    """What `mstgan models` shows of a model (weights/NAME.test.json): per input, its means, the
    gain over bicubic, LPIPS as a ratio of bicubic's, and the temporal gain where measured."""
    inputs = {}
    for deg, res in results.items():
        if model not in res["mean"]:
            continue
        s, bic = res["mean"][model], res["mean"]["bicubic"]
        row = {k: s[k] for k in ("psnr_y", "ssim_y", "lpips", "tof", "tlp")}
        row.update(gain=s["psnr_y"] - bic["psnr_y"], lpips_ratio=s["lpips"] / bic["lpips"],
                   worst_clip_gain=min(c["methods"][model]["psnr_y"] - c["methods"]["bicubic"]["psnr_y"]
                                       for c in res["clips"] if model in c["methods"]))
        tg = res.get("temporal_gain", {}).get(model, {}).get("mean")
        if tg is not None:
            row["temporal_gain"] = tg
        inputs[deg] = row
    return {"split": "test", "source": source, "clips": len(next(iter(results.values()))["clips"]),
            "inputs": inputs}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", required=True, help="comma-separated: checkpoint paths or shipped model names")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--test", type=Path, default=ROOT.parent / "shared" / "data" / "test")
    ap.add_argument("--cache", type=Path, default=ROOT / ".data" / "test-pans")
    ap.add_argument("--degrade", default=",".join(DEGRADES))
    ap.add_argument("--baselines", default="bicubic,lanczos", help="plus any installed peer named here")
    ap.add_argument("--max-frames", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--weights-summary", action="store_true",
                    help="write weights/NAME.test.json (what `mstgan models` shows) for each shipped model measured")
    ap.add_argument("--reuse", action="store_true",
                    help="take an input's results from --out when its JSON there already holds every method "
                         "(a run stopped part-way goes on; the summary is rebuilt from the saved files)")
    ap.add_argument("--ship-as", action="append", default=[], metavar="CHECKPOINT=NAME",
                    help="with --weights-summary: the numbers of this checkpoint are those of shipped model NAME "
                         "(weights/NAME.test.json), e.g. runs/x4-lossy-gate-cal/best.pt=mstgan-x4-lossy")
    args = ap.parse_args()
    ship_as = dict(s.split("=", 1) for s in args.ship_as)
    torch.set_num_threads(args.threads)
    clips = test_clips(args.test, args.cache)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    methods = models + [b.strip() for b in args.baselines.split(",") if b.strip()]
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for deg in args.degrade.split(","):
        stem = "protocol_x4" + ("" if deg == "bicubic" else "_" + deg.replace(":", ""))
        saved = args.out / f"{stem}.json"
        if args.reuse and saved.is_file():
            res = json.loads(saved.read_text())
            if set(methods) <= set(res.get("mean", {})):
                results[deg] = res
                print(f"{deg}: reused {saved}", flush=True)
                continue
        t0 = time.time()
        res = run_protocol(clips, 4, methods, args.max_frames, device="cpu", precision="fp32",
                           degrade=deg, centre_only=deg in GAIN_ON)
        res["wall_seconds"] = time.time() - t0
        write_json(res, args.out / f"{stem}.json")
        (args.out / f"{stem}.md").write_text(protocol_markdown(res) + "\n")
        results[deg] = res
        print(f"{deg}: {res['wall_seconds']:.0f} s, errors: {res['errors'] or 'none'}", flush=True)
    text = (f"Test split ({len(clips)} clips: {', '.join(c.name for c in clips)}), x4, fp32 eager on the CPU.\n"
            f"Command: {' '.join(sys.argv)}\n\n" + summary_table(results, models) + "\n")
    (args.out / "summary.md").write_text(text)
    print(text)
    if args.weights_summary:
        for m in models:
            f = ROOT / "weights" / f"{ship_as.get(m, m)}.pt"
            if f.is_file():
                source = str(args.out.resolve().relative_to(ROOT)) if args.out.resolve().is_relative_to(ROOT) else str(args.out)
                f.with_suffix(".test.json").write_text(json.dumps(model_summary(results, m, source), indent=1) + "\n")
    return 0 if not any(math.isnan(v) for r in results.values() for s in r["mean"].values()
                        for v in s.values() if isinstance(v, float)) else 1


if __name__ == "__main__":
    raise SystemExit(main())
