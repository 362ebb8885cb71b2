"""In-process FFmpeg (PyAV's libraries) for what needs no subprocess: describing a container
and listing a stream's packets.

:func:`describe` answers in the shape of ``ffprobe -show_format -show_streams -show_chapters
-print_format json`` (the same keys and spellings), so the rest of ``media/`` reads one
format whatever answered. Why not ffprobe: the bundled static FFmpeg (imageio-ffmpeg) ships
ffmpeg only, and PyAV is already what encodes and joins; in-process there is one FFmpeg per
probe instead of one per subprocess start, and no JSON round trip.

Facts that FFmpeg attaches to decoded frames rather than to the stream in PyAV's API (display
rotation, HDR mastering display and content light level, interlacing) come from decoding the
first picture.
"""
from __future__ import annotations

import io
import logging
import struct
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import av
import av.error

from .colour import LIGHT_LEVEL, MASTERING, MATRIX_IDS, PRIMARIES_IDS, RANGE_IDS, TRANSFER_IDS

log = logging.getLogger("mstgan_cli")

_MATRIX_NAMES = {v: k for k, v in MATRIX_IDS.items() if k != "rgb"}  # 0 is "gbr" to ffprobe
_PRIMARIES_NAMES = {v: k for k, v in PRIMARIES_IDS.items()}
_TRANSFER_NAMES = {v: k for k, v in TRANSFER_IDS.items()}
_RANGE_NAMES = {v: k for k, v in RANGE_IDS.items()}
_FIELD_ORDER = {1: "progressive", 2: "tt", 3: "bb", 4: "tb", 5: "bt"}  # AVFieldOrder
_FIRST_FRAME_PACKETS = 300  # packets read at most to find the first picture


class Unreadable(Exception):
    """The input is not something FFmpeg can demux; ``reason`` is FFmpeg's own words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def open_input(source: str | bytes, probesize: int | None = None, fmt: str | None = None,
               options: dict[str, str] | None = None) -> av.container.InputContainer:
    """Open a local path (spelled ``file:...``) or the bytes of a stream's start for reading;
    ``fmt`` and ``options``: a demuxer to use and its options (``image2`` for a sequence)."""
    options = dict(options or {})
    if probesize:
        options["probesize"] = str(max(32, probesize))
    try:
        if isinstance(source, bytes):
            return av.open(io.BytesIO(source), "r", format=fmt, options=options)
        return av.open(source, "r", format=fmt, options=options)
    except av.error.FFmpegError as exc:
        raise Unreadable(exc.strerror or str(exc)) from exc
    except (OSError, ValueError) as exc:
        raise Unreadable(str(exc)) from exc


def _ratio(value: Fraction | None, sep: str = "/") -> str:
    return f"{value.numerator}{sep}{value.denominator}" if value else f"0{sep}1"


def _seconds(value: int | None, time_base: Fraction | None) -> str | None:
    if value is None or time_base is None:
        return None
    return f"{float(value * time_base):.6f}"


def _codec_name(stream: Any) -> str:
    cc = stream.codec_context
    if cc is not None:
        return str(cc.codec.canonical_name)
    if stream.type == "attachment":
        mime = str(stream.metadata.get("mimetype", "")).lower()
        return "otf" if "opentype" in mime or mime.endswith("otf") else \
            "ttf" if "truetype" in mime or mime.endswith("ttf") else "bin_data"
    return str(getattr(stream, "name", None) or "none")


def _disposition(stream: Any) -> dict[str, int]:
    flags = stream.disposition
    return {name: int(bool(flags & member)) for name, member in type(flags).__members__.items()}


def _video_fields(stream: Any) -> dict[str, Any]:
    cc = stream.codec_context
    sar = stream.sample_aspect_ratio or cc.sample_aspect_ratio
    fields: dict[str, Any] = {
        "width": cc.width, "height": cc.height, "pix_fmt": cc.pix_fmt,
        "sample_aspect_ratio": _ratio(sar, ":") if sar else "N/A",
        "avg_frame_rate": _ratio(stream.average_rate), "r_frame_rate": _ratio(stream.base_rate),
        "color_space": _MATRIX_NAMES.get(int(cc.colorspace), "unknown"),
        "color_range": _RANGE_NAMES.get(int(cc.color_range), "unknown"),
        "color_primaries": _PRIMARIES_NAMES.get(int(cc.color_primaries), "unknown"),
        "color_transfer": _TRANSFER_NAMES.get(int(cc.color_trc), "unknown"),
        "field_order": _FIELD_ORDER.get(int(cc.field_order or 0), "unknown"),
    }
    return fields


def _side_data(frame: Any) -> list[dict[str, Any]]:
    """The first picture's side data that describes the whole stream, as ffprobe spells it."""
    out: list[dict[str, Any]] = []
    rotation = getattr(frame, "rotation", 0) or 0
    if rotation:
        out.append({"side_data_type": "Display Matrix", "rotation": int(rotation)})
    try:
        container = frame.side_data
        # PyAV >= 18.1.1 made it a Mapping (iterating yields the types); before, a sequence
        side_data = list(container.values() if hasattr(container, "values") else container)
    except ValueError:  # a type newer than PyAV's enum (TIFF pictures carry one): none we read
        side_data = []
    for sd in side_data:
        name = getattr(sd.type, "name", str(sd.type))
        raw = bytes(sd)
        if name == "MASTERING_DISPLAY_METADATA" and len(raw) >= 88:
            v = struct.unpack_from("<20i2i", raw)  # AVMasteringDisplayMetadata
            keys = ("red_x", "red_y", "green_x", "green_y", "blue_x", "blue_y",
                    "white_point_x", "white_point_y", "min_luminance", "max_luminance")
            item: dict[str, Any] = {"side_data_type": MASTERING}
            if v[20]:  # has_primaries
                item.update({k: f"{v[2 * i]}/{v[2 * i + 1]}" for i, k in enumerate(keys[:8])})
            if v[21]:  # has_luminance
                item.update({k: f"{v[16 + 2 * i]}/{v[17 + 2 * i]}" for i, k in enumerate(keys[8:])})
            out.append(item)
        elif name == "CONTENT_LIGHT_LEVEL" and len(raw) >= 8:
            cll, fall = struct.unpack_from("<2I", raw)
            out.append({"side_data_type": LIGHT_LEVEL, "max_content": cll, "max_average": fall})
    return out


def _first_picture(container: Any, stream: Any) -> Any | None:
    """Decode the stream's first picture (None when none decodes within a few hundred packets)."""
    try:
        for n, packet in enumerate(container.demux(stream)):
            if n >= _FIRST_FRAME_PACKETS:
                return None
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                continue
            if frames:
                return frames[0]
    except av.error.FFmpegError:
        return None
    return None


def describe(source: str | bytes, probesize: int | None = None, fmt: str | None = None,
             options: dict[str, str] | None = None) -> dict[str, Any]:
    """``{"format": ..., "streams": [...], "chapters": [...]}`` as ffprobe would print them.

    ``source``: a path spelled ``file:...``, or the first bytes of a stream. The first video
    stream that is not cover art also gets ``side_data_list`` (rotation, HDR metadata) and
    ``interlaced_frame``/``top_field_first`` from its first decoded picture. ``fmt``/``options``:
    see :func:`open_input`. Raises :class:`Unreadable` when FFmpeg cannot demux it."""
    with open_input(source, probesize, fmt, options) as container:
        streams: list[dict[str, Any]] = []
        for s in container.streams:
            entry: dict[str, Any] = {
                "index": s.index, "codec_type": s.type, "codec_name": _codec_name(s),
                "time_base": _ratio(s.time_base), "disposition": _disposition(s),
                "tags": dict(s.metadata), "id": f"0x{s.id:x}",
            }
            if s.start_time is not None:
                entry["start_time"] = _seconds(s.start_time, s.time_base)
            if s.duration is not None:
                entry["duration"] = _seconds(s.duration, s.time_base)
            if s.frames:
                entry["nb_frames"] = str(s.frames)
            if s.type == "video" and s.codec_context is not None:
                entry.update(_video_fields(s))
            elif s.type == "audio" and s.codec_context is not None:
                cc = s.codec_context
                entry.update({"sample_rate": str(cc.sample_rate), "channels": cc.channels})
            streams.append(entry)
        main = next((s for s, e in zip(container.streams, streams) if e["codec_type"] == "video"
                     and not e["disposition"].get("attached_pic") and s.codec_context is not None),
                    None)
        if main is not None:
            frame = _first_picture(container, main)
            if frame is not None:
                entry = streams[main.index]
                entry["side_data_list"] = _side_data(frame)
                entry["interlaced_frame"] = int(bool(frame.interlaced_frame))
                entry["top_field_first"] = int(bool(getattr(frame, "top_field_first", False)))
        fmt: dict[str, Any] = {
            "format_name": container.format.name, "nb_streams": len(streams),
            "tags": dict(container.metadata),
        }
        if container.duration is not None:
            fmt["duration"] = f"{container.duration / 1_000_000:.6f}"
        if container.start_time is not None:
            fmt["start_time"] = f"{container.start_time / 1_000_000:.6f}"
        chapters = [{"id": c["id"], "time_base": _ratio(c["time_base"]),
                     "start_time": _seconds(c["start"], c["time_base"]),
                     "end_time": _seconds(c["end"], c["time_base"]),
                     "tags": dict(c.get("metadata") or {})} for c in container.chapters()]
    return {"format": fmt, "streams": streams, "chapters": chapters}


def packets(source: str, stream_index: int) -> Iterator[tuple[int | None, bool, bool]]:
    """``(pts, keyframe, discard)`` of every packet of one stream, in file order (demuxed,
    nothing decoded). Raises :class:`Unreadable` when the file cannot be opened."""
    with open_input(source) as container:
        stream = container.streams[stream_index]
        try:
            for packet in container.demux(stream):
                if packet.size == 0 and packet.pts is None:  # the end-of-stream flush marker
                    continue
                yield packet.pts, bool(packet.is_keyframe), bool(packet.is_discard)
        except av.error.FFmpegError as exc:  # damaged tail: what was read stands
            log.debug("demuxing stopped early: %s", exc)
