"""Backends and precisions: every backend available here gives eager's frames within the
precision's tolerance; the model parts export with dynamic H/W; unavailable backends fail clearly.

torch.compile and TensorRT builds are slow (a minute or more on a 2-core CPU): those tests are
marked slow (MSTGAN_SLOW=1 runs them) or need CUDA (+ torch-tensorrt) and skip without it.
"""
import importlib.util
import json
import time
from copy import deepcopy
from pathlib import Path

import pytest
import torch
import torch.utils._pytree as pytree
from torch.export import export
from typer.testing import CliRunner

from mstgan_cli.cli import app
from mstgan_cli.errors import BackendError
from mstgan_cli.model.checkpoint import export_generator
from mstgan_cli.model.generator import GeneratorConfig, MSTGANGenerator
from mstgan_cli.compress import int8
from mstgan_cli.runtime.backends import aot, auto_cpu_backend, resolve_backend
from mstgan_cli.runtime.engine import ModelUpscaler
from mstgan_cli.runtime.parts import dynamic_shapes, sample_inputs, part_modules

TINY = dict(feat=8, trunk=8, enc_blocks=1, trunk_blocks=1, detail_blocks=1, flow_levels=3, flow_ch=8)
CUDA = torch.cuda.is_available()
TRT = CUDA and importlib.util.find_spec("torch_tensorrt") is not None
CPU, GPU = torch.device("cpu"), torch.device("cuda")


def _model(scale=2):
    torch.manual_seed(0)
    return MSTGANGenerator(GeneratorConfig(scale=scale, **TINY)).eval()


def _frames(n=7, h=20, w=28):
    g = torch.Generator().manual_seed(1)
    base = torch.rand(3, h + n, w + n, generator=g)
    return [base[:, i:i + h, i:i + w].clone() for i in range(n)]  # a diagonal pan


def _run(model, **kw):
    return torch.stack(list(ModelUpscaler(model, **kw).process(_frames())))


# --- choosing a backend ----------------------------------------------------------------------
def test_auto_backend_rules(monkeypatch):
    assert resolve_backend("auto", CPU, "fp32") == "eager"
    assert resolve_backend("auto", CPU, "int8") == "compile"
    monkeypatch.setattr("mstgan_cli.runtime.backends.tensorrt_available", lambda: True)
    assert resolve_backend("auto", GPU, "fp16") == "tensorrt"
    monkeypatch.setattr("mstgan_cli.runtime.backends.tensorrt_available", lambda: False)
    monkeypatch.setattr("mstgan_cli.runtime.backends.compile_available", lambda d: None)
    assert resolve_backend("auto", GPU, "fp16") == "compile"


def test_auto_compiles_on_the_cpu_only_when_the_job_is_long_enough(monkeypatch):
    monkeypatch.setattr("mstgan_cli.runtime.backends.compile_available", lambda d: None)
    short, long_ = (100, 272, 480), (1000, 272, 480)  # ~13 M and ~130 M LR pixel-frames
    assert auto_cpu_backend("fp32", *short) == "eager" and auto_cpu_backend("fp32", *long_) == "compile"
    assert auto_cpu_backend("fp32", None, 272, 480) == "eager"  # unknown length: no gamble
    up = ModelUpscaler(_model(), device="cpu", precision="fp32")
    up.expect(*long_)
    assert up.backend == "compile"
    pinned = ModelUpscaler(_model(), device="cpu", precision="fp32", backend="eager")
    pinned.expect(*long_)
    assert pinned.backend == "eager"  # an explicit choice is kept
    started = ModelUpscaler(_model(), device="cpu", precision="fp32")
    list(started.process(_frames(3)))
    started.expect(*long_)
    assert started.backend == "eager"  # parts already built: no switch mid-stream
    monkeypatch.setattr("mstgan_cli.runtime.backends.compile_available", lambda d: "no g++")
    assert auto_cpu_backend("fp32", *long_) == "eager"


def test_auto_compiles_short_jobs_once_the_packages_are_built(monkeypatch, tmp_path):
    monkeypatch.setattr("mstgan_cli.runtime.backends.compile_available", lambda d: None)
    monkeypatch.setenv("MSTGAN_CACHE_DIR", str(tmp_path))
    short = (100, 272, 480)
    up = ModelUpscaler(_model(), device="cpu", precision="fp32")
    assert not up.compiled_cached()
    up.expect(*short)
    assert up.backend == "eager"
    for path in aot.package_paths(int8.model_hash(up.model), "fp32").values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"package")
    assert up.compiled_cached()
    assert not ModelUpscaler(_model(), device="cpu", precision="bf16").compiled_cached()  # per precision
    up.expect(*short)
    assert up.backend == "compile"  # loading costs nothing: even short jobs compile
    assert auto_cpu_backend("fp32", None, 272, 480, built=True) == "compile"


def test_package_key_covers_what_the_compiled_code_depends_on(monkeypatch):
    base = aot.package_key("abc", "fp32")
    assert aot.package_key("abc", "fp32") == base
    assert aot.package_key("abd", "fp32") != base  # other weights
    assert aot.package_key("abc", "bf16") != base
    assert aot.package_key("abc", "int8", {"qparams": "1"}) != aot.package_key("abc", "int8", {"qparams": "2"})
    monkeypatch.setattr(aot, "code_digest", lambda: "other code")
    assert aot.package_key("abc", "fp32") != base
    monkeypatch.setattr(torch, "__version__", "0.0.0")
    assert aot.package_key("abc", "fp32") != base
    monkeypatch.undo()
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "DEFAULT")
    assert aot.package_key("abc", "fp32") != base


def test_missing_or_damaged_packages_are_rebuilt_and_good_ones_loaded(monkeypatch, tmp_path):
    """aot_parts builds exactly the parts whose package is missing or does not load (the
    build and the loader are stood in for: a real build takes minutes, see the slow tests)."""
    monkeypatch.setenv("MSTGAN_CACHE_DIR", str(tmp_path))
    built, asked = [], []

    def fake_build(module, args, dynamic_shapes, path, gather_warps=True):
        built.append(path.name.split("-")[0])
        path.write_bytes(b"good")

    def fake_load(path):
        if Path(path).read_bytes() != b"good":
            raise RuntimeError("damaged")
        return lambda *a: Path(path).name

    monkeypatch.setattr(aot, "build_package", fake_build)
    monkeypatch.setattr(aot, "_runner", fake_load)
    model = _model()
    paths = aot.package_paths("d1", "fp32")
    paths["encode"].parent.mkdir(parents=True)
    paths["encode"].write_bytes(b"truncated")
    paths["flows"].write_bytes(b"good")

    def modules():
        asked.append(1)
        return part_modules(model)

    st = aot.aot_parts(model, "fp32", torch.float32, "d1", modules)
    assert sorted(built) == ["encode", "window"] and asked == [1]
    assert st.backend == "compile" and st.window() == paths["window"].name
    built.clear()
    aot.aot_parts(model, "fp32", torch.float32, "d1", modules)
    assert built == [] and asked == [1]  # all cached: the modules are not even made


def test_a_build_removes_the_packages_it_supersedes_and_only_those(monkeypatch, tmp_path):
    monkeypatch.setenv("MSTGAN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(aot, "build_package", lambda module, args, dyn, path, gather_warps=True: path.write_bytes(b"good"))
    monkeypatch.setattr(aot, "_runner", lambda path: (lambda *a: None))
    model = _model()

    def build(digest, precision, code, gather_warps=True):
        monkeypatch.setattr(aot, "code_digest", lambda: code)
        aot.aot_parts(model, precision, torch.float32, digest, lambda: part_modules(model),
                       gather_warps=gather_warps)
        return set(aot.package_paths(digest, precision, gather_warps=gather_warps).values())

    old = build("d1", "fp32", "v1")
    others = build("d2", "fp32", "v1") | build("d1", "bf16", "v1")  # other weights, other precision
    legacy = aot.package_dir() / "window-0123456789abcdef0123.pt2"  # from before facts were kept
    legacy.write_bytes(b"good")
    assert all(p.exists() for p in old | others)
    new = build("d1", "fp32", "v2")  # a new mstgan: the same weights and precision, rebuilt
    assert all(p.exists() for p in new | others)
    assert not any(p.exists() for p in old) and not legacy.exists()
    assert len(list(aot.package_dir().glob("*.json"))) == 3
    assert len(list(aot.package_dir().glob("*.pt2"))) == 9
    grid = build("d1", "fp32", "v2", gather_warps=False)  # a measurement switch: both sets stay
    assert grid != new and all(p.exists() for p in grid | new | others)


def test_int8_sets_with_either_activations_stay_and_replace_older_ones(monkeypatch, tmp_path):
    """int8's activation dtype (RuntimeTuning.int8_bf16) is a measurement switch like the warps: both
    sets stay side by side, and a set built before packages recorded it is superseded."""
    monkeypatch.setenv("MSTGAN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(aot, "build_package", lambda module, args, dyn, path, gather_warps=True: path.write_bytes(b"good"))
    monkeypatch.setattr(aot, "_runner", lambda path: (lambda *a: None))
    model = _model()

    def build(code, activations=None):
        monkeypatch.setattr(aot, "code_digest", lambda: code)
        extra = {"qparams": "q1", **({"activations": activations} if activations else {})}
        aot.aot_parts(model, "int8", torch.float32, "d1", lambda: part_modules(model), extra)
        return set(aot.package_paths("d1", "int8", extra).values())

    older = build("v1")
    fp32 = build("v2", "fp32")
    assert not any(p.exists() for p in older)
    bf16 = build("v2", "bf16")
    assert bf16 != fp32 and all(p.exists() for p in bf16 | fp32)
    newer = build("v3", "bf16")
    assert all(p.exists() for p in newer | fp32) and not any(p.exists() for p in bf16)


@pytest.mark.parametrize("backend,device,precision,message", [
    ("tensorrt", CPU, "fp32", "needs a CUDA GPU"),
    ("eager", CPU, "int8", "runs compiled"),
    ("nope", CPU, "fp32", "unknown backend"),
])
def test_impossible_requests_are_backend_errors(backend, device, precision, message):
    with pytest.raises(BackendError, match=message):
        resolve_backend(backend, device, precision)


def test_missing_torch_tensorrt_is_a_clear_error(monkeypatch):
    monkeypatch.setattr("mstgan_cli.runtime.backends.tensorrt_available", lambda: False)
    with pytest.raises(BackendError, match=r"pip install 'mstgan\[tensorrt\]'"):
        resolve_backend("tensorrt", GPU, "fp16")


def test_cli_tensorrt_without_it_exits_6(tmp_path, clip):
    ckpt = tmp_path / "tiny.pt"
    export_generator(_model(scale=2), ckpt, {})
    result = CliRunner().invoke(app, ["upscale", str(clip("mp4")), "--model", str(ckpt), "--scale", "2",
                                      "--device", "cpu", "--backend", "tensorrt", "-o", str(tmp_path / "o.mp4")])
    assert result.exit_code == 6, result.output
    assert "tensorrt" in result.output.lower()


# --- what TensorRT compiles: each part through torch.export with dynamic batch/H/W ----------
@pytest.mark.parametrize("part", ["encode", "flows", "window"])
def test_parts_export_with_dynamic_hw(part):
    model = _model(scale=4)
    m = model.config.size_multiple
    mod = part_modules(model)[part]
    ep = export(mod, sample_inputs(model, 2, 4 * m, 6 * m)[part], dynamic_shapes=dynamic_shapes(model)[part])
    for n, h, w in [(1, 2 * m, 3 * m), (3, 5 * m, 2 * m)]:
        args = sample_inputs(model, n, h, w)[part]
        with torch.no_grad():
            torch.testing.assert_close(ep.module()(*args), mod(*args))


# --- same frames as eager ---------------------------------------------------------------------
def test_bf16_matches_fp32_within_tolerance():
    model = _model()
    ref = _run(model, device="cpu", precision="fp32")
    got = _run(_model(), device="cpu", precision="bf16")
    assert (got - ref).abs().mean() < 4e-3 and (got - ref).abs().max() < 0.1


def test_int8_calibration_is_stored_and_reloaded(tmp_path):
    """Calibrate -> store the qparams -> a fresh export + prepare takes them -> the converted
    graph (run here as a plain graph; the speed comes from compiling it) stays close to fp32.
    On the encode part alone: exporting all three takes too long for the default suite."""
    from mstgan_cli.compress import int8

    model = _model()
    frames = _frames()
    prepared = int8.prepare(model, ["encode"])
    assert int8.calibrate(prepared, model, [frames[:4]]) == 4
    # (the histogram search of int8.observed_qparams takes a second or more per observer; the
    # test stores plain min/max qparams, which take the same store/load/convert path)
    qparams = {st: {n: _minmax_qparams(o) for n, o in int8._observers(gm, False).items()}
               for st, gm in prepared.items()}
    assert qparams["encode"]
    digest = int8.model_hash(model)
    path = tmp_path / f"{digest}.json"
    int8.write_qparams(path, digest, qparams, "test")
    assert int8.read_qparams(path, "0" * 16) is None  # other weights: not used
    data = int8.read_qparams(path, digest)
    fresh = int8.prepare(model, ["encode"])
    assert not int8.load_qparams(fresh, {"encode": {}})
    assert int8.load_qparams(fresh, data["stages"])
    q = int8.convert(fresh)["encode"]
    x = torch.stack(frames[4:]).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        for got, ref in zip(q(x), model.encode(x)):
            assert (got - ref).abs().mean() < 0.02 * ref.abs().mean() + 1e-3


def test_int8_bf16_activations_only_between_requantised_convolutions(monkeypatch):
    """compress.int8.bf16_activations: only convolutions whose output goes through a LeakyReLU
    or sigmoid into the next quantisation write bf16; what leaves the stage stays fp32, and the
    features stay within a fraction of a quantisation step of the fp32-activation graph's."""
    aten, qd = torch.ops.aten, torch.ops.quantized_decomposed
    model, frames = _model(), _frames()
    prepared = int8.prepare(model, ["encode"])
    int8.calibrate(prepared, model, [frames[:4]])
    qparams = {st: {n: _minmax_qparams(o) for n, o in int8._observers(gm, False).items()}
               for st, gm in prepared.items()}
    assert not int8.bf16_activations_enabled(False)
    graphs = []
    for _ in range(2):
        fresh = int8.prepare(model, ["encode"])
        assert int8.load_qparams(fresh, qparams)
        graphs.append(int8.convert(fresh, bf16=False)["encode"])
    plain, mixed = graphs
    changed = set(int8.bf16_activations(mixed))
    convs = {n.name: n for n in mixed.graph.nodes if n.target is aten.conv2d.default}
    assert changed and changed < set(convs)  # some, not all (the pyramid's outputs stay fp32)
    for name, node in convs.items():
        casts = [a for a in node.args[:3] if isinstance(a, torch.fx.Node) and a.target is aten._to_copy.default]
        if name in changed:
            assert len(casts) == 3 and all(c.kwargs["dtype"] == torch.bfloat16 for c in casts)
            assert all(q.target is qd.quantize_per_tensor.default for u in node.users for q in u.users)
        else:
            assert not casts
    assert not int8.bf16_activations(mixed)  # applied once
    # exported (as the compiled packages are), each cast has the convolution as its only user:
    # a second one (the assertion torch.export adds after a .to()) keeps Inductor from fusing
    # the cast into oneDNN's int8 convolution, which then runs as a bf16 one, several times slower
    ep = export(mixed, (torch.stack(frames[:2]),))
    casts = [n for n in ep.graph.nodes if n.target is aten._to_copy.default]
    assert len(casts) == 3 * len(changed)
    assert all([u.target for u in c.users] == [aten.conv2d.default] for c in casts)
    x = torch.stack(frames[4:]).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        ref, got = plain(x), mixed(x)
    assert all(g.dtype == torch.float32 for g in got)
    assert any(not torch.equal(g, r) for g, r in zip(got, ref))
    for g, r in zip(got, ref):
        assert (g - r).abs().mean() < 0.01 * r.abs().mean() + 1e-4


def test_int8_concatenations_are_quantised_part_by_part(monkeypatch):
    """compress.int8.quantize_cat_parts: in the window stage every concatenation that is
    quantised (the coarse levels' centre + warped neighbour, the centre + aligned neighbours
    into the attention, the weighted features into fuse) becomes a concatenation of quantised
    parts, with the same bytes; the flow network's narrow image, image, flow inputs do not."""
    aten, qd = torch.ops.aten, torch.ops.quantized_decomposed
    model, frames = _model(), _frames()
    prepared = int8.prepare(model, ["flows", "window"])
    int8.calibrate(prepared, model, [frames[:5]])
    copy = {k: deepcopy(gm) for k, gm in prepared.items()}
    parts = int8.convert(prepared, bf16=False)  # one rewrite at a time
    monkeypatch.setattr(int8, "quantize_cat_parts", lambda gm: [])
    whole = int8.convert(copy, bf16=False)

    def quantised_cats(gm):  # concatenations feeding a quantisation, and those of quantised parts
        nodes = list(gm.graph.nodes)
        before = [n for n in nodes if n.target is qd.quantize_per_tensor.default and n.args[0].target is aten.cat.default]
        after = [n for n in nodes if n.target is aten.cat.default
                 and all(a.target is qd.quantize_per_tensor.default for a in n.args[0])]
        return len(before), len(after)
    assert quantised_cats(whole["window"]) == (4, 0)
    assert quantised_cats(parts["window"]) == (0, 4)
    assert quantised_cats(whole["flows"]) == quantised_cats(parts["flows"]) == (3, 0)
    m = model.config.size_multiple
    for stage in ("flows", "window"):
        args = sample_inputs(model, 1, 3 * m, 4 * m)[stage]
        with torch.no_grad():
            for got, ref in zip(pytree.tree_leaves(parts[stage](*args)), pytree.tree_leaves(whole[stage](*args))):
                assert torch.equal(got, ref)


def _minmax_qparams(obs):
    lo, hi = min(float(obs.min_val), 0.0), max(float(obs.max_val), 0.0)
    scale = max((hi - lo) / 255.0, 1e-8)
    return [scale, int(round(-lo / scale))]


@pytest.mark.slow
def test_compile_matches_eager_on_the_cpu_and_builds_once(tmp_path, monkeypatch):
    monkeypatch.setenv("MSTGAN_CACHE_DIR", str(tmp_path))
    ref = _run(_model(), device="cpu", precision="fp32")
    t0 = time.perf_counter()
    got = _run(_model(), device="cpu", precision="fp32", backend="compile")
    build = time.perf_counter() - t0
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-3)
    packages = sorted((tmp_path / "aot").glob("*.pt2"))
    assert len(packages) == 3
    # a new upscaler (as in a new run) loads them: no build, same frames, at other sizes too
    t0 = time.perf_counter()
    again = _run(_model(), device="cpu", precision="fp32", backend="auto")
    assert time.perf_counter() - t0 < build / 10
    assert sorted((tmp_path / "aot").glob("*.pt2")) == packages
    torch.testing.assert_close(again, got)
    other = ModelUpscaler(_model(), device="cpu", precision="fp32", backend="compile")
    frames = _frames(5, 36, 44)
    torch.testing.assert_close(torch.stack(list(other.process(frames))),
                               torch.stack(list(ModelUpscaler(_model(), device="cpu").process(frames))),
                               atol=1e-4, rtol=1e-3)
    # run through ctypes, which releases the GIL (torch's loader would hold it: no overlap)
    st = other.parts(36, 44)
    assert all(isinstance(f, aot.GilFreeRunner) for f in (st.encode, st.flows, st.window))


def test_frames_larger_than_the_compiled_packages_take_are_tiled():
    m = _model().config.size_multiple
    side, core = aot.MAX_SIDE, (aot.MAX_SIDE - 32) // m * m
    compiled = ModelUpscaler(_model(), device="cpu", precision="fp32", backend="compile")
    assert compiled._tile_for(2160, 3840) == 0           # fits: whole frames
    assert compiled._tile_for(100, side + 1) == core     # too wide: tiles that fit with their context
    assert core + 2 * 16 <= side
    assert ModelUpscaler(_model(), device="cpu", precision="fp32", backend="compile",
                         tile=256)._tile_for(100, side + 1) == 256  # a smaller --tile is kept
    assert ModelUpscaler(_model(), device="cpu", precision="fp32", backend="eager")._tile_for(100, side + 1) == 0


@pytest.mark.slow
def test_compiled_packages_tile_larger_frames_and_cap_the_batch(tmp_path, monkeypatch):
    """Packages built for frames of at most MAX_SIDE pixels and batches of MAX_BATCH (made small
    here) get larger frames in tiles and larger batches in parts: the frames of eager with the
    same tiles."""
    monkeypatch.setenv("MSTGAN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(aot, "MAX_SIDE", 48)
    monkeypatch.setattr(aot, "MAX_BATCH", 2)
    frames = _frames(5, 20, 60)
    got = torch.stack(list(ModelUpscaler(_model(), device="cpu", precision="fp32", backend="compile",
                                         batch=3).process(frames)))
    ref = torch.stack(list(ModelUpscaler(_model(), device="cpu", tile=16, batch=3).process(frames)))
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-3)


@pytest.mark.slow
def test_compiled_part_calls_let_other_python_threads_run(tmp_path, monkeypatch):
    import threading

    monkeypatch.setenv("MSTGAN_CACHE_DIR", str(tmp_path))
    torch.manual_seed(0)
    model = MSTGANGenerator(GeneratorConfig(scale=2)).eval()  # full width: calls long enough to see
    up = ModelUpscaler(model, device="cpu", precision="fp32", backend="compile")
    st = up.parts(96, 160)
    args = tuple(t.contiguous(memory_format=torch.channels_last)
                 for t in sample_inputs(up.model, 1, 96, 160)["window"])
    ticks, stop = [0], threading.Event()

    def tick():
        while not stop.is_set():
            ticks[0] += 1
            time.sleep(0.0005)

    t = threading.Thread(target=tick)
    t.start()
    time.sleep(0.05)
    with torch.inference_mode():
        t0, n0 = time.perf_counter(), ticks[0]
        while time.perf_counter() - t0 < 1.0:
            st.window(*args)
        n = ticks[0] - n0
    stop.set()
    t.join()
    assert n > 100, n  # ~2000 if the GIL is free during the calls, a handful if held


@pytest.mark.slow
def test_int8_compiled_matches_eager_on_the_cpu(tmp_path, monkeypatch):
    monkeypatch.setenv("MSTGAN_CACHE_DIR", str(tmp_path))
    ref = _run(_model(), device="cpu", precision="fp32")
    got = _run(_model(), device="cpu", precision="int8")  # calibrates on the first frames
    assert (got - ref).abs().mean() < 0.02
    assert list((tmp_path / "int8").glob("*.json"))  # and caches the calibration
    packages = sorted((tmp_path / "aot").glob("*.pt2"))
    assert len(packages) == 3  # and the compiled graphs
    torch.testing.assert_close(_run(_model(), device="cpu", precision="int8"), got)
    assert sorted((tmp_path / "aot").glob("*.pt2")) == packages  # loaded, not rebuilt


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision,tol", [("fp32", 1e-3), ("fp16", 2e-2)])
def test_compile_matches_eager_on_cuda(precision, tol):
    ref = _run(_model(), device="cuda", precision=precision)
    got = _run(_model(), device="cuda", precision=precision, backend="compile")
    assert (got - ref).abs().max() < tol


@pytest.mark.gpu
@pytest.mark.skipif(not TRT, reason="needs a CUDA GPU and torch-tensorrt")
@pytest.mark.parametrize("precision,tol", [("fp32", 2e-3), ("fp16", 2e-2)])
def test_tensorrt_matches_eager_and_caches_engines(tmp_path, monkeypatch, precision, tol):
    import time

    monkeypatch.setenv("MSTGAN_CACHE_DIR", str(tmp_path))
    ref = _run(_model(), device="cuda", precision=precision)
    t0 = time.perf_counter()
    got = _run(_model(), device="cuda", precision=precision, backend="tensorrt")
    built = time.perf_counter() - t0
    assert (got - ref).abs().max() < tol
    assert len(list((tmp_path / "engines").glob("*.ep"))) == 3
    t0 = time.perf_counter()
    again = _run(_model(), device="cuda", precision=precision, backend="tensorrt")
    assert time.perf_counter() - t0 < built  # loaded from the cache, not rebuilt
    torch.testing.assert_close(again, got)


@pytest.mark.parametrize("name", ["mstgan-x4", "mstgan-x4-pruned", "mstgan-x4-clean", "mstgan-x4-lossy", "mstgan-x2"])
def test_shipped_int8_calibration_fits_the_shipped_graph(name):
    """A change to the network's graph orphans the stored INT8 ranges (users would silently
    recalibrate on their own first frames): the sidecars must be regenerated with it."""
    from pathlib import Path

    from mstgan_cli.compress import int8
    from mstgan_cli.model.checkpoint import load_generator

    path = Path(__file__).resolve().parents[1] / "weights" / f"{name}.pt"
    model, _ = load_generator(path)
    data = int8.read_qparams(path.with_suffix(".int8.json"), int8.model_hash(model))
    assert data is not None, "sidecar missing, or for other weights / torch / torchao versions"
    assert int8.load_qparams(int8.prepare(model), data["stages"]), \
        f"regenerate: python -m mstgan_cli.compress.int8 weights/{name}.pt VAL_CLIPS --frames 8"


def test_int8_keeps_the_compression_gate_in_fp32():
    """A gated model's compression gate (residuals x10, a sigmoid that scales every trunk channel)
    lost 0.157 dB in 8 bits on trained weights; its convolutions keep fp32 weights and inputs while
    the trunk's (and the detail blocks' own attention 'gate') are int8."""
    aten, qd = torch.ops.aten, torch.ops.quantized_decomposed
    torch.manual_seed(0)
    model = MSTGANGenerator(GeneratorConfig(scale=2, gate=4, **TINY)).eval()
    prepared = int8.prepare(model, ["window"])
    int8.calibrate(prepared, model, [_frames()[:5]])
    gm = int8.convert(prepared, bf16=False)["window"]
    kinds = {}
    for n in gm.graph.nodes:
        if n.target is aten.conv2d.default:
            path = list(n.meta["nn_module_stack"].values())[-1][0]
            kinds[path] = (n.args[1].target is qd.dequantize_per_channel.default,
                           n.args[0].target is qd.dequantize_per_tensor.default)
    gate = {k: v for k, v in kinds.items() if k.startswith("model.gate.")}
    assert len(gate) == 6 and all(v == (False, False) for v in gate.values()), gate
    assert kinds["model.trunk.0.conv1"] == (True, True) and kinds["model.detail.0.gate"][0]
