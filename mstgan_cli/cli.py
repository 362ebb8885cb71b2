"""The ``mstgan`` command: parse, build one options object, call the library, map errors to exit codes.

Messages, warnings and progress go to stderr; stdout carries only what a command is asked to
print (``models``, ``--version``), never chatter.
"""
from __future__ import annotations

import importlib
import json
import logging
import signal
import sys
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

from .job.omp import prefer_passive_waits

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich import box
from rich.table import Table

from . import __version__
from .commands.common import CommandGroup, Terminated, check_scale, interrupted_code
from .commands.common import setup_logging as _setup_logging
from .commands.common import stderr
from .errors import MstganError, exit_codes_text
from .options import (DEFAULT_MODEL, Backend, Deinterlace, EncodeSettings, Precision, RuntimeTuning, Target,
                      UpscaleOptions, parse_device, parse_fps)
from .options import STREAM_FORMATS

if TYPE_CHECKING:
    from .job.archive import FileRecord, FolderOptions, FolderResult, Shard, upscale_folder
    from .job.upscale import Progress as PipelineProgress
    from .job.upscale import upscale_file
    from .job.plan import list_models

# The library half of the command (archive, pipeline, plan) imports torch, seconds on a busy
# machine: its names are imported on first use (module __getattr__), so `mstgan --version` and
# `--help` start at once. Inside this module they are reached through _lib(name), which also
# sees a name a test set on the module.
_LAZY = {"FileRecord": ".job.archive", "FolderOptions": ".job.archive", "FolderResult": ".job.archive",
         "Shard": ".job.archive", "upscale_folder": ".job.archive", "upscale_file": ".job.upscale",
         "PipelineProgress": ".job.upscale", "list_models": ".job.plan"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __package__),
                    "Progress" if name == "PipelineProgress" else name)
    globals()[name] = value
    return value


def _lib(name: str) -> Any:
    """A library name of :data:`_LAZY`, imported if it is not yet."""
    return getattr(sys.modules[__name__], name)

stdout = Console()
log = logging.getLogger("mstgan_cli")

app = typer.Typer(
    name="mstgan", cls=CommandGroup, rich_markup_mode="rich", no_args_is_help=True, add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Video super-resolution from the command line: [bold]MST-GAN[/bold], streamed through FFmpeg.",
    epilog="[bold]Examples[/bold]\n\n"
           "  [cyan]mstgan upscale holiday.mp4[/cyan]    writes holiday_2160p.mp4 (fit 3840x2160)\n\n"
           "  [cyan]mstgan upscale clip.mkv --scale 2 -o clip_x2.mkv[/cyan]\n\n"
           "  [cyan]mstgan models[/cyan]    lists the shipped weights\n\n"
           "Run [cyan]mstgan upscale --help[/cyan] for every option.",
)

UPSCALE_EPILOG = (
    "[bold]Examples[/bold]\n\n"
    "  [cyan]mstgan upscale in.mp4[/cyan]\n"
    "    → in_2160p.mp4: fit 3840x2160, aspect kept, audio/subtitles/chapters copied\n\n"
    "  [cyan]mstgan upscale in.mp4 --target 1080p -o out.mp4[/cyan]\n\n"
    "  [cyan]mstgan upscale in.mkv --scale 4 --lossless[/cyan]\n"
    "    → exactly 4x, FFV1 in in_x4.mkv\n\n"
    "  [cyan]mstgan upscale in.mp4 --codec hevc --crf 20 --preset slow --pix-fmt yuv420p10le[/cyan]\n\n"
    "  [cyan]mstgan upscale frames/%06d.png --fps 24 --scale 2 -o up/%06d.png[/cyan]\n"
    "    → numbered pictures in and out (16-bit PNG for a deep source); frame N in is picture N out\n\n"
    "  [cyan]mstgan upscale in.mp4 --target 1080p -o - | ffplay -[/cyan]\n"
    "    → stream the result (Matroska) into another program\n\n"
    "  [cyan]mstgan upscale in.mp4 --model lanczos --target 2560x1080[/cyan]\n"
    "    → classic Lanczos resize, no network (also: bicubic, bilinear, nearest)\n\n"
    "  [cyan]mstgan upscale in.mp4 --device cuda:1 --precision fp16 --batch 4 --tile 256[/cyan]\n\n"
    "  [cyan]mstgan upscale archive/ -o up/ --shard 2/8[/cyan]\n"
    "    → this machine's eighth of the videos under archive/, mirrored into up/; re-runs skip "
    "finished files\n\n"
    "  [cyan]ffmpeg -i in.mkv -f yuv4mpegpipe - | mstgan upscale - -o - --format nut | ffmpeg -i - out.mp4[/cyan]\n\n"
    "[bold]Long files[/bold] go in segments (--segment-seconds, in a hidden work folder next to the "
    "output): an interrupted run resumes at the first unfinished segment, with identical frames.\n\n"
    "[bold]Sizes[/bold]: [cyan]--target[/cyan] runs the model whose factor reaches the target, then "
    "resizes exactly to it (area down, Lanczos up). When the target needs more than the largest "
    "model (x4), the x4 model runs and Lanczos does the rest; a warning says so. Named targets "
    "follow the video's orientation (a portrait video aims at 2160x3840).\n\n"
    f"[bold]Exit codes[/bold]: {escape(exit_codes_text())}. A folder: 0 when no file failed, else 1, "
    "or the code every file failed with when all failed for the same kind of reason."
)


def _version(value: bool) -> None:
    if value:
        print(f"mstgan {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Video super-resolution from the command line: [bold]MST-GAN[/bold], streamed through FFmpeg."""


def _parse_target(value: Optional[str]) -> Optional[Target]:
    if value is None:
        return None
    try:
        return Target.parse(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def _parse_fps(value: Optional[str]) -> Optional[Fraction]:
    if value is None:
        return None
    try:
        return parse_fps(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--fps") from exc


def _parse_device(value: str) -> str:
    try:
        return parse_device(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


def _check_choice(allowed: tuple[int, ...]) -> Any:
    def check(value: Optional[int]) -> Optional[int]:
        if value is not None and value not in allowed:
            raise typer.BadParameter(f"must be one of {', '.join(map(str, allowed))}")
        return value
    return check


class _Bar:
    """Draws pipeline progress reports as a rich bar on stderr."""

    def __init__(self, enabled: bool) -> None:
        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("frames  {task.fields[fps]:.1f} fps"), TimeElapsedColumn(),
                            TextColumn("ETA"), TimeRemainingColumn(), console=stderr,
                            disable=not enabled, transient=False)
        self.task: TaskID | None = None
        self.label = ""

    def __enter__(self) -> _Bar:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def next_file(self, label: str) -> None:
        """Start a fresh bar for the next file of a folder."""
        if self.task is not None:
            self.bar.remove_task(self.task)
        self.task = None
        self.label = label

    def __call__(self, p: PipelineProgress) -> None:
        stage = f"{self.label} {p.stage}" if self.label else p.stage
        p = _lib("PipelineProgress")(stage, p.frames, p.total, p.elapsed)
        if self.task is None:
            self.task = self.bar.add_task(p.stage, total=p.total, fps=0.0)
        total = max(p.total, p.frames) if p.total else None
        self.bar.update(self.task, description=p.stage, completed=p.frames, total=total, fps=p.fps)


def _fail(message: str, code: int) -> typer.Exit:
    stderr.print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


@app.command(epilog=UPSCALE_EPILOG, no_args_is_help=True)
def upscale(
    input: Annotated[Path, typer.Argument(help="Video file, image sequence ([cyan]frames/%06d.png[/cyan]: every numbered picture from the first, at --fps), folder (every video under it), or [cyan]-[/cyan] for a stream on stdin.", show_default=False)],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Output file (default: [i]INPUT_2160p.EXT[/i] next to the input; the extension picks the container), or folder for a folder input (default: [i]INPUT_2160p/[/i]). A pattern such as [cyan]up/%06d.png[/cyan] writes one picture per frame (.png, .tif, .jpg, .bmp; the folder is made; numbered like a sequence input, from 1 for a video; audio and subtitles cannot go along). [cyan]-[/cyan] writes a stream to stdout (--format).", show_default=False)] = None,
    scale: Annotated[Optional[int], typer.Option("--scale", help="Exactly 2x or 4x (the model's own factor, no extra resize).", callback=check_scale, rich_help_panel="Size")] = None,
    target: Annotated[Optional[str], typer.Option("--target", "-t", metavar="SIZE", help="Fit inside 720p, 1080p, 1440p, 2160p/4k, 8k or WxH, aspect kept \\[default: 2160p].", rich_help_panel="Size")] = None,
    model: Annotated[str, typer.Option("--model", "-m", help="Shipped model name ([cyan]mstgan models[/cyan]), checkpoint path, or a baseline: bicubic, bilinear, nearest, lanczos.", rich_help_panel="Model")] = DEFAULT_MODEL,
    precision: Annotated[Precision, typer.Option("--precision", help="Arithmetic for the model: fp32, bf16 (CPU with AVX512-BF16, CUDA), fp16 (CUDA), int8 (CPU, compiled).", rich_help_panel="Model")] = Precision.AUTO,
    backend: Annotated[Backend, typer.Option("--backend", help="What runs the model: eager (PyTorch); compile (Inductor. On the CPU the model is compiled once per model and precision, 2-3 minutes, and every later run loads it at once, at any frame size; on CUDA torch.compile); tensorrt (CUDA, pip install 'mstgan\\[tensorrt]'). auto: tensorrt, else compile on CUDA; on the CPU compile for int8, once built, or for jobs long enough to repay building it (about 110 M low-res pixel-frames), else eager.", rich_help_panel="Model")] = Backend.AUTO,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.", callback=_parse_device, rich_help_panel="Model")] = "auto",
    window: Annotated[Optional[int], typer.Option("--window", help="Frames the model sees at once: 5 or 7 \\[default: the model's].", callback=_check_choice((5, 7)), rich_help_panel="Model")] = None,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Windows per model call (more = faster on a GPU, more memory).", rich_help_panel="Model")] = 1,
    tile: Annotated[Optional[int], typer.Option("--tile", min=16, help="Process frames in tiles of N input pixels to save memory.", rich_help_panel="Model")] = None,
    codec: Annotated[Optional[str], typer.Option("--codec", help="Encoder: h264, hevc, av1, vp9, ffv1 or any FFmpeg encoder name \\[default: h264; vp9 for .webm].", rich_help_panel="Encoding")] = None,
    crf: Annotated[Optional[int], typer.Option("--crf", min=0, max=63, help="Constant quality, lower is better \\[default: 18 for h264, 20 for hevc].", rich_help_panel="Encoding")] = None,
    preset: Annotated[Optional[str], typer.Option("--preset", help="Encoder speed preset, e.g. slow, medium, fast \\[default: medium].", rich_help_panel="Encoding")] = None,
    pix_fmt: Annotated[Optional[str], typer.Option("--pix-fmt", help="Output pixel format \\[default: the source's subsampling (4:2:0, 4:2:2, 4:4:4) and depth (8 bits, or 10 for a deeper source) where the encoder takes them].", rich_help_panel="Encoding")] = None,
    lossless: Annotated[bool, typer.Option("--lossless", help="Lossless output: FFV1 in .mkv (4:4:4), or the codec's lossless mode (h264/hevc/vp9).", rich_help_panel="Encoding")] = False,
    deinterlace: Annotated[Deinterlace, typer.Option("--deinterlace", help="Interlaced sources (DVD, broadcast): auto weaves the fields of pictures the stream flags interlaced into full frames with bwdif (said once); bwdif does every picture, flagged or not; off upscales the woven fields as they are. Frame count and times stay.", rich_help_panel="Input")] = Deinterlace.AUTO,
    fps: Annotated[Optional[str], typer.Option("--fps", metavar="RATE", help="Frame rate of an image sequence input, which has no timing of its own: 25, 23.976, 24000/1001 \\[default: 25]. Picture k after the first is at k/RATE seconds.", rich_help_panel="Input", show_default=False)] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", "-y", help="Replace the output if it exists (in a folder: outputs that are not verified results of these settings).")] = False,
    stream_format: Annotated[str, typer.Option("--format", "-f", help=f"Stream format for [cyan]-o -[/cyan]: {', '.join(STREAM_FORMATS)}.", rich_help_panel="Pipes and folders")] = "matroska",
    segment_seconds: Annotated[float, typer.Option("--segment-seconds", min=0, help="Long files are upscaled in resumable segments of about this length; 0 never splits.", rich_help_panel="Pipes and folders")] = 60.0,
    glob: Annotated[Optional[list[str]], typer.Option("--glob", "-g", help="Folder: only files matching this pattern (repeatable; matched against the relative path, or the name for patterns without /) instead of the video extensions.", rich_help_panel="Pipes and folders", show_default=False)] = None,
    shard: Annotated[Optional[str], typer.Option("--shard", metavar="K/N", help="Folder: only shard K of N (1-based; by a hash of each relative path), for N parallel workers.", rich_help_panel="Pipes and folders", show_default=False)] = None,
    report: Annotated[Optional[Path], typer.Option("--report", help="Folder: the JSON report \\[default: OUT/mstgan-report.json, or mstgan-report-K-of-N.json for a shard].", rich_help_panel="Pipes and folders", show_default=False)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress, only errors.")] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, show_default=False, help="More detail (-vv shows FFmpeg commands).")] = 0,
    # measurement switches for benchmarks (RuntimeTuning), not for users: the same frames either way
    warps: Annotated[str, typer.Option("--warps", hidden=True, help="gather or grid-sample: how graphs compiled for the CPU warp.")] = "gather",
    int8_activations: Annotated[str, typer.Option("--int8-activations", hidden=True, help="bf16 or fp32 between int8 convolutions.")] = "bf16",
    release_freed_memory: Annotated[bool, typer.Option("--release-freed-memory", hidden=True, help="Leave malloc as it is (freed memory goes back to the kernel).")] = False,
) -> None:
    """Upscale a video: every frame through the model, every other stream copied.

    Keeps frame count, timestamps (VFR too), audio, subtitles, chapters, metadata and colour.
    """
    _setup_logging(quiet, verbose, jobs=True)
    if scale is not None and target is not None:
        raise typer.BadParameter("give --scale or --target, not both", param_hint="--scale/--target")
    is_folder = input.is_dir()
    if not is_folder and (glob or shard or report):
        raise typer.BadParameter("--glob, --shard and --report are for a folder input")
    from .media.sequence import is_pattern  # (here: the command starts without FFmpeg's libraries)

    if fps is not None and not is_pattern(input):
        raise typer.BadParameter("--fps is for an image sequence input such as frames/%06d.png; "
                                 "a video has its own timing", param_hint="--fps")
    if is_folder and output is not None and is_pattern(output):
        raise typer.BadParameter("a folder input writes a folder of videos; give -o OUT_FOLDER "
                                 "(a picture pattern is for one video or sequence)", param_hint="-o")
    if stream_format != "matroska" and (output is None or str(output) != "-"):
        raise typer.BadParameter("--format is for a stream to stdout (-o -)", param_hint="--format")
    if warps not in ("gather", "grid-sample") or int8_activations not in ("bf16", "fp32"):
        raise typer.BadParameter("--warps is gather or grid-sample, --int8-activations bf16 or fp32")
    # the command decides what the library does to the process: keep freed memory (CPU only)
    tuning = RuntimeTuning(keep_freed_memory=not release_freed_memory, gather_warps=warps == "gather",
                           int8_bf16=int8_activations == "bf16")
    try:
        options = UpscaleOptions(
            output=None if is_folder else output, scale=scale, target=_parse_target(target),
            model=model, precision=precision, backend=backend, device=device, window=window, batch=batch, tile=tile,
            encode=EncodeSettings(codec=codec, crf=crf, preset=preset, pix_fmt=pix_fmt, lossless=lossless),
            overwrite=overwrite, segment_seconds=segment_seconds, stream_format=stream_format, tuning=tuning,
            deinterlace=deinterlace, fps=_parse_fps(fps))
        folder = None
        if is_folder:
            if output is not None and str(output) == "-":
                raise ValueError("a folder cannot go to stdout; give -o OUT_FOLDER")
            here = input.resolve()
            out = output or here.parent / f"{here.name}_{options.size_label}"
            folder = _lib("FolderOptions")(out=out, globs=tuple(glob or ()), report=report,
                                           shard=_lib("Shard").parse(shard) if shard else None)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if folder is not None:
        return _upscale_folder(input, options, folder, quiet)
    try:
        with _Bar(enabled=not quiet and stderr.is_terminal) as bar:
            result = _lib("upscale_file")(input, options, progress=bar)
    except MstganError as exc:
        raise _fail(str(exc), exc.exit_code) from None
    except KeyboardInterrupt as exc:
        code = interrupted_code(exc)
        raise _fail("interrupted; the output was not written", code) from None
    if result.skipped:
        if not quiet:
            stderr.print(escape(result.skipped), highlight=False, soft_wrap=True)
        return
    if not quiet:
        w, h = result.size or (0, 0)
        where = "stdout" if str(result.output) == "-" else str(result.output)
        missing = f" ({result.missing_frames} missing: the input is incomplete)" \
            if result.missing_frames else ""
        stderr.print(f"wrote [bold]{escape(where)}[/bold]: {_count(result.frames, 'frame')}{missing}, "
                     f"{w}x{h}, in {result.seconds:.1f}s", highlight=False, soft_wrap=True)


def _frames_cell(r: FileRecord) -> str:
    """'24', '13 (11 missing)' for an incomplete input, '-' for none."""
    if not r.frames:
        return "-"
    return f"{r.frames} ({r.missing_frames} missing)" if r.missing_frames else str(r.frames)


def _count(n: int, noun: str) -> str:
    """``1 frame``, ``2 frames``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _upscale_folder(root: Path, options: UpscaleOptions, folder: FolderOptions, quiet: bool) -> None:
    try:
        with _Bar(enabled=not quiet and stderr.is_terminal) as bar:
            def on_file(rec: FileRecord, i: int, n: int) -> None:
                if rec.status == "running":
                    bar.next_file(f"[{i + 1}/{n}] {rec.input}")
                    log.info("[%d/%d] %s", i + 1, n, rec.input)
            result = _lib("upscale_folder")(root, options, folder, progress=bar, on_file=on_file)
    except MstganError as exc:
        raise _fail(str(exc), exc.exit_code) from None
    except KeyboardInterrupt as exc:
        code = interrupted_code(exc)
        raise _fail(f"interrupted; finished files are kept, the report is in {folder.report_path}",
                    code) from None
    if not quiet:
        _summary(result, folder)
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def _summary(result: FolderResult, folder: FolderOptions) -> None:
    """The table of a folder run, on stderr (the skipped files are counted, not listed, when
    there are many)."""
    rows = result.records
    many = len(rows) > 40
    table = Table(title=f"{folder.out}" + (f" (shard {folder.shard})" if folder.shard else ""),
                  title_justify="left")
    for column in ("file", "status", "frames", "seconds", "fps", "check", "error"):
        table.add_column(column, overflow="fold")
    colours = {"done": "green", "skipped": "dim", "failed": "red", "interrupted": "yellow"}
    for r in rows:
        if many and r.status == "skipped":
            continue
        check = "-" if r.integrity is None else ("ok" if r.integrity.get("ok") else "FAILED")
        colour = colours.get(r.status, "")
        table.add_row(escape(r.input), f"[{colour}]{r.status}[/{colour}]" if colour else r.status,
                      _frames_cell(r), f"{r.seconds:.1f}" if r.seconds else "-",
                      f"{r.fps:.1f}" if r.fps else "-", check, escape(r.error or ""))
    stderr.print(table)
    counts = ", ".join(f"{result.count(s)} {s}" for s in ("done", "skipped", "not needed", "failed")
                       if result.count(s))
    stderr.print(f"{_count(len(rows), 'file')}: {counts or 'none'}; report: {escape(str(result.report))}",
                 highlight=False, soft_wrap=True)


@app.command(epilog="[bold]Examples[/bold]\n\n  [cyan]mstgan models[/cyan]\n\n"
                    "  [cyan]mstgan models --verbose[/cyan]    also window, precisions and file\n\n"
                    "  [cyan]mstgan models --json | jq '.[].name'[/cyan]\n\n"
                    "Quality: each model's own protocol means (its card, weights/NAME.md): PSNR-Y "
                    "and SSIM-Y (dB, higher is better), LPIPS, tOF and tLP×100 (lower is better).")
def models(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also the window, precisions and file of each model (below the table).")] = False,
) -> None:
    """List the shipped model weights and the built-in baselines."""
    try:
        rows = _lib("list_models")()
    except MstganError as exc:
        raise _fail(str(exc), exc.exit_code) from None
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return
    # fits 80 columns: no vertical rules, names never cut, one short column per metric
    table = Table(title="Models ([bold]*[/bold] = default for its factor); quality on the test split, x4: "
                        "PSNR-Y over bicubic on clean and H.264 CRF 23 input", title_justify="left",
                  box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 0, 0, 1))
    table.add_column("name", no_wrap=True)
    for column in ("x", "params", "FLOPs/px") + tuple(label for _, label, _ in _METRICS):
        table.add_column(column, justify="right", no_wrap=True)
    for m in rows:
        scale = m.get("scale")
        means = _metric_means(m)
        cells = [str(m.get("name")) + (" *" if m.get("default") else ""),
                 f"x{scale}" if isinstance(scale, int) else str(scale),
                 _human(m.get("params")), _human(m.get("flops_per_pixel"))]
        cells += [fmt.format(means[key]) if key in means else "-" for key, _, fmt in _METRICS]
        table.add_row(*cells)
    stdout.print(table)
    if verbose:  # one line each below the table, so the table keeps its width
        for m in rows:
            stdout.print(f"{escape(str(m.get('name')))}: window {m.get('window', '-')}; "
                         f"{', '.join(m.get('precisions') or [])}; {escape(str(m.get('path') or '-'))}",
                         highlight=False, soft_wrap=True)


# The measuring commands (eval, bench, compare) live in mstgan_cli.commands, each with its help.
from .commands import register as _register_measuring_commands  # noqa: E402

_register_measuring_commands(app)

from .commands.train import TRAIN_EPILOG, train_cmd  # noqa: E402

app.command("train", epilog=TRAIN_EPILOG)(train_cmd)

from .commands.prune import PRUNE_EPILOG, prune_cmd  # noqa: E402

app.command("prune", epilog=PRUNE_EPILOG)(prune_cmd)


# (key, column, format) of the test-split numbers shown: PSNR-Y gain over bicubic on clean and on
# H.264 CRF 23 input, then LPIPS and tOF on clean input
_METRICS = (("gain_clean", "clean+dB", "{:+.2f}"), ("gain_h264", "h264+dB", "{:+.2f}"),
            ("lpips", "LPIPS", "{:.3f}"), ("tof", "tOF", "{:.3f}"))


def _metric_means(entry: dict) -> dict[str, float]:
    """The model's test-split means (:func:`mstgan_cli.model.registry.test_metrics`) as the
    columns of `mstgan models`, e.g. {'gain_clean': 1.02, 'gain_h264': 0.41, 'lpips': 0.21, ...}."""
    inputs = (entry.get("metrics") or {}).get("inputs") or {}
    out: dict[str, float] = {}
    clean, h264 = inputs.get("bicubic") or {}, inputs.get("h264:23") or {}
    if "gain" in clean:
        out["gain_clean"] = float(clean["gain"])
    if "gain" in h264:
        out["gain_h264"] = float(h264["gain"])
    for k in ("lpips", "tof"):
        if k in clean:
            out[k] = float(clean[k])
    return out


def _human(value: object) -> str:
    if not isinstance(value, (int, float)) or value <= 0:
        return "-"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.3g}{unit}"
    return f"{value:.3g}"


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def main() -> None:
    """Console-script entry point. SIGTERM is handled like Ctrl-C (clean up, then exit).

    The command, not the library, decides how OpenMP threads wait: passive, unless the user chose
    (:mod:`mstgan_cli.job.omp`). Set here, before any command imports torch (this module imports it
    only on first use), since OpenMP reads it once, when torch loads it."""
    prefer_passive_waits()
    try:
        signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread (embedded use)
        pass
    app(prog_name="mstgan")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
