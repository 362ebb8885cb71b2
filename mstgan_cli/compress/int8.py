"""Post-training INT8 quantisation of the generator for the CPU (PT2E, X86 Inductor quantizer).

Each stage (:mod:`mstgan_cli.runtime.parts`) is exported with dynamic batch/H/W, annotated by
torchao's ``X86InductorQuantizer`` (convolutions: int8 weights per output channel, symmetric;
activations int8 per tensor, ranges from calibration), calibrated, converted, and later compiled
by Inductor into fused oneDNN int8 convolutions. What the quantizer does not annotate stays in
fp32: flow warping (traced as gathers, see ``model.blocks.gather_warp``), interpolation,
pooling, the attention's mean/sigmoid, and the bicubic skip (excluded on purpose: it carries
the whole picture). A concatenation that is quantised is quantised part by part
(:func:`quantize_cat_parts`), and on CPUs with native bf16 an int8 convolution whose output is
only re-quantised writes that output in bf16 (:func:`bf16_activations`).

The activation scales and zero points ("qparams") are a few kB of JSON, keyed by the model's weights hash:

1. ``<checkpoint>.int8.json`` beside a shipped checkpoint (calibrated on the validation clips with
   ``python -m mstgan_cli.compress.int8 CHECKPOINT CLIP...``);
2. else ``~/.cache/mstgan/int8/<hash>.json`` from an earlier run;
3. else the first frames of the video at hand calibrate it, and the result is cached (2).
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import torch

from ..errors import BackendError
from ..model.generator import MSTGANGenerator

log = logging.getLogger("mstgan_cli")

FORMAT = "mstgan-int8-qparams/1"
CALIBRATION_FRAMES = 8  # frames of the input used when no stored calibration fits


def cache_dir() -> Path:
    """$MSTGAN_CACHE_DIR, else $XDG_CACHE_HOME/mstgan, else ~/.cache/mstgan."""
    env = os.environ.get("MSTGAN_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mstgan"


def model_hash(model: MSTGANGenerator) -> str:
    """sha256 of the config and the weights (as fp32), 16 hex digits."""
    h = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _import_torchao() -> None:
    """Import torchao quietly: on a CPU-only machine it warns that its CUDA kernels do not load,
    and torch that one of its enums is registered the old way."""
    loggers = [logging.getLogger(n) for n in ("torchao", "torch.utils._pytree")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        import torchao  # noqa: F401
    except ImportError as exc:  # pragma: no cover - torchao is a dependency
        raise BackendError("int8 needs torchao (pip install torchao)") from exc
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _quantizer():
    _import_torchao()
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq

    q = xiq.X86InductorQuantizer()
    q.set_global(xiq.get_default_x86_inductor_quantization_config())
    # the bicubic skip carries the whole picture: 8 bits there would band every gradient
    q.set_module_name_qconfig("model.skip", None)
    # the compression gate (when the model has one) reads fine residuals x10 and turns a sigmoid
    # into a scale of every trunk channel: in 8 bits it cost 0.157 dB on a trained gated model
    # (0.026 dB without a gate); it is a few small convolutions at 1/4 resolution, so fp32
    q.set_module_name_qconfig("model.gate", None)
    return q


def prepare(model: MSTGANGenerator, stages: Sequence[str] = ("encode", "flows", "window"),
            gather_warps: bool = True) -> dict[str, torch.fx.GraphModule]:
    """Export each stage (dynamic batch/H/W) and insert observers. The result runs in fp32 and
    records activation ranges as it goes. `gather_warps`: warps traced as gathers (False keeps
    ``grid_sample``, to measure what gathers gain)."""
    from torch.export import export

    _import_torchao()
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    from ..model.blocks import warps_as_gathers
    from ..runtime.parts import dynamic_shapes, sample_inputs, part_modules

    m = model.config.size_multiple
    model = model.float().eval()
    samples = sample_inputs(model, 2, 4 * m, 6 * m)
    dyn = dynamic_shapes(model)
    out = {}
    for name, mod in part_modules(model).items():
        if name not in stages:
            continue
        t0 = time.perf_counter()
        with warps_as_gathers(gather_warps):  # this graph is compiled by Inductor for the CPU
            gm = export(mod, samples[name], dynamic_shapes=dyn[name]).module()
        out[name] = prepare_pt2e(gm, _quantizer())
        log.debug("int8: %s exported and prepared in %.1fs", name, time.perf_counter() - t0)
    return out


def _observers(gm: torch.fx.GraphModule, weights: bool) -> dict[str, torch.nn.Module]:
    """Observer modules of a prepared graph: those watching activations (weights=False) or
    those watching constant weights (weights=True)."""
    out = {}
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        mod = gm.get_submodule(node.target)
        if not hasattr(mod, "min_val"):
            continue
        on_weight = bool(node.args) and getattr(node.args[0], "op", None) == "get_attr"
        if on_weight == weights:
            out[node.target] = mod
    return out


def observed_qparams(prepared: dict[str, torch.fx.GraphModule]) -> dict[str, dict[str, list[float]]]:
    """The calibrated activation quantisation, {stage: {observer: [scale, zero_point]}}. (The X86
    default observes histograms and searches the range that minimises the error: seconds per
    observer, so it is done once and stored.)"""
    out: dict[str, dict[str, list[float]]] = {}
    for stage, gm in prepared.items():
        out[stage] = {}
        for n, o in _observers(gm, False).items():
            scale, zp = o.calculate_qparams()
            out[stage][n] = [float(scale.reshape(-1)[0]), int(zp.reshape(-1)[0])]
    return out


def load_qparams(prepared: dict[str, torch.fx.GraphModule], qparams: dict) -> bool:
    """Give every activation observer its stored (scale, zero point) and let the weight observers
    see their weights, so conversion needs no data. False, with nothing changed, unless the stored observers
    match the graphs exactly."""
    for stage, gm in prepared.items():
        if set(_observers(gm, False)) != set(qparams.get(stage, {})):
            return False
    for stage, gm in prepared.items():
        for n, o in _observers(gm, False).items():
            scale, zp = qparams[stage][n]
            o.calculate_qparams = functools.partial(_stored, float(scale), int(zp))
        weight_obs = _observers(gm, True)
        for node in gm.graph.nodes:  # per-channel weight ranges come from the weights themselves
            if node.op == "call_module" and node.target in weight_obs:
                weight_obs[node.target](_attr(gm, node.args[0].target))
    return True


def _attr(gm: torch.nn.Module, target: str) -> torch.Tensor:
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _stored(scale: float, zero_point: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor([scale], dtype=torch.float32), torch.tensor([zero_point], dtype=torch.int32)


def calibrate(prepared: dict[str, torch.fx.GraphModule], model: MSTGANGenerator,
              clips: Iterable[Sequence[torch.Tensor]]) -> int:
    """Stream each clip (a sequence of (3, H, W) float RGB [0, 1] frames) through the observed
    stages exactly as the runtime would, so every stage sees its real inputs (stages missing from
    `prepared` run eagerly). Returns frames seen."""
    from ..runtime.backends import Parts
    from ..runtime.parts import part_modules
    from ..runtime.window import WindowStream, pad_frames

    mods = {**part_modules(model), **prepared}
    parts = Parts(mods["encode"], mods["flows"], mods["window"], "calibrate")
    m = model.config.size_multiple
    seen = 0
    with torch.no_grad():
        for clip in clips:
            stream = WindowStream(model, batch=1, parts=parts)
            for f in clip:
                stream.push(pad_frames(f[None].float(), m))
                seen += 1
            stream.finish()
    return seen


def convert(prepared: dict[str, torch.fx.GraphModule], bf16: bool = True,
            narrow: bool = False) -> dict[str, torch.fx.GraphModule]:
    """The int8 graphs of calibrated `prepared` ones; `bf16`: let :func:`bf16_activations` apply
    where the CPU computes in bf16 (:func:`bf16_activations_enabled`); `narrow`: activations in
    7 bits (:func:`narrow_activation_ranges`; measured, not used by runs: see there)."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    if narrow:
        for name, gm in prepared.items():
            log.debug("int8: %s: activations in 7 bits: %d", name, narrow_activation_ranges(gm))
    out = {k: convert_pt2e(gm) for k, gm in prepared.items()}
    for name, gm in out.items():
        log.debug("int8: %s: quantised before concatenating: %s", name, ", ".join(quantize_cat_parts(gm)) or "nothing")
    if bf16_activations_enabled(bf16):
        for name, gm in out.items():
            log.debug("int8: %s: bf16 between %s", name, ", ".join(bf16_activations(gm)) or "nothing")
    return out


@functools.cache
def vnni_available() -> bool:
    """Whether this CPU multiplies 8-bit activations by 8-bit weights without saturating:
    VNNI (AVX512-VNNI, AVX-VNNI) or AMX. Without it (AVX2-only x86 such as AMD Zen 2/3, Intel
    before Cascade Lake), oneDNN's int8 convolutions add pairs of u8 x s8 products in 16 bits
    (``vpmaddubsw``), which saturates once activations use all 8 bits: 255 * 128 * 2 > 32767."""
    cpu = getattr(torch, "cpu", None)
    if getattr(cpu, "_is_vnni_supported", lambda: False)() or getattr(cpu, "_is_amx_tile_supported", lambda: False)():
        return True
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return True  # not Linux: no x86 facts to go by (and the int8 path is x86 oneDNN)
    return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})


def narrow_activation_ranges(gm: torch.fx.GraphModule) -> int:
    """Quantise the activations of a calibrated graph to 0..127 instead of 0..255 (the X86
    quantizer's ``reduce_range``), over the same real range: where there is no VNNI
    (:func:`vnni_available`) a pair of products then fits in 16 bits (127 * 128 * 2 <= 32767).
    Measured on an AVX2-only CPU (``benchmarks/int8_saturation.py``, benchmarks/RESULTS.md): on
    random frames through a random model it removes the saturation (a compiled stage 7-20x further
    from fp32 than its graph at full range), but on a trained network and real frames full range
    loses 0.026 dB against fp32 and 7 bits 0.107 dB: the saturated sums are rare there, the lost bit
    is everywhere. So runs keep full range on every CPU; this stays for the measurement. Returns
    the observers changed."""
    changed = 0
    for o in _observers(gm, False).values():
        if getattr(o, "quant_max", None) != 255 or getattr(o, "quant_min", None) != 0:
            continue
        scale, zp = (float(t.reshape(-1)[0]) for t in o.calculate_qparams())
        o.calculate_qparams = functools.partial(_stored, scale * 255 / 127, int(round(zp * 127 / 255)))
        o.quant_max = 127
        changed += 1
    return changed


# parts narrower than this (channels, along the channel dimension) are concatenated in fp32 first
MIN_CAT_CHANNELS = 8


def quantize_cat_parts(gm: torch.fx.GraphModule) -> list[str]:
    """Quantise the parts of a concatenation that only feeds a quantisation, then concatenate
    the 8-bit parts: ``quantize(cat(xs))`` -> ``cat([quantize(x) for x in xs])``. The same bytes
    (quantisation is elementwise). Returns the concatenations changed.

    Inductor writes a concatenation into one buffer, here an fp32 one, which the quantisation
    then reads back in full. With the quantisation on each part, it fuses into the kernel that
    computes the part: the window stage's full-resolution concatenations (the centre with the
    aligned neighbours, and the weighted features into ``fuse``) no longer go through memory in
    fp32. The 8-bit concatenation is a plain copy (Inductor leaves uint8 ones to ATen on the CPU),
    which is slow for parts of a few channels per pixel: parts narrower than
    :data:`MIN_CAT_CHANNELS` along the channel dimension (the flow network's image, image, flow
    inputs) are left as they were.
    """
    aten, qd = torch.ops.aten, torch.ops.quantized_decomposed
    changed = []
    for q in list(gm.graph.nodes):
        if q.op != "call_function" or q.target is not qd.quantize_per_tensor.default:
            continue
        cat = q.args[0]
        if not (isinstance(cat, torch.fx.Node) and cat.target is aten.cat.default and len(cat.users) == 1):
            continue
        parts = list(cat.args[0])
        dim = cat.args[1] if len(cat.args) > 1 else cat.kwargs.get("dim", 0)
        shapes = [p.meta.get("val").shape if isinstance(p, torch.fx.Node) and "val" in p.meta else None
                  for p in parts]
        if any(s is None for s in shapes):
            continue
        if dim % len(shapes[0]) == 1 and min(int(s[1]) for s in shapes) < MIN_CAT_CHANNELS:
            continue
        with gm.graph.inserting_before(q):
            quantised = [gm.graph.call_function(q.target, (p, *q.args[1:]), dict(q.kwargs)) for p in parts]
            joined = gm.graph.call_function(aten.cat.default, (quantised, dim))
        joined.meta.update(q.meta)
        q.replace_all_uses_with(joined)
        gm.graph.erase_node(q)
        gm.graph.erase_node(cat)
        changed.append(cat.name)
    gm.graph.lint()
    gm.recompile()
    return changed


def bf16_activations_enabled(requested: bool = True) -> bool:
    """Whether :func:`bf16_activations` applies: on CPUs where oneDNN computes in bf16
    (AVX512-BF16 or AMX), when `requested` (False measures what it gains:
    ``RuntimeTuning.int8_bf16``, ``benchmarks/precision.py``)."""
    return requested and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def bf16_activations(gm: torch.fx.GraphModule) -> list[str]:
    """Let the int8 convolutions whose output is only re-quantised, through a LeakyReLU or a
    sigmoid, write it in bf16 instead of fp32. Returns the convolutions changed.

    Between two int8 convolutions the activation is computed in fp32, written out, read back
    by the kernel that applies the LeakyReLU and quantises it to 8 bits, and dropped. In bf16
    that round trip moves half the bytes, and oneDNN writes bf16 as fast. It costs little:
    bf16 keeps 8 significant bits and the value is rounded to one of 256 levels right after.
    Convolutions whose output goes anywhere else (warps, attention, the residual adds, the
    flows, the picture) keep fp32. The casts are what ``torch.autocast`` would insert around
    these convolutions, which Inductor fuses into oneDNN's int8 convolution with a bf16 output
    ("int8-mixed-bf16").
    """
    aten, qd = torch.ops.aten, torch.ops.quantized_decomposed
    acts = (aten.leaky_relu.default, aten.leaky_relu_.default, aten.sigmoid.default, aten.sigmoid_.default)
    changed = []
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target is not aten.conv2d.default:
            continue
        src = node.args[0]
        if not (isinstance(src, torch.fx.Node) and src.target is qd.dequantize_per_tensor.default):
            continue  # not an int8 convolution (the bicubic skip)
        users = list(node.users)
        if not users or any(u.target not in acts for u in users):
            continue
        if any(q.target is not qd.quantize_per_tensor.default for u in users for q in u.users):
            continue
        with gm.graph.inserting_before(node):
            # (_to_copy, not .to(): torch.export guards a .to() with an assertion node, a second
            # user of the cast that keeps Inductor from fusing the pattern)
            node.args = tuple(gm.graph.call_function(aten._to_copy.default, (a,), {"dtype": torch.bfloat16})
                              if isinstance(a, torch.fx.Node) else a for a in node.args[:3]) + node.args[3:]
        changed.append(node.name)
    gm.graph.lint()
    gm.recompile()
    return changed


def versions() -> dict[str, str]:
    _import_torchao()
    import torchao

    return {"torch": torch.__version__.split("+")[0], "torchao": torchao.__version__}


def read_qparams(path: Path, digest: str, shipped: bool = False) -> dict | None:
    """The stored ranges in `path` if they belong to these weights and this torch/torchao.

    Ranges are only valid for the torch and torchao that calibrated them (the quantizer's graph
    and observers change between versions). A `shipped` calibration (beside the checkpoint) made
    with other versions is an error that says so, not a silent calibration on the input's first
    frames: the install pins those versions (``constraints.txt``, ``scripts/setup.sh``). One in the
    cache (made here, on an input) is only passed over, with a warning."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    if data.get("format") != FORMAT or data.get("model") != digest:
        return None
    stored, here = data.get("versions") or {}, versions()
    if stored != here:
        def name(v: dict) -> str:
            return f"torch {v.get('torch', '?')} and torchao {v.get('torchao', '?')}"
        if shipped:
            raise BackendError(
                f"int8: {path} was calibrated with {name(stored)}, but this is {name(here)}; install "
                "the versions it needs (constraints.txt: bash scripts/setup.sh, or pip install -c "
                "constraints.txt 'torch==...' 'torchao==...'), or use --precision fp32 or bf16")
        log.warning("int8: the cached calibration %s was made with %s (this is %s); calibrating again",
                    path, name(stored), name(here))
        return None
    return data


def write_qparams(path: Path, digest: str, ranges: dict, source: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"format": FORMAT, "model": digest, "versions": versions(),
            "quantizer": "torchao X86InductorQuantizer (default config)", "calibration": source,
            "stages": ranges}
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)


def _readable(digest: str, sidecar: Path | None) -> Iterator[tuple[dict, Path]]:
    """Each stored calibration that belongs to weights `digest`, in the order to try them:
    `sidecar` (shipped beside the checkpoint), then the cache's."""
    for path, shipped in ([(sidecar, True)] if sidecar else []) + [(_cache_path(digest), False)]:
        data = read_qparams(path, digest, shipped)
        if data:
            yield data, path


def _cache_path(digest: str) -> Path:
    return cache_dir() / "int8" / f"{digest}.json"


def stored_qparams(digest: str, sidecar: Path | None = None) -> dict | None:
    """The stored calibration for weights `digest`: `sidecar`'s if it fits, else the cache's."""
    return next((data for data, _ in _readable(digest, sidecar)), None)


def qparams_digest(data: dict) -> str:
    """A short hash of a calibration's ranges (what a compiled int8 graph depends on)."""
    return hashlib.sha256(json.dumps(data["stages"], sort_keys=True).encode()).hexdigest()[:16]


def quantize(model: MSTGANGenerator, sidecar: Path | None = None,
             calibration_frames: Sequence[torch.Tensor] | None = None, gather_warps: bool = True,
             bf16: bool = True) -> dict[str, torch.fx.GraphModule]:
    """INT8 stages for `model` (fp32 CPU graphs with quantize/dequantize around the convolutions,
    ready for torch.compile). Ranges come from `sidecar`, the cache, or `calibration_frames`
    (in that order; a fresh calibration is cached). Raises BackendError when none is available.
    `gather_warps` and `bf16`: see :func:`prepare` and :func:`convert`."""
    digest = model_hash(model)
    prepared = prepare(model, gather_warps=gather_warps)
    cached = _cache_path(digest)
    for data, path in _readable(digest, sidecar):
        if load_qparams(prepared, data["stages"]):
            log.info("int8: calibration from %s", path)
            return convert(prepared, bf16)
    if not calibration_frames:
        raise BackendError("int8 needs calibration and no frames were given to calibrate on")
    n = calibrate(prepared, model, [calibration_frames])
    log.warning("int8: no stored calibration for these weights; calibrated on the first %d frames "
                "of the input (cached in %s)", n, cached)
    qparams = observed_qparams(prepared)
    write_qparams(cached, digest, qparams, f"first {n} frames of an input video")
    load_qparams(prepared, qparams)  # convert with what was stored (and search only once)
    return convert(prepared, bf16)


def _main(argv: list[str] | None = None) -> None:
    """Calibrate a checkpoint on clips and write its sidecar: CHECKPOINT CLIP... [--frames N]."""
    import argparse

    from ..model.checkpoint import load_generator
    from ..train.data import downscale, read_video_rgb

    ap = argparse.ArgumentParser(prog="python -m mstgan_cli.compress.int8", description=_main.__doc__)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("clips", nargs="+", type=Path, help="high-resolution clips (downscaled by the model's factor)")
    ap.add_argument("--frames", type=int, default=12, help="frames per clip (from the start)")
    ap.add_argument("--skip", type=int, default=0, help="frames to skip at the start of each clip")
    ap.add_argument("--out", type=Path, help="default: CHECKPOINT with .int8.json")
    args = ap.parse_args(argv)
    model, _ = load_generator(args.checkpoint)
    s = model.config.scale
    clips = []
    for c in args.clips:
        hr = torch.from_numpy(read_video_rgb(c, args.skip + args.frames)[args.skip:]).permute(0, 3, 1, 2).float() / 255
        h, w = (hr.shape[-2] // s) * s, (hr.shape[-1] // s) * s
        clips.append(list(downscale(hr[..., :h, :w], s)))
    prepared = prepare(model)
    n = calibrate(prepared, model, clips)
    out = args.out or args.checkpoint.with_suffix(".int8.json")
    names = ", ".join(c.name for c in args.clips)
    write_qparams(out, model_hash(model), observed_qparams(prepared),
                  f"{n} frames: frames {args.skip}..{args.skip + args.frames - 1} of {names}, "
                  f"downscaled x{s} (train.data.downscale)")
    print(f"wrote {out} ({n} calibration frames)")


if __name__ == "__main__":
    _main()
