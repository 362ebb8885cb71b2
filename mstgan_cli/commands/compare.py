"""``mstgan compare``: a labelled collage of frames (and optionally a split-screen video)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import MstganError
from ..options import Precision
from .common import bar, check_scale, exit_codes_epilog, fail, interrupted_code, say, setup_logging, split_list

COMPARE_EPILOG = (
    "[bold]Examples[/bold]\n\n"
    "  [cyan]mstgan compare in.mp4 --at 3,4,5,6[/cyan]\n"
    "    → in_compare.png: rows = those seconds, columns = bicubic | MST-GAN | installed peers\n\n"
    "  [cyan]mstgan compare in.mp4 --at 1.5,2 --region 100,40,120,80 -o faces.png[/cyan]\n"
    "    → only that part of each frame (x,y,w,h in input pixels), as in the paper's figures\n\n"
    "  [cyan]mstgan compare in.mp4 --at 2 --video split.mp4 --max-frames 100[/cyan]\n"
    "    → also a video: left half bicubic, right half MST-GAN\n\n"
    "INPUT is the low-resolution source; every column upscales it.\n\n"
    + exit_codes_epilog((0, 2, 3, 4, 5, 6, 64, 130, 143),
                        {0: "collage (and video) written",
                         2: "bad input (missing, not a video, a time past its end, a region outside it)",
                         3: "the output folder does not exist or cannot be written"})
)


def _region(value: Optional[str]) -> Optional[tuple[int, int, int, int]]:
    if value is None:
        return None
    parts = split_list(value, int, "number")
    if len(parts) != 4:
        raise typer.BadParameter("use X,Y,W,H in input pixels, e.g. 100,40,120,80")
    return parts[0], parts[1], parts[2], parts[3]


def compare_cmd(
    input: Annotated[Path, typer.Argument(help="The low-resolution video (or folder of frames).", show_default=False)],
    at: Annotated[str, typer.Option("--at", help="Comma-separated times in seconds, one row each.")] = "1",
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="PNG to write \\[default: INPUT_compare.png next to INPUT].", show_default=False)] = None,
    scale: Annotated[int, typer.Option("--scale", help="Factor: 2 or 4.", callback=check_scale)] = 4,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Our column: a shipped model name or checkpoint \\[default: the shipped model for --scale].", show_default=False)] = None,
    others: Annotated[bool, typer.Option("--others/--no-others", help="Add columns for installed peer models.")] = True,
    region: Annotated[Optional[str], typer.Option("--region", metavar="X,Y,W,H", help="Show only this part of each frame (input pixels).", show_default=False)] = None,
    video: Annotated[Optional[Path], typer.Option("--video", help="Also write a split-screen video: left bicubic, right ours.", show_default=False)] = None,
    max_frames: Annotated[Optional[int], typer.Option("--max-frames", "-n", min=1, help="With --video: only the first N frames.", show_default=False)] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    precision: Annotated[Precision, typer.Option("--precision", help="Arithmetic for the model columns: auto, fp32, bf16, fp16 (CUDA), int8 (CPU).")] = Precision.AUTO,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress, only errors.")] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, show_default=False, help="More detail.")] = 0,
) -> None:
    """Compare methods side by side: a collage of frames, optionally a split-screen video."""
    from ..evaluate.compare import default_columns, make_collage, split_screen

    setup_logging(quiet, verbose)
    times = split_list(at, float, "time in seconds")
    if not times:
        raise typer.BadParameter("give at least one time, e.g. --at 3,4,5,6", param_hint="--at")
    box = _region(region)
    png = output or input.resolve().parent / f"{input.name if input.is_dir() else input.stem}_compare.png"
    for written in (png, video):
        if written is not None and not written.parent.is_dir():  # before any model runs
            from ..job.plan import folder_problem

            raise fail(folder_problem(written.parent), 3)
    try:
        columns = default_columns(scale, model, others, device, precision.value)
        built = {label: factory() for label, factory in columns.items()}
        result = make_collage(input, times, png, built, region=box)
        say(f"wrote {result.path}: {result.size[0]}x{result.size[1]}, rows at "
            + ", ".join(f"{t:.2f} s" for t in result.times) + "; columns " + " | ".join(result.columns), quiet)
        if video is not None:
            ours = next(label for label in built if label != "bicubic")
            with bar(not quiet) as progress:
                task = progress.add_task("split-screen video", total=max_frames)
                n = split_screen(input, video, ("bicubic", built["bicubic"]), (ours, built[ours]),
                                 max_frames=max_frames, progress=lambda k: progress.update(task, completed=k))
            say(f"wrote {video}: {n} frames, left bicubic, right {ours}", quiet)
    except MstganError as exc:
        hint = "; pass --model a checkpoint, or see mstgan models" if model is None and exc.exit_code == 5 else ""
        raise fail(f"{exc}{hint}", exc.exit_code) from None
    except KeyboardInterrupt as exc:
        raise fail("interrupted", interrupted_code(exc)) from None
