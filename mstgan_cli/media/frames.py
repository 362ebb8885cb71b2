"""Frames as tensors for measuring: a video file or a folder of still frames, streamed.

``read_frames(path)`` yields (3, H, W) float32 RGB tensors in [0, 1], one per picture, in display
order, from either a video (decoded by :class:`~mstgan_cli.media.decode.VideoDecoder`, so upright
and in the source's own colour matrix) or a folder of PNG/JPEG/BMP/TIFF/WebP images (sorted by name,
numbers in names compared as numbers: ``f2.png`` before ``f10.png``). Nothing is held beyond the
frame being yielded.

Also here, because only ``media/`` runs FFmpeg: a synthetic test clip maker (lavfi ``testsrc2``)
and a plain writer for RGB frames (split-screen comparison videos).
"""
from __future__ import annotations

import logging
import re
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError, OutputError
from . import ffmpeg
from .decode import VideoDecoder
from .probe import count_packets, probe

log = logging.getLogger("mstgan_cli")

IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
_DIGITS = re.compile(r"(\d+)")


@dataclass(frozen=True)
class FrameSource:
    """What :func:`read_frames` will deliver: ``kind`` is "video" or "images"; ``frames`` the
    count (exact for a folder, packets for a video, None when unknown); ``size`` (width, height)
    upright; ``fps`` the frame rate (None for a folder)."""

    path: Path
    kind: str
    frames: int | None
    size: tuple[int, int]
    fps: Fraction | None


def _natural_key(p: Path) -> list[object]:
    return [int(part) if part.isdigit() else part.lower() for part in _DIGITS.split(p.name)]


def image_files(folder: Path) -> list[Path]:
    """The still frames of a folder, in natural name order. InputError when there are none."""
    files = sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS),
                   key=_natural_key)
    if not files:
        raise InputError(f"no image frames (png, jpg, bmp, tif, webp) in the folder {folder}")
    return files


def read_image(path: Path) -> torch.Tensor:
    """One still frame -> (3, H, W) float32 RGB in [0, 1] (8- or 16-bit; grey and alpha handled)."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise InputError(f"cannot read the image {path}")
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    else:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return rgb_to_tensor(img)


def rgb_to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8/uint16 RGB -> (3, H, W) float32 in [0, 1]."""
    peak = 65535.0 if rgb.dtype == np.uint16 else 255.0
    chw = rgb.transpose(2, 0, 1).astype(np.float32)
    chw *= 1.0 / peak
    return torch.from_numpy(chw)


def tensor_to_rgb8(frame: torch.Tensor) -> np.ndarray:
    """(3, H, W) float RGB in [0, 1] -> (H, W, 3) uint8, rounded."""
    chw = frame.detach().to("cpu", torch.float32).numpy() * 255.0 + 0.5
    np.clip(chw, 0.0, 255.0, out=chw)
    return np.ascontiguousarray(chw.astype(np.uint8).transpose(1, 2, 0))


def source_info(path: str | Path) -> FrameSource:
    """Probe a video file or a folder of frames. Raises InputError for anything else."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"not found: {p}")
    if p.is_dir():
        files = image_files(p)
        h, w = read_image(files[0]).shape[-2:]
        return FrameSource(p, "images", len(files), (w, h), None)
    info = probe(p)
    v = info.video
    return FrameSource(p, "video", count_packets(p, v.index) or v.estimated_frames, v.upright_size,
                       v.avg_rate)


def read_timed_frames(path: str | Path, max_frames: int | None = None) -> Iterator[tuple[float, torch.Tensor]]:
    """Yield (seconds since the first frame, (3, H, W) float32 RGB [0, 1]) for each frame.

    A folder of images counts as 25 frames per second. ``max_frames`` stops early (the decoder is
    stopped too).
    """
    p = Path(path)
    limit = max_frames if max_frames is not None else -1
    if p.is_dir():
        for i, f in enumerate(image_files(p)):
            if i == limit:
                return
            yield i / 25.0, read_image(f)
        return
    info = probe(p)
    decoder = VideoDecoder(info, info.video.colour.resolved(info.video.height))
    with decoder:
        first: int | None = None
        for i, frame in enumerate(decoder):
            if i == limit:
                decoder.kill()
                break
            first = frame.pts if first is None else first
            yield float((frame.pts - first) * decoder.time_base), rgb_to_tensor(frame.rgb)
    if decoder.frames == 0:
        raise InputError(f"no frames could be decoded from {p}")


def read_frames(path: str | Path, max_frames: int | None = None) -> Iterator[torch.Tensor]:
    """Yield every frame of a video file or image folder as (3, H, W) float32 RGB in [0, 1]."""
    for _, frame in read_timed_frames(path, max_frames):
        yield frame


def make_test_clip(path: str | Path, size: tuple[int, int] = (480, 270), frames: int = 24,
                   rate: int = 25, pattern: str = "testsrc2") -> Path:
    """Write a synthetic clip (lavfi ``pattern``, e.g. testsrc2 or mandelbrot) as H.264 yuv420p
    (CRF 16, ultrafast), ``frames`` frames of ``size`` at ``rate`` fps. Returns the path."""
    out = Path(path)
    tools = ffmpeg.find_ffmpeg()
    w, h = size
    args = [tools.ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-y", "-f", "lavfi",
            "-i", f"{pattern}=size={w}x{h}:rate={rate}", "-frames:v", str(frames),
            "-c:v", "libx264", "-preset", "ultrafast", "-crf", "16", "-pix_fmt", "yuv420p", str(out)]
    ffmpeg.run(args, f"making the test clip {out.name}", timeout=600)
    return out


class RawVideoWriter:
    """Encode (3, H, W) float RGB [0, 1] frames into a video file with the ffmpeg binary
    (H.264 yuv420p BT.709 CRF ``crf``, or FFV1 for .mkv with ``lossless``), frames piped raw.

    Use as a context manager; the file is complete after a clean exit, removed after an error.
    Width and height must be even for yuv420p.
    """

    def __init__(self, path: str | Path, size: tuple[int, int], fps: Fraction | float = 25,
                 crf: int = 18, lossless: bool = False) -> None:
        self.path, self.size = Path(path), size
        self.fps = Fraction(fps).limit_denominator(1001000)
        self.crf, self.lossless = crf, lossless
        self.frames = 0
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RawVideoWriter:
        tools = ffmpeg.find_ffmpeg()
        w, h = self.size
        codec = (["-c:v", "ffv1", "-pix_fmt", "yuv444p"] if self.lossless else
                 ["-c:v", "libx264", "-crf", str(self.crf), "-preset", "medium", "-pix_fmt", "yuv420p"])
        args = [tools.ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-y",
                "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(self.fps), "-i", "pipe:0",
                "-vf", "scale=out_color_matrix=bt709:out_range=tv", *codec,
                "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709",
                "-color_range", "tv", str(self.path)]
        self._proc = ffmpeg.popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE)
        return self

    def write(self, frame: torch.Tensor) -> None:
        """Append one (3, H, W) float RGB [0, 1] frame of the writer's size."""
        assert self._proc is not None and self._proc.stdin is not None, "use RawVideoWriter as a context manager"
        assert tuple(frame.shape[-2:]) == (self.size[1], self.size[0]), \
            f"frame is {tuple(frame.shape)}, the writer expects {self.size[0]}x{self.size[1]}"
        try:
            self._proc.stdin.write(tensor_to_rgb8(frame).tobytes())
        except BrokenPipeError:
            self._finish(failed=True)
        self.frames += 1

    def _finish(self, failed: bool) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        assert proc.stdin is not None and proc.stderr is not None
        try:
            proc.stdin.close()
        except BrokenPipeError:
            pass
        if failed and proc.poll() is None:
            proc.kill()
        err = proc.stderr.read().decode("utf-8", "replace")
        proc.stderr.close()
        code = proc.wait()
        if failed or code != 0:
            self.path.unlink(missing_ok=True)
        if code != 0 and not (failed and code < 0):
            ffmpeg.raise_for_failure(f"writing {self.path.name}", err, code)

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self._finish(failed=exc_type is not None)


def write_video(path: str | Path, frames: Iterable[torch.Tensor], fps: Fraction | float = 25,
                crf: int = 18) -> int:
    """Write frames ((3, H, W) float RGB [0, 1], all one size) to ``path``; returns the count."""
    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise OutputError(f"no frames to write to {path}")
    with RawVideoWriter(path, (first.shape[-1], first.shape[-2]), fps, crf) as writer:
        writer.write(first)
        for f in it:
            writer.write(f)
    return writer.frames


__all__ = ["FrameSource", "IMAGE_EXTS", "RawVideoWriter", "image_files", "make_test_clip",
           "read_frames", "read_image", "read_timed_frames", "rgb_to_tensor", "source_info",
           "tensor_to_rgb8", "write_video"]
