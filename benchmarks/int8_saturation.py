"""int8 on a CPU without VNNI: does the compiled encode stage match its eager int8 graph and fp32?

    python benchmarks/int8_saturation.py 0   # full 8-bit activations (as before 2026-12-07)
    python benchmarks/int8_saturation.py 1   # 7-bit activations (int8.convert(narrow=True))

The tiny random generator and frames of tests/test_compiled_fast.py; prints, per pyramid level,
the largest and mean absolute gap between the compiled package, the eager int8 graph and fp32.
Run from the repository root.
"""
import sys, torch, tempfile
from pathlib import Path
sys.path.insert(0, "tests")
import test_compiled_fast as t
from mstgan_cli.compress import int8
from mstgan_cli.runtime.parts import part_modules
narrow = sys.argv[1] == "1"
model = t._model()
prepared = int8.prepare(model, ["encode"])
int8.calibrate(prepared, model, [list(t._frames(4, 32, 48))])
for gm in prepared.values():
    for o in int8._observers(gm, False).values():
        lo, hi = min(float(o.min_val), 0.0), max(float(o.max_val), 0.0)
        scale = max(hi - lo, 1e-8) / 255
        o.calculate_qparams = lambda s=scale, z=int(round(-lo / scale)): int8._stored(s, z)
graph = int8.convert(prepared, narrow=narrow)["encode"]
runner = t._build(graph, model, Path(tempfile.mkdtemp()) / "e.pt2")
fp32 = part_modules(model)["encode"]
with torch.no_grad():
    x = t._frames(1, 40, 56)
    got, e, ref = runner(x), graph(x), fp32(x)
    for g, ei, r in zip(got, e, ref):
        print("narrow" if narrow else "full", "compiled-eagerint8 max %.4f mean %.5f | compiled-fp32 max %.4f mean %.5f | eagerint8-fp32 max %.4f mean %.5f | ref mean %.4f" % (
            (g-ei).abs().max(), (g-ei).abs().mean(), (g-r).abs().max(), (g-r).abs().mean(), (ei-r).abs().max(), (ei-r).abs().mean(), r.abs().mean()))
