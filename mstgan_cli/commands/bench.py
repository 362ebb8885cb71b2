"""``mstgan bench``: throughput of each stage and end to end, per backend, precision and batch."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import MstganError
from ..options import Backend, Precision
from .common import (bar, check_scale, enum_list, fail, interrupted_code, say, setup_logging,
                     split_list, stderr, exit_codes_epilog)

BENCH_EPILOG = (
    "[bold]Examples[/bold]\n\n"
    "  [cyan]mstgan bench[/cyan]\n"
    "    → 24 frames of a generated 480x270 clip through the shipped x4 model: decode,\n"
    "      pre-processing, model, post-processing, encode and end to end\n\n"
    "  [cyan]mstgan bench --device cuda --precision fp32,fp16 --batch 1,4 --json > bench.json[/cyan]\n\n"
    "  [cyan]mstgan bench in.mp4 --frames 60 --model bicubic --no-end-to-end[/cyan]\n\n"
    "[bold]Columns[/bold]: fps = frames / seconds of that stage alone; GFLOP/s = the model's "
    "FLOPs per input pixel (streaming, per-frame work cached) x pixels x fps; peak RSS = highest "
    "resident memory sampled during the stage; CUDA peak = max_memory_allocated.\n\n"
    "[bold]Backends[/bold]: eager (PyTorch), compile (on the CPU ahead-of-time packages, built "
    "once per model and precision and then loaded; on CUDA torch.compile), tensorrt (CUDA, the "
    "\\[tensorrt] extra). A configuration's first build is not timed.\n\n"
    + exit_codes_epilog((0, 1, 2, 4, 5, 6, 64, 130, 143),
                        {0: "every configuration measured",
                         1: "some configurations failed (each named in the table), the rest measured",
                         2: "bad input (INPUT missing, unreadable or without frames; an odd --size)"})
)


def _size(value: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in value.lower().split("x"))
    except ValueError as exc:
        raise typer.BadParameter("use WxH, e.g. 480x270") from exc
    if w < 16 or h < 16:
        raise typer.BadParameter("width and height must be at least 16")
    return w, h


def _positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise ValueError(text)
    return n


def _keep_freed_memory(device: str) -> None:
    """Measure as ``mstgan upscale`` runs: on the CPU, freed memory stays in the process
    (``runtime.memory``; the command decides, as upscale's RuntimeTuning does)."""
    if device == "cpu" or (device == "auto" and not _cuda_available()):
        from ..runtime.memory import keep_freed_memory

        keep_freed_memory()


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def bench_cmd(
    input: Annotated[Optional[Path], typer.Argument(help="Clip to measure on \\[default: a generated testsrc2 clip].", show_default=False)] = None,
    size: Annotated[str, typer.Option("--size", help="Frame size WxH of the generated clip.")] = "480x270",
    frames: Annotated[int, typer.Option("--frames", "-n", min=1, help="Frames to measure (generated, or the first N of INPUT).")] = 24,
    model: Annotated[str, typer.Option("--model", "-m", help="mstgan (shipped, for --scale), a model name or checkpoint, or a baseline (bicubic, lanczos).")] = "mstgan",
    scale: Annotated[int, typer.Option("--scale", help="Factor of the shipped model (2 or 4).", callback=check_scale)] = 4,
    backend: Annotated[str, typer.Option("--backend", help="Comma-separated backends: auto, eager, compile, tensorrt (with the \\[tensorrt] extra on CUDA).")] = "eager",
    precision: Annotated[str, typer.Option("--precision", help="Comma-separated: auto, fp32, bf16, fp16 (CUDA), int8 (CPU, compile backend).")] = "fp32",
    batch: Annotated[str, typer.Option("--batch", help="Comma-separated batch sizes (windows per model call).")] = "1",
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    tile: Annotated[int, typer.Option("--tile", min=0, help="Tile edge in input pixels (0 = whole frames).")] = 0,
    end_to_end: Annotated[bool, typer.Option("--end-to-end/--no-end-to-end", help="Also time the whole upscale pipeline per configuration.")] = True,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder to write bench.json and bench.md into.", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress, only errors.")] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, show_default=False, help="More detail.")] = 0,
) -> None:
    """Measure speed: each stage alone, and the whole pipeline, per configuration."""
    from ..evaluate.bench import bench_markdown, run_bench
    from ..evaluate.report import dumps

    setup_logging(quiet, verbose)
    backends = [b.value for b in enum_list(backend, Backend, "backend")]
    precisions = [p.value for p in enum_list(precision, Precision, "precision")]
    batches = split_list(batch, _positive, "batch size")
    if not backends or not precisions or not batches:
        raise typer.BadParameter("--backend, --precision and --batch each need at least one value")
    wh = _size(size)
    _keep_freed_memory(device)
    try:
        with bar(not quiet) as progress:
            task = progress.add_task("bench", total=None)
            result = run_bench(input, wh, frames, model, scale, backends, precisions, batches,
                               device, tile, end_to_end,
                               progress=lambda p: progress.update(
                                   task, description=f"{p.stage} {p.config or ''}", completed=p.index - 1,
                                   total=p.total))
    except MstganError as exc:
        raise fail(str(exc), exc.exit_code) from None
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    except KeyboardInterrupt as exc:
        raise fail("interrupted", interrupted_code(exc)) from None
    text = bench_markdown(result)
    if not quiet:
        stderr.print(text, markup=False, highlight=False, soft_wrap=True)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench.md").write_text(text + "\n", encoding="utf-8")
        (out / "bench.json").write_text(dumps(result) + "\n", encoding="utf-8")
        say(f"wrote {out / 'bench.md'}, {out / 'bench.json'}", quiet)
    if as_json:
        print(dumps(result))
    if result["errors"]:
        raise typer.Exit(1)
