"""Proof of integrity: an output checked against what was read from its input.

After every upscale, before the output is renamed into place, the written file is read back
(demuxed, not decoded) and compared with the frames the decoder delivered from the input:

- **frames**: the output's video has exactly as many frames as were decoded;
- **timestamps**: every output frame sits at its input frame's time, within one tick of the
  coarser of the two time bases (a container may round, e.g. Matroska to milliseconds). The whole
  video may be shifted by one constant (Matroska cannot start below zero, so FFmpeg moves every
  stream alike when the audio starts early); the shift is reported and must stay under a second;
- **streams**: after the video, the same number and kinds of streams as the input in the same
  order, less the ones the mux left out on purpose (which are listed, each with a warning).
  MP4 chapter tracks are not counted (see :func:`_kinds`).

An image sequence output (:func:`verify_pictures`) has no timestamps to read back: its pictures
are counted instead, in the staging folder before they move into place (exactly one per frame
decoded, each under its number, none empty), and the first and the last are read back (their
frame size).

A mismatch raises :class:`~mstgan_cli.errors.IntegrityError` (exit code 7); the report of a
passed check goes into the result and the folder report.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..errors import IntegrityError, MstganError
from ..media.probe import MediaInfo, StreamInfo, packet_index, probe
from ..media.sequence import Pattern, check_pictures

log = logging.getLogger("mstgan_cli")

MAX_SHIFT = Fraction(1)  # seconds a container may move the whole video (see the module docstring)


def _kinds(streams: Iterable[StreamInfo]) -> tuple[str, ...]:
    """Kinds of streams that count. MP4/MOV write chapters as a text track that reads back as a
    ``bin_data`` data stream; such tracks come and go with the chapters, so they are not counted."""
    return tuple(s.kind for s in streams if not (s.kind == "data" and s.codec == "bin_data"))


@dataclass(frozen=True)
class Expected:
    """What the output must hold: the input video's frame times (``pts`` in ``time_base`` units,
    in presentation order, as decoded) and the kinds of the other streams, in order."""

    pts: Sequence[int]
    time_base: Fraction
    streams: tuple[str, ...]

    @classmethod
    def of(cls, info: MediaInfo, pts: Sequence[int], time_base: Fraction,
           left_out: Sequence[StreamInfo] = ()) -> Expected:
        """The expectation for an input ``info`` whose decoded frames had ``pts``; ``left_out``:
        streams the mux dropped on purpose."""
        gone = {s.index for s in left_out}
        return cls(pts, time_base, _kinds(s for s in info.other_streams if s.index not in gone))


@dataclass(frozen=True)
class IntegrityReport:
    """The outcome of a check. ``shift`` and ``max_error`` are in seconds; ``problems`` is empty
    when the output passed. ``streams_checked`` is False where only the video could be read
    back (output to a pipe: the video is checked before it is muxed)."""

    frames_expected: int
    frames_found: int
    first_time: float | None
    last_time: float | None
    shift: float
    max_error: float
    streams_expected: list[str]
    streams_found: list[str]
    streams_checked: bool = True
    left_out: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, **asdict(self)}


def verify(output: Path, expected: Expected, *, streams: bool = True,
           left_out: Sequence[StreamInfo] = ()) -> IntegrityReport:
    """Read ``output`` back and compare it with ``expected``; raise IntegrityError on a mismatch.
    ``streams`` False checks the video only (a video-only intermediate file)."""
    try:
        info = probe(output)
        index = packet_index(output, info.video.index, info.video.time_base)
    except MstganError as exc:
        raise IntegrityError(f"the output cannot be read back: {exc}") from exc
    found = list(index.pts) if index else []
    report = _compare(found, info.video.time_base, expected, list(_kinds(info.other_streams)),
                      streams=streams, left_out=left_out,
                      problems=[] if index else ["some output frames have no timestamp"])
    if report.problems:
        raise IntegrityError(f"{output.name} failed its integrity check: {'; '.join(report.problems)}",
                             report)
    if report.shift:
        log.info("the container moved the whole video by %+.3fs", report.shift)
    log.debug("integrity of %s: %d frames, timestamps within %.6fs", output, report.frames_found,
              report.max_error)
    return report


def verify_encoded(pts: Sequence[int], time_base: Fraction, expected: Expected, *,
                   left_out: Sequence[StreamInfo] = ()) -> IntegrityReport:
    """The check for an output that cannot be read back (a stream to a pipe): the packets the
    encoder wrote (``pts`` in ``time_base``, in any order) against ``expected``'s frames, the
    other streams unchecked. Raises IntegrityError on a mismatch."""
    report = _compare(sorted(pts), time_base, expected, [], streams=False, left_out=left_out,
                      problems=[])
    if report.problems:
        raise IntegrityError(f"the stream to stdout failed its integrity check: "
                             f"{'; '.join(report.problems)}", report)
    return report


def verify_pictures(pattern: Pattern, numbers: Sequence[int], expected: Expected,
                    size: tuple[int, int], *, left_out: Sequence[StreamInfo] = ()) -> IntegrityReport:
    """The check of an image sequence output: the pictures ``pattern`` names (in the staging
    folder) must be exactly ``numbers``, the ones the encoder wrote, one for each frame of
    ``expected``; each non-empty, the first and last ``size``. ``first_time``/``last_time``
    are those of the frames (pictures carry none). Raises IntegrityError on a mismatch."""
    found, problems = check_pictures(pattern, list(numbers), size)
    if len(numbers) != len(expected.pts) and not problems:
        problems.append(f"{len(numbers)} pictures written, {len(expected.pts)} frames decoded "
                        "from the input")
    times = [p * expected.time_base for p in expected.pts]
    report = IntegrityReport(
        frames_expected=len(expected.pts), frames_found=found,
        first_time=float(times[0]) if times else None, last_time=float(times[-1]) if times else None,
        shift=0.0, max_error=0.0, streams_expected=[], streams_found=[], streams_checked=False,
        left_out=[s.label for s in left_out], problems=problems)
    if problems:
        raise IntegrityError(f"{Path(pattern.text).name} failed its integrity check: "
                             f"{'; '.join(problems)}", report)
    log.debug("integrity of %s: %d pictures", pattern.text, found)
    return report


def _compare(found: list[int], time_base: Fraction, expected: Expected, kinds: list[str], *,
             streams: bool, left_out: Sequence[StreamInfo], problems: list[str]) -> IntegrityReport:
    want = [p * expected.time_base for p in expected.pts]
    got = [q * time_base for q in found]
    if len(got) != len(want):
        problems.append(f"{len(got)} frames in the output, {len(want)} decoded from the input")
    tolerance = max(expected.time_base, time_base)
    shift = got[0] - want[0] if got and want else Fraction(0)
    if abs(shift) <= tolerance:
        shift = Fraction(0)
    elif abs(shift) > MAX_SHIFT:
        problems.append(f"the video starts {float(shift):+.3f}s away from the input's start")
    errors = [abs(g - shift - w) for g, w in zip(got, want)]
    worst = max(errors, default=Fraction(0))
    if worst > tolerance:
        i = next(k for k, e in enumerate(errors) if e == worst)
        problems.append(f"frame {i} is at {float(got[i]):.6f}s, its input frame at "
                        f"{float(want[i]):.6f}s")
    if streams and kinds != list(expected.streams):
        problems.append(f"streams after the video: {', '.join(kinds) or 'none'}; expected "
                        f"{', '.join(expected.streams) or 'none'}")
    return IntegrityReport(
        frames_expected=len(want), frames_found=len(got),
        first_time=float(got[0]) if got else None, last_time=float(got[-1]) if got else None,
        shift=float(shift), max_error=float(worst), streams_expected=list(expected.streams),
        streams_found=kinds, streams_checked=streams,
        left_out=[s.label for s in left_out], problems=problems)
