"""Decisions made before any frame moves: output size, model factor, output path, colour, model.

Pure functions of the probed input and the options, so they are cheap to test.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelError, OutputError
from ..media.colour import Colour
from ..media.encode import READ_ONLY_SUFFIXES
from ..media.probe import MediaInfo
from ..media.sequence import (IMAGE_SUFFIXES, ImageSequence, check_output_pattern,
                              default_output_pattern, parse_pattern)
from ..options import DEFAULT_MODEL, MODEL_SCALES, UpscaleOptions
from ..runtime.upscaler import FrameUpscaler, InterpolationUpscaler

log = logging.getLogger("mstgan_cli")

UpscalerFactory = Callable[[int], FrameUpscaler]
"""Builds the upscaler for a requested integer factor. The returned object's ``.scale`` is what
counts: a factory may answer with another factor (a checkpoint has the one it was trained for),
and the pipeline resizes the rest of the way. ``.scale == 1`` means "resample only"."""

BASELINES = {"bicubic": "bicubic", "bilinear": "bilinear", "nearest": "nearest", "lanczos": None}


class ResampleOnly:
    """An upscaler that leaves frames as they are; the pipeline's exact Lanczos/area resize to the
    output size then does all the work (the ``lanczos`` baseline)."""

    scale = 1

    def process(self, frames: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
        """(3, H, W) float32 RGB in [0, 1] -> the same tensors."""
        yield from frames


def upscaler_factory(options: UpscaleOptions) -> UpscalerFactory:
    """The factory for ``options.model``: an interpolation baseline (bicubic, bilinear, nearest,
    lanczos); the shipped MST-GAN for the factor asked (``mstgan``, the default); or a named
    shipped model / checkpoint path via :func:`mstgan_cli.runtime.load_upscaler`."""
    name = options.model.strip()
    if name.lower() in BASELINES:
        mode = BASELINES[name.lower()]
        if mode is None:
            return lambda scale: ResampleOnly()
        return lambda scale: InterpolationUpscaler(scale, mode)
    family = name.lower() == DEFAULT_MODEL

    def load(scale: int) -> FrameUpscaler:
        try:
            from ..runtime import load_upscaler
        except ImportError as exc:
            raise ModelError(f"model {name!r} cannot be loaded: this build has no model runtime; "
                             "use --model bicubic or --model lanczos") from exc
        kwargs: dict[str, Any] = dict(device=options.device, precision=options.precision.value,
                                      backend=options.backend.value,
                                      window=options.window, batch=options.batch, tile=options.tile or 0,
                                      tuning=options.tuning)
        if not family:  # a named model has its own factor; only --scale may contradict it
            return load_upscaler(name, scale=options.scale, **kwargs)
        if options.scale is not None:
            return load_upscaler(None, scale=options.scale, **kwargs)
        # --target: the requested factor if shipped, else the next larger, else the largest
        order = sorted(MODEL_SCALES, key=lambda s: (s < scale, abs(s - scale)))
        first_error: ModelError | None = None
        for candidate in order:
            try:
                return load_upscaler(None, scale=candidate, **kwargs)
            except ModelError as exc:
                first_error = first_error or exc
        assert first_error is not None
        raise ModelError(f"{first_error}; no shipped MST-GAN weights could be loaded "
                         "(try --model bicubic or --model lanczos)") from first_error
    return load


def list_models() -> list[dict[str, Any]]:
    """Shipped weights (from the model registry, when present) followed by the baselines.
    Each dict has name, scale, params, flops_per_pixel, precisions, metrics, path."""
    shipped: list[dict[str, Any]] = []
    try:
        from ..model.registry import list_models as registry_models  # type: ignore[import-not-found]
    except ImportError:
        registry_models = None
    if registry_models is not None:
        shipped = [dict(m) for m in registry_models()]
    baselines = [{"name": n, "scale": "any", "window": 1, "params": 0, "flops_per_pixel": None,
                  "precisions": ["fp32"], "metrics": {}, "default": False, "kind": "baseline",
                  "path": "built-in"} for n in BASELINES]
    return shipped + baselines


@dataclass(frozen=True)
class SizePlan:
    """Output frame size and the model factor to ask for. ``needed`` is the factor the output
    size needs along its longer-stretched axis; ``sar`` the output's sample aspect ratio."""

    size: tuple[int, int]
    requested_scale: int
    needed: float
    sar: Fraction


def plan_size(info: MediaInfo, options: UpscaleOptions) -> SizePlan | None:
    """Output size for the request, or None when a --target is already reached (no work)."""
    up_w, up_h = info.video.upright_size
    if options.scale is not None:
        s = options.scale
        return SizePlan((up_w * s, up_h * s), s, float(s), info.video.upright_sar)
    target = options.effective_target
    assert target is not None
    size = target.fit(float(up_w * info.video.upright_sar), up_h)  # exact display aspect
    if size is None:
        return None
    needed = max(size[0] / up_w, size[1] / up_h)
    fitting = [s for s in sorted(MODEL_SCALES) if s >= needed - 1e-6]
    return SizePlan(size, fitting[0] if fitting else max(MODEL_SCALES), needed, Fraction(1))


def check_model_scale(plan: SizePlan, upscaler: FrameUpscaler, options: UpscaleOptions) -> None:
    """Refuse a model whose factor contradicts --scale; warn when it falls short of a target."""
    scale = int(upscaler.scale)
    if options.scale is not None and scale not in (options.scale, 1):
        raise ModelError(f"model {options.model!r} upscales x{scale}, but --scale {options.scale} "
                         f"was asked for; pick a x{options.scale} model or use --target")
    if options.scale is None and scale > 1 and scale < plan.needed - 1e-6:
        log.warning("the %s target needs x%.2f, more than the model's x%d: running x%d, then "
                    "resizing up with Lanczos", options.size_label, plan.needed, scale, scale)


def default_output(input_path: Path, options: UpscaleOptions) -> Path:
    """``clip.mp4`` -> ``clip_2160p.mp4`` next to it (``.mkv`` for --lossless with default FFV1,
    and for containers mstgan does not write: MPEG-PS, YUV4MPEG, DV); an image sequence
    ``frames/%06d.png`` -> ``frames_2160p/%06d.png`` beside its folder."""
    pattern = parse_pattern(input_path)
    if pattern is not None:
        return default_output_pattern(pattern, options.size_label)
    suffix = input_path.suffix or ".mkv"
    enc = options.encode
    if suffix.lower() in READ_ONLY_SUFFIXES or (
            enc.lossless and enc.codec is None and suffix.lower() not in (".mkv", ".nut")):
        suffix = ".mkv"
    return input_path.with_name(f"{input_path.stem}_{options.size_label}{suffix}")


def is_stdout(output: Path) -> bool:
    """``-o -``: the muxed video goes to stdout (as Matroska)."""
    return str(output) == "-"


def check_output(input_path: Path, output: Path, overwrite: bool,
                 sequence: ImageSequence | None = None) -> None:
    """Refuse an output that is the input, exists (without overwrite), or cannot be written.
    ``-`` (stdout) is always fine. An output pattern (``out/%06d.png``): its folder must be
    makeable, hold no picture the pattern names (without overwrite) and none of the input
    ``sequence``'s; a single picture (``out.png``) is refused."""
    if is_stdout(output):
        return
    pattern = parse_pattern(output)
    if pattern is not None:
        check_output_pattern(pattern, overwrite, sequence)
        return
    if output.suffix.lower() in IMAGE_SUFFIXES:
        raise OutputError(f"{output.name} would be one picture; for one picture per frame name "
                          f"a numbered pattern, e.g. {output.parent / (output.stem + '_%06d' + output.suffix)}")
    if output.resolve() == input_path.resolve() or (output.exists() and output.samefile(input_path)):
        raise OutputError(f"the output would overwrite the input: {output}")
    if output.is_dir():
        raise OutputError(f"the output is a folder: {output}")
    if output.exists() and not overwrite:
        raise OutputError(f"{output} already exists (use --overwrite to replace it)")
    if not output.suffix:
        raise OutputError(f"cannot tell the container from {output.name!r}; end it in .mp4, .mkv, ...")
    folder = output.parent
    if not folder.is_dir():
        raise OutputError(folder_problem(folder))


def folder_problem(folder: Path) -> str:
    """Why ``folder`` (which is not a folder) cannot take an output: it or a folder above it is a
    file, or it does not exist."""
    for above in (folder, *folder.parents):
        if above.exists():
            if above.is_dir():
                break
            what = "the output folder" if above == folder else f"the output folder {folder}"
            return f"{what} cannot be made: {above} is a file, not a folder"
    return f"the output folder does not exist: {folder}"


def output_colour(source: Colour, out_height: int) -> Colour:
    """Colour of the output: the source's own description where it gave one, otherwise what a
    player would assume at the output's size (BT.709 from 720 lines). Range defaults to limited;
    an RGB source's (full: pictures, PNG in Matroska) says nothing about the YCbCr made of it."""
    rgb = source.is_rgb
    matrix = source.matrix if source.matrix and not rgb else None
    return Colour(matrix, None if rgb else source.range, source.primaries,
                  source.transfer).resolved(out_height)


def frame_budget(width: int, height: int, bytes_per_value: int = 4, budget: int = 384 << 20) -> int:
    """How many (3, height, width) frames fit a queue's memory budget (between 1 and 8)."""
    return max(1, min(8, budget // max(1, 3 * width * height * bytes_per_value)))

