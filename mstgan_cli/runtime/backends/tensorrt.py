"""TensorRT through torch-tensorrt (the ``[tensorrt]`` extra). The only module importing it.

Each part is exported with dynamic batch/H/W (``parts.dynamic_shapes``) and compiled by
``torch_tensorrt.dynamo.compile`` for a shape range; the result is saved as an ExportedProgram in
the engine cache, so a later run with the same weights, range, precision, GPU and TensorRT
version loads it instead of building (building takes minutes, loading seconds):

    ~/.cache/mstgan/engines/<part>-<key>.ep      key = sha256 of the things above

Ranges: batch 1..max_batch, H/W from the network's size multiple up to the frame's padded size
rounded up to a multiple of 256 (videos of similar size share engines); opt = the frame's size.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import torch

from ...errors import BackendError
from ...model.generator import MSTGANGenerator
from . import Parts

log = logging.getLogger("mstgan_cli")

BUCKET = 256
TRT_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def shape_range(model: MSTGANGenerator, batch: int, h: int, w: int) -> dict[str, tuple[int, int, int]]:
    """min/opt/max of the batch and of the (padded) height and width an engine accepts."""
    m = model.config.size_multiple

    def up(x: int) -> int:
        return max(BUCKET, -(-x // BUCKET) * BUCKET)

    return {"n": (1, batch, batch), "h": (m, h, up(h)), "w": (m, w, up(w))}


def engine_key(model_digest: str, part: str, rng: dict, precision: str, device: torch.device) -> str:
    import tensorrt
    import torch_tensorrt

    ident = {"model": model_digest, "part": part, "range": rng, "precision": precision,
             "gpu": torch.cuda.get_device_name(device), "capability": torch.cuda.get_device_capability(device),
             "tensorrt": tensorrt.__version__, "torch_tensorrt": torch_tensorrt.__version__,
             "torch": torch.__version__}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:20]


def _inputs(stage_args: tuple[torch.Tensor, ...], rng: dict) -> list:
    """torch_tensorrt.Input specs, one per flat part argument. The samples have the opt shape,
    so a pyramid level's divisor (1, 2, 4) is opt height / sample height."""
    import torch_tensorrt

    specs = []
    for a in stage_args:
        c, h = a.shape[1], a.shape[2]
        div = max(1, rng["h"][1] // h)

        def dims(i: int) -> tuple[int, int, int, int]:
            return (rng["n"][i], c, max(1, rng["h"][i] // div), max(1, rng["w"][i] // div))

        specs.append(torch_tensorrt.Input(min_shape=dims(0), opt_shape=dims(1), max_shape=dims(2), dtype=a.dtype))
    return specs


def tensorrt_parts(model: MSTGANGenerator, precision: str, device: torch.device, batch: int,
                    h: int, w: int, cache: Path | None = None) -> Parts:
    """TensorRT engines for the three parts of `model` (already on `device` in the precision's
    dtype), valid for frames up to the range of (h, w) and `batch` windows. Cached on disk."""
    try:
        import torch_tensorrt
    except ImportError as exc:
        raise BackendError("--backend tensorrt: torch-tensorrt is not installed "
                           "(pip install 'mstgan[tensorrt]')") from exc
    from ...compress.int8 import cache_dir, model_hash
    from ..parts import dynamic_shapes, sample_inputs, part_modules

    dtype = TRT_DTYPES[precision]
    cache = cache or cache_dir() / "engines"
    cache.mkdir(parents=True, exist_ok=True)
    digest = model_hash(model)
    rng = shape_range(model, batch, h, w)
    samples = sample_inputs(model, batch, h, w, dtype=dtype, device=device)
    dyn = dynamic_shapes(model, max_batch=max(2, batch), max_side=max(rng["h"][2], rng["w"][2]))
    out = {}
    for name, mod in part_modules(model).items():
        path = cache / f"{name}-{engine_key(digest, name, rng, precision, device)}.ep"
        if path.is_file():
            try:
                out[name] = torch.export.load(str(path)).module()
                log.info("tensorrt: %s engine from %s", name, path)
                continue
            except Exception as exc:  # noqa: BLE001 - a stale or broken cache entry is rebuilt
                log.warning("tensorrt: cannot load %s (%s); rebuilding", path, exc)
        t0 = time.perf_counter()
        args = samples[name]  # flat tensors for every part
        ep = torch.export.export(mod, args, dynamic_shapes=dyn[name])
        trt = torch_tensorrt.dynamo.compile(
            ep, arg_inputs=_inputs(args, rng),
            enabled_precisions={dtype}, device=device, min_block_size=1,
            truncate_double=True)
        tmp = path.with_name(f".{path.name}.tmp")
        torch_tensorrt.save(trt, str(tmp), output_format="exported_program", arg_inputs=list(args))
        tmp.replace(path)
        out[name] = torch.export.load(str(path)).module()
        log.info("tensorrt: built the %s engine in %.0fs (%s)", name, time.perf_counter() - t0, path)
    return Parts(out["encode"], out["flows"], out["window"], "tensorrt")
