"""Upscaled frames written as pictures, one file per frame (an image sequence output).

The encoder choice follows the pattern's suffix (:data:`.sequence.WRITE_CODECS`): PNG (8 bits
per component, 16 for a source of more than 8), TIFF (likewise), JPEG (8 bits, 4:2:0, near
the best quality) and BMP (8 bits). The frame goes through the same resize as a video's
(Lanczos up, area down, :class:`~.encode.VideoEncoder`), straight to RGB for the RGB formats.
Pictures carry no time: each is named by its frame's number, and the pictures of an SDR
source carry no colour tags (viewers take them as sRGB); those of an HDR source (PQ, HLG) say
their primaries and transfer (PNG writes them as a ``cICP`` chunk).
"""
from __future__ import annotations

import logging
from collections import deque
from fractions import Fraction

import av
import numpy as np

from ..errors import FFmpegError, OutputError
from ..options import EncodeSettings
from .colour import PRIMARIES_IDS, TRANSFER_IDS, Colour
from .encode import CODEC_ALIASES, EncoderPlan, VideoEncoder, av_error, configure
from .sequence import WRITE_CODECS, Pattern

log = logging.getLogger("mstgan_cli")

_QP2LAMBDA = 118  # FF_QP2LAMBDA: global_quality counts quantisers in lambda units
_DEEP_FORMATS = {"png": "rgb48be", "tiff": "rgb48le"}
_FORMATS = {"png": "rgb24", "tiff": "rgb24", "mjpeg": "yuvj420p", "bmp": "bgr24"}
_HDR_TRANSFERS = frozenset({"smpte2084", "arib-std-b67"})


def plan_image_encoder(settings: EncodeSettings, suffix: str, deep: bool) -> EncoderPlan:
    """The picture encoder for an output pattern ending in ``suffix`` (``.png``, ``.tif``,
    ``.jpg``, ``.bmp``). ``deep``: the source has more than 8 bits per component (PNG and TIFF
    then keep 16). --crf and --preset do not apply to pictures (a warning says so); --codec
    may only name the suffix's own encoder; --lossless is refused for JPEG."""
    suffix = suffix.lower()
    codec = WRITE_CODECS.get(suffix)
    if codec is None:
        raise OutputError(f"mstgan does not write {suffix} pictures; name the output "
                          f"{', '.join(sorted(WRITE_CODECS))}")
    asked = CODEC_ALIASES.get((settings.codec or "").lower(), settings.codec)
    if asked and asked not in (codec, "jpeg" if codec == "mjpeg" else codec):
        raise OutputError(f"{suffix} pictures are written by the {codec} encoder; --codec "
                          f"{settings.codec} does not apply to them (leave it out)")
    if settings.lossless and codec == "mjpeg":
        raise OutputError("--lossless is not possible with JPEG pictures; name the output .png or .tif")
    for name, value in (("--crf", settings.crf), ("--preset", settings.preset)):
        if value is not None:
            log.warning("%s is for video encoders; %s pictures ignore it", name, suffix)
    formats = [f.name for f in (av.codec.Codec(codec, "w").video_formats or [])]
    pix_fmt = settings.pix_fmt or (_DEEP_FORMATS.get(codec) if deep else None) or _FORMATS[codec]
    if settings.pix_fmt and formats and settings.pix_fmt not in formats:
        raise OutputError(f"{suffix} pictures cannot hold pixel format {settings.pix_fmt}; "
                          f"{codec} takes {', '.join(formats[:12])}")
    if deep and codec not in _DEEP_FORMATS and not settings.pix_fmt:
        log.warning("%s pictures hold 8 bits per component; the source's deeper samples are "
                    "rounded (name the output .png or .tif to keep 16)", suffix)
    options: dict[str, str] = {}
    if codec == "mjpeg":  # a constant quantiser near the best, not the 200 kb/s default
        options.update({"flags": "+qscale", "global_quality": str(2 * _QP2LAMBDA)})
    return EncoderPlan(codec, pix_fmt, options)


def picture_colour(source: Colour, pix_fmt: str) -> Colour:
    """What the pictures are tagged with and converted to: full-range RGB for the RGB formats,
    full-range BT.601 YCbCr for JPEG (as JFIF says); primaries and transfer only for an HDR
    source (PQ, HLG)."""
    hdr = source.transfer in _HDR_TRANSFERS
    primaries, transfer = (source.primaries, source.transfer) if hdr else (None, None)
    if pix_fmt.startswith("yuv"):
        return Colour("bt470bg", "pc", primaries, transfer)
    return Colour("gbr", "pc", primaries, transfer)


class ImageEncoder(VideoEncoder):
    """Write each frame as one picture ``pattern.path(number)`` (in the staging folder).

    The same frames as :class:`VideoEncoder` takes, resized alike. The number of a frame is
    ``first`` plus its frame index: counted in the order written, or, with ``fps`` (the frame
    rate of a sequence input), from its pts (``round(pts * time_base * fps)``), so that frame N
    of a sequence becomes picture N even if a picture in between could not be decoded."""

    def __init__(self, pattern: Pattern, plan: EncoderPlan, *, size: tuple[int, int],
                 src_size: tuple[int, int], time_base: Fraction, colour: Colour,
                 sar: Fraction = Fraction(1), first: int = 1, fps: Fraction | None = None,
                 threads: int = 0) -> None:
        self._setup(pattern.folder, plan, size, src_size, time_base, colour)
        self.pattern, self.first, self.fps = pattern, first, fps
        self.numbers: list[int] = []  # of the pictures written, in order
        self._pending: deque[int] = deque()
        try:
            cc = av.CodecContext.create(plan.codec, "w")
            cc.width, cc.height = size
            cc.pix_fmt = plan.pix_fmt
            configure(cc, time_base, sar, threads, colour)
            cc.options = dict(plan.options)
        except Exception as exc:  # noqa: BLE001
            raise FFmpegError(f"cannot set up the {plan.codec} encoder: {exc}") from exc
        self._cc = cc
        log.debug("pictures %s %s %dx%d into %s, numbered from %d%s", plan.codec, plan.pix_fmt,
                  size[0], size[1], pattern.text, first, " by pts" if fps else "")

    def _number(self, pts: int) -> int:
        if self.fps is None:
            return self.first + self.frames
        return self.first + round(pts * self.time_base * self.fps)

    def write(self, rgb: np.ndarray | av.VideoFrame, pts: int) -> None:
        """Encode one frame into its picture (see :meth:`VideoEncoder.write` for ``rgb``)."""
        h, w = (rgb.height, rgb.width) if isinstance(rgb, av.VideoFrame) else rgb.shape[:2]
        assert (w, h) == self.src_size, f"frame is {w}x{h}, encoder expects {self.src_size}"
        number = self._number(pts)
        if self.numbers and number <= self.numbers[-1]:
            number = self.numbers[-1] + 1  # (a sequence's frames are one tick apart; a video's
            self.nudged += 1                # are counted, so this cannot happen in practice)
        self.numbers.append(number)
        self._pending.append(number)
        frame = self._to_frame(rgb)
        frame.pts = pts
        frame.time_base = self.time_base
        for key in ("color_primaries", "color_trc"):
            name = self.colour.primaries if key == "color_primaries" else self.colour.transfer
            table = PRIMARIES_IDS if key == "color_primaries" else TRANSFER_IDS
            if name in table:
                setattr(frame, key, table[name])
        try:
            self._store(self._cc.encode(frame))
        except OutputError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise av_error(exc, f"encoding frame {self.frames} into "
                                      f"{self.pattern.name(number)}") from exc
        self.frames += 1

    def _store(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            number = self._pending.popleft()
            path = self.pattern.path(number)
            try:
                with open(path, "xb") as handle:
                    handle.write(bytes(packet))
            except OSError as exc:
                raise av_error(exc, f"cannot write {path.name}") from exc
            if packet.pts is not None:
                self.packet_pts.append(int(packet.pts))

    def close(self) -> None:
        """Flush the encoder (pictures it still held)."""
        try:
            self._store(self._cc.encode(None))
        except OutputError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise av_error(exc, f"finishing {self.pattern.text}") from exc
        if self._pending:
            raise FFmpegError(f"the {self.plan.codec} encoder held back {len(self._pending)} "
                              "picture(s) at the end")

    def abort(self) -> None:
        """Stop; never raises (the caller removes the staging folder)."""
        self._pending.clear()
