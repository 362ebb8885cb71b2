"""``mstgan prune``: structured channel pruning of a generator, then fine-tuning; resumable."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..errors import EXIT_USAGE
from .common import fail, say, setup_logging, stderr, training_reporter

PRUNE_EPILOG = (
    "[bold]Examples[/bold]\n\n"
    "  [cyan]mstgan prune mstgan-x4 --out runs/x4-pruned[/cyan]\n"
    "    → halve the trunk's residual blocks, a quarter off the encoder's, fine-tune 3000 steps;\n"
    "      re-run the same line to resume; the model lands in runs/x4-pruned/pruned.pt\n\n"
    "  [cyan]mstgan prune mstgan-x4 --out runs/x4-p --keep trunk=0.67 --steps 500[/cyan]\n"
    "    → prune only the trunk, to two thirds, and fine-tune briefly\n\n"
    "  [cyan]mstgan upscale in.mp4 --model runs/x4-pruned/pruned.pt[/cyan]    use it\n\n"
    "What is pruned: the inner channels of every residual block (the filters of its first "
    "convolution and the matching inputs of its second), ranked by filter importance (the norm of "
    "the filter times the norm of what reads it). The feature streams keep their width, so the "
    "pruned model runs everywhere the original does. runs/.../prune.json holds parameters, FLOPs "
    "per pixel and validation PSNR-Y of the parent, of the pruned model before and after "
    "fine-tuning. Exit codes: 0 done, 2 bad input (data folder missing), 5 model, 64 usage error."
)


def prune_cmd(
    model: Annotated[str, typer.Argument(help="Parent weights: a shipped name (mstgan-x4) or a .pt file.")] = "mstgan-x4",
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder (created; resumed if it holds last.pt).")] = Path("runs/x4-pruned"),
    keep: Annotated[str, typer.Option(help="Fraction of inner channels kept per block group "
                                           "(trunk, enc, detail), e.g. 'trunk=0.5,enc=0.75', or one number for all.")]
    = "trunk=0.5,enc=0.75,detail=0.5",
    steps: Annotated[int, typer.Option(help="Fine-tuning steps (0: prune and measure only).")] = 3000,
    lr: Annotated[float, typer.Option("--lr", help="Peak fine-tuning learning rate.")] = 2e-4,
    batch: Annotated[int, typer.Option(help="Windows per step.")] = 16,
    val_every: Annotated[int, typer.Option(help="Validate (and keep the best) every N steps.")] = 500,
    data: Annotated[Path, typer.Option(help="Training data: videos/ and photos/ below it (as for mstgan train).")] = Path("data/train"),
    val: Annotated[Path, typer.Option(help="Validation data: videos/ below it (as for mstgan train).")] = Path("data/val"),
    max_minutes: Annotated[float, typer.Option(help="Stop cleanly after this many minutes (0: no limit).")] = 0.0,
    threads: Annotated[int, typer.Option(help="CPU threads (0: PyTorch's default).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors.")] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More detail.")] = 0,
) -> None:
    """Prune a generator's channels by importance, fine-tune it, and measure what it cost."""
    setup_logging(quiet, max(verbose, 1))
    from ..compress.prune import parse_keep, run_prune
    from ..errors import MstganError
    from ..model.registry import model_path

    try:
        groups = parse_keep(keep)
    except ValueError as exc:
        raise fail(str(exc), EXIT_USAGE) from None
    for p in (data, val):
        if not p.is_dir():
            raise fail(f"data folder not found: {p}", 2)
    if steps < 0 or batch < 1 or val_every < 1:
        raise fail("--steps must be >= 0, --batch and --val-every >= 1", EXIT_USAGE)
    try:
        parent = model_path(model)
        summary = run_prune(parent, out, groups, dict(
            data=str(data), val=str(val), steps=steps, batch=batch, lr=lr,
            warmup=min(100, max(1, steps // 10)), val_every=min(val_every, max(steps, 1)),
            max_minutes=max_minutes, threads=threads), on_log=training_reporter(steps, quiet))
    except MstganError as exc:
        raise fail(str(exc), exc.exit_code) from None
    if as_json:
        print(json.dumps(summary, indent=1))
        return
    if quiet:
        return
    table = Table(title=f"Pruning {parent.name} → {out / 'pruned.pt'}", title_justify="left")
    for column in ("model", "params", "MFLOP/px", "val PSNR-Y (dB)"):
        table.add_column(column)
    table.add_row("parent", f"{summary['parent_params']:,}", f"{summary['parent_flops_per_pixel'] / 1e6:.3f}",
                  f"{summary['parent_val']['psnr_y']:.3f}")
    table.add_row("pruned", f"{summary['params']:,}", f"{summary['flops_per_pixel'] / 1e6:.3f}",
                  f"{summary['pruned_val_before_finetune']['psnr_y']:.3f}")
    table.add_row(f"pruned + {summary['finetune_steps']} steps (best: {summary['best_step']})",
                  f"{summary['params']:,}", f"{summary['flops_per_pixel'] / 1e6:.3f}", f"{summary['val']['psnr_y']:.3f}")
    stderr.print(table)
    say(f"{summary['params_saved']:.1%} fewer parameters, {summary['flops_saved']:.1%} fewer FLOPs per pixel, "
        f"{summary['delta_psnr_y']:+.3f} dB PSNR-Y on the validation windows "
        f"({'meets' if summary['meets_targets'] else 'misses'} the 25 % / 20 % / -0.1 dB targets)")
    if summary["finetune_steps"] < summary["finetune_target_steps"]:
        say(f"stopped at step {summary['finetune_steps']} of {summary['finetune_target_steps']}: "
            "run the same command again to continue")
