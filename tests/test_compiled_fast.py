"""Fast correctness checks of ``--backend compile`` and ``--precision int8`` that run in CI.

The full builds (three stages, the slow tests of test_backends.py) take minutes on 2 cores. Here
one stage, the feature encoder of a tiny generator, goes through the same steps as a real run:
exported at dynamic shapes, compiled by AOTInductor with freezing into a package, loaded through
the GIL-free C entry points, and called at another batch and frame size than it was traced at;
for int8 after the real PT2E prepare / calibrate / convert (part-by-part concatenations, bf16
activations where the CPU has them). Each test builds one package: well under a minute on 2 idle
cores (measured: see the closing note of issue 19).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mstgan_cli.compress import int8
from mstgan_cli.model.generator import GeneratorConfig, MSTGANGenerator
from mstgan_cli.runtime.backends import aot
from mstgan_cli.runtime.parts import dynamic_shapes, sample_inputs, part_modules

TINY = dict(feat=8, trunk=8, enc_blocks=1, trunk_blocks=1, detail_blocks=1, flow_levels=3, flow_ch=8)


def _model() -> MSTGANGenerator:
    torch.manual_seed(0)
    return MSTGANGenerator(GeneratorConfig(scale=2, **TINY)).eval()


def _frames(n: int, h: int, w: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(n * 1000 + h + w)
    return torch.rand(n, 3, h, w, generator=g).contiguous(memory_format=torch.channels_last)


def min_max_ranges(prepared: dict) -> None:
    """Give calibrated observers plain min/max ranges (the histogram search takes seconds each)."""
    for gm in prepared.values():
        for o in int8._observers(gm, False).values():
            lo, hi = min(float(o.min_val), 0.0), max(float(o.max_val), 0.0)
            scale = max(hi - lo, 1e-8) / 255
            o.calculate_qparams = lambda s=scale, z=int(round(-lo / scale)): int8._stored(s, z)


def _build(module: torch.nn.Module, model: MSTGANGenerator, path: Path):
    """The encode stage as a package, as aot.aot_parts builds it (traced at batch 2, 32x48,
    dynamic up to batch 4 and 64 pixels a side), and loaded as a run loads it."""
    samples = {k: tuple(t.contiguous(memory_format=torch.channels_last) for t in v)
               for k, v in sample_inputs(model, 2, 32, 48).items()}
    aot.build_package(module, samples["encode"], dynamic_shapes(model, 4, 64)["encode"], path)
    return aot._runner(path)


def _assert_close_pyramids(got, ref, atol: float, rtol: float) -> None:
    assert len(got) == len(ref) == 3
    for g, r in zip(got, ref):
        assert g.shape == r.shape
        torch.testing.assert_close(g, r, atol=atol, rtol=rtol)


def test_compile_backend_package_matches_eager(tmp_path: Path) -> None:
    model = _model()
    encode = part_modules(model)["encode"]
    runner = _build(encode, model, tmp_path / "encode.pt2")
    assert isinstance(runner, aot.GilFreeRunner)  # the GIL is released while it computes
    with torch.no_grad():
        for n, h, w in ((1, 40, 56), (3, 24, 64)):  # neither the traced batch nor the traced size
            x = _frames(n, h, w)
            _assert_close_pyramids(runner(x), encode(x), atol=1e-4, rtol=1e-3)


@pytest.mark.skipif(not int8.vnni_available(),
                    reason="no VNNI: oneDNN adds u8 x s8 products pairwise in 16 bits, which saturates on "
                           "these random frames (benchmarks/int8_saturation.py; RESULTS.md, 2026-12-07)")
def test_int8_package_matches_its_graph_and_stays_near_fp32(tmp_path: Path) -> None:
    """As a run builds it: bf16 between the int8 convolutions where the CPU computes in bf16."""
    model = _model()
    prepared = int8.prepare(model, ["encode"])
    calibration = [list(_frames(4, 32, 48))]
    assert int8.calibrate(prepared, model, calibration) == 4
    min_max_ranges(prepared)
    graph = int8.convert(prepared)["encode"]
    runner = _build(graph, model, tmp_path / "encode-int8.pt2")
    fp32 = part_modules(model)["encode"]
    with torch.no_grad():
        for n, h, w in ((1, 40, 56), (3, 24, 64)):
            x = _frames(n, h, w)
            got, eager_int8, ref = runner(x), graph(x), fp32(x)
            # the compiled int8 graph computes what the converted graph says (one quantisation
            # step of slack: fused kernels round in another order) ...
            for g, e in zip(got, eager_int8):
                step = (e.abs().max() / 127).item()
                assert (g - e).abs().max() <= 2 * step + 1e-4
                assert (g - e).abs().mean() <= 0.1 * step
            # ... and stays near fp32
            for g, r in zip(got, ref):
                assert (g - r).abs().mean() < 0.03 * r.abs().mean() + 1e-3


def test_narrowed_activations_take_7_bits_over_the_same_range() -> None:
    """int8.convert(narrow=True), the measured alternative for CPUs without VNNI: activations
    quantised to 0..127 over the same calibrated range, still near fp32."""
    model = _model()
    prepared = int8.prepare(model, ["encode"])
    int8.calibrate(prepared, model, [list(_frames(4, 32, 48))])
    before = {n: [float(t.reshape(-1)[0]) for t in o.calculate_qparams()]
              for n, o in int8._observers(prepared["encode"], False).items()}
    graph = int8.convert(prepared, narrow=True)["encode"]
    qd = torch.ops.quantized_decomposed
    quants = [n for n in graph.graph.nodes if n.target is qd.quantize_per_tensor.default]
    assert quants and all(n.args[3:5] == (0, 127) for n in quants)
    # every activation keeps its calibrated real range: scale x 255/127, zero point x 127/255
    wanted = sorted((s0 * 255 / 127, z0 * 127 / 255) for s0, z0 in before.values())
    got = sorted((float(n.args[1]), int(n.args[2])) for n in quants)
    assert len(set(got)) == len(set((round(a, 9), round(b)) for a, b in wanted)) > 0
    for scale, zp in got:
        assert any(scale == pytest.approx(a) and abs(zp - b) <= 0.5 for a, b in wanted)
    with torch.no_grad():
        x = _frames(1, 40, 56)
        for g, r in zip(graph(x), part_modules(model)["encode"](x)):
            assert (g - r).abs().mean() < 0.03 * r.abs().mean() + 1e-3
