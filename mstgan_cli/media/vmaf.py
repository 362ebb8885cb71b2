"""VMAF through the ffmpeg binary's ``libvmaf`` filter, when the FFmpeg in use was built with it.

The model is libvmaf's built-in ``vmaf_v0.6.1`` (``model=version=vmaf_v0.6.1``), so no model file
is needed. Both inputs go through the same chain: frames are paired by index (``settb=1/25,
setpts=N``, so different timestamps or frame rates do not shift the pairing), RGB sources are
converted with the BT.709 matrix, and both are fed to libvmaf as 8-bit 4:2:0. A folder of still
frames is read in natural name order through a concat list.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import FFmpegError, InputError
from . import ffmpeg
from .frames import image_files
from .probe import ffmpeg_input

log = logging.getLogger("mstgan_cli")

DEFAULT_MODEL = "version=vmaf_v0.6.1"


@dataclass(frozen=True)
class VmafResult:
    """``mean``: VMAF pooled over the frames (0-100, higher is better); ``frames``: per frame."""

    mean: float
    frames: list[float] = field(default_factory=list)
    model: str = DEFAULT_MODEL


@functools.lru_cache(maxsize=4)
def _has_libvmaf(ffmpeg_path: str) -> bool:
    try:
        out = ffmpeg.run([ffmpeg_path, "-hide_banner", "-filters"], "listing FFmpeg filters", timeout=60).stdout
    except FFmpegError:
        return False
    return any(line.split()[1:2] == ["libvmaf"] for line in out.splitlines() if line.strip())


def vmaf_available() -> bool:
    """Whether the ffmpeg binary in use has the libvmaf filter (False when FFmpeg is missing)."""
    try:
        return _has_libvmaf(ffmpeg.find_ffmpeg().ffmpeg)
    except FFmpegError:
        return False


def _filter_escape(value: str) -> str:
    """Quote a value for an FFmpeg filter option (inside the filter graph string)."""
    return value.replace("\\", "\\\\").replace(":", "\\:").replace("'", "\\'").replace(",", "\\,")


def _input_args(path: Path, workdir: Path, name: str) -> list[str]:
    if not path.is_dir():
        return ["-i", ffmpeg_input(path)]
    lines = ["ffconcat version 1.0"]
    for f in image_files(path):
        quoted = str(f.resolve()).replace("'", "'\\''")
        lines.append(f"file 'file:{quoted}'")
    listing = workdir / f"{name}.ffconcat"
    listing.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return ["-f", "concat", "-safe", "0", "-i", ffmpeg_input(listing)]


def vmaf(distorted: str | os.PathLike[str], reference: str | os.PathLike[str],
         max_frames: int | None = None, threads: int | None = None,
         model: str = DEFAULT_MODEL) -> VmafResult:
    """VMAF of ``distorted`` against ``reference`` (video files or folders of frames, same size).

    Raises FFmpegError when FFmpeg lacks libvmaf or fails, InputError for a missing input.
    ``threads``: libvmaf worker threads (default: up to 4 of this process's CPUs).
    """
    dist, ref = Path(distorted), Path(reference)
    for p in (dist, ref):
        if not p.exists():
            raise InputError(f"not found: {p}")
    tools = ffmpeg.find_ffmpeg()
    if not _has_libvmaf(tools.ffmpeg):
        raise FFmpegError(f"{tools.ffmpeg} was built without libvmaf; VMAF needs an FFmpeg "
                          "configured with --enable-libvmaf (the bundled imageio-ffmpeg build "
                          "has it: unset $MSTGAN_FFMPEG or take that ffmpeg off PATH)")
    n_threads = threads or max(1, min(4, len(os.sched_getaffinity(0))))
    with tempfile.TemporaryDirectory(prefix="mstgan-vmaf-") as tmp:
        work = Path(tmp)
        log_path = work / "vmaf.json"
        chain = "settb=1/25,setpts=N,scale=out_color_matrix=bt709:out_range=tv,format=yuv420p"
        if max_frames is not None:
            chain += f",trim=end_frame={int(max_frames)}"
        graph = (f"[0:v]{chain}[d];[1:v]{chain}[r];[d][r]libvmaf=model={_filter_escape(model)}"
                 f":log_fmt=json:log_path={_filter_escape(str(log_path))}:n_threads={n_threads}")
        args = [tools.ffmpeg, "-hide_banner", "-nostdin", "-nostats", "-v", "error",
                *_input_args(dist, work, "distorted"), *_input_args(ref, work, "reference"),
                "-filter_complex", graph, "-an", "-sn", "-dn"]
        args += ["-f", "null", "-"]
        ffmpeg.run(args, "VMAF with FFmpeg's libvmaf")
        try:
            data = json.loads(log_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise FFmpegError(f"libvmaf wrote no readable log: {exc}") from exc
    frames = [float(f["metrics"]["vmaf"]) for f in data.get("frames", []) if "vmaf" in f.get("metrics", {})]
    pooled = (data.get("pooled_metrics") or {}).get("vmaf", {}).get("mean")
    mean = float(pooled) if pooled is not None else (sum(frames) / len(frames) if frames else float("nan"))
    return VmafResult(mean, frames, model)


__all__ = ["DEFAULT_MODEL", "VmafResult", "vmaf", "vmaf_available"]
