"""``--backend compile`` on the CPU: each part compiled ahead of time by AOTInductor, once, and kept.

``torch.compile`` rebuilds its graphs in every new process: measured on the 2-core CPU, 45-70 s
before the first frame even when Inductor's on-disk cache is warm (Dynamo tracing, freezing,
the int8 passes). Here each part (:mod:`..parts`) is exported once with dynamic batch/H/W,
compiled by Inductor with freezing (weights become constants: pre-packed oneDNN weights, fused
int8 convolutions) into a shared library, and packaged on disk:

    ~/.cache/mstgan/aot/<part>-<key>.pt2     key = sha256 of the weights, precision, int8
                                              calibration, model code, torch/torchao version
                                              and CPU ISA
    ~/.cache/mstgan/aot/<key>.json            those facts, readable

One package serves every frame size up to MAX_SIDE low-resolution pixels a side (the upscaler
tiles larger frames), so only the very first run of a model at a precision builds (2-3 minutes
on 2 cores); every later run loads the three packages in milliseconds. A package that does not
load (another torch, a damaged file) is rebuilt, and a build deletes the packages it supersedes
(same weights and precision, built for other code or another torch). Packages are called
through their C entry points (:class:`GilFreeRunner`), so decoding and encoding threads keep
running while a part computes.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn

from ...model.blocks import warps_as_gathers
from ...model.generator import MSTGANGenerator
from ..parts import MAX_BATCH, MAX_SIDE  # what a package accepts (ModelUpscaler tiles larger frames)
from . import Parts

log = logging.getLogger("mstgan_cli")

FORMAT = "mstgan-aot/1"
PARTS = ("encode", "flows", "window")
# the shapes the parts are traced at: a typical frame (batch 2: a batch of 1 would be taken
# for a constant)
TRACE_BATCH, TRACE_H, TRACE_W = 2, 272, 480


def package_dir() -> Path:
    from ...compress.int8 import cache_dir

    return cache_dir() / "aot"


@functools.cache
def code_digest() -> str:
    """A hash of the code that defines the traced graphs (the model, the part wrappers and the
    int8 conversion): a package built by another version of mstgan is not reused."""
    from ...compress import int8
    from ...model import generator
    from .. import parts

    h = hashlib.sha256()
    for path in sorted(Path(generator.__file__).parent.glob("*.py")) + [Path(parts.__file__), Path(int8.__file__)]:
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def package_facts(digest: str, precision: str, extra: dict | None = None, gather_warps: bool = True) -> dict:
    """What a package depends on: the weights, the precision (and for int8 the calibration),
    the model's code, the shapes it takes, how warps are traced (`gather_warps`, a measurement
    switch), the torch build and the CPU's instruction set."""
    return {"format": FORMAT, "model": digest, "precision": precision, "code": code_digest(),
            "max_batch": MAX_BATCH, "max_side": MAX_SIDE, "warps": "gather" if gather_warps else "grid_sample",
            "torch": torch.__version__, "isa": torch.backends.cpu.get_cpu_capability(),
            "machine": platform.machine(), **(extra or {})}


def _hash(facts: dict) -> str:
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:20]


def package_key(digest: str, precision: str, extra: dict | None = None, gather_warps: bool = True) -> str:
    """The facts of :func:`package_facts`, hashed: the name of the packages."""
    return _hash(package_facts(digest, precision, extra, gather_warps))


def package_paths(digest: str, precision: str, extra: dict | None = None,
                  gather_warps: bool = True) -> dict[str, Path]:
    key = package_key(digest, precision, extra, gather_warps)
    return {name: package_dir() / f"{name}-{key}.pt2" for name in PARTS}


def _key_of(path: Path) -> str:
    return path.stem.rsplit("-", 1)[-1]


# the facts that make two package sets serve the same job: one supersedes the other when they
# differ in anything else (code, torch, int8 calibration). The warps setting and int8's
# activations are measurement switches (RuntimeTuning.gather_warps and .int8_bf16, the hidden
# upscale flags --warps and --int8-activations): a benchmark keeps both sets side by side. A set that predates one of these facts counts as the same job.
SAME_JOB = ("model", "precision", "warps", "activations")


def prune_superseded(mine: dict) -> list[Path]:
    """Delete the packages that those with the facts `mine` (:func:`package_facts`) replace, and
    return them: those of the same weights at the same precision (and warps setting) built for
    anything else (an earlier mstgan's code, another torch, another int8 calibration), and those
    whose facts are unknown (built before packages recorded them). Packages of other models or
    precisions stay. Each set of packages records its facts in ``<key>.json`` beside them."""
    keep = _hash(mine)
    folder = package_dir()
    superseded: set[str] = set()
    for facts_file in folder.glob("*.json"):
        try:
            facts = json.loads(facts_file.read_text())
        except (OSError, ValueError):
            continue
        if facts_file.stem != keep and all(facts.get(k, mine.get(k)) == mine.get(k) for k in SAME_JOB):
            superseded.add(facts_file.stem)
    removed = []
    for path in sorted(folder.glob("*.pt2")):
        key = _key_of(path)
        if not path.name.startswith(".") and key != keep and (key in superseded or not (folder / f"{key}.json").exists()):
            path.unlink(missing_ok=True)
            removed.append(path)
    for key in superseded:
        (folder / f"{key}.json").unlink(missing_ok=True)
    if removed:
        log.info("compile: removed %d superseded package(s) from %s", len(removed), folder)
    return removed


def _flat_dynamic_shapes(dyn: dict, module: nn.Module, name: str) -> object:
    """An exported-then-converted graph (int8) takes the window part's tensors as flat
    arguments; the part modules take (centre, *rest)."""
    if name == "window" and isinstance(module, torch.fx.GraphModule):
        centre, rest = dyn[name]
        return (centre, *rest)
    return dyn[name]


class GilFreeRunner:
    """Runs a CPU AOTInductor package through its C entry points, called by ctypes, which lets go
    of Python's GIL for the call. (torch's own loader holds the GIL for the whole call,
    pytorch/pytorch#197516, so the decoder and encoder threads stall while a part runs.)
    Called with flat tensors, returns what the exported module returned (a tensor or a tuple)."""

    def __init__(self, path: Path) -> None:
        import ctypes
        import shutil
        import tempfile
        import zipfile

        from torch.utils import _pytree as pytree

        tmp = tempfile.mkdtemp(prefix="mstgan-aot-")
        try:
            with zipfile.ZipFile(path) as z:
                libs = [n for n in z.namelist() if n.endswith(".so") and "/data/aotinductor/" in n]
                if len(libs) != 1:
                    raise RuntimeError(f"expected one model library in the package, found {len(libs)}")
                lib = ctypes.CDLL(z.extract(libs[0], tmp))  # mapped: the file may go
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self._lib = lib
        self._handle = ctypes.c_void_p()
        self._check(lib.AOTInductorModelContainerCreateWithDevice(
            ctypes.byref(self._handle), ctypes.c_size_t(1), b"cpu", None), "create")
        n_in, n_out = ctypes.c_size_t(), ctypes.c_size_t()
        self._check(lib.AOTInductorModelContainerGetNumInputs(self._handle, ctypes.byref(n_in)), "inputs")
        self._check(lib.AOTInductorModelContainerGetNumOutputs(self._handle, ctypes.byref(n_out)), "outputs")
        self.n_in, self.n_out = n_in.value, n_out.value
        in_spec, out_spec = ctypes.c_char_p(), ctypes.c_char_p()
        self._check(lib.AOTInductorModelContainerGetCallSpec(
            self._handle, ctypes.byref(in_spec), ctypes.byref(out_spec)), "call spec")
        self._out_spec = pytree.treespec_loads(out_spec.value.decode())
        api = ctypes.pythonapi
        api.PyCapsule_GetPointer.restype = ctypes.c_void_p
        api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
        api.PyCapsule_New.restype = ctypes.py_object
        api.PyCapsule_New.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
        self._api, self._ctypes, self._unflatten = api, ctypes, pytree.tree_unflatten

    @staticmethod
    def _check(err: int, what: str) -> None:
        if err != 0:
            raise RuntimeError(f"AOTInductor {what} failed ({err})")

    def __call__(self, *tensors: torch.Tensor) -> object:
        ct, api = self._ctypes, self._api
        if len(tensors) != self.n_in:
            raise ValueError(f"the package takes {self.n_in} tensors, got {len(tensors)}")
        # new handles to the inputs, which the run takes over (and frees)
        caps = torch._C._aoti.unsafe_alloc_void_ptrs_from_tensors(list(tensors))
        inputs = (ct.c_void_p * self.n_in)(*[api.PyCapsule_GetPointer(c, None) for c in caps])
        outputs = (ct.c_void_p * self.n_out)()
        self._check(self._lib.AOTInductorModelContainerRun(
            self._handle, inputs, ct.c_size_t(self.n_in), outputs, ct.c_size_t(self.n_out), None, None), "run")
        out = torch._C._aoti.alloc_tensors_by_stealing_from_void_ptrs(
            [api.PyCapsule_New(outputs[i], None, None) for i in range(self.n_out)])
        return self._unflatten(list(out), self._out_spec)


def _runner(path: Path) -> Callable[..., object]:
    """The package at `path`, ready to call: through ctypes (GIL released), else torch's loader."""
    try:
        return GilFreeRunner(path)
    except (OSError, AttributeError, RuntimeError, KeyError, ValueError) as exc:
        log.debug("compile: %s through torch's loader (%s)", path.name, exc)
        return torch._inductor.aoti_load_package(str(path))


def _load(path: Path) -> Callable[..., object] | None:
    if not path.is_file():
        return None
    try:
        return _runner(path)
    except Exception as exc:  # noqa: BLE001 - a stale or damaged package is rebuilt
        log.warning("compile: cannot load %s (%s); rebuilding it", path, exc)
        return None


def build_package(module: nn.Module, args: tuple[torch.Tensor, ...], dynamic_shapes: object, path: Path,
                  gather_warps: bool = True) -> None:
    """Export `module` with dynamic shapes (warps as gathers unless `gather_warps` is False: Inductor
    compiles them better than ``grid_sample``), compile it with Inductor (freezing on) and write the package to `path`
    atomically (a concurrent run builds its own and one of them wins)."""
    import torch._inductor.config as inductor_config

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.pt2")
    # (Inductor applies freezing only with grad mode off: without it the int8 convolutions stay
    # dequantise + fp32 convolution, and run 2x slower)
    try:
        with torch.no_grad(), inductor_config.patch(freezing=True), warps_as_gathers(gather_warps):
            ep = torch.export.export(module, args, dynamic_shapes=dynamic_shapes)
            torch._inductor.aoti_compile_and_package(ep, package_path=str(tmp))
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def aot_parts(model: MSTGANGenerator, precision: str, dtype: torch.dtype, digest: str,
               modules: Callable[[], dict[str, nn.Module]], extra: dict | None = None,
               gather_warps: bool = True) -> Parts:
    """The three parts of `model` (on the CPU, in `dtype`) as AOTInductor packages: loaded from
    the cache, or built from ``modules()`` (called only when something has to be built)."""
    from ..parts import dynamic_shapes, sample_inputs

    paths = package_paths(digest, precision, extra, gather_warps)
    runners = {name: _load(path) for name, path in paths.items()}
    missing = [name for name, r in runners.items() if r is None]
    if missing:
        log.warning("compile: building the model for this CPU at %s (once, 2-3 minutes on 2 cores; "
                    "later runs load it from %s)", precision, package_dir())
        facts = package_facts(digest, precision, extra, gather_warps)
        facts_file = package_dir() / f"{_hash(facts)}.json"
        facts_file.parent.mkdir(parents=True, exist_ok=True)
        facts_file.write_text(json.dumps(facts, indent=1, sort_keys=True))
        mods = modules()
        m = model.config.size_multiple
        h, w = (min(side + (-side) % m, MAX_SIDE // m * m) for side in (TRACE_H, TRACE_W))
        samples = sample_inputs(model, min(TRACE_BATCH, MAX_BATCH), h, w, dtype=dtype)
        samples = {k: tuple(t.contiguous(memory_format=torch.channels_last) for t in v) for k, v in samples.items()}
        dyn = dynamic_shapes(model, MAX_BATCH, MAX_SIDE)
        for name in missing:
            t0 = time.perf_counter()
            build_package(mods[name], samples[name], _flat_dynamic_shapes(dyn, mods[name], name), paths[name],
                          gather_warps=gather_warps)
            runners[name] = _runner(paths[name])
            log.info("compile: built %s in %.0fs (%s)", name, time.perf_counter() - t0, paths[name])
        prune_superseded(facts)
    else:
        log.info("compile: loaded the compiled model from %s", package_dir())
    return Parts(runners["encode"], runners["flows"], runners["window"], "compile")


__all__ = ["FORMAT", "MAX_BATCH", "MAX_SIDE", "PARTS", "aot_parts", "build_package", "package_dir", "package_facts", "package_key",
           "package_paths", "prune_superseded"]
