"""int8 on a CPU without VNNI: does the compiled encode stage match its eager int8 graph and fp32?

    python benchmarks/int8_saturation.py 0   # full 8-bit activations (what runs use)
    python benchmarks/int8_saturation.py 1   # 7-bit activations (int8.convert(narrow=True))

The tiny random generator, frames and package build of tests/test_compiled_fast.py; prints, per
pyramid level, the largest and mean absolute gap between the compiled package, the eager int8
graph and fp32. Run from the repository root.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import test_compiled_fast as t  # noqa: E402

from mstgan_cli.compress import int8  # noqa: E402
from mstgan_cli.runtime.parts import part_modules  # noqa: E402


def main() -> None:
    narrow = sys.argv[1:] == ["1"]
    model = t._model()
    prepared = int8.prepare(model, ["encode"])
    int8.calibrate(prepared, model, [list(t._frames(4, 32, 48))])
    t.min_max_ranges(prepared)
    graph = int8.convert(prepared, narrow=narrow)["encode"]
    runner = t._build(graph, model, Path(tempfile.mkdtemp()) / "encode-int8.pt2")
    with torch.no_grad():
        x = t._frames(1, 40, 56)
        got, eager, ref = runner(x), graph(x), part_modules(model)["encode"](x)
    for g, e, r in zip(got, eager, ref):
        gaps = {"compiled-eager int8": g - e, "compiled-fp32": g - r, "eager int8-fp32": e - r}
        print("7 bits" if narrow else "8 bits", " | ".join(
            f"{k} max {d.abs().max():.4f} mean {d.abs().mean():.5f}" for k, d in gaps.items()),
            f"| fp32 mean {r.abs().mean():.4f}")


if __name__ == "__main__":
    main()
