"""Move a gated checkpoint's compression-gate reading: `python tools/calibrate_gate.py SRC D OUT --why TEXT`.

Writes OUT, a copy of the run checkpoint SRC (best.pt/last.pt) whose gate logit bias
(``gate.to_logit.bias``) is moved by D (D < 0: every picture reads as less compressed, so the
trunk's FiLM moves less). The change is recorded in OUT's ``calibration`` (source, offset, why),
which `mstgan train --init` and `tools/ship_weights.py` carry on. Choose D on the validation split
(`benchmarks/val_now.py SRC@D --temporal`), never on test.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

KEY = "gate.to_logit.bias"


def calibrate(src: Path, offset: float, out: Path, why: str) -> dict:
    ck = torch.load(src, map_location="cpu", weights_only=True)
    sd = ck.get("state_dict") or ck.get("model")
    if sd is None or KEY not in sd:
        raise SystemExit(f"{src}: not a run checkpoint of a generator with a compression gate (no {KEY})")
    if ck.get("calibration"):
        raise SystemExit(f"{src} is already calibrated ({ck['calibration']}); move the source's bias instead")
    sd[KEY] = sd[KEY] + offset
    cal = {KEY: offset, "source": str(src), "why": why}
    keep = {k: ck[k] for k in ("config", "step", "interpolation") if k in ck}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({**keep, "state_dict": sd, "calibration": cal}, out)
    return cal


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("offset", type=float, help="added to the gate's logit bias (negative: reads less compression)")
    ap.add_argument("out", type=Path)
    ap.add_argument("--why", required=True, help="what on val chose this offset (kept in the checkpoint)")
    a = ap.parse_args()
    print(calibrate(a.src, a.offset, a.out, a.why))


if __name__ == "__main__":
    main()
