"""What is in a media file: streams, the video's size, rotation, timing and colour (probed in
process by PyAV's FFmpeg, :mod:`.libav`, in ffprobe's terms)."""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from ..errors import FFmpegError, InputError
from . import libav
from .sequence import DEFAULT_FPS, READ_SUFFIXES, ImageSequence, find_sequence, parse_pattern
from .colour import Colour, HdrMetadata

log = logging.getLogger("mstgan_cli")

_STILL_FORMATS = ("image2", "image2pipe")


def ffmpeg_input(path: Path) -> str:
    """A path spelled so FFmpeg reads it as a local file whatever its name (``-x.mp4``, ``a:b``)."""
    return "file:" + str(path)


def _fraction(text: object, default: Fraction | None = None) -> Fraction | None:
    try:
        value = Fraction(str(text))
    except (ValueError, ZeroDivisionError):
        return default
    return value if value > 0 else default


def _int(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


def _float(value: object) -> float | None:
    try:
        return float(str(value))
    except ValueError:
        return None


def bit_depth(pix_fmt: str) -> int:
    """Bits per component of a pixel format name: 8 for ``yuv420p``, 10 for ``yuv420p10le``/``p010le``."""
    m = re.search(r"(\d+)(le|be)$", pix_fmt)
    if m and int(m.group(1)) in (9, 10, 12, 14, 16):
        return int(m.group(1))
    if m and m.group(1) in ("010", "012", "016"):
        return int(m.group(1))
    if m and m.group(1) in ("48", "64"):  # rgb48le, bgr48be, rgba64be: 16 per component
        return 16
    return 8


def chroma_format(pix_fmt: str) -> str | None:
    """The chroma subsampling of a YCbCr pixel format: ``"420"``, ``"422"`` or ``"444"``
    (``yuv422p10le``, ``nv16``, ``uyvy422``: ``"422"``); None for RGB, grey, other subsamplings
    (4:1:1, 4:4:0) and names FFmpeg does not know."""
    try:
        fmt = av.VideoFormat(pix_fmt, 16, 16)
    except (ValueError, TypeError):
        return None
    if fmt.is_rgb or len(fmt.components) < 3:
        return None
    return {(16, 16): "444", (8, 16): "422", (8, 8): "420"}.get(
        (fmt.chroma_width(), fmt.chroma_height()))


def _rotation(stream: dict[str, Any]) -> int:
    """Clockwise display rotation in degrees (0, 90, 180 or 270)."""
    for side in stream.get("side_data_list", []) or []:
        if "rotation" in side:
            return round(-float(side["rotation"]) / 90) * 90 % 360
    rotate = _int((stream.get("tags") or {}).get("rotate"))
    return round(rotate / 90) * 90 % 360 if rotate else 0


@dataclass(frozen=True)
class StreamInfo:
    """One stream of the container, as ffprobe reports it."""

    index: int
    kind: str                       # "video", "audio", "subtitle", "data", "attachment"
    codec: str
    disposition: dict[str, int] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def attached_pic(self) -> bool:
        return bool(self.disposition.get("attached_pic"))

    @property
    def label(self) -> str:
        """How messages and reports name it: ``#1 audio (aac)``."""
        return f"#{self.index} {self.kind} ({self.codec})"


@dataclass(frozen=True)
class VideoInfo:
    """The video stream we upscale. ``width``/``height`` are the coded (stored) size."""

    index: int
    codec: str
    width: int
    height: int
    pix_fmt: str
    sar: Fraction
    rotation: int
    time_base: Fraction
    avg_rate: Fraction | None
    nb_frames: int | None
    duration: float | None
    colour: Colour
    field_order: str = "unknown"    # as ffprobe says: progressive, tt, bb, tb, bt, unknown
    hdr: HdrMetadata | None = None  # mastering display / content light level, if the source has them

    @property
    def interlaced(self) -> bool:
        """The stream says its pictures are pairs of fields (DVD, broadcast)."""
        return self.field_order in ("tt", "bb", "tb", "bt")

    @property
    def bit_depth(self) -> int:
        return bit_depth(self.pix_fmt)

    @property
    def chroma(self) -> str | None:
        """``"420"``, ``"422"`` or ``"444"`` (:func:`chroma_format`)."""
        return chroma_format(self.pix_fmt)

    @property
    def upright_size(self) -> tuple[int, int]:
        """(W, H) of decoded frames: rotation applied (FFmpeg auto-rotates), pixels not resized."""
        return (self.height, self.width) if self.rotation in (90, 270) else (self.width, self.height)

    @property
    def upright_sar(self) -> Fraction:
        return 1 / self.sar if self.rotation in (90, 270) else self.sar

    @property
    def display_size(self) -> tuple[int, int]:
        """(W, H) as shown: rotation and sample aspect ratio applied."""
        w, h = self.upright_size
        return max(1, round(w * self.upright_sar)), h

    @property
    def estimated_frames(self) -> int | None:
        """Frame count from the header, or duration x average rate; None if neither is known."""
        if self.nb_frames:
            return self.nb_frames
        if self.duration and self.avg_rate:
            return max(1, round(self.duration * self.avg_rate))
        return None


@dataclass(frozen=True)
class MediaInfo:
    """A probed file: container, all streams, the chosen video stream, chapter count."""

    path: Path
    format_name: str
    duration: float | None
    streams: tuple[StreamInfo, ...]
    video: VideoInfo
    chapters: int
    start_time: float | None = None   # the container's start (what ``-ss`` counts from)
    sequence: ImageSequence | None = None  # an image sequence (``path`` is then its pattern)

    @property
    def other_streams(self) -> tuple[StreamInfo, ...]:
        """Every stream except the one we upscale (kept as-is in the output)."""
        return tuple(s for s in self.streams if s.index != self.video.index)


def _video_info(s: dict[str, Any], fmt_duration: float | None) -> VideoInfo:
    tags = s.get("tags") or {}
    duration = _float(s.get("duration")) or _duration_tag(tags) or fmt_duration
    width, height = _int(s.get("width")) or 0, _int(s.get("height")) or 0
    if width <= 0 or height <= 0:
        raise InputError(f"the video stream #{s.get('index')} has no frame size")
    return VideoInfo(
        index=int(s["index"]), codec=str(s.get("codec_name", "?")), width=width, height=height,
        pix_fmt=str(s.get("pix_fmt") or "yuv420p"),
        sar=_fraction(str(s.get("sample_aspect_ratio", "1:1")).replace(":", "/"), Fraction(1)) or Fraction(1),
        rotation=_rotation(s), time_base=_fraction(s.get("time_base"), Fraction(1, 1000)) or Fraction(1, 1000),
        avg_rate=_fraction(s.get("avg_frame_rate")) or _fraction(s.get("r_frame_rate")),
        nb_frames=_int(s.get("nb_frames")) or _int(tags.get("NUMBER_OF_FRAMES")),
        duration=duration, colour=Colour.from_probe(s),
        field_order=_field_order(s), hdr=HdrMetadata.from_side_data(s.get("side_data_list")))


def _field_order(s: dict[str, Any]) -> str:
    """The stream's field order; where the container says nothing (or progressive) but the first
    decoded picture is flagged interlaced, that picture's (``tt``: top field first, else ``bb``)."""
    order = str(s.get("field_order") or "unknown")
    if order in ("unknown", "progressive") and s.get("interlaced_frame"):
        return "tt" if s.get("top_field_first") else "bb"
    return order


def _duration_tag(tags: dict[str, str]) -> float | None:
    m = re.match(r"(\d+):(\d+):(\d+(?:\.\d+)?)", tags.get("DURATION", ""))
    return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3)) if m else None


def probe(path: str | os.PathLike[str], *, fps: Fraction | None = None) -> MediaInfo:
    """Probe ``path`` (in process). Raises InputError if it is missing, unreadable, not a media
    file, a still image, or has no video stream (cover art does not count). A pattern of
    numbered pictures (``frames/%06d.png``) is an image sequence at ``fps`` frames per second
    (default 25): :func:`probe_sequence`."""
    if parse_pattern(path) is not None:
        return probe_sequence(path, fps or DEFAULT_FPS)
    p = Path(path)
    if not p.exists():
        raise InputError(f"input not found: {p}")
    if p.is_dir():
        raise InputError(f"input is a folder, not a video file: {p}")
    if not os.access(p, os.R_OK):
        raise InputError(f"input is not readable: {p}")
    return _probe(p, ffmpeg_input(p), None)


def probe_bytes(data: bytes, label: Path = Path("-")) -> MediaInfo:
    """Probe the start of a stream (e.g. the first megabytes read from stdin), which cannot be
    read twice. Counts and durations are unknown for a prefix, so they are left out (None)."""
    if not data:
        raise InputError("the input stream is empty")
    info = _probe(label, "pipe:0", data)
    video = replace(info.video, nb_frames=None, duration=None)
    return replace(info, video=video, duration=None)


def _probe(p: Path, spec: str, data: bytes | None) -> MediaInfo:
    try:
        data_ = libav.describe(data if data is not None else spec,
                               probesize=len(data) if data is not None else None)
    except libav.Unreadable as exc:
        raise InputError(f"not a video FFmpeg can read: {p} ({exc.reason})") from exc
    fmt = data_.get("format") or {}
    format_name = str(fmt.get("format_name", ""))
    raw_streams = data_.get("streams") or []
    streams = tuple(StreamInfo(int(s["index"]), str(s.get("codec_type", "data")),
                               str(s.get("codec_name", "none")),
                               {k: int(v) for k, v in (s.get("disposition") or {}).items()},
                               {str(k): str(v) for k, v in (s.get("tags") or {}).items()})
                    for s in raw_streams)
    if format_name in _STILL_FORMATS or format_name.endswith("_pipe"):
        hint = ""
        if p.suffix.lower() in READ_SUFFIXES:
            hint = f"; for numbered pictures give their pattern, e.g. {p.parent / ('%06d' + p.suffix)}"
        raise InputError(f"{p} is a still image, not a video{hint}")
    videos = [s for s, info in zip(raw_streams, streams) if info.kind == "video" and not info.attached_pic]
    if not videos:
        what = "only cover art" if any(s.kind == "video" for s in streams) else "no video stream"
        raise InputError(f"{p} has no video to upscale ({what})")
    video = _video_info(videos[0], _float(fmt.get("duration")))
    log.debug("probed %s: %s %dx%d %s rot=%d sar=%s tb=%s frames=%s colour=%s hdr=%s", p,
              video.codec, video.width, video.height, video.pix_fmt, video.rotation, video.sar,
              video.time_base, video.nb_frames, video.colour, video.hdr)
    return MediaInfo(p, format_name, _float(fmt.get("duration")), streams, video,
                     len(data_.get("chapters") or []), _float(fmt.get("start_time")))


def count_packets(path: Path, stream_index: int) -> int | None:
    """Exact number of packets of one stream (demuxes the whole file, decodes nothing)."""
    try:
        return sum(1 for _ in libav.packets(ffmpeg_input(path), stream_index))
    except (libav.Unreadable, IndexError):
        return None


@dataclass(frozen=True)
class PacketIndex:
    """Where a stream's frames are, from its packets (demuxed, nothing decoded): ``pts`` of every
    packet in presentation order and ``keyframes`` (the pts of random-access packets), in units
    of ``time_base``. Packets the demuxer marks for discarding (edit lists) are left out."""

    pts: tuple[int, ...]
    keyframes: tuple[int, ...]
    time_base: Fraction


def packet_index(path: Path, stream_index: int, time_base: Fraction) -> PacketIndex | None:
    """The :class:`PacketIndex` of one stream, or None when some packet has no pts (then frame
    positions cannot be known without decoding)."""
    pts: list[int] = []
    keys: list[int] = []
    try:
        for t, key, discard in libav.packets(ffmpeg_input(path), stream_index):
            if discard:
                continue
            if t is None:
                return None
            pts.append(t)
            if key:
                keys.append(t)
    except libav.Unreadable as exc:
        raise FFmpegError(f"cannot read the packets of {path.name}: {exc.reason}") from exc
    return PacketIndex(tuple(sorted(pts)), tuple(sorted(keys)), time_base)


def probe_sequence(path: str | os.PathLike[str], fps: Fraction = DEFAULT_FPS) -> MediaInfo:
    """Probe the image sequence a pattern names (:mod:`.sequence`): its first picture gives the
    frame size, pixel format and colour; the files give the frame count (exact), ``fps`` the
    timing (frame ``k`` at ``k / fps``). Raises InputError when no picture matches, one in the
    middle is missing, or FFmpeg cannot read the first."""
    pattern = parse_pattern(path)
    if pattern is None:
        raise InputError(f"not an image sequence pattern: {path}")
    seq = find_sequence(pattern, fps)
    try:
        data_ = libav.describe(pattern.ffmpeg, fmt="image2", options=seq.demuxer_options)
    except libav.Unreadable as exc:
        raise InputError(f"not a picture FFmpeg can read: {pattern.path(seq.start)} ({exc.reason})") from exc
    raw = [s for s in data_.get("streams") or [] if s.get("codec_type") == "video"]
    if not raw:
        raise InputError(f"{pattern.path(seq.start)} has no picture FFmpeg can read")
    duration = float(seq.count / fps)
    video = replace(_video_info(raw[0], duration), nb_frames=seq.count, duration=duration,
                    avg_rate=fps, time_base=_fraction(raw[0].get("time_base"), 1 / fps) or 1 / fps)
    # pictures are full range; RGB and grey ones have no matrix (TIFF, BMP leave both unsaid)
    c = video.colour
    matrix = "gbr" if c.matrix is None and _is_rgb_or_grey(video.pix_fmt) else c.matrix
    video = replace(video, colour=replace(c, matrix=matrix, range=c.range or "pc"))
    if _has_alpha(video.pix_fmt):
        log.warning("%s: the pictures' alpha channel (%s) is left out; only the colour is "
                    "upscaled", pattern.text, video.pix_fmt)
    streams = (StreamInfo(video.index, "video", video.codec),)
    log.debug("probed %s: %d pictures from %d, %s %dx%d %s at %s fps colour=%s", pattern.text,
              seq.count, seq.start, video.codec, video.width, video.height, video.pix_fmt, fps,
              video.colour)
    return MediaInfo(Path(pattern.text), "image2", duration, streams, video, 0, 0.0, sequence=seq)


def _has_alpha(pix_fmt: str) -> bool:
    try:
        return any(c.is_alpha for c in av.VideoFormat(pix_fmt, 16, 16).components)
    except (ValueError, TypeError):
        return False


def _is_rgb_or_grey(pix_fmt: str) -> bool:
    try:
        fmt = av.VideoFormat(pix_fmt, 16, 16)
    except (ValueError, TypeError):
        return False
    return bool(fmt.is_rgb) or len([c for c in fmt.components if not c.is_alpha]) == 1 \
        or pix_fmt.startswith("pal")
