"""Typed errors. The CLI maps each to a one-line message and an exit code."""
from __future__ import annotations


class MstganError(Exception):
    """Base of every error the library raises on purpose."""

    exit_code = 1


class InputError(MstganError):
    """The input is missing, unreadable, not a video, has no video stream or no frames."""

    exit_code = 2


class OutputError(MstganError):
    """The output cannot be written (exists, same as input, folder not writable, disk full)."""

    exit_code = 3


class FFmpegError(MstganError):
    """FFmpeg is missing or failed; carries the tail of its stderr."""

    exit_code = 4

    def __init__(self, message: str, stderr_tail: str = "") -> None:
        super().__init__(message)
        self.stderr_tail = stderr_tail


class ModelError(MstganError):
    """A checkpoint cannot be found or loaded, or does not fit the request."""

    exit_code = 5


class BackendError(MstganError):
    """A requested device, precision or backend is not available here."""

    exit_code = 6


class IntegrityError(MstganError):
    """The finished output does not match its input (frame count, timestamps or streams);
    ``report`` holds the details (an :class:`mstgan_cli.job.integrity.IntegrityReport`)."""

    exit_code = 7

    def __init__(self, message: str, report: object = None) -> None:
        super().__init__(message)
        self.report = report


# Exit codes of the ``mstgan`` command, all in one place (its --help epilogs and README's
# "Exit codes" are made from / match this table). 2-7 are the errors above; a command line that
# Typer/Click cannot parse or that contradicts itself is 64 (EX_USAGE of BSD's sysexits), so a
# script can tell "I called it wrong" from "this input is bad".
EXIT_FAILED = 1       # something failed: some files of a folder, some measurements
EXIT_USAGE = 64       # unknown option, bad option value, options that contradict each other
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT): cleaned up, nothing half-written left
EXIT_TERMINATED = 143   # SIGTERM (kill, a scheduler's time limit): cleaned up the same way

EXIT_CODES: dict[int, str] = {
    0: "done (or nothing to do)",
    EXIT_FAILED: "some of the work failed (files of a folder, measurements), the rest is reported",
    InputError.exit_code: "bad input (missing, unreadable, not a video, no frames)",
    OutputError.exit_code: "output problem (exists, same as the input, not writable, disk full)",
    FFmpegError.exit_code: "FFmpeg missing or failed",
    ModelError.exit_code: "model cannot be found or loaded, or does not fit",
    BackendError.exit_code: "device, precision or backend not available here",
    IntegrityError.exit_code: "the output failed its integrity check (not written)",
    EXIT_USAGE: "usage error: unknown option, bad value, contradicting options",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
    EXIT_TERMINATED: "terminated (SIGTERM)",
}


def exit_codes_text(codes: tuple[int, ...] | None = None, says: dict[int, str] | None = None) -> str:
    """The table above as one line: '0 done ..., 2 bad input ..., ...'; only ``codes`` (those a
    command can exit with) when given, with ``says`` replacing an entry's words."""
    says = says or {}
    return "; ".join(f"{code} {says.get(code, what)}" for code, what in EXIT_CODES.items()
                     if codes is None or code in codes)
