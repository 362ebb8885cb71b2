"""Finding and running the ffmpeg binary. The only place a subprocess is started.

Discovery order: ``$MSTGAN_FFMPEG``, then ``ffmpeg`` on ``PATH``, then the static FFmpeg that the
``imageio-ffmpeg`` package installs with mstgan (a current release with libx264, libx265,
SVT-AV1, libvpx, zimg and libvmaf). Probing needs no ffprobe: it runs in process
(:mod:`.libav`), so nothing can pair an ffmpeg with an ffprobe of another build.

A binary is used only after it has decoded a tiny MPEG-TS clip it made itself (a real decode,
not ``-version``: a wrapper script can exit 0 when the FFmpeg inside it crashes). The verdict is
cached per binary (path, size, modification time) in memory and in the cache folder. An
``ffmpeg`` on ``PATH`` that fails the check is skipped with a warning; a failing
``$MSTGAN_FFMPEG`` is an error, since the user chose it.

Commands are argument lists (never a shell), logged at debug level; a failure raises
:class:`FFmpegError` carrying the tail of FFmpeg's stderr.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import FFmpegError, OutputError

log = logging.getLogger("mstgan_cli")

INSTALL_HINT = (
    "reinstall mstgan (`pip install mstgan` brings a static FFmpeg in the imageio-ffmpeg "
    "package), install FFmpeg (e.g. `apt install ffmpeg`, `brew install ffmpeg`), or point "
    "$MSTGAN_FFMPEG at an ffmpeg binary"
)
_DISK_FULL = ("No space left on device", "Disk quota exceeded")
_CHECK_FRAMES, _CHECK_SIZE = 3, 16  # the self-test clip: 3 grey frames of 16x16


class FFmpegCrash(FFmpegError):
    """FFmpeg died from a signal (a bug or a broken build), as opposed to refusing its input."""


@dataclass(frozen=True)
class FFmpegTools:
    """The ffmpeg executable (absolute path), its (major, minor) version and where it came from
    (``"$MSTGAN_FFMPEG"``, ``"PATH"`` or ``"imageio-ffmpeg"``)."""

    ffmpeg: str
    version: tuple[int, int]
    source: str = "PATH"

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
    p = Path(path)
    if p.is_file() and os.access(p, os.X_OK):
        return os.path.abspath(p)
    found = shutil.which(str(path))
    return os.path.abspath(found) if found else None


def bundled_ffmpeg() -> str | None:
    """The static ffmpeg of the imageio-ffmpeg package (``imageio_ffmpeg/binaries/ffmpeg-*``),
    or None when it is not installed. Found by its folder, not by ``get_ffmpeg_exe()``, which
    would also return other binaries it finds."""
    try:
        spec = importlib.util.find_spec("imageio_ffmpeg")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        folder = Path(root) / "binaries"
        names = sorted(folder.glob("ffmpeg-*")) if folder.is_dir() else []
        for candidate in names:
            found = _executable(candidate)
            if found:
                return found
    return None


def _version(ffmpeg: str) -> tuple[int, int]:
    try:
        out = subprocess.run([ffmpeg, "-hide_banner", "-version"], capture_output=True,
                             text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FFmpegError(f"cannot run {ffmpeg}: {exc}; {INSTALL_HINT}") from exc
    m = re.search(r"ffmpeg version n?(\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else (99, 0)  # git snapshots ("N-1234-g...") are recent


def _self_test(ffmpeg: str) -> str | None:
    """Make a tiny MPEG-TS clip with ``ffmpeg`` and decode it back: None when every frame came
    back, else what went wrong (one line)."""
    n, size = _CHECK_FRAMES, _CHECK_SIZE
    base = [ffmpeg, "-hide_banner", "-nostdin", "-nostats", "-v", "error"]
    make = base + ["-f", "lavfi", "-i", f"color=c=gray:s={size}x{size}:r=25:d={n / 25}",
                   "-frames:v", str(n), "-c:v", "mpeg2video", "-f", "mpegts", "pipe:1"]
    read = base + ["-f", "mpegts", "-i", "pipe:0", "-f", "rawvideo", "-pix_fmt", "gray", "pipe:1"]
    try:
        clip = subprocess.run(make, capture_output=True, timeout=60, check=False)
        if clip.returncode != 0 or not clip.stdout:
            return _failure("making a test clip", clip, "" if clip.stdout else "nothing written")
        back = subprocess.run(read, input=clip.stdout, capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"it did not run ({exc})"
    if back.returncode != 0 or len(back.stdout) != n * size * size:
        return _failure("decoding a test clip", back,
                        f"{len(back.stdout) // (size * size)} of {n} frames came back")
    return None


def _failure(what: str, proc: subprocess.CompletedProcess[bytes], extra: str = "") -> str:
    code = proc.returncode
    status = f"signal {-code}" if code < 0 else f"exit status {code}"
    said = summary(tail(proc.stderr.decode("utf-8", "replace"), 4))
    return f"{what} failed ({', '.join(x for x in (status, extra, said) if x)})"


def _cache_file() -> Path:
    root = os.environ.get("MSTGAN_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mstgan")
    return Path(root) / "ffmpeg-checks.json"


def _identity(ffmpeg: str) -> str:
    """What the cached verdict is keyed by: the real file, its size and modification time."""
    real = os.path.realpath(ffmpeg)
    st = os.stat(real)
    return hashlib.sha1(f"{ffmpeg}\0{real}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()


def check_works(ffmpeg: str) -> str | None:
    """:func:`_self_test`, cached in the cache folder (only passes are stored: a broken binary
    is tested again next time, in case it was fixed)."""
    try:
        key = _identity(ffmpeg)
    except OSError as exc:
        return f"it cannot be read ({exc})"
    cache = _cache_file()
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    if isinstance(known, dict) and known.get(key) == "ok":
        return None
    problem = _self_test(ffmpeg)
    if problem is None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            known = known if isinstance(known, dict) else {}
            known[key] = "ok"
            tmp = cache.with_name(f".{cache.name}.{os.getpid()}")
            tmp.write_text(json.dumps(known))
            os.replace(tmp, cache)
        except OSError as exc:  # a read-only home: test again next time
            log.debug("cannot cache the FFmpeg check in %s: %s", cache, exc)
    return problem


def _locate() -> FFmpegTools:
    env_ffmpeg = os.environ.get("MSTGAN_FFMPEG")
    if env_ffmpeg:
        ffmpeg = _executable(env_ffmpeg)
        if ffmpeg is None:
            raise FFmpegError(f"$MSTGAN_FFMPEG={env_ffmpeg} is not an executable; {INSTALL_HINT}")
        problem = check_works(ffmpeg)
        if problem:
            raise FFmpegError(f"$MSTGAN_FFMPEG={env_ffmpeg} does not work: {problem}; "
                              "point it at another FFmpeg, or unset it to use the bundled one")
        return FFmpegTools(ffmpeg, _version(ffmpeg), "$MSTGAN_FFMPEG")
    skipped = []
    on_path = _executable(shutil.which("ffmpeg"))
    if on_path is not None:
        problem = check_works(on_path)
        if problem is None:
            return FFmpegTools(on_path, _version(on_path), "PATH")
        skipped.append(f"{on_path}: {problem}")
    bundled = bundled_ffmpeg()
    if bundled is not None and bundled != on_path:
        problem = check_works(bundled)
        if problem is None:
            if skipped:
                log.warning("the ffmpeg on PATH does not work (%s); using the bundled FFmpeg %s "
                            "instead", skipped[0], bundled)
            return FFmpegTools(bundled, _version(bundled), "imageio-ffmpeg")
        skipped.append(f"{bundled}: {problem}")
    if skipped:
        raise FFmpegError(f"no working FFmpeg ({'; '.join(skipped)}); {INSTALL_HINT}")
    raise FFmpegError(f"FFmpeg not found; {INSTALL_HINT}")


@functools.lru_cache(maxsize=8)
def _tools_for(env_key: tuple[str | None, str | None]) -> FFmpegTools:
    tools = _locate()
    log.debug("using ffmpeg %s (version %d.%d, from %s)", tools.ffmpeg, *tools.version, tools.source)
    return tools


def find_ffmpeg() -> FFmpegTools:
    """Locate a working ffmpeg (see the module docstring). Raises FFmpegError when none works."""
    return _tools_for((os.environ.get("MSTGAN_FFMPEG"), os.environ.get("PATH")))


@functools.lru_cache(maxsize=8)
def _options_of(ffmpeg: str) -> frozenset[str]:
    try:
        out = subprocess.run([ffmpeg, "-hide_banner", "-h", "long"], capture_output=True,
                             text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    return frozenset(re.findall(r"^-(\w+)", out, re.MULTILINE))


def has_option(tools: FFmpegTools, name: str) -> bool:
    """Whether ``tools``' ffmpeg takes the command-line option ``-name`` (as ``ffmpeg -h long``
    lists them; asked once per binary), e.g. ``mastering_display``, which older ones lack."""
    return name in _options_of(tools.ffmpeg)


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
    """Run an FFmpeg argument list to completion; stdout and stderr captured as text
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
