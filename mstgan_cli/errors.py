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
    ``report`` holds the details (an :class:`mstgan_cli.integrity.IntegrityReport`)."""

    exit_code = 7

    def __init__(self, message: str, report: object = None) -> None:
        super().__init__(message)
        self.report = report
