"""Decode a file's video stream with the ffmpeg binary into packed RGB frames, streamed via a pipe.

FFmpeg writes raw frames to stdout; we read them with exact byte counts. Each frame's
presentation timestamp comes from a ``showinfo`` filter at the end of the chain, which logs one
line per frame to stderr; a thread parses stderr, so the n-th frame read is paired with the n-th
logged timestamp (``-fps_mode passthrough``: no frame is duplicated or dropped, VFR kept).
FFmpeg auto-rotates, so frames come out upright. YCbCr -> RGB uses the source's own matrix and
range (explicit ``scale`` options, not FFmpeg's guess).
"""
from __future__ import annotations

import collections
import logging
import re
import subprocess
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO

import numpy as np

from ..errors import FFmpegError, InputError
from . import ffmpeg
from .colour import Colour
from .probe import MediaInfo, ffmpeg_input

log = logging.getLogger("mstgan_cli")

_SHOWINFO_FRAME = re.compile(r"\bn:\s*(\d+)\s+pts:\s*(-?\d+|NOPTS)")
_SHOWINFO_SIZE = re.compile(r"\bs:(\d+)x(\d+)")
_SHOWINFO_TB = re.compile(r"config in time_base:\s*(\d+)/(\d+)")
_UNDECODABLE = re.compile(r"decod|invalid data|codec parameters", re.IGNORECASE)
_LEVEL = re.compile(r"\[(panic|fatal|error|warning)\]")
# Error lines that are not about decoding: the rawvideo muxer of our own pipe complains about
# timestamps it does not even store (VFR frames closer than its 1/rate time base), and so may
# the side output; output-side contexts (FFmpeg 7+: "[vost#0:0/...", "[out#1/...").
_NOT_DECODING = re.compile(r"non[- ]monoton\w* (increasing )?dts|\[(?:[avsdt]ost|out)#\d",
                           re.IGNORECASE)
# What demuxers say when the file ends before its own index or header says it should.
_TRUNCATED = re.compile(r"partial file|ended prematurely|truncated|unexpected end of file",
                        re.IGNORECASE)


@dataclass(frozen=True)
class DecodedFrame:
    """One decoded picture: ``rgb`` is (H, W, 3) uint8 (or uint16 for >8-bit sources), full-range
    RGB; ``pts`` is its presentation time in units of the decoder's ``time_base``."""

    rgb: np.ndarray
    pts: int


class _StderrReader(threading.Thread):
    """Drains FFmpeg's stderr: collects per-frame pts, the time base, warnings and a tail."""

    def __init__(self, stream: IO[bytes], size: tuple[int, int] | None = None) -> None:
        """``size``: every frame must be this (width, height); the first that is not is kept
        in ``resized`` (frame number, width, height)."""
        super().__init__(name="mstgan-ffmpeg-stderr", daemon=True)
        self._stream = stream
        self._size = size
        self.resized: tuple[int, int, int] | None = None
        self.cond = threading.Condition()
        self.pts: list[int | None] = []
        self.time_base: Fraction | None = None
        self.errors = 0
        self.truncated = False
        self.done = False
        self.tail: collections.deque[str] = collections.deque(maxlen=40)

    def run(self) -> None:
        try:
            for raw in self._stream:
                line = raw.decode("utf-8", "replace").rstrip()
                if "showinfo" in line:
                    self._showinfo(line)
                    continue
                level = _LEVEL.search(line)
                if level and level.group(1) != "warning" and not _NOT_DECODING.search(line):
                    with self.cond:
                        if _TRUNCATED.search(line):
                            self.truncated = True  # not damage: frames that are not there
                        else:
                            self.errors += 1
                if line and not line.startswith("[info]"):
                    self.tail.append(line)
        finally:
            with self.cond:
                self.done = True
                self.cond.notify_all()

    def _showinfo(self, line: str) -> None:
        frame = _SHOWINFO_FRAME.search(line)
        if frame:
            size = _SHOWINFO_SIZE.search(line) if self._size else None
            if size and self.resized is None and (int(size.group(1)), int(size.group(2))) != self._size:
                self.resized = (len(self.pts), int(size.group(1)), int(size.group(2)))
            with self.cond:
                self.pts.append(None if frame.group(2) == "NOPTS" else int(frame.group(2)))
                self.cond.notify_all()
            return
        tb = _SHOWINFO_TB.search(line)
        if tb and int(tb.group(1)) > 0 and int(tb.group(2)) > 0:
            self.time_base = Fraction(int(tb.group(1)), int(tb.group(2)))

    def pts_of(self, n: int) -> int | None:
        """Block until frame n's line arrives (it is logged before the frame is written)."""
        with self.cond:
            while len(self.pts) <= n and not self.done:
                self.cond.wait(timeout=1.0)
            if len(self.pts) <= n:
                raise FFmpegError(f"FFmpeg wrote frame {n} without logging its timestamp",
                                  "\n".join(self.tail))
            return self.pts[n]

    def size_changed_by(self, n: int) -> tuple[int, int, int] | None:
        """The first frame up to ``n`` whose size is not the expected one, if any."""
        return self.resized if self.resized is not None and self.resized[0] <= n else None


class VideoDecoder:
    """Iterate over ``info``'s video stream as :class:`DecodedFrame` objects, upright, in
    presentation order. Use as a context manager so the FFmpeg process is always stopped.

    ``colour`` must be resolved (matrix and range known). Frames are uint16 when the source has
    more than 8 bits per component (decoded to ``rgb48le``), else uint8 (``rgb24``).

    ``seek``: start decoding at the last keyframe at or before this many seconds after the start
    of the container (no frame is trimmed: the caller picks frames by their pts, which stay the
    container's own). ``stdin``: the input is a stream whose bytes these chunks are (``info`` then
    describes a probed prefix); a thread writes them to FFmpeg's stdin. ``side_output``: also
    stream-copy the input streams of these indices into this Matroska file (what a stream read
    once must keep besides the frames: audio, subtitles). ``deinterlace``: weave the two fields of
    each picture into a full frame with ``bwdif`` first (frame count and times kept):
    ``"interlaced"`` (or ``True``) those flagged interlaced, ``"all"`` every picture.

    An image sequence (``info.sequence``) is read by FFmpeg's image2 demuxer at its frame rate:
    frame ``k`` has pts ``k`` in a time base of ``1 / fps``. A picture whose size is not the
    first one's raises InputError naming its file.
    """

    def __init__(self, info: MediaInfo, colour: Colour, *, seek: float | None = None,
                 stdin: Iterable[bytes] | None = None,
                 side_output: tuple[Path, tuple[int, ...]] | None = None,
                 deinterlace: bool | str | None = None) -> None:
        self.info = info
        if deinterlace is True:
            deinterlace = "interlaced"
        if deinterlace not in (None, False, "interlaced", "all"):
            raise ValueError(f"deinterlace is 'interlaced', 'all' or None, not {deinterlace!r}")
        self._deinterlace = deinterlace or None
        self._seek = seek
        self._stdin = stdin
        self._side = side_output
        self._feeder: threading.Thread | None = None
        self.width, self.height = info.video.upright_size
        self.deep = info.video.bit_depth > 8
        self.dtype = np.dtype(np.uint16 if self.deep else np.uint8)
        self.frames = 0
        self._colour = colour
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: _StderrReader | None = None
        self._killed = False

    @property
    def time_base(self) -> Fraction:
        """Unit of :attr:`DecodedFrame.pts` (FFmpeg's filter time base, normally the stream's)."""
        tb = self._stderr.time_base if self._stderr else None
        return tb or self.info.video.time_base

    @property
    def decode_errors(self) -> int:
        """How many error lines FFmpeg logged about decoding (corrupt packets, concealment, ...);
        messages of the muxers and of a file that merely ends early are not counted."""
        return self._stderr.errors if self._stderr else 0

    @property
    def truncated(self) -> bool:
        """Whether the demuxer said the input ends early (a partial file, an interrupted download)."""
        return self._stderr.truncated if self._stderr else False

    @property
    def stderr_tail(self) -> str:
        return "\n".join(self._stderr.tail) if self._stderr else ""

    def _args(self) -> list[str]:
        tools = ffmpeg.find_ffmpeg()
        pix_fmt = "rgb48le" if self.deep else "rgb24"
        c = self._colour
        scale = "scale=flags=bicubic+accurate_rnd+full_chroma_int+full_chroma_inp"
        if not c.is_rgb:
            scale += f":in_color_matrix={c.scale_matrix}:in_range={c.scale_range}"
        vf = f"{scale},format={pix_fmt},showinfo=checksum=0"
        if self._deinterlace:  # one frame out per frame in; frames flagged progressive pass as
            tb = self.info.video.time_base  # they are; bwdif halves the time base: set it back
            vf = (f"bwdif=mode=send_frame:parity=auto:deint={self._deinterlace},"
                  f"settb={tb.numerator}/{tb.denominator},{vf}")
        args = [tools.ffmpeg, "-hide_banner", "-nostats", "-v", "level+info", "-copyts"]
        if self._stdin is None:
            args.append("-nostdin")
        if self._seek is not None and self._seek > 0:
            args += ["-noaccurate_seek", "-ss", f"{self._seek:.6f}"]
        if self._stdin is not None:
            args += ["-f", self.info.format_name.split(",")[0], "-i", "pipe:0"]
        elif self.info.sequence is not None:  # numbered pictures at the sequence's frame rate
            args += self.info.sequence.input_args()
        else:
            args += ["-i", ffmpeg_input(self.info.path)]
        args += ["-map", f"0:{self.info.video.index}", *tools.fps_mode_args, "-vf", vf,
                 "-f", "rawvideo", "-pix_fmt", pix_fmt, "pipe:1"]
        if self._side is not None:
            path, indices = self._side
            for i in indices:
                args += ["-map", f"0:{i}"]
            # timestamps as they were: FFmpeg 6's Matroska muxer would otherwise move a stream
            # that starts below zero (AAC priming from MP4) up to zero, out of sync with the video
            args += ["-c", "copy", "-avoid_negative_ts", "disabled", "-f", "matroska", "-y",
                     ffmpeg_input(path)]
        return args

    def __enter__(self) -> VideoDecoder:
        stdin = subprocess.DEVNULL if self._stdin is None else subprocess.PIPE
        self._proc = ffmpeg.popen(self._args(), stdin=stdin, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, bufsize=1 << 20)
        assert self._proc.stderr is not None
        # a sequence's pictures may differ in size (a video's frames cannot): say which does
        self._stderr = _StderrReader(self._proc.stderr, (self.width, self.height)
                                     if self.info.sequence is not None else None)
        self._stderr.start()
        if self._stdin is not None:
            self._feeder = threading.Thread(target=self._feed, args=(self._proc.stdin, self._stdin),
                                            name="mstgan-stdin", daemon=True)
            self._feeder.start()
        return self

    def _feed(self, pipe: IO[bytes], chunks: Iterable[bytes]) -> None:
        """Copy the input stream into FFmpeg; stops quietly when FFmpeg is gone."""
        try:
            for chunk in chunks:
                if self._killed:
                    break
                pipe.write(chunk)
        except (BrokenPipeError, ValueError, OSError):
            pass
        finally:
            try:
                pipe.close()
            except OSError:
                pass

    def __exit__(self, *exc: object) -> None:
        self.close()

    def kill(self) -> None:
        """Stop FFmpeg now (any thread may call this); a reader then sees the end of the stream."""
        self._killed = True
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()

    def close(self) -> None:
        """Stop FFmpeg (if still running) and release its pipes. Safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            self._killed = True
            proc.kill()
        proc.wait()
        if self._feeder is not None:
            self._feeder.join(timeout=5)
        if proc.stdout:
            proc.stdout.close()
        if self._stderr:
            self._stderr.join(timeout=5)
        if proc.stderr:
            proc.stderr.close()

    def _read_exact(self, stream: IO[bytes], buf: np.ndarray) -> int:
        view = memoryview(buf).cast("B")
        got = 0
        while got < len(view):
            n = stream.readinto(view[got:])  # type: ignore[attr-defined]
            if not n:
                break
            got += n
        return got

    def __iter__(self) -> Iterator[DecodedFrame]:
        proc, stderr = self._proc, self._stderr
        assert proc is not None and proc.stdout is not None and stderr is not None, \
            "use VideoDecoder as a context manager"
        stdout = proc.stdout
        shape = (self.height, self.width, 3)
        last_pts: int | None = None
        while True:
            buf = np.empty(shape, dtype=self.dtype)
            got = self._read_exact(stdout, buf)
            if got == 0:
                break
            if got < buf.nbytes:
                if self._killed:
                    break
                log.warning("FFmpeg stopped in the middle of frame %d; the partial frame is dropped",
                            self.frames)
                break
            pts = stderr.pts_of(self.frames)
            resized = stderr.size_changed_by(self.frames)
            if resized:
                self._resized(*resized)
            if pts is None:  # no timestamp from the container: continue the previous frame's rhythm
                pts = self._guess_next_pts(last_pts)
            last_pts = pts
            self.frames += 1
            yield DecodedFrame(buf, pts)
        returncode = proc.wait()
        stderr.join(timeout=5)
        if self._killed:
            return
        if returncode != 0:
            if self.frames == 0 and _UNDECODABLE.search(self.stderr_tail):
                raise InputError(f"no frames could be decoded from {self.info.path}")
            ffmpeg.raise_for_failure("decoding with FFmpeg", self.stderr_tail, returncode)

    def _resized(self, n: int, width: int, height: int) -> None:
        seq = self.info.sequence
        assert seq is not None
        self.kill()
        name = seq.pattern.name(seq.start + n)
        raise InputError(f"{seq.pattern.text}: {name} is {width}x{height}, the pictures before it "
                         f"{self.width}x{self.height}; the pictures of a sequence must all have one size")

    def _guess_next_pts(self, last_pts: int | None) -> int:
        if last_pts is None:
            return 0
        rate = self.info.video.avg_rate or Fraction(25)
        return last_pts + max(1, round(1 / (rate * self.time_base)))
