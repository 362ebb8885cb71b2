"""Small helpers the measuring commands share: stderr console, logging, errors, list options."""
from __future__ import annotations

import logging
import re
from collections.abc import Callable
from enum import Enum
from typing import Any, TypeVar

import typer
from typer.core import TyperGroup
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..errors import EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USAGE, exit_codes_text
from ..options import MODEL_SCALES

stderr = Console(stderr=True)
log = logging.getLogger("mstgan_cli")
T = TypeVar("T")
E = TypeVar("E", bound=Enum)

EXIT_CODES = f"[bold]Exit codes[/bold]: {escape(exit_codes_text())}."


def exit_codes_epilog(codes: tuple[int, ...], says: dict[int, str] | None = None) -> str:
    """The "Exit codes" line of one command's help: only the codes it exits with."""
    return f"[bold]Exit codes[/bold]: {escape(exit_codes_text(codes, says))}."

try:  # typer >= 0.2x carries its own click
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover - older typer, on click
    from click.exceptions import UsageError  # type: ignore[no-redef]
try:
    from typer._click.exceptions import NoArgsIsHelpError
except ImportError:  # pragma: no cover
    NoArgsIsHelpError = ()  # type: ignore[assignment,misc]


class CommandGroup(TyperGroup):
    """The ``mstgan`` command group: a command line that cannot be parsed, or that contradicts
    itself (``typer.BadParameter`` from a command), exits with :data:`~mstgan_cli.errors.EXIT_USAGE`
    (64) instead of Click's 2, which is the code of bad input. (A command given no arguments
    prints its help, as before.)"""

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().make_context(*args, **kwargs)
        except UsageError as exc:
            raise _as_usage(exc) from None

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except UsageError as exc:
            raise _as_usage(exc) from None


def _as_usage(exc: UsageError) -> UsageError:
    if not isinstance(exc, NoArgsIsHelpError):
        exc.exit_code = EXIT_USAGE
    if isinstance(getattr(exc, "message", None), str):
        exc.message = plain_message(exc.message)
    return exc


# Typer checks option values with pydantic and passes its wording on ("Value error, ...",
# "Input should be greater than or equal to 1"): said as a sentence about the option instead
_PYDANTIC_WORDING = (
    (re.compile(r"^Value error, (.*?)\.?$", re.S), r"\1"),
    (re.compile(r"^Input should be greater than or equal to (\S+)$"), r"must be at least \1"),
    (re.compile(r"^Input should be less than or equal to (\S+)$"), r"must be at most \1"),
    (re.compile(r"^Input should be greater than (\S+)$"), r"must be more than \1"),
    (re.compile(r"^Input should be less than (\S+)$"), r"must be less than \1"),
    (re.compile(r"^Input should be a valid integer.*$", re.S), "must be a whole number"),
    (re.compile(r"^Input should be a valid number.*$", re.S), "must be a number"),
    (re.compile(r"^Input should be a valid boolean.*$", re.S), "must be true or false"),
    (re.compile(r"^Input should be (.*)$", re.S), r"must be \1"),
)


def plain_message(message: str) -> str:
    """A usage error's text without the validation library's jargon:
    'Input should be greater than or equal to 1' -> 'must be at least 1'."""
    for pattern, replacement in _PYDANTIC_WORDING:
        if pattern.match(message):
            return pattern.sub(replacement, message, count=1)
    return message


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so the library cleans up the same way (``mstgan_cli.cli.main``
    installs the handler)."""


def interrupted_code(exc: BaseException) -> int:
    """130 for Ctrl-C, 143 for SIGTERM."""
    return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED


def check_scale(value: int | None) -> int | None:
    """--scale: one of the factors models come in (2 or 4), in every command."""
    if value is not None and value not in MODEL_SCALES:
        raise typer.BadParameter(f"must be one of {', '.join(map(str, MODEL_SCALES))}")
    return value


def enum_list(value: str, kind: type[E], what: str) -> list[E]:
    """"a,b" -> [kind("a"), kind("b")], for options that take several of an enum's values
    (bench's --precision/--backend); BadParameter naming the allowed values otherwise."""
    try:
        return split_list(value, kind, what)
    except typer.BadParameter as exc:
        raise typer.BadParameter(f"{exc.message}; use {', '.join(k.value for k in kind)}") from None


def setup_logging(quiet: bool, verbose: int, jobs: bool = False) -> None:
    """Warnings (or more with -v/-vv, only errors with -q) to stderr through rich; ``jobs``: also
    the one line per upscale job naming its input, output size and model (unless -q)."""
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logging.getLogger("mstgan_cli.job").setLevel(logging.INFO if jobs and not quiet else logging.NOTSET)
    handler = RichHandler(console=stderr, show_time=False, show_path=False, markup=False,
                          rich_tracebacks=False)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers = [h for h in log.handlers if not isinstance(h, RichHandler)] + [handler]
    log.setLevel(level)


def fail(message: str, code: int) -> typer.Exit:
    """Print a one-line error on stderr; return the Exit to raise."""
    stderr.print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def say(message: str, quiet: bool = False) -> None:
    """A plain message on stderr (no markup interpretation)."""
    if not quiet:
        stderr.print(escape(message), highlight=False, soft_wrap=True)


def split_list(value: str | None, convert: Callable[[str], T], what: str) -> list[T]:
    """"a,b,c" -> [convert(a), ...]; BadParameter naming ``what`` on a bad item."""
    if value is None:
        return []
    out = []
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            out.append(convert(part))
        except ValueError as exc:
            raise typer.BadParameter(f"{part!r} is not a valid {what}") from exc
    return out


def bar(enabled: bool) -> Progress:
    """A progress bar on stderr (disabled when not wanted or not a terminal)."""
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=stderr, disable=not (enabled and stderr.is_terminal),
                    transient=True)


def training_reporter(total_steps: int, quiet: bool = False) -> Callable[[dict], None]:
    """A callback for the training loop's records: one line per logged step on stderr (step of
    total, speed, ETA, the loss terms) and one per validation."""
    def report(rec: dict) -> None:
        if quiet:
            return
        step = rec.get("step", 0)
        if "val" in rec:
            v = rec["val"]
            if "flow_epe" in v:  # stage 0: the flow alone
                parts = [f"flow error {v['flow_epe']:.3f} LR px ({v['flow_epe_ratio']:.2f}x predicting no motion)"]
            else:
                parts = [f"PSNR-Y {v['psnr_y']:.3f} dB ({v['gain']:+.2f} over bicubic)"]
                parts += [f"{k} {v[k]:.4g}" for k in ("lpips", "tof", "tlp100", "temporal_gain") if k in v]
            say(f"step {step}: validation {', '.join(parts)}{' (best so far)' if rec.get('best') else ''}")
        elif "it_s" in rec and rec["it_s"] > 0:
            eta = (total_steps - step) / rec["it_s"]
            losses = ", ".join(f"{k} {v:.4g}" for k, v in rec.items() if k not in ("step", "lr", "it_s"))
            say(f"step {step}/{total_steps} ({step / max(1, total_steps):.0%}), {rec['it_s']:.2f} it/s, "
                f"ETA {int(eta // 3600)}h{int(eta % 3600 // 60):02d}m; {losses}")
    return report
