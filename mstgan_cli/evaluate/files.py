"""Evaluate a video (or folder of frames) against its reference, or on its own for flicker.

Library code: no printing; progress through a callback. Frames stream from
:mod:`mstgan_cli.media.frames` one pair at a time; only the per-frame rows are kept.
"""
from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError, MstganError
from ..media.frames import read_frames, source_info
from ..metrics.flicker import FlickerMeter, FlickerResult, bicubic_resize, reference_pairs
from ..metrics.frame import FrameMetrics, LengthMismatch, zip_exact

log = logging.getLogger("mstgan_cli")


@dataclass(frozen=True)
class EvalProgress:
    """A progress report: ``frames`` done of ``total`` (None when unknown) in ``stage``."""

    stage: str
    frames: int
    total: int | None


ProgressCallback = Callable[[EvalProgress], None]


@dataclass
class EvalResult:
    """Full-reference evaluation. ``rows``: one dict per frame (frame, psnr_y, ssim_y, lpips, tof,
    tlp, and vmaf when measured; None where a metric does not apply, e.g. tof on frame 0);
    ``summary``: means under psnr_y, ssim_y, lpips, tof, tlp (+ vmaf when measured); ``notes``:
    why something was not measured (e.g. no libvmaf)."""

    output: Path
    reference: Path
    frames: int
    size: tuple[int, int]
    crop: int
    rows: list[dict[str, Any]]
    summary: dict[str, float]
    notes: list[str] = field(default_factory=list)


def _zip_frames(a, b, names: tuple[str, str]):
    """Pairs from two frame iterators; InputError naming both counts when one runs out first."""
    try:
        yield from zip_exact(a, b)
    except LengthMismatch as exc:
        (n_a, n_b), (name_a, name_b) = exc.counts, names
        shorter, longer = ((name_a, n_a), (name_b, n_b)) if n_a < n_b else ((name_b, n_b), (name_a, n_a))
        raise InputError(f"frame counts differ: the {shorter[0]} has {shorter[1]} frames, the "
                         f"{longer[0]} {longer[1]}; compare clips of the same length (or use "
                         "--max-frames)") from None


def _check_counts(out_info, ref_info, max_frames: int | None) -> None:
    a, b = out_info.frames, ref_info.frames
    if a is None or b is None or a == b:
        return
    if max_frames is not None and min(a, b) >= max_frames:
        return
    if out_info.kind == ref_info.kind == "images":  # exact counts: fail before any work
        raise InputError(f"frame counts differ: the output has {a} frames, the reference {b}")


def evaluate(output: str | os.PathLike[str], reference: str | os.PathLike[str], crop: int = 0,
             lpips_net: str | None = "alex", temporal: bool = True, vmaf: bool | None = None,
             max_frames: int | None = None, device: str | torch.device = "cpu",
             progress: ProgressCallback | None = None) -> EvalResult:
    """PSNR-Y, SSIM-Y (``crop`` border pixels removed), LPIPS (``lpips_net``; None skips it),
    tOF and tLP (``temporal``), and VMAF (``vmaf``: True requires it, None = when the FFmpeg in
    use has libvmaf, False skips it) of ``output`` against ``reference``.

    Both are video files or folders of image frames with the same frame size and count (the first
    ``max_frames`` frames when given). Raises InputError on a size or count mismatch.
    """
    from ..media.vmaf import vmaf as run_vmaf
    from ..media.vmaf import vmaf_available

    out_path, ref_path = Path(output), Path(reference)
    out_info, ref_info = source_info(out_path), source_info(ref_path)
    if out_info.size != ref_info.size:
        raise InputError(f"frame sizes differ: the output is {out_info.size[0]}x{out_info.size[1]}, "
                         f"the reference {ref_info.size[0]}x{ref_info.size[1]}")
    _check_counts(out_info, ref_info, max_frames)
    total = min(x for x in (out_info.frames, ref_info.frames, max_frames) if x is not None) \
        if any(x is not None for x in (out_info.frames, ref_info.frames, max_frames)) else None
    acc = FrameMetrics(crop=crop, lpips_net=lpips_net, temporal=temporal, device=device)
    pairs = _zip_frames(read_frames(out_path, max_frames), read_frames(ref_path, max_frames),
                        ("output", "reference"))
    try:
        for o, r in pairs:
            acc.update(o, r)
            if progress:
                progress(EvalProgress("measuring", acc.n_frames, total))
    except ValueError as exc:  # e.g. a frame whose size changed mid-stream
        raise InputError(str(exc)) from exc
    if acc.n_frames == 0:
        raise InputError(f"no frames to compare in {out_path}")
    summary = acc.summary()
    if lpips_net is None:
        summary.pop("lpips", None)
        summary.pop("tlp", None)
    if not temporal:
        summary.pop("tof", None)
        summary.pop("tlp", None)
    notes: list[str] = []
    rows = acc.rows
    if vmaf is not False:
        if vmaf_available():
            if progress:
                progress(EvalProgress("VMAF", 0, acc.n_frames))
            result = run_vmaf(out_path, ref_path, max_frames=max_frames)
            if len(result.frames) != len(rows):
                log.warning("libvmaf scored %d frames, the other metrics %d", len(result.frames), len(rows))
            for row, value in zip(rows, result.frames):
                row["vmaf"] = value
            summary["vmaf"] = result.mean
        elif vmaf:
            raise MstganError("VMAF was asked for, but the FFmpeg in use has no libvmaf filter")
        else:
            notes.append("VMAF not measured: the FFmpeg in use has no libvmaf filter")
    return EvalResult(out_path, ref_path, acc.n_frames, out_info.size, crop, rows, summary, notes)


def evaluate_flicker(output: str | os.PathLike[str], input: str | os.PathLike[str] | None = None,
                     scale: int | None = None, max_frames: int | None = None,
                     progress: ProgressCallback | None = None, **meter_options: Any) -> FlickerResult:
    """Flicker of ``output`` (video or folder of frames) with no ground truth, relative to bicubic
    (see :mod:`mstgan_cli.metrics.flicker`). With ``input`` (the source the output was made from,
    same frame count) the baseline is the input upscaled with bicubic; without, the output
    downscaled by ``scale`` (default 4) and upscaled back. ``meter_options`` go to FlickerMeter
    (flow_max_side, cut_threshold)."""
    out_path = Path(output)
    out_info = source_info(out_path)
    total = min(x for x in (out_info.frames, max_frames) if x is not None) \
        if (out_info.frames is not None or max_frames is not None) else None
    if input is not None:
        in_path = Path(input)
        in_info = source_info(in_path)
        ratio = (out_info.size[0] / in_info.size[0], out_info.size[1] / in_info.size[1])
        if min(ratio) < 1:
            raise InputError(f"the output ({out_info.size[0]}x{out_info.size[1]}) is smaller than the "
                             f"input ({in_info.size[0]}x{in_info.size[1]}); give the source as --input")
        _check_counts(out_info, in_info, max_frames)
        if scale is not None and any(abs(r - scale) > 0.05 * scale for r in ratio):
            log.warning("the output is %.3gx%.3g the input, not x%d", *ratio, scale)
        meter = FlickerMeter(mode="input", scale=round(max(ratio), 4), **meter_options)
        frames = _zip_frames(read_frames(out_path, max_frames), read_frames(in_path, max_frames),
                             ("output", "input"))
        pairs = ((o, bicubic_resize(i, tuple(o.shape[-2:]))) for o, i in frames)
    else:
        s = 4 if scale is None else scale
        meter = FlickerMeter(mode="self", scale=s, **meter_options)
        pairs = reference_pairs(read_frames(out_path, max_frames), None, s)
    try:
        for o, r in pairs:
            meter.update(o, r)
            if progress:
                progress(EvalProgress("flicker", meter.frames, total))
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    if meter.frames < 2:
        raise InputError(f"{out_path} has {meter.frames} frame(s); flicker needs at least two")
    result = meter.result()
    if math.isnan(result.ratio):
        log.warning("no pair of frames could be measured (every pair is a cut or unmatched)")
    return result
