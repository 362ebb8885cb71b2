"""Streams instead of files: a video read once from stdin, a video written to stdout.

**stdin** cannot be probed twice, so the first megabytes are read into memory and probed (in
process, media.libav); the decoder then gets the prefix followed by the rest of the stream.
Counts and durations of a stream are unknown until its end. Audio, subtitles and attachments
of the stream are kept: the decoder stream-copies them into a side file while it decodes (see
:class:`~mstgan_cli.media.decode.VideoDecoder`), and the final mux takes them from there. Data
streams and extra video streams of a stream are left out (with a warning). Input from stdin is
upscaled in one pass (no segments, nothing to resume).

**stdout** gets a stream format (:data:`~mstgan_cli.options.STREAM_FORMATS`) as the upscale
runs (:class:`LiveStdout`): the encoder writes into a FIFO that FFmpeg muxes to stdout with
whatever the format carries, so the first frames leave at once. What can be checked is checked
first (the format takes the audio, YUV4MPEG gets a constant frame rate); each frame's time is
checked as the encoder writes it, since nothing can be read back from a pipe. A stream read
from stdin that keeps audio or subtitles is the exception: those arrive in a side file only as
the decoder reads, so its video is encoded into a temporary file first, checked, then muxed.
"""
from __future__ import annotations

import logging
import os
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO, TypeVar

from ..errors import FFmpegError, InputError, MstganError, OutputError
from ..media import ffmpeg
from ..media.probe import MediaInfo, StreamInfo, probe_bytes
from ..options import EncodeSettings

log = logging.getLogger("mstgan_cli")
T = TypeVar("T")

PREFIX_BYTES = 8 << 20   # what is read from stdin before probing
CHUNK_BYTES = 1 << 20
SIDE_KINDS = frozenset({"audio", "subtitle", "attachment"})

# The intermediate file for each stream format. NUT keeps any time base exactly; Matroska (ms)
# only for Matroska, where the final stream rounds the same way anyway.
_INTERMEDIATE = {"matroska": ".mkv", "nut": ".nut", "mpegts": ".nut", "mp4": ".nut",
                 "yuv4mpegpipe": ".nut"}


class StdinSource:
    """A stream read once from a binary file object (normally ``sys.stdin.buffer``)."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.prefix = b""

    def probe(self) -> MediaInfo:
        """Read up to :data:`PREFIX_BYTES` and probe them. Raises InputError."""
        if getattr(self.stream, "isatty", lambda: False)():
            raise InputError("stdin is a terminal; pipe a video into mstgan, e.g. "
                             "ffmpeg -i in.mkv -f nut - | mstgan upscale - -o out.mkv")
        parts: list[bytes] = []
        size = 0
        while size < PREFIX_BYTES:
            chunk = self.stream.read(PREFIX_BYTES - size)
            if not chunk:
                break
            parts.append(chunk)
            size += len(chunk)
        self.prefix = b"".join(parts)
        return probe_bytes(self.prefix)

    def chunks(self) -> Iterator[bytes]:
        """The whole stream: the probed prefix, then the rest as it arrives."""
        yield self.prefix
        self.prefix = b""
        while chunk := self.stream.read(CHUNK_BYTES):
            yield chunk


def side_streams(info: MediaInfo) -> tuple[MediaInfo, tuple[StreamInfo, ...]]:
    """What of a stdin stream's other streams is kept: ``info`` reduced to the video and the
    kept streams, and the streams left out."""
    kept = tuple(s for s in info.other_streams if s.kind in SIDE_KINDS and not s.attached_pic)
    lost = tuple(s for s in info.other_streams if s not in kept)
    if lost:
        log.warning("streams read from stdin keep only audio, subtitles and attachments; left "
                    "out %s", ", ".join(s.label for s in lost))
    streams = tuple(s for s in info.streams if s.index == info.video.index or s in kept)
    return replace(info, streams=streams), lost


def intermediate_suffix(fmt: str) -> str:
    """The extension of the video file encoded before muxing to stdout in format ``fmt``."""
    return _INTERMEDIATE[fmt]


def stream_encode(settings: EncodeSettings, fmt: str) -> EncodeSettings:
    """Encoder settings for a stream format: YUV4MPEG carries raw pictures, so its video is
    kept losslessly (FFV1) until the final mux unpacks it."""
    if fmt != "yuv4mpegpipe":
        return settings
    if settings.codec or settings.crf is not None or settings.preset:
        log.warning("yuv4mpegpipe carries raw pictures; --codec, --crf and --preset are ignored")
    return EncodeSettings(codec="ffv1", pix_fmt=settings.pix_fmt)


class LiveStdout:
    """``-o -`` while the upscale runs: the encoder writes the video into a FIFO that an FFmpeg
    reads and muxes, with the source's other streams, straight to stdout, so a player at the
    other end of the pipe starts at the first frames (``mstgan upscale in.mkv -o - | ffplay -``).

    :meth:`start` before the encoder opens ``fifo`` (each side's open waits for the other);
    :meth:`finish` after the encoder closed it; :meth:`abort` on any failure. When the FFmpeg
    ends early (the reader closed the pipe, a mux error, a failed start), the FIFO is held open
    for reading and drained until :meth:`abort`, so the encoder never waits for ever, to open it
    or to write; :meth:`guard` stops the frames at the next one."""

    def __init__(self, fifo: Path, args: list[str]) -> None:
        self.fifo, self.args = fifo, args
        os.mkfifo(fifo)
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: list[bytes] = []
        self._reader: threading.Thread | None = None
        self._done = threading.Event()

    def start(self) -> None:
        self._proc = ffmpeg.popen(self.args, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._reader = threading.Thread(target=self._watch, name="mstgan-stdout-mux", daemon=True)
        self._reader.start()

    def _watch(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr.append(line)
            del self._stderr[:-40]
        self._proc.wait()
        if self._proc.returncode != 0:
            self._drain()

    def _drain(self) -> None:
        """Hold the FIFO open for reading and throw away what arrives, until the job ends: an
        encoder blocked in open() gets through, and one that writes never blocks."""
        try:
            fd = os.open(self.fifo, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            return
        try:
            while not self._done.is_set():
                try:
                    if not os.read(fd, 1 << 16):
                        self._done.wait(0.05)  # no writer yet, or it has closed
                except BlockingIOError:
                    self._done.wait(0.01)
                except OSError:
                    return
        finally:
            os.close(fd)

    def guard(self, frames: Iterator[T]) -> Iterator[T]:
        """``frames`` until the FFmpeg has failed (then its error, at the next frame)."""
        for frame in frames:
            if self.failed:
                raise self.error()
            yield frame

    @property
    def failed(self) -> bool:
        """Whether the FFmpeg has already ended with an error."""
        return self._proc is not None and self._proc.poll() not in (None, 0)

    def error(self) -> MstganError:
        """What went wrong on the FFmpeg's side, once it has ended with an error."""
        tail = b"".join(self._stderr).decode("utf-8", "replace")
        if "Broken pipe" in tail or "EPIPE" in tail:
            return OutputError("the reader of stdout closed the pipe; the stream is incomplete")
        return FFmpegError(f"muxing to stdout failed: {ffmpeg.summary(tail)}", stderr_tail=tail)

    def finish(self) -> None:
        """Wait for the FFmpeg to write the end of the stream. Raises on its failure."""
        assert self._proc is not None and self._reader is not None
        self._proc.wait()
        if self._proc.returncode != 0:
            raise self.error()
        self._reader.join()

    def abort(self) -> None:
        """Stop the FFmpeg (what reached stdout stays there: a pipe cannot be taken back)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._done.set()
        if self._reader is not None:
            self._reader.join(timeout=5)
