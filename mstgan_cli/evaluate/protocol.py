"""The benchmark protocol: every method, every metric, on HR clips degraded the one way training is.

For each clip (a video file or a folder of frames):

* HR: each frame cropped (top-left kept) to a multiple of the scale;
* LR = :func:`mstgan_cli.train.degrade.downscale` (antialiased bicubic), or under ``degrade``
  ``h264:CRF`` that followed by H.264 over the clip as one stream, or ``realworld`` (blur, noise,
  H.264; :func:`mstgan_cli.train.degrade.degrade_clip`);
* each method upscales the LR stream; its frames are paired with the HR frames, which wait in a
  deque while the method holds frames back (bounded by the method's look-ahead);
* PSNR-Y and SSIM-Y with a border crop equal to the scale, LPIPS-Alex, tOF and tLP
  (:class:`~mstgan_cli.metrics.frame.FrameMetrics`).

Methods by default: the shipped MST-GAN weights for the scale, ``bicubic``, ``lanczos``, and the
peer models installed here for that scale (:func:`mstgan_cli.runtime.peers.available_peers`).
Means over clips are unweighted means of the per-clip means.
"""
from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch

from ..errors import InputError, ModelError, MstganError
from ..media.frames import read_frames, source_info
from ..runtime.peers import REALESRGAN_MODEL, RealESRGANUpscaler
from ..runtime.upscaler import FrameUpscaler, InterpolationUpscaler
from ..train.degrade import degrade_clip, describe_eval_degrade, downscale, parse_eval_degrade
from ..metrics.frame import SUMMARY_KEYS, FrameMetrics
from ..metrics.lpips import cached_lpips
from .report import HIGHER_IS_BETTER, fmt, markdown_table, metric_header

log = logging.getLogger("mstgan_cli")

BASELINE_MODES = {"bicubic": "bicubic", "bilinear": "bilinear", "nearest": "nearest"}
MethodSpec = Union[str, FrameUpscaler, Callable[[], FrameUpscaler]]


class LanczosUpscaler:
    """Lanczos (a = 3, PIL ``Image.LANCZOS``) per frame and channel, in float (no 8-bit rounding).

    process(frames): (3, H, W) float32 RGB [0, 1] -> (3, scale*H, scale*W), clamped to [0, 1].
    """

    def __init__(self, scale: int) -> None:
        assert scale >= 1, "scale must be a positive integer"
        self.scale = scale

    def process(self, frames: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
        from PIL import Image

        for frame in frames:
            x = frame.detach().to("cpu", torch.float32).numpy()
            h, w = x.shape[-2:]
            size = (w * self.scale, h * self.scale)
            planes = [np.asarray(Image.fromarray(np.ascontiguousarray(c), mode="F").resize(size, Image.LANCZOS))
                      for c in x]
            yield torch.from_numpy(np.stack(planes)).clamp_(0.0, 1.0)


@dataclass(frozen=True)
class ProtocolProgress:
    """Progress of :func:`run_protocol`: ``frames`` of ``total`` (None if unknown) for one method
    on one clip, with their positions (0-based) among all clips and methods."""

    clip: str
    clip_index: int
    clips: int
    method: str
    method_index: int
    methods: int
    frames: int
    total: int | None


def default_methods(scale: int) -> list[str]:
    """Shipped weights for ``scale``, then bicubic, lanczos, then installed peers for ``scale``."""
    names: list[str] = []
    try:
        from ..model.registry import list_models
        names += [m["name"] for m in list_models() if m.get("scale") == scale]
    except Exception as exc:  # noqa: BLE001 - a broken weights folder must not hide the baselines
        log.warning("cannot list the shipped models: %s", exc)
    names += ["bicubic", "lanczos"]
    names += [name for name, factory in _peers().items() if getattr(factory, "scale", None) == scale]
    return names


def _peers() -> dict[str, Callable[..., FrameUpscaler]]:
    try:
        from ..runtime.peers import available_peers
    except ImportError:
        return {}
    try:
        return available_peers()
    except Exception as exc:  # noqa: BLE001 - an optional peer must not break the protocol
        log.warning("cannot list peer models: %s", exc)
        return {}


def build_method(name: str, scale: int, device: str = "auto", precision: str = "fp32") -> FrameUpscaler:
    """A FrameUpscaler by name: bicubic, bilinear, nearest, lanczos, an installed peer, a shipped
    model name or a checkpoint path. Raises ModelError when it cannot be built for ``scale``."""
    key = name.strip().lower()
    if key in BASELINE_MODES:
        return InterpolationUpscaler(scale, BASELINE_MODES[key])
    if key == "lanczos":
        return LanczosUpscaler(scale)
    peers = _peers()
    if name in peers:
        up = peers[name]()
    elif key == REALESRGAN_MODEL:
        # a peer whose package does not import here: its own error says what is missing (a
        # system library, or the extra), not "unknown model"
        up = RealESRGANUpscaler()
    else:
        from ..runtime import load_upscaler
        up = load_upscaler(name, scale=scale, device=device, precision=precision)
    if int(up.scale) != scale:
        raise ModelError(f"{name} upscales x{up.scale}, not x{scale}")
    return up


def _method_factories(methods: Sequence[MethodSpec] | Mapping[str, MethodSpec] | None, scale: int,
                      device: str, precision: str) -> list[tuple[str, Callable[[], FrameUpscaler]]]:
    if methods is None:
        methods = default_methods(scale)
    items = list(methods.items()) if isinstance(methods, Mapping) else [(m if isinstance(m, str) else
                                                                       type(m).__name__, m) for m in methods]
    out: list[tuple[str, Callable[[], FrameUpscaler]]] = []
    for name, spec in items:
        if isinstance(spec, str):
            out.append((name, lambda spec=spec: build_method(spec, scale, device, precision)))
        elif hasattr(spec, "process"):
            out.append((name, lambda spec=spec: spec))
        elif callable(spec):
            out.append((name, spec))
        else:
            raise TypeError(f"method {name!r}: expected a name, a FrameUpscaler or a factory, got {spec!r}")
    if "bicubic" not in [n for n, _ in out]:  # the yardstick of the not-worse flags
        out.append(("bicubic", lambda: InterpolationUpscaler(scale, "bicubic")))
    names = [n for n, _ in out]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise ValueError(f"methods named twice: {', '.join(sorted(dupes))}")
    return out


def hr_frames(clip: str | os.PathLike[str], scale: int, max_frames: int | None = None) -> Iterator[torch.Tensor]:
    """The clip's frames cropped (top-left kept) to a multiple of ``scale``: (3, H', W') float32."""
    for frame in read_frames(clip, max_frames):
        h, w = frame.shape[-2:]
        hh, ww = h - h % scale, w - w % scale
        if hh < scale * 4 or ww < scale * 4:
            raise InputError(f"{clip}: frames of {w}x{h} are too small for a x{scale} protocol")
        yield frame[:, :hh, :ww]


class CentreOnly:
    """A model that sees only the centre frame of each window: every window holds the frame
    repeated (``window`` times), so the difference to the model itself is what the neighbours
    bring (the protocol's temporal gain). Runs the generator eagerly in fp32, one frame at a time.

    process(frames): (3, h, w) float32 RGB [0, 1] -> (3, s*h, s*w), clamped."""

    def __init__(self, upscaler: FrameUpscaler) -> None:
        model = getattr(upscaler, "model", None)
        if model is None or not hasattr(model, "config"):
            raise ModelError("the centre-only variant needs an MST-GAN model")
        self.model = copy.deepcopy(model).float().eval()
        self.scale = model.config.scale

    @torch.no_grad()
    def process(self, frames: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
        from ..train.loop import pad_to_multiple

        cfg = self.model.config
        dev = next(self.model.parameters()).device
        for f in frames:
            win = f.to(dev, torch.float32)[None, None].expand(1, cfg.window, *f.shape).contiguous()
            x, h, w = pad_to_multiple(win, cfg.size_multiple)
            yield self.model(x)[0, :, : h * cfg.scale, : w * cfg.scale].clamp(0, 1).cpu()


def _lr_frames(clip: Path, scale: int, max_frames: int | None, degrade: str,
               held: deque[torch.Tensor]) -> Iterator[torch.Tensor]:
    """The LR stream of a clip under a degradation, the HR frames appended to `held` as they go.
    bicubic streams frame by frame; the others degrade the clip as a whole (one encoded stream)."""
    if parse_eval_degrade(degrade)[0] == "bicubic":
        for hr in hr_frames(clip, scale, max_frames):
            held.append(hr)
            yield downscale(hr, scale)
        return
    hrs = list(hr_frames(clip, scale, max_frames))
    lrs = degrade_clip(torch.stack(hrs), scale, degrade) if hrs else []
    for hr, lr in zip(hrs, lrs):
        held.append(hr)
        yield lr


def _measure(clip: Path, upscaler: FrameUpscaler, scale: int, max_frames: int | None,
             lpips_model, device: torch.device, report: Callable[[int], None],
             degrade: str = "bicubic") -> dict[str, Any]:
    held: deque[torch.Tensor] = deque()
    feed_seconds = 0.0

    def lr_stream() -> Iterator[torch.Tensor]:
        nonlocal feed_seconds
        frames = _lr_frames(clip, scale, max_frames, degrade, held)
        while True:
            t0 = time.perf_counter()
            lr = next(frames, None)
            feed_seconds += time.perf_counter() - t0
            if lr is None:
                return
            yield lr

    acc = FrameMetrics(crop=scale, lpips_model=lpips_model, device=device)
    model_seconds = 0.0
    it = iter(upscaler.process(lr_stream()))
    while True:
        t0, f0 = time.perf_counter(), feed_seconds
        sr = next(it, None)
        model_seconds += (time.perf_counter() - t0) - (feed_seconds - f0)
        if sr is None:
            break
        if not held:
            raise ModelError("the method returned more frames than it was given")
        hr = held.popleft()
        if tuple(sr.shape) != tuple(hr.shape):
            raise ModelError(f"the method returned a {tuple(sr.shape)} frame for a {tuple(hr.shape)} target")
        acc.update(sr, hr)
        report(acc.n_frames)
    if held:
        raise ModelError(f"the method held back {len(held)} frame(s) at the end")
    if acc.n_frames == 0:
        raise InputError(f"no frames in {clip}")
    summary: dict[str, Any] = acc.summary()
    summary["frames"] = acc.n_frames
    summary["seconds"] = model_seconds
    summary["fps"] = acc.n_frames / model_seconds if model_seconds > 0 else math.inf
    return summary


def not_worse(summary: Mapping[str, float], bicubic: Mapping[str, float]) -> dict[str, bool]:
    """Per metric: is ``summary`` at least as good as ``bicubic``? Plus "all"."""
    flags = {}
    for key in SUMMARY_KEYS:
        a, b = summary.get(key, math.nan), bicubic.get(key, math.nan)
        if math.isnan(a) or math.isnan(b):
            continue
        flags[key] = bool(a >= b) if HIGHER_IS_BETTER[key] else bool(a <= b)
    flags["all"] = all(flags.values())
    return flags


def _unique_names(clips: Sequence[Path]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for c in clips:
        base = c.name or str(c)
        seen[base] = seen.get(base, 0) + 1
        out.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
    return out


def run_protocol(clips: Sequence[str | os.PathLike[str]], scale: int,
                 methods: Sequence[MethodSpec] | Mapping[str, MethodSpec] | None = None,
                 max_frames: int | None = None,
                 progress: Callable[[ProtocolProgress], None] | None = None, *,
                 device: str = "auto", precision: str = "fp32",
                 lpips_device: str | None = None, degrade: str = "bicubic",
                 centre_only: bool = False) -> dict[str, Any]:
    """Run the benchmark protocol (module docstring) on HR ``clips`` at ``scale`` (2 or 4).

    ``methods``: None for the defaults (:func:`default_methods`); else names (see
    :func:`build_method`) or a mapping {name: name | FrameUpscaler | zero-argument factory}.
    ``bicubic`` is added when missing (it is the yardstick). ``max_frames``: first N frames of each
    clip. ``device``/``precision``: for shipped models loaded by name (precision fp32 by default:
    the quality reference); the metrics run on ``lpips_device`` (default: ``device``). A method that fails to load or run is left out and its error recorded;
    other errors (unreadable clip) raise. ``degrade``: the LR input, ``bicubic``, ``h264:CRF`` or
    ``realworld`` (:func:`mstgan_cli.train.degrade.degrade_clip`). ``centre_only``: every MST-GAN
    method also runs as "NAME centre-only" (:class:`CentreOnly`), and ``temporal_gain`` holds the
    PSNR-Y each one gains from its neighbours, per clip and on the mean.

    Returns::

        {"scale": 4, "crop": 4, "degradation": "...", "max_frames": N | None,
         "metrics": ["psnr_y", "ssim_y", "lpips", "tof", "tlp"],
         "methods": [names in order],
         "clips": [{"name", "path", "frames", "hr_size": [w, h], "lr_size": [w, h],
                    "methods": {name: {psnr_y, ssim_y, lpips, tof, tlp, frames, seconds, fps}},
                    "not_worse_than_bicubic": {name: {psnr_y: bool, ..., "all": bool}}}, ...],
         "mean": {name: {psnr_y, ssim_y, lpips, tof, tlp, clips}},
         "mean_not_worse_than_bicubic": {name: {psnr_y: bool, ..., "all": bool}},
         "errors": {name: message}}

    Metric values are floats (psnr_y in dB, may be inf for a perfect copy; tlp on the plain
    scale, x100 for TecoGAN's tables; seconds/fps: time inside the method only).
    """
    if scale < 2:
        raise ValueError(f"scale must be at least 2, got {scale}")
    parse_eval_degrade(degrade)
    paths = [Path(c) for c in clips]
    if not paths:
        raise InputError("no clips given")
    infos = [source_info(p) for p in paths]  # fail fast on a missing or unreadable clip
    factories = _method_factories(methods, scale, device, precision)
    if centre_only:
        models: dict[str, FrameUpscaler] = {}

        def once(name: str, factory: Callable[[], FrameUpscaler]) -> FrameUpscaler:
            if name not in models:
                models[name] = factory()
            return models[name]

        factories = [p for name, f in factories for p in
                     ([(name, lambda name=name, f=f: once(name, f))]
                      + ([(f"{name} centre-only", lambda name=name, f=f: CentreOnly(once(name, f)))]
                         if _is_model(name) else []))]
    from ..runtime.engine import resolve_device
    dev = resolve_device(lpips_device or device)
    lpips_model = cached_lpips("alex", dev)
    names = _unique_names(paths)
    built: dict[str, FrameUpscaler] = {}
    errors: dict[str, str] = {}
    clip_results = []
    for ci, (path, info, cname) in enumerate(zip(paths, infos, names)):
        w, h = info.size
        total = min(x for x in (info.frames, max_frames) if x is not None) \
            if (info.frames is not None or max_frames is not None) else None
        entry: dict[str, Any] = {"name": cname, "path": str(path), "frames": None,
                                 "hr_size": [w - w % scale, h - h % scale],
                                 "lr_size": [(w - w % scale) // scale, (h - h % scale) // scale],
                                 "methods": {}}
        for mi, (mname, factory) in enumerate(factories):
            if mname in errors:
                continue
            def report(n: int, mname: str = mname, mi: int = mi) -> None:
                if progress:
                    progress(ProtocolProgress(cname, ci, len(paths), mname, mi, len(factories), n, total))
            try:
                if mname not in built:
                    built[mname] = factory()
                summary = _measure(path, built[mname], scale, max_frames, lpips_model, dev, report, degrade)
            except InputError:
                raise
            except (MstganError, RuntimeError, ValueError, AssertionError, ImportError) as exc:
                log.warning("%s failed on %s: %s", mname, cname, exc)
                errors[mname] = f"{type(exc).__name__}: {exc}" if not isinstance(exc, MstganError) else str(exc)
                built.pop(mname, None)
                continue
            entry["methods"][mname] = summary
            entry["frames"] = summary["frames"]
        bic = entry["methods"].get("bicubic", {})
        entry["not_worse_than_bicubic"] = {m: not_worse(s, bic) for m, s in entry["methods"].items()}
        clip_results.append(entry)
    ran = [n for n, _ in factories if n not in errors]
    for c in clip_results:  # a method that failed on a later clip is out of every clip
        for n in list(c["methods"]):
            if n in errors:
                del c["methods"][n]
                c["not_worse_than_bicubic"].pop(n, None)
    mean: dict[str, dict[str, Any]] = {}
    for n in ran:
        per_clip = [c["methods"][n] for c in clip_results if n in c["methods"]]
        mean[n] = {k: float(np.mean([s[k] for s in per_clip])) for k in SUMMARY_KEYS}
        mean[n]["clips"] = len(per_clip)
    bic_mean = mean.get("bicubic", {})
    gains: dict[str, dict[str, float]] = {}
    for n in ran:
        if n.endswith(" centre-only") and n[: -len(" centre-only")] in mean:
            m = n[: -len(" centre-only")]
            per = {c["name"]: c["methods"][m]["psnr_y"] - c["methods"][n]["psnr_y"]
                   for c in clip_results if m in c["methods"] and n in c["methods"]}
            gains[m] = {**per, "mean": mean[m]["psnr_y"] - mean[n]["psnr_y"]}
    return {
        "scale": scale, "crop": scale, "max_frames": max_frames, "degrade": degrade,
        "degradation": describe_eval_degrade(degrade),
        "temporal_gain": gains,
        "metrics": list(SUMMARY_KEYS), "methods": ran, "clips": clip_results, "mean": mean,
        "mean_not_worse_than_bicubic": {n: not_worse(s, bic_mean) for n, s in mean.items()},
        "errors": errors,
    }


def protocol_markdown(result: Mapping[str, Any]) -> str:
    """One markdown table: a row per (clip, method), then the means over clips when there are
    several clips; a last column says whether the method is not worse than bicubic on every metric."""
    keys = list(result["metrics"])
    headers = ["clip", "method", *[metric_header(k) for k in keys], "fps", "≥ bicubic"]
    rows = []
    for c in result["clips"]:
        for m, s in c["methods"].items():
            flags = c["not_worse_than_bicubic"].get(m, {})
            rows.append([c["name"], m, *[fmt(s.get(k), k) for k in keys], fmt(s.get("fps"), digits=3),
                         _flag_text(flags)])
    if len(result["clips"]) > 1:
        for m, s in result["mean"].items():
            flags = result["mean_not_worse_than_bicubic"].get(m, {})
            rows.append([f"**mean of {s.get('clips')}**", m, *[fmt(s.get(k), k) for k in keys], "",
                         _flag_text(flags)])
    title = (f"Protocol x{result['scale']}: HR cropped to a multiple of {result['scale']}, LR = "
             f"{result.get('degradation', 'antialiased bicubic')}; PSNR/SSIM on Y with a "
             f"{result['crop']}-px border crop")
    text = f"{title}\n\n{markdown_table(headers, rows)}"
    for m, g in result.get("temporal_gain", {}).items():
        per = ", ".join(f"{c} {v:+.2f}" for c, v in g.items() if c != "mean")
        text += (f"\n\nTemporal gain of {m} (PSNR-Y of the model minus the model on windows holding "
                 f"only their centre frame): mean {g['mean']:+.2f} dB ({per})")
    if result.get("errors"):
        text += "\n\nNot measured: " + "; ".join(f"{m} ({e.splitlines()[0] if e else ''})"
                                                  for m, e in result["errors"].items())
    return text


def _flag_text(flags: Mapping[str, bool]) -> str:
    if not flags:
        return "-"
    if flags.get("all"):
        return "yes"
    worse = [k for k, v in flags.items() if k != "all" and not v]
    return "worse: " + ", ".join(worse)


def _is_model(name: str) -> bool:
    """Whether a protocol method name is an MST-GAN model (shipped name or checkpoint path)."""
    key = name.strip().lower()
    return key.startswith("mstgan") or key.endswith((".pt", ".safetensors"))


__all__ = ["CentreOnly", "LanczosUpscaler", "ProtocolProgress", "build_method", "default_methods", "hr_frames",
           "not_worse", "protocol_markdown", "run_protocol"]
