"""``mstgan eval``: full-reference metrics, the no-reference flicker score, or the benchmark protocol."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from ..errors import MstganError
from .common import EXIT_CODES, bar, fail, say, setup_logging, split_list, stderr

EVAL_EPILOG = (
    "[bold]Examples[/bold]\n\n"
    "  [cyan]mstgan eval out_x4.mp4 --ref ground_truth.mp4[/cyan]\n"
    "    → PSNR-Y, SSIM-Y, LPIPS, tOF, tLP (+ VMAF when FFmpeg has libvmaf); writes\n"
    "      out_x4_eval.csv (per frame), out_x4_eval.json (summary), out_x4_eval.png (curves)\n\n"
    "  [cyan]mstgan eval sr_frames/ --ref hr_frames/ --crop 4 --json | jq .psnr_y[/cyan]\n\n"
    "  [cyan]mstgan eval out_x4.mp4 --flicker --input in.mp4[/cyan]\n"
    "    → temporal consistency without ground truth, against bicubic (1.0 = as stable as\n"
    "      bicubic; > 1.35 flickers), overall and per scene\n\n"
    "  [cyan]mstgan eval --protocol x4 clips/*.mp4 --max-frames 30 --out results/[/cyan]\n"
    "    → the benchmark: LR = antialiased bicubic of each HR clip; our models, bicubic,\n"
    "      lanczos and installed peers; one table (results/protocol_x4.md and .json)\n\n"
    "  [cyan]mstgan eval --protocol x4 clips/*.mkv --degrade h264:23 --temporal-gain --out results/[/cyan]\n"
    "    → the same on H.264-compressed input (results/protocol_x4_h26423.md), and what each\n"
    "      model gains from its neighbours (against windows holding only their centre frame)\n\n"
    "[bold]Inputs[/bold]: video files or folders of PNG/JPEG/TIFF frames (natural name order). "
    "Output and reference must have the same frame size and count.\n\n"
    "[bold]Files[/bold]: written next to OUTPUT unless [cyan]--out DIR[/cyan]; the PNG plot needs "
    "matplotlib ([cyan]pip install matplotlib[/cyan]); without it the plot is skipped with a note.\n\n"
    + EXIT_CODES
)


def _lpips_choice(value: str) -> str:
    v = value.lower()
    if v not in ("alex", "vgg", "off"):
        raise typer.BadParameter("must be alex, vgg or off")
    return v


def _degrade_choice(value: str) -> str:
    from ..train.degrade import parse_eval_degrade

    try:
        parse_eval_degrade(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc).replace("unknown degradation ", "")) from None
    return value.strip()


def _protocol_scale(value: Optional[str]) -> Optional[int]:
    if value is None:
        return None
    v = value.lower().lstrip("x")
    if v not in ("2", "4"):
        raise typer.BadParameter("must be x2 or x4")
    return int(v)


def eval_cmd(
    paths: Annotated[list[Path], typer.Argument(metavar="OUTPUT | CLIP...", show_default=False, help="The video (or folder of frames) to evaluate; with [cyan]--protocol[/cyan], the HR clips.")],
    ref: Annotated[Optional[Path], typer.Option("--ref", "-r", help="Ground truth to compare OUTPUT with (same size and frame count).", show_default=False)] = None,
    crop: Annotated[int, typer.Option("--crop", min=0, help="Border pixels left out of PSNR/SSIM/LPIPS.")] = 0,
    lpips_net: Annotated[str, typer.Option("--lpips", help="LPIPS network: alex, vgg, or off (also turns tLP off).", callback=_lpips_choice)] = "alex",
    vmaf: Annotated[Optional[bool], typer.Option("--vmaf/--no-vmaf", help="VMAF via FFmpeg's libvmaf \\[default: when available].", show_default=False)] = None,
    flicker: Annotated[bool, typer.Option("--flicker", help="No-reference temporal consistency of OUTPUT (no --ref needed).", rich_help_panel="Flicker")] = False,
    input: Annotated[Optional[Path], typer.Option("--input", "-i", help="With --flicker: the source OUTPUT was upscaled from (the bicubic baseline).", rich_help_panel="Flicker", show_default=False)] = None,
    scale: Annotated[Optional[int], typer.Option("--scale", min=2, help="With --flicker and no --input: OUTPUT's factor, for the baseline \\[default: 4].", rich_help_panel="Flicker", show_default=False)] = None,
    protocol: Annotated[Optional[str], typer.Option("--protocol", metavar="x4|x2", help="Run the benchmark protocol on the HR clips given.", callback=_protocol_scale, rich_help_panel="Protocol", show_default=False)] = None,
    methods: Annotated[Optional[str], typer.Option("--methods", "-m", help="With --protocol: comma-separated methods \\[default: shipped models for the scale, bicubic, lanczos, installed peers].", rich_help_panel="Protocol", show_default=False)] = None,
    precision: Annotated[str, typer.Option("--precision", help="With --protocol: arithmetic for our models (fp32 is the quality reference).", rich_help_panel="Protocol")] = "fp32",
    degrade: Annotated[str, typer.Option("--degrade", metavar="bicubic|h264:CRF|realworld", help="With --protocol: how the LR input is made from each HR clip: antialiased bicubic; that, then H.264 (x264 medium, yuv420p) at CRF; or blur + noise + H.264 CRF 26.", callback=_degrade_choice, rich_help_panel="Protocol")] = "bicubic",
    temporal_gain: Annotated[bool, typer.Option("--temporal-gain", help="With --protocol: also run each of our models with every window holding only its centre frame, and report what the neighbours add (PSNR-Y).", rich_help_panel="Protocol")] = False,
    max_frames: Annotated[Optional[int], typer.Option("--max-frames", "-n", min=1, help="Only the first N frames.", show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder for the CSV, JSON, PNG and markdown files \\[default: next to OUTPUT; --protocol: none].", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout (nothing else goes there).")] = False,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N (LPIPS and models).")] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress, only errors.")] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, show_default=False, help="More detail.")] = 0,
) -> None:
    """Measure quality: against a reference, for flicker, or the whole benchmark protocol."""
    setup_logging(quiet, verbose)
    modes = sum([ref is not None, flicker, protocol is not None])
    if modes != 1:
        raise typer.BadParameter("give exactly one of --ref REFERENCE, --flicker or --protocol x4|x2")
    if protocol is None and len(paths) != 1:
        raise typer.BadParameter(f"expected one OUTPUT, got {len(paths)} (several clips need --protocol)")
    if out is not None and out.exists() and not out.is_dir():
        raise typer.BadParameter(f"{out} is not a folder", param_hint="--out")
    try:
        from ..runtime.engine import resolve_device
        dev = str(resolve_device(device))
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
        if protocol is not None:
            code = _protocol(paths, protocol, methods, precision, max_frames, out, as_json, dev, quiet,
                             degrade, temporal_gain)
        elif flicker:
            code = _flicker(paths[0], input, scale, max_frames, out, as_json, quiet)
        else:
            assert ref is not None
            code = _reference(paths[0], ref, crop, None if lpips_net == "off" else lpips_net, vmaf,
                              max_frames, out, as_json, dev, quiet)
    except MstganError as exc:
        raise fail(str(exc), exc.exit_code) from None
    except KeyboardInterrupt:
        raise fail("interrupted", 130) from None
    if code:
        raise typer.Exit(code)


def _base(output: Path, out: Optional[Path], suffix: str) -> Path:
    stem = output.name if output.is_dir() else output.stem
    folder = out if out is not None else output.resolve().parent
    return folder / f"{stem}_{suffix}"


def _emit_json(obj: Any) -> None:
    from ..evaluate.report import dumps
    print(dumps(obj))


def _reference(output: Path, ref: Path, crop: int, lpips_net: Optional[str], vmaf: Optional[bool],
               max_frames: Optional[int], out: Optional[Path], as_json: bool, device: str, quiet: bool) -> int:
    from ..evaluate.files import evaluate
    from ..evaluate.report import fmt, metric_header, plot_curves, write_csv, write_json

    with bar(not quiet) as progress:
        task = progress.add_task("measuring", total=None)

        def report(p) -> None:
            progress.update(task, description=p.stage, completed=p.frames, total=p.total)

        result = evaluate(output, ref, crop=crop, lpips_net=lpips_net, vmaf=vmaf,
                          max_frames=max_frames, device=device, progress=report)
    base = _base(output, out, "eval")
    csv_path = write_csv(result.rows, base.with_suffix(".csv"))
    summary = dict(result.summary)
    json_path = write_json({"output": result.output, "reference": result.reference,
                            "frames": result.frames, "size": result.size, "crop": crop,
                            "summary": summary, "notes": result.notes}, base.with_suffix(".json"))
    png = base.with_suffix(".png")
    plotted = plot_curves(result.rows, png, title=f"{output.name} vs {ref.name}")
    for note in result.notes:
        say(note, quiet)
    if not plotted:
        say("matplotlib is not installed, so no plot was drawn (pip install matplotlib)", quiet)
    if not quiet:
        table = Table(title=f"{output.name} vs {ref.name}: {result.frames} frames, "
                            f"{result.size[0]}x{result.size[1]}, crop {crop}", title_justify="left")
        table.add_column("metric")
        table.add_column("mean", justify="right")
        for key, value in summary.items():
            table.add_row(metric_header(key), fmt(value, key))
        stderr.print(table)
        files = [csv_path, json_path] + ([png] if plotted else [])
        say("wrote " + ", ".join(str(f) for f in files))
    if as_json:
        _emit_json(summary)
    return 0


def _flicker(output: Path, input: Optional[Path], scale: Optional[int], max_frames: Optional[int],
             out: Optional[Path], as_json: bool, quiet: bool) -> int:
    from dataclasses import asdict

    from ..evaluate.files import evaluate_flicker
    from ..evaluate.report import fmt, plot_flicker, write_csv, write_json

    with bar(not quiet) as progress:
        task = progress.add_task("flicker", total=None)
        result = evaluate_flicker(output, input, scale, max_frames,
                                  progress=lambda p: progress.update(task, completed=p.frames, total=p.total))
    base = _base(output, out, "flicker")
    rows = [asdict(p) for p in result.pairs]
    csv_path = write_csv(rows, base.with_suffix(".csv"))
    json_path = write_json(result.to_dict(with_pairs=False), base.with_suffix(".json"))
    png = base.with_suffix(".png")
    plotted = plot_flicker(rows, png, title=f"{output.name}: flicker {fmt(result.ratio, digits=3)} "
                                            f"({result.verdict})")
    if not quiet:
        against = (f"bicubic of {input.name}" if input is not None
                   else f"bicubic re-upscale of the output downscaled x{result.scale} (give --input for a better baseline)")
        say(f"{output.name}: flicker {fmt(result.ratio, digits=3)} ({result.verdict}) against {against}; "
            f"warping error {fmt(result.output, digits=3)} vs {fmt(result.reference, digits=3)} levels"
            + ("" if math.isnan(result.motion) else f", motion deviation {result.motion:.3g} px"))
        if len(result.scenes) > 1:
            table = Table(title=f"{len(result.scenes)} scenes ({len(result.cuts)} cuts left out)", title_justify="left")
            for col in ("frames", "pairs", "flicker", "verdict", "output", "reference"):
                table.add_column(col)
            for s in result.scenes:
                table.add_row(f"{s.start}-{s.end - 1}", str(s.pairs), fmt(s.ratio, digits=3), s.verdict,
                              fmt(s.output, digits=3), fmt(s.reference, digits=3))
            stderr.print(table)
        if not plotted:
            say("matplotlib is not installed, so no plot was drawn (pip install matplotlib)")
        say("wrote " + ", ".join(str(f) for f in [csv_path, json_path] + ([png] if plotted else [])))
    if as_json:
        _emit_json(result.to_dict())
    return 0


def _protocol(clips: list[Path], scale: int, methods: Optional[str], precision: str,
              max_frames: Optional[int], out: Optional[Path], as_json: bool, device: str, quiet: bool,
              degrade: str = "bicubic", temporal_gain: bool = False) -> int:
    from ..evaluate.protocol import protocol_markdown, run_protocol
    from ..evaluate.report import write_json

    names = split_list(methods, str, "method") or None
    with bar(not quiet) as progress:
        task = progress.add_task("protocol", total=None)

        def report(p) -> None:
            progress.update(task, description=f"{p.clip} [{p.clip_index + 1}/{p.clips}] {p.method}",
                            completed=p.frames, total=p.total)

        result = run_protocol(clips, scale, names, max_frames, report, device=device, precision=precision,
                              degrade=degrade, centre_only=temporal_gain)
    text = protocol_markdown(result)
    if not quiet:
        stderr.print(text, markup=False, highlight=False, soft_wrap=True)
    if out is not None:
        stem = f"protocol_x{scale}" + ("" if degrade == "bicubic" else "_" + degrade.replace(":", ""))
        md = out / f"{stem}.md"
        md.write_text(text + "\n", encoding="utf-8")
        js = write_json(result, out / f"{stem}.json")
        say(f"wrote {md}, {js}", quiet)
    if as_json:
        _emit_json(result)
    if result["errors"]:
        say(f"{len(result['errors'])} method(s) could not be measured: {', '.join(result['errors'])}", quiet)
        return 1
    return 0
