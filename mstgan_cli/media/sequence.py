"""Image sequences: numbered pictures named by a printf-style pattern (``frames/%06d.png``).

**In**, a sequence is read as a video by FFmpeg's ``image2`` demuxer, one frame per file from
the lowest number found, at a frame rate the caller gives (pictures carry no timing): frame ``k``
is at ``k / fps`` seconds. Every number from the first to the last must have its file; a gap is
an error naming the missing frame, so no frame is silently skipped and none is doubled.

**Out**, each upscaled frame becomes one file, named by the pattern. The pictures are written
into a hidden staging folder (:class:`Staging`) and moved into place only once all of them are
there and checked, so an output folder never holds a half-written sequence.

Patterns are spelled as FFmpeg spells them: one ``%d`` or ``%0Nd`` in the file name (``%Nd``
pads with zeros too, as in FFmpeg), ``%%`` for a literal percent sign.
"""
from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO

from ..errors import InputError, OutputError
from ..locks import is_locked

log = logging.getLogger("mstgan_cli")

DEFAULT_FPS = Fraction(25)
# what a sequence may be read from (FFmpeg's image decoders) and written to (codec per suffix)
READ_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"})
WRITE_CODECS = {".png": "png", ".tif": "tiff", ".tiff": "tiff", ".jpg": "mjpeg", ".jpeg": "mjpeg",
                ".bmp": "bmp"}
IMAGE_SUFFIXES = READ_SUFFIXES | frozenset(WRITE_CODECS)
_CONVERSION = re.compile(r"%%|%(\d*)d")


@dataclass(frozen=True)
class Pattern:
    """A parsed pattern: files ``folder / (prefix + number + suffix)``, the number padded with
    zeros to ``width`` digits (0: no padding). ``text`` is the pattern as given."""

    text: str
    folder: Path
    prefix: str
    width: int
    suffix: str

    def name(self, number: int) -> str:
        """The file name of frame ``number`` (as FFmpeg's ``%0Nd`` writes it)."""
        return f"{self.prefix}{number:0{self.width}d}{self.suffix}"

    def path(self, number: int) -> Path:
        return self.folder / self.name(number)

    def number(self, name: str) -> int | None:
        """The frame number of file ``name``, or None when the pattern does not make that name."""
        if not (name.startswith(self.prefix) and name.endswith(self.suffix)):
            return None
        digits = name[len(self.prefix):len(name) - len(self.suffix)]
        if not digits.isascii() or not digits.isdigit():
            return None
        n = int(digits)
        return n if self.name(n) == name else None

    @property
    def ffmpeg(self) -> str:
        """The pattern as FFmpeg's image2 reads it, spelled as a local file (``file:``), with
        every literal ``%`` of the folder and name doubled."""
        def esc(text: str) -> str:
            return text.replace("%", "%%")
        folder = esc(str(self.folder))
        return f"file:{folder}/{esc(self.prefix)}%0{self.width}d{esc(self.suffix)}" \
            if self.width else f"file:{folder}/{esc(self.prefix)}%d{esc(self.suffix)}"

    def in_folder(self, folder: Path) -> Pattern:
        """The same names in another folder (the staging folder)."""
        return Pattern(str(folder / Path(self.text).name), folder, self.prefix, self.width, self.suffix)

    def numbers(self, folder: Path | None = None) -> list[int]:
        """The numbers of the files in ``folder`` (default: the pattern's) that the pattern
        names, sorted; none when the folder does not exist."""
        try:
            entries = list(os.scandir(folder or self.folder))
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise InputError(f"cannot list {folder or self.folder}: {exc.strerror or exc}") from exc
        found = []
        for entry in entries:
            n = self.number(entry.name)
            if n is not None and entry.is_file():
                found.append(n)
        return sorted(found)


def parse_pattern(path: str | os.PathLike[str]) -> Pattern | None:
    """The :class:`Pattern` of ``path`` when its file name has one ``%d``/``%0Nd`` and ends in a
    picture suffix (``.png``, ``.jpg``, ``.tif``, ...); None for anything else (a video file)."""
    text = os.fspath(path)
    p = Path(text)
    if text == "-" or not p.name or p.suffix.lower() not in IMAGE_SUFFIXES:
        return None
    parts = [m for m in _CONVERSION.finditer(p.name) if m.group(0) != "%%"]
    if len(parts) != 1:
        return None
    m = parts[0]
    prefix, suffix = p.name[:m.start()], p.name[m.end():]
    if "%" in prefix.replace("%%", "") or "%" in suffix.replace("%%", ""):
        return None  # another conversion (%s, %x): not a pattern FFmpeg reads
    width = int(m.group(1) or 0)
    return Pattern(text, p.parent, prefix.replace("%%", "%"), width, suffix.replace("%%", "%"))


def is_pattern(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names an image sequence (see :func:`parse_pattern`)."""
    return parse_pattern(path) is not None


@dataclass(frozen=True)
class ImageSequence:
    """The frames of a sequence on disk: files ``start`` .. ``start + count - 1`` of ``pattern``,
    played at ``fps`` frames per second."""

    pattern: Pattern
    start: int
    count: int
    fps: Fraction

    @property
    def last(self) -> int:
        return self.start + self.count - 1

    @property
    def demuxer_options(self) -> dict[str, str]:
        """Options of FFmpeg's image2 demuxer that read exactly these files at ``fps``."""
        return {"framerate": f"{self.fps.numerator}/{self.fps.denominator}",
                "start_number": str(self.start), "pattern_type": "sequence"}

    def input_args(self) -> list[str]:
        """The ffmpeg command's input arguments (``-f image2 ... -i PATTERN``)."""
        args = ["-f", "image2"]
        for key, value in self.demuxer_options.items():
            args += [f"-{key}", value]
        return args + ["-i", self.pattern.ffmpeg]


def find_sequence(pattern: Pattern, fps: Fraction = DEFAULT_FPS) -> ImageSequence:
    """The sequence of the files ``pattern`` names, from the lowest number to the highest.
    Raises InputError when it names no file, or when a number in between has none."""
    if fps <= 0:
        raise InputError(f"the frame rate of {pattern.text} must be above 0, not {fps}")
    if not pattern.folder.is_dir():
        what = "is not a folder" if pattern.folder.exists() else "does not exist"
        raise InputError(f"no pictures match {pattern.text}: the folder {pattern.folder} {what}")
    numbers = pattern.numbers()
    if not numbers:
        raise InputError(f"no pictures match {pattern.text} (looked for names like "
                         f"{pattern.name(1)} in {pattern.folder})")
    start, last = numbers[0], numbers[-1]
    if len(numbers) != last - start + 1:
        have = set(numbers)
        gaps = [n for n in range(start, last + 1) if n not in have]
        more = f" and {len(gaps) - 1} more" if len(gaps) > 1 else ""
        raise InputError(f"{pattern.text}: frame {gaps[0]} ({pattern.name(gaps[0])}){more} is "
                         f"missing between {pattern.name(start)} and {pattern.name(last)}; a "
                         "sequence needs every number from its first to its last")
    if os.access(pattern.path(start), os.R_OK) is False:
        raise InputError(f"input is not readable: {pattern.path(start)}")
    return ImageSequence(pattern, start, len(numbers), fps)


def frame_number(pts: int, time_base: Fraction, fps: Fraction) -> int:
    """Which frame of a sequence read at ``fps`` a timestamp is (0 for the first)."""
    return round(pts * time_base * fps)


def existing_outputs(pattern: Pattern) -> list[int]:
    """Numbers of the files an output pattern would replace or leave stale (all it names)."""
    return pattern.numbers()


def check_output_pattern(pattern: Pattern, overwrite: bool, source: ImageSequence | None = None) -> None:
    """Refuse an output sequence that would overwrite the input's pictures, one whose folder
    cannot be made, or (without ``overwrite``) one whose folder already holds pictures the
    pattern names."""
    if pattern.suffix.lower() not in WRITE_CODECS:
        raise OutputError(f"mstgan reads {pattern.suffix} pictures but does not write them; "
                          f"name the output {', '.join(sorted(WRITE_CODECS))}")
    for above in (pattern.folder, *pattern.folder.parents):
        if above.exists():
            if not above.is_dir():
                what = "the output folder" if above == pattern.folder else f"the output folder {pattern.folder}"
                raise OutputError(f"{what} cannot be made: {above} is a file, not a folder")
            break
    if source is not None and _same_folder(source.pattern.folder, pattern.folder):
        clash = next((n for n in range(source.start, source.last + 1)
                      if source.pattern.name(n) == pattern.name(n)), None)
        if clash is not None:
            raise OutputError(f"the output would overwrite the input: {pattern.path(clash)}")
    found = existing_outputs(pattern)
    if found and not overwrite:
        raise OutputError(f"{pattern.folder} already holds {len(found)} picture(s) named like "
                          f"{Path(pattern.text).name} ({pattern.name(found[0])}"
                          f"{' ... ' + pattern.name(found[-1]) if len(found) > 1 else ''}); "
                          "use --overwrite to replace them")


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


def default_output_pattern(pattern: Pattern, label: str) -> Path:
    """``frames/%06d.png`` -> ``frames_2160p/%06d.png`` beside the input folder."""
    folder = pattern.folder.resolve() if pattern.folder.name in ("", ".", "..") else pattern.folder
    return folder.with_name(f"{folder.name}_{label}") / Path(pattern.text).name


_FRESH_SECONDS = 60  # a staging folder without a lock file younger than this may be starting
_STAGING = re.compile(r"^\.(?:(?P<dir>.+)\.)?(?P<token>mstgan-\d+-[0-9a-f]+)\.frames$")


class Staging:
    """The hidden folder where one output sequence's pictures collect until they are complete.

    When the output folder exists, the staging folder is inside it (``.mstgan-PID-HEX.frames``)
    and :meth:`commit` moves each picture into place; when it does not, the staging folder is
    beside it (``.OUT.mstgan-PID-HEX.frames``) and :meth:`commit` renames it into the output
    folder in one step. A ``lock`` file inside is held locked while the job lives, so a later
    run removes only staging folders of jobs that died (:func:`remove_stale_staging`)."""

    def __init__(self, pattern: Pattern, token: str) -> None:
        self.target = pattern
        out = pattern.folder
        self.inside = out.is_dir()
        self.path = out / f".{token}.frames" if self.inside else \
            _absolute(out).parent / f".{_absolute(out).name}.{token}.frames"
        self.pattern = pattern.in_folder(self.path)
        self._lock: IO[str] | None = None

    def create(self) -> None:
        """Make the staging folder (and the folders above the output's), lock it."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.mkdir()
            self._lock = open(self.path / "lock", "w")
        except OSError as exc:
            raise OutputError(f"cannot write in {self.path.parent}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a file system without locks: the folder still reserves the name
            pass

    def _unlock(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None
            (self.path / "lock").unlink(missing_ok=True)

    def commit(self, numbers: Iterable[int], overwrite: bool) -> None:
        """Put the pictures ``numbers`` in place. With ``overwrite``, files of the output
        pattern that this sequence does not have (an earlier, longer run's) are removed, so the
        folder holds exactly this sequence under the pattern."""
        wanted = list(numbers)
        out = self.target.folder
        self._unlock()
        try:
            if not self.inside and not out.exists():
                try:
                    os.rename(self.path, out)
                    return
                except OSError:  # made meanwhile by someone else: move picture by picture
                    out.mkdir(parents=True, exist_ok=True)
            for n in wanted:
                os.replace(self.pattern.path(n), self.target.path(n))
            if overwrite:
                keep = set(wanted)
                for n in self.target.numbers():
                    if n not in keep:
                        self.target.path(n).unlink(missing_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot move the pictures into {out}: {exc.strerror or exc}") from exc
        finally:
            shutil.rmtree(self.path, ignore_errors=True)

    def remove(self) -> None:
        self._unlock()
        shutil.rmtree(self.path, ignore_errors=True)


def _absolute(path: Path) -> Path:
    return path if path.is_absolute() else Path(os.path.abspath(path))


def remove_stale_staging(pattern: Pattern) -> list[Path]:
    """Remove staging folders that killed jobs left for an output pattern's folder (inside it,
    or beside it for a folder that did not exist): those whose lock nobody holds."""
    out = _absolute(pattern.folder)
    candidates: list[Path] = []
    for where, want_dir in ((out, None), (out.parent, out.name)):
        try:
            entries = list(os.scandir(where))
        except OSError:
            continue
        for entry in entries:
            m = _STAGING.match(entry.name)
            if m and m.group("dir") == want_dir and entry.is_dir(follow_symlinks=False):
                candidates.append(Path(entry.path))
    removed = []
    for folder in candidates:
        if _held(folder / "lock"):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    if removed:
        log.warning("removed %d staging folder(s) of an earlier run on %s that did not finish",
                    len(removed), pattern.text)
    return removed


def _held(lock: Path) -> bool:
    try:
        return is_locked(lock)
    except FileNotFoundError:  # a job that died before it locked or after it unlocked, or one
        try:                   # between the two right now: only an old folder counts as dead
            return time.time() - lock.parent.stat().st_mtime < _FRESH_SECONDS
        except OSError:
            return False
    except OSError:
        return True


def check_pictures(pattern: Pattern, numbers: list[int], size: tuple[int, int]) -> tuple[int, list[str]]:
    """Count the pictures a staging folder holds under ``pattern`` against the ``numbers``
    written, each non-empty, and read the first and the last back (their frame size must be
    ``size``). Returns (how many the pattern names there, problems)."""
    from . import libav  # (av is loaded by then anyway: the encoder used it)

    found = pattern.numbers()
    problems: list[str] = []
    if found != sorted(numbers):
        missing = sorted(set(numbers) - set(found))
        extra = sorted(set(found) - set(numbers))
        what = [f"{len(found)} pictures in the output, {len(numbers)} frames decoded from the input"]
        if missing:
            what.append(f"{pattern.name(missing[0])} is missing")
        if extra:
            what.append(f"{pattern.name(extra[0])} was not written by this job")
        problems.append("; ".join(what))
    empty = next((n for n in found if pattern.path(n).stat().st_size == 0), None)
    if empty is not None:
        problems.append(f"{pattern.name(empty)} is empty")
    for n in {found[0], found[-1]} if found else ():
        try:
            data = libav.describe("file:" + str(pattern.path(n)))
            video = next(s for s in data["streams"] if s["codec_type"] == "video")
            got = (int(video["width"]), int(video["height"]))
        except (libav.Unreadable, StopIteration, KeyError, ValueError) as exc:
            problems.append(f"{pattern.name(n)} cannot be read back ({exc})")
            continue
        if got != tuple(size):
            problems.append(f"{pattern.name(n)} is {got[0]}x{got[1]}, expected {size[0]}x{size[1]}")
    return len(found), problems
