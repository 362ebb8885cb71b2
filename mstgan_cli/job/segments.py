"""Long files in resumable segments: cut at keyframes, each encoded to its own file, joined at the end.

A long input (``segment_seconds`` > 0 and more than 1.5 segments long) is split at source
keyframes into segments of about ``segment_seconds``. Each segment is decoded from a keyframe
early enough to deliver the ``context`` frames just before it, upscaled together with those and
with the ``context`` frames just after it (whose outputs are dropped), so a multi-frame model
sees exactly the neighbours it sees in one uninterrupted pass and every output frame is the
same. Each segment is encoded into its own file in a hidden work folder next to the output
(``.NAME.mstgan-work/``), checked (frame count and every timestamp), then marked done. An
interrupted run resumes at the first segment not done; pieces of other settings or another
input are discarded. At the end the segments are joined packet for packet (frame-exact, no
re-encoding) and the work folder is removed.

The frame positions come from the input's packets (demuxed, not decoded). If the decoder does
not deliver exactly those frames (damaged frames, streams whose packets are not frames), the run
raises :class:`SegmentMismatch` and the caller falls back to one pass.
"""
from __future__ import annotations

import bisect
import fcntl
import json
import logging
import os
import shutil
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

from ..errors import MstganError, OutputError
from .integrity import Expected, verify
from ..media.decode import VideoDecoder
from ..media.probe import MediaInfo, PacketIndex
from ..runtime.upscaler import FrameUpscaler, InterpolationUpscaler
from .pipeline import LowResFrame

log = logging.getLogger("mstgan_cli")

MIN_LENGTH = 1.5  # inputs shorter than this many segments run in one pass


class SegmentMismatch(MstganError):
    """The decoder did not deliver the frames the packet index promised."""


@dataclass(frozen=True)
class Segment:
    """Frames ``first`` .. ``stop - 1`` of the index (presentation order), decoded from the
    keyframe ``seek`` (None: from the start) with ``before`` and ``after`` context frames."""

    number: int
    first: int
    stop: int
    seek: int | None
    before: int
    after: int


def context_frames(upscaler: FrameUpscaler) -> int:
    """How many neighbours on each side an output frame depends on: the upscaler's ``context``
    if it says, its model's window radius, 0 for single-frame resamplers, else 3 (window 7)."""
    ctx = getattr(upscaler, "context", None)
    if isinstance(ctx, int):
        return ctx
    window = getattr(getattr(getattr(upscaler, "model", None), "config", None), "window", None)
    if isinstance(window, int):
        return window // 2
    if isinstance(upscaler, InterpolationUpscaler) or int(getattr(upscaler, "scale", 0)) == 1:
        return 0
    return 3


def wants_segments(info: MediaInfo, seconds: float) -> bool:
    """Whether an input is long enough to be worth segments (its duration is known)."""
    duration = info.video.duration or info.duration
    return seconds > 0 and duration is not None and duration >= MIN_LENGTH * seconds


def plan_segments(index: PacketIndex, seconds: float, context: int) -> list[Segment]:
    """Cut at keyframes at least ``seconds`` apart, keeping the last piece at least half as
    long. One segment means "no need to split"."""
    pts, keys, tb = index.pts, index.keyframes, index.time_base
    length = Fraction(str(seconds))  # (exact: 0.4 s is 400 ms, not a float's 0.400000000000000022)
    starts = [0]
    for key in keys:
        i = bisect.bisect_left(pts, key)
        if i >= len(pts) or pts[i] != key or i <= starts[-1] + context:
            continue
        if (key - pts[starts[-1]]) * tb >= length and (pts[-1] - key) * tb >= length / 2:
            starts.append(i)
    segments = []
    for n, first in enumerate(starts):
        stop = starts[n + 1] if n + 1 < len(starts) else len(pts)
        before = min(context, first)
        seek = None
        if first > 0:
            k = bisect.bisect_right(keys, pts[first - before]) - 1
            seek = keys[k] if k >= 0 and keys[k] > pts[0] else None
        segments.append(Segment(n, first, stop, seek, before, min(context, len(pts) - stop)))
    return segments


class WorkFolder:
    """The hidden folder of one output's segments, locked while a run uses it."""

    def __init__(self, output: Path, key: str, plan: list[Segment]) -> None:
        self.path = output.with_name(f".{output.name}.mstgan-work")
        self.output, self.key, self.plan = output, key, plan
        self.suffix = output.suffix
        self._lock: IO[str] | None = None

    def open(self) -> int:
        """Create or adopt the folder; discards it when its key differs. Returns segments done."""
        try:
            self.path.mkdir(exist_ok=True)
            self._lock = open(self.path / "lock", "a")
        except OSError as exc:
            raise OutputError(f"cannot write in {self.path.parent}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self._lock.close()
            self._lock = None
            raise OutputError(f"another mstgan is working on {self.output} (its segments are "
                              f"locked in {self.path})") from exc
        state = self._read(self.path / "plan.json")
        plan = [[s.first, s.stop] for s in self.plan]
        if state is None or state.get("key") != self.key or state.get("plan") != plan:
            stale = [p for p in self.path.iterdir() if p.name != "lock"]
            if stale:
                log.warning("discarding %d piece(s) of an earlier run with other settings or "
                            "another input in %s", len(stale), self.path)
            for p in stale:
                shutil.rmtree(p) if p.is_dir() else p.unlink()
            self._write(self.path / "plan.json", {"key": self.key, "plan": plan})
        return sum(1 for s in self.plan if self.done(s) is not None)

    def file(self, seg: Segment, part: bool = False) -> Path:
        return self.path / f"seg-{seg.number:05d}{'.part' if part else ''}{self.suffix}"

    def done(self, seg: Segment) -> tuple[list[int], Fraction] | None:
        """The pts (and their time base) of a finished segment's frames; None when not finished."""
        marker = self._read(self.path / f"seg-{seg.number:05d}.json")
        if marker is None or not self.file(seg).is_file():
            return None
        pts = marker.get("pts")
        if not isinstance(pts, list) or len(pts) != seg.stop - seg.first:
            return None
        try:
            return pts, Fraction(str(marker.get("time_base")))
        except (ValueError, ZeroDivisionError):
            return None

    def finish(self, seg: Segment, pts: list[int], time_base: Fraction) -> None:
        os.replace(self.file(seg, part=True), self.file(seg))
        self._write(self.path / f"seg-{seg.number:05d}.json",
                    {"pts": pts, "time_base": str(time_base)})

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def remove(self) -> None:
        self.release()
        shutil.rmtree(self.path, ignore_errors=True)

    @staticmethod
    def _read(path: Path) -> dict[str, Any] | None:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    @staticmethod
    def _write(path: Path, data: dict[str, Any]) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)


def segment_frames(decoder: VideoDecoder, seg: Segment, index: PacketIndex) -> Iterator[LowResFrame]:
    """The frames of ``seg`` with its context (``keep`` False), checked against ``index``."""
    pts = index.pts
    want = [Fraction(p) * index.time_base for p in pts[seg.first - seg.before:seg.stop + seg.after]]
    start = Fraction(pts[seg.first]) * index.time_base
    held: deque[LowResFrame] | None = deque(maxlen=seg.before)
    got = 0

    def check(f: LowResFrame) -> None:
        t = Fraction(f.pts) * decoder.time_base
        if got >= len(want) or t != want[got]:
            expected = f"{float(want[got]):.6f}s" if got < len(want) else "the end"
            raise SegmentMismatch(f"segment {seg.number}: the decoder gave a frame at "
                                  f"{float(t):.6f}s where the packets promised {expected}")

    for frame in decoder:
        f = LowResFrame(frame.rgb, frame.pts, False)
        if Fraction(f.pts) * decoder.time_base < start:
            if held is not None:
                held.append(f)
            continue
        if held is not None:
            if len(held) != seg.before:
                raise SegmentMismatch(f"segment {seg.number}: only {len(held)} of {seg.before} "
                                      "context frames before it could be decoded")
            for h in held:
                check(h)
                got += 1
                yield h
            held = None
        check(f)
        keep = got < seg.before + (seg.stop - seg.first)
        got += 1
        yield LowResFrame(f.rgb, f.pts, keep)
        if got == len(want):
            return
    if got != len(want):
        raise SegmentMismatch(f"segment {seg.number}: {got} frames decoded, the packets promised "
                              f"{len(want)}")


def run_segment(work: WorkFolder, seg: Segment, index: PacketIndex, decoder: VideoDecoder,
                run: Callable[[Iterator[LowResFrame]], list[int]]) -> list[int]:
    """Upscale one segment through ``run`` (which encodes kept frames into the segment's part
    file and returns their pts), check the file, and mark the segment done."""
    part = work.file(seg, part=True)
    with decoder:
        written = run(segment_frames(decoder, seg, index))
    expected = Expected(written, decoder.time_base, ())
    verify(part, expected, streams=False)
    work.finish(seg, written, decoder.time_base)
    log.info("segment %d of %d done (%d frames)", seg.number + 1, len(work.plan), len(written))
    return written
