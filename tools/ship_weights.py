"""Ship trained runs as weights/ with model cards: `python tools/ship_weights.py [--frames N] NAME...`.

NAME is one of the releases below; each is measured with the benchmark protocol on the
validation clips (../shared/data/val/videos) and gets weights/NAME.pt, NAME.md, NAME.protocol.json.
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
from pathlib import Path

import torch

from mstgan_cli.train.release import ship

ROOT = Path(__file__).resolve().parents[1]
# mstgan-x4-gan (runs/x4-gan4, stage 2) was retired on 2026-12-07 (mstgan_cli.model.registry.RETIRED):
# a perceptual model ships only if its test-split LPIPS is at most 0.75x the fidelity model's.
RELEASES = {
    "mstgan-x4": dict(run="runs/x4", kind="fidelity", methods=["bicubic", "lanczos", "realesr-animevideov3-x4"],
                      description="MST-GAN x4, fidelity model (stage 1: Charbonnier L1 + flow regularisation)."),
    "mstgan-x2": dict(run="runs/x2", kind="fidelity", methods=["bicubic", "lanczos"], parents=[("runs/x4", 1000)],
                      description="MST-GAN x2, fidelity model (stage 1), started from the x4 weights."),
    "mstgan-x4-pruned": dict(run="runs/x4-pruned", kind="fidelity", parents=[("runs/x4", 3000)],
                             methods=["mstgan-x4", "bicubic", "lanczos", "realesr-animevideov3-x4"],
                             description="MST-GAN x4, fidelity model, structurally pruned from mstgan-x4 "
                                         "(`mstgan prune mstgan-x4 --out runs/x4-pruned`: inner channels of "
                                         "the residual blocks by filter importance, trunk to 24 of 48, "
                                         "encoder to 24 of 32, detail to 24 of 48), then fine-tuned "
                                         "(stage 1 losses). Details in runs/x4-pruned/prune.json."),
    "mstgan-x4-clean": dict(run="runs/x4-align", kind="fidelity", parents=[("runs/x4-clean", 5000)],
                            methods=["mstgan-x4", "bicubic", "lanczos"],
                            description="MST-GAN x4, fidelity model for clean sources (masters, lossless or "
                                        "high-bitrate files) and the bicubic protocol: stage 1 from scratch on "
                                        "today's training split, clean bicubic downscaling, then half the photo "
                                        "windows aligned with the virtual camera's true motion "
                                        "(`--true-flow 0.5`), which taught the fusion to use its neighbours."),
    # second version (2026-12-07): the first (runs/x4-align-h264 step 2,000, the last parent) plus a
    # compression gate, trained in runs/x4-lossy-gate and read 2 logits lower (runs/x4-lossy-gate-cal)
    "mstgan-x4-lossy": dict(run="runs/x4-lossy-gate", checkpoint="runs/x4-lossy-gate-cal/best.pt", kind="fidelity",
                            parents=[("runs/x4-clean", 5000), ("runs/x4-align", 9500), ("runs/x4-align-h264", 2000)],
                            methods=["mstgan-x4-clean", "bicubic", "lanczos"],
                            description="MST-GAN x4, fidelity model for the video people have: compressed "
                                        "(H.264 and the like) sources. The x4 default. mstgan-x4-clean fine-tuned "
                                        "on half clean bicubic, half bicubic + H.264 (x264, CRF 16-34) windows, "
                                        "half the photo windows aligned with the true motion; then (second "
                                        "version, 2026-12-07) a compression gate: 8.4k parameters that estimate "
                                        "how compressed the centre frame is around each pixel and scale and "
                                        "shift the trunk's features by it, trained 2,000 steps with that "
                                        "estimate supervised by each window's known compression (half of the "
                                        "clean windows through 4:2:0, so chroma format alone does not read as "
                                        "compression), then read 2 logits lower (chosen on val: less flicker). "
                                        "Against the first version on the test split, same decode: CRF 23 "
                                        "+1.04 dB over bicubic (+1.01), tOF 0.421 (0.425), clean +2.31 (+2.35), "
                                        "8 % slower in fp32 eager. Not trained on noise, blur or other codecs."),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("names", nargs="+", choices=sorted(RELEASES))
    ap.add_argument("--frames", type=int, default=None, help="first N frames of each clip (default: all)")
    ap.add_argument("--val", type=Path, default=ROOT.parent / "shared/data/val/videos")
    ap.add_argument("--remeasure", action="store_true",
                    help="measure the weights already in weights/ again (new card) instead of releasing "
                         "the run's best.pt")
    ap.add_argument("--card-only", action="store_true",
                    help="release the run's best.pt again with the stored protocol.json (no measuring): a fresh card")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    clips = sorted(args.val.glob("*.mkv"))
    for name in args.names:
        r = RELEASES[name]
        run = ROOT / r["run"]
        # the runs it was started from, oldest first, each left at that step: their history is this model's too
        runs: list = [(ROOT / parent, step) for parent, step in r.get("parents", [])] + [run]
        # the run's best.pt, or a checkpoint made from it after training (tools/calibrate_gate.py)
        source, protocol = ROOT / r.get("checkpoint", f"{r['run']}/best.pt"), None
        if args.card_only:  # the stored measurements, a fresh card and training history
            protocol = json.loads((ROOT / "weights" / f"{name}.protocol.json").read_text())
        if args.remeasure:  # a copy: ship() rewrites weights/NAME.pt
            source = Path(tempfile.mkdtemp()) / f"{name}.pt"
            shutil.copy(ROOT / "weights" / f"{name}.pt", source)
        meta = ship(source, name, r["kind"], r["description"], runs=runs, clips=clips,
                    weights=ROOT / "weights", max_frames=args.frames, methods=r["methods"], protocol=protocol)
        print(name, meta["metrics"]["protocol"]["mean"])


if __name__ == "__main__":
    main()
