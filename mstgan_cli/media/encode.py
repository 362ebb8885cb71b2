"""Encode RGB frames in-process with PyAV into a video-only file, each frame at its own pts.

The final resize (to the exact output size) and the RGB -> YCbCr conversion happen together in
one swscale pass with the output's matrix and range; the encoder is tagged with the same colour
description, so players decode it back the way we meant. The model's float frames come in as
planar GBR (:func:`gbr_frame`), which swscale reads as they are.
"""
from __future__ import annotations

import errno
import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace, Interpolation, VideoReformatter

from ..errors import FFmpegError, OutputError
from ..options import EncodeSettings
from .colour import Colour, HdrMetadata
from .probe import bit_depth, chroma_format

log = logging.getLogger("mstgan_cli")

CODEC_ALIASES = {"h264": "libx264", "avc": "libx264", "x264": "libx264", "h265": "libx265",
                 "hevc": "libx265", "x265": "libx265", "vp9": "libvpx-vp9", "av1": "libsvtav1",
                 "svtav1": "libsvtav1", "prores": "prores_ks"}
_X264_CONTAINERS = {".mp4", ".m4v", ".mov", ".mkv", ".ts", ".m2ts", ".mts", ".flv", ".3gp", ".nut"}
_LOSSLESS_MKV = {".mkv", ".nut", ".avi"}
_CRF_DEFAULTS = {"libx264": 18, "libx265": 20, "libvpx-vp9": 30, "libsvtav1": 30, "libaom-av1": 30}
_PRESET_CODECS = {"libx264", "libx265", "libsvtav1"}
# Containers mstgan reads but does not write: MPEG-PS (its MPEG-2 encoder needs a constant
# frame rate in its own time base) and raw YUV4MPEG / DV files. Their outputs default to .mkv.
_QP2LAMBDA = 118  # FF_QP2LAMBDA: global_quality counts quantisers in lambda units
READ_ONLY_SUFFIXES = frozenset({".mpg", ".mpeg", ".m2v", ".vob", ".m2p", ".y4m", ".dv"})
_INTRINSICALLY_LOSSLESS = {"ffv1", "utvideo", "huffyuv", "ffvhuff", "png", "rawvideo"}


@dataclass(frozen=True)
class EncoderPlan:
    """The concrete encoder, pixel format and private options chosen for an output."""

    codec: str
    pix_fmt: str
    options: dict[str, str]


def plan_encoder(settings: EncodeSettings, suffix: str, deep: bool,
                 container_default: str | None = None, *, chroma: str | None = None,
                 hdr: HdrMetadata | None = None) -> EncoderPlan:
    """Choose encoder, pixel format and options for an output file ending in ``suffix``.

    ``deep`` means the source has more than 8 bits per component; the default pixel format then
    keeps 10 bits. ``chroma`` is the source's subsampling (``"420"``, ``"422"``, ``"444"``,
    :func:`~mstgan_cli.media.probe.chroma_format`): 4:2:2 and 4:4:4 are kept by default. Where
    the encoder takes neither that depth nor that subsampling, the nearest it takes is used, with
    one warning. ``hdr``: the source's mastering display / content light level, written into the
    bitstream by the encoders that can (x264, x265, SVT-AV1; the others' outputs get them in the
    container, :mod:`.remux`). An explicit ``settings.pix_fmt`` wins. Raises OutputError for
    impossible combinations (e.g. --lossless with prores)."""
    suffix = suffix.lower()
    if suffix in READ_ONLY_SUFFIXES:
        raise OutputError(f"mstgan reads {suffix} files but does not write them; name the output "
                          ".mkv, .mp4 or .ts" + (" (or use -o - --format yuv4mpegpipe)"
                                                 if suffix == ".y4m" else ""))
    codec = CODEC_ALIASES.get((settings.codec or "").lower(), settings.codec)
    if codec is None:
        if settings.lossless and suffix in _LOSSLESS_MKV:
            codec = "ffv1"
        elif suffix == ".webm":
            codec = "libvpx-vp9"
        elif suffix == ".avi":  # AVI stores no presentation times; H.264 read back from it is
            codec = "mpeg4"     # one frame late (FFmpeg guesses a reorder delay), MPEG-4 ASP is not
        elif suffix in _X264_CONTAINERS or container_default is None:
            codec = "libx264"
        else:
            codec = container_default
    try:
        formats = [f.name for f in (av.codec.Codec(codec, "w").video_formats or [])]
    except Exception as exc:  # noqa: BLE001 - PyAV raises several types for unknown codecs
        raise OutputError(f"unknown video encoder {codec!r}; try libx264, libx265, libvpx-vp9, "
                          "libsvtav1 or ffv1") from exc
    want = "444" if settings.lossless else chroma if chroma in ("422", "444") else "420"
    pix_fmt = settings.pix_fmt or (f"yuv{want}p10le" if deep else f"yuv{want}p")
    if formats and pix_fmt not in formats:
        if settings.pix_fmt:
            raise OutputError(f"{codec} cannot encode pixel format {pix_fmt}; it takes {', '.join(formats[:12])}")
        pix_fmt = _nearest_format(formats, want, deep)
        _say_lost(codec, pix_fmt, want, deep)
    options: dict[str, str] = {}
    if settings.lossless:
        if codec == "libx264":
            options["qp"] = "0"
        elif codec == "libx265":
            options["x265-params"] = "lossless=1"
        elif codec == "libvpx-vp9":
            options["lossless"] = "1"
        elif codec not in _INTRINSICALLY_LOSSLESS:
            raise OutputError(f"--lossless is not possible with {codec}; use ffv1 (.mkv), libx264, "
                              "libx265 or libvpx-vp9")
        if codec == "ffv1":
            options.update({"level": "3", "slicecrc": "1", "g": "1"})
    elif codec in _CRF_DEFAULTS:
        crf = settings.crf if settings.crf is not None else _CRF_DEFAULTS[codec]
        options["crf"] = str(crf)
        if codec == "libvpx-vp9":
            options.update({"b": "0", "row-mt": "1"})
    elif codec == "mpeg4":  # a constant quantiser (2: near the best) instead of a 200 kb/s default
        if settings.crf is not None:
            log.warning("%s has no constant-quality (CRF) mode; --crf is ignored", codec)
        options.update({"flags": "+qscale", "global_quality": str(2 * _QP2LAMBDA), "bf": "0"})
    elif settings.crf is not None:
        log.warning("%s has no constant-quality (CRF) mode; --crf is ignored", codec)
    if settings.preset:
        if codec in _PRESET_CODECS and not (settings.lossless and codec == "ffv1"):
            options["preset"] = settings.preset
        else:
            log.warning("%s has no presets; --preset is ignored", codec)
    elif codec in ("libx264", "libx265"):
        options["preset"] = "medium"
    if hdr is not None:
        _hdr_options(codec, hdr, options)
    return EncoderPlan(codec, pix_fmt, options)


# Each encoder's own parameter list, and its names for the mastering display and light level.
_HDR_PARAMS = {"libx265": ("x265-params", "master-display", "max-cll"),
               "libx264": ("x264-params", "mastering-display", "cll"),
               "libsvtav1": ("svtav1-params", "mastering-display", "content-light")}


def _hdr_options(codec: str, hdr: HdrMetadata, options: dict[str, str]) -> None:
    """Add the static HDR metadata to the encoder's parameter list (into the bitstream: SEI for
    H.264/HEVC, metadata OBUs for AV1), after any parameters already there."""
    if codec not in _HDR_PARAMS:
        return
    key, display, light = _HDR_PARAMS[codec]
    master = hdr.svt_master_display if codec == "libsvtav1" else hdr.master_display
    params = [p for p in options.get(key, "").split(":") if p]
    if master:
        params.append(f"{display}={master}")
    if hdr.max_cll:
        params.append(f"{light}={hdr.max_cll}")
    if params:
        options[key] = ":".join(params)


_DEPTHS = {8: "", 9: "9le", 10: "10le", 12: "12le", 14: "14le", 16: "16le"}


def _nearest_format(formats: list[str], chroma: str, deep: bool) -> str:
    """The planar YCbCr format of ``formats`` nearest to ``chroma`` subsampling at 10 bits
    (``deep``) or 8: the same subsampling first, else 4:2:0, else any; the depth nearest to
    the wanted one, preferring more bits."""
    chromas = [chroma] + [c for c in ("420", "422", "444") if c != chroma]
    want = 10 if deep else 8
    depths = sorted(_DEPTHS, key=lambda d: (abs(d - want), -d))
    for c in chromas:
        for d in depths:
            name = f"yuv{c}p{_DEPTHS[d]}"
            if name in formats:
                return name
    fallback = [f for f in formats if f.startswith("yuv4") and "j" not in f] or formats
    return fallback[0]


def _say_lost(codec: str, pix_fmt: str, chroma: str, deep: bool) -> None:
    """One warning for what the source had and ``pix_fmt`` does not keep: its subsampling
    (4:2:2, 4:4:4) or its depth (more than 8 bits). Nothing for an 8-bit 4:2:0 source."""
    lost = []
    got = chroma_format(pix_fmt)
    if chroma != "420" and got != chroma:
        lost.append(f"4:{chroma[1]}:{chroma[2]} chroma")
    if deep and bit_depth(pix_fmt) < 10:
        lost.append("10-bit samples")
    if lost:
        log.warning("%s cannot encode %s; the output is %s (use --codec or --pix-fmt to choose)",
                    codec, " or ".join(lost), pix_fmt)


def scaled_for_rounding(chw: np.ndarray, deep: bool, out: np.ndarray | None = None) -> np.ndarray:
    """Float RGB in [0, 1] -> float32 code values + 0.5, clipped to [0, peak]: a cast to uint8
    (uint16 when ``deep``) then truncates it to the rounded codes. Into ``out`` (float32, the
    same shape) when given, else a new array."""
    peak = 65535.0 if deep else 255.0
    scaled = np.multiply(chw, peak, dtype=np.float32, out=out)
    scaled += 0.5
    np.clip(scaled, 0.0, peak, out=scaled)
    return scaled


# rows converted at a time by gbr_frame: the float scratch (ROWS x width) stays in the cache
GBR_ROWS = 64


def gbr_frame(chw: np.ndarray, deep: bool) -> av.VideoFrame:
    """(3, H, W) float RGB in [0, 1] -> a planar GBR frame, rounded to 8 bits (16 when ``deep``),
    values outside [0, 1] clipped.

    The same pixels as ``stages.to_array`` then an ``rgb24`` / ``rgb48le`` frame, and the same
    YCbCr out of swscale (``tests/test_media.py``), without interleaving the channels into
    (H, W, 3) and copying that again into the frame: about half the CPU time per frame on the
    encoder's thread (1920x1088: 16-21 against 32-37 ms), which on a small CPU the model shares.
    The rows go through a small scratch buffer, :data:`GBR_ROWS` at a time, so that the scaling,
    rounding and clipping stay in the cache: memory sees the float frame read once and the
    planes written once (3840x2160: 20 against 60 CPU-ms per frame, `benchmarks/handoff.py`)."""
    dtype = np.dtype("<u2" if deep else "u1")
    _, h, w = chw.shape
    frame = av.VideoFrame(w, h, "gbrp16le" if deep else "gbrp")
    scratch = np.empty((min(GBR_ROWS, h), w), np.float32)
    for plane, channel in zip(frame.planes, (1, 2, 0)):  # G, B, R
        rows = np.frombuffer(plane, dtype).reshape(h, plane.line_size // dtype.itemsize)[:, :w]
        for y in range(0, h, GBR_ROWS):
            n = min(GBR_ROWS, h - y)
            scaled_for_rounding(chw[channel, y:y + n], deep, out=scratch[:n])
            np.copyto(rows[y:y + n], scratch[:n], casting="unsafe")  # truncates: the +0.5 rounds
    return frame


def av_error(exc: Exception, what: str) -> Exception:
    """The error to raise for what PyAV raised while doing ``what``: a full disk or another OS
    error is an OutputError, the rest an FFmpegError."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutputError(f"{what}: no space left on device")
    if isinstance(exc, OSError) and not isinstance(exc, av.error.FFmpegError):
        return OutputError(f"{what}: {exc.strerror or exc}")
    return FFmpegError(f"{what}: {exc}")


def configure(cc: Any, time_base: Fraction, sar: Fraction, threads: int, colour: Colour) -> None:
    """Set an encoder's codec context: time base, pixel aspect, threads (0: the codec's own
    choice) and the colour tags."""
    cc.time_base = time_base
    cc.sample_aspect_ratio = sar
    if threads:
        cc.thread_count = threads
    for key, value in colour.ids().items():
        setattr(cc, key, value)


class VideoEncoder:
    """Write frames to ``path`` (a video-only file; the format follows the file's extension).

    Frames passed to :meth:`write` are (h, w, 3) uint8 or uint16 full-range RGB arrays or
    :func:`gbr_frame` frames, of size ``src_size``; each is resized to ``size`` (Lanczos up, area
    down), converted to the output colour and encoded with ``pts`` in ``time_base`` units.
    """

    def __init__(self, path: Path, plan: EncoderPlan, *, size: tuple[int, int],
                 src_size: tuple[int, int], time_base: Fraction, rate: Fraction | None,
                 colour: Colour, sar: Fraction = Fraction(1), threads: int = 0) -> None:
        """``threads``: the encoder's threads, 0 = the codec's own choice (x264: 1.5 per core)."""
        self._setup(path, plan, size, src_size, time_base, colour)
        try:
            self._container = av.open(str(path), mode="w")
        except Exception as exc:  # noqa: BLE001
            raise av_error(exc, f"cannot create {path}") from exc
        try:
            stream = self._container.add_stream(plan.codec, rate=rate)
            stream.width, stream.height = size
            stream.pix_fmt = plan.pix_fmt
            stream.time_base = time_base
            configure(stream.codec_context, time_base, sar, threads, colour)
            stream.options = dict(plan.options)
            self._stream = stream
        except Exception as exc:  # noqa: BLE001
            self.abort()
            raise av_error(exc, f"cannot set up the {plan.codec} encoder") from exc
        log.debug("encoder %s %s %dx%d tb=%s options=%s colour=%s", plan.codec, plan.pix_fmt,
                  size[0], size[1], time_base, plan.options, colour)

    def _setup(self, path: Path, plan: EncoderPlan, size: tuple[int, int], src_size: tuple[int, int],
               time_base: Fraction, colour: Colour) -> None:
        """The state every encoder of frames keeps (this one and media.images.ImageEncoder)."""
        self.path, self.plan, self.size, self.src_size = path, plan, size, src_size
        self.time_base, self.colour = time_base, colour
        self.frames = 0
        self.packet_pts: list[int] = []  # of every packet written, in ``time_base``
        self._last_pts: int | None = None
        self.nudged = 0
        self._reformatter = VideoReformatter()
        grow = size[0] * size[1] >= src_size[0] * src_size[1]
        kernel = Interpolation.LANCZOS if grow else Interpolation.AREA
        self._interp = kernel | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INP

    def _to_frame(self, rgb: np.ndarray | av.VideoFrame) -> av.VideoFrame:
        if isinstance(rgb, av.VideoFrame):
            frame = rgb
        else:
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb48le" if rgb.dtype == np.uint16 else "rgb24")
        return self._reformatter.reformat(
            frame, width=self.size[0], height=self.size[1], format=self.plan.pix_fmt,
            dst_colorspace=Colorspace[self.colour.sws_matrix],
            dst_color_range=ColorRange[self.colour.sws_range], interpolation=self._interp)

    def write(self, rgb: np.ndarray | av.VideoFrame, pts: int) -> None:
        """Encode one frame. ``rgb``: (H, W, 3) uint8 or uint16, full-range RGB, or a
        :func:`gbr_frame`; H x W = src_size. A pts that does not increase is nudged forward by one
        tick (and counted in ``nudged``)."""
        h, w = (rgb.height, rgb.width) if isinstance(rgb, av.VideoFrame) else rgb.shape[:2]
        assert (w, h) == self.src_size, f"frame is {w}x{h}, encoder expects {self.src_size}"
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
            self.nudged += 1
        self._last_pts = pts
        frame = self._to_frame(rgb)
        frame.pts = pts
        frame.time_base = self.time_base
        try:
            for packet in self._stream.encode(frame):
                self._mux(packet)
        except Exception as exc:  # noqa: BLE001
            raise av_error(exc, f"encoding frame {self.frames} into {self.path.name}") from exc
        self.frames += 1

    def _mux(self, packet: av.Packet) -> None:
        if packet.pts is not None:
            self.packet_pts.append(int(packet.pts))
        self._container.mux(packet)

    def close(self) -> None:
        """Flush the encoder and finish the file."""
        try:
            for packet in self._stream.encode(None):
                self._mux(packet)
            self._container.close()
        except Exception as exc:  # noqa: BLE001
            self.abort()
            raise av_error(exc, f"finishing {self.path.name}") from exc

    def abort(self) -> None:
        """Close without flushing; never raises (the caller deletes the file)."""
        try:
            self._container.close()
        except Exception:  # noqa: BLE001, S110 - best effort on an error path
            pass
