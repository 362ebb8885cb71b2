"""Blend two run checkpoints of one generator: `python tools/interpolate_weights.py A B ALPHA OUT --why TEXT`.

Writes OUT = (1 - ALPHA) * A + ALPHA * B, parameter by parameter (network interpolation, as in
ESRGAN section 3.4: a fidelity model and its perceptual fine-tune give every point between them
without training). A and B must describe the same generator (same ``config``); B is usually a
fine-tune of A (`mstgan train --init A`), so the two share a basin and the blend stays a working
network. The blend is recorded in OUT's ``interpolation`` (sources, alpha, why), which
`tools/calibrate_gate.py` keeps and `tools/ship_weights.py` prints on the card. Choose ALPHA on the
validation split (`benchmarks/val_now.py OUT --temporal`), never on test.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch


def _weights(ck: dict, path: Path) -> dict:
    sd = ck.get("state_dict") or ck.get("model")
    if sd is None:
        raise SystemExit(f"{path}: not a run checkpoint (no state_dict)")
    if ck.get("calibration") or ck.get("interpolation"):
        raise SystemExit(f"{path} was already changed after training; blend the uncalibrated sources, then calibrate")
    return sd


def interpolate(a: Path, b: Path, alpha: float, out: Path, why: str) -> dict:
    if not 0.0 <= alpha <= 1.0:
        raise SystemExit(f"alpha must be between 0 and 1, not {alpha}")
    ca, cb = (torch.load(p, map_location="cpu", weights_only=True) for p in (a, b))
    if ca.get("config") != cb.get("config"):
        raise SystemExit(f"{a} and {b} hold different generators: {ca.get('config')} against {cb.get('config')}")
    sa, sb = _weights(ca, a), _weights(cb, b)
    if sa.keys() != sb.keys():
        raise SystemExit(f"{a} and {b} hold different tensors: {sorted(set(sa) ^ set(sb))[:5]}")
    sd = {}
    for k, va in sa.items():
        vb = sb[k]
        sd[k] = torch.lerp(va.float(), vb.float(), alpha).to(va.dtype) if va.is_floating_point() else vb
    rec = {"from": str(a), "to": str(b), "alpha": alpha, "why": why}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"config": cb["config"], "step": cb.get("step"), "state_dict": sd, "interpolation": rec}, out)
    return rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path, help="the weights at alpha 0 (e.g. the fidelity run's best.pt)")
    ap.add_argument("b", type=Path, help="the weights at alpha 1 (e.g. its perceptual fine-tune)")
    ap.add_argument("alpha", type=float)
    ap.add_argument("out", type=Path)
    ap.add_argument("--why", required=True, help="what on val chose this alpha (kept in the checkpoint)")
    a = ap.parse_args()
    print(interpolate(a.a, a.b, a.alpha, a.out, a.why))


if __name__ == "__main__":
    main()
