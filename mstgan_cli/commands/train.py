"""``mstgan train``: the staged training of the generator, resumable at any point."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import fail, say, setup_logging, training_reporter

TRAIN_EPILOG = (
    "[bold]Examples[/bold]\n\n"
    "  [cyan]mstgan train --out runs/x4 --data data/train --val data/val[/cyan]\n"
    "    → stage 1 (fidelity): L1 + flow regularisation and supervision, real-world degradations;\n"
    "      re-run the same line to resume (a resume with other settings is refused)\n\n"
    "  [cyan]mstgan train --out runs/x2 --scale 2 --init runs/x4/best.pt[/cyan]\n"
    "    → an x2 model started from the x4 weights (all but the upsampler carry over)\n\n"
    "  [cyan]mstgan train --out runs/x4-gan4 --stage 2 --init weights/mstgan-x4.pt --steps 2000 --batch 8 \\\n"
    "      --lr 3e-5 --warmup 100 --val-every 200 --perceptual 0.05 --vgg-layers relu1_2,relu2_2 \\\n"
    "      --temporal 2 --pingpong 1 --tflow 1 --ema 0.995 --noise-steps 500[/cyan]\n"
    "    → stage 2 (GAN): spatio-temporal discriminator, temporal, motion and Ping-Pong losses,\n"
    "      the averaged weights validated and kept\n\n"
    "  [cyan]mstgan train --out runs/x4 --until 5000[/cyan]    stop cleanly at step 5000 (schedule unchanged)\n\n"
    "  [cyan]mstgan train --out runs/x4 --plot[/cyan]    redraw runs/x4/curves.png and stop\n\n"
    "A run folder holds last.pt (resume state, written every few minutes and on Ctrl-C), best.pt "
    "(best validation score: PSNR-Y in stage 1; in stage 2 the lowest LPIPS among checkpoints whose tOF "
    "and tLP are no worse than the starting weights'), log.jsonl and curves.png. "
    "Uses a CUDA GPU when there is one."
)


def train_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder (created; resumed if it holds last.pt).")] = Path("runs/x4"),
    data: Annotated[Path, typer.Option(help="Training data: videos/ and photos/ below it.")] = Path("data/train"),
    val: Annotated[Path, typer.Option(help="Validation data (chooses the best checkpoint): videos/ below it.")] = Path("data/val"),
    test: Annotated[Optional[Path], typer.Option(help="Test data: its videos/ are measured at every validation and "
                                                      "logged as curves, never used to choose anything.")] = None,
    degrade: Annotated[str, typer.Option(help="Low-res input of training: 'realworld' (real H.264/HEVC/"
                                              "MPEG-2/JPEG encoders, blur, noise, resize kernels, clean "
                                              "bicubic kept as one case) or 'bicubic' (the protocol's).")] = "realworld",
    degrade_config: Annotated[str, typer.Option(help="With --degrade realworld: the mixture as JSON overrides, "
                                                     "e.g. '{\"p_clean\": 0.4, \"p_h264\": 0.4}' (the rest is "
                                                     "blur/noise/resize/codec chains); keys: p_clean, p_h264, "
                                                     "h264_crf, p_blur, blur_sigma, p_second, p_noise, "
                                                     "noise_sigma, p_compress, codecs.")] = "{}",
    val_degrade: Annotated[str, typer.Option(help="Validation sets, comma-separated: bicubic, h264:CRF; "
                                                  "the best checkpoint has the highest mean PSNR-Y over them.")] = "bicubic,h264:23",
    flow: Annotated[float, typer.Option(help="Weight of the flow supervision by the virtual camera's "
                                             "known motion (photo windows).")] = 0.02,
    max_speed: Annotated[float, typer.Option(help="Virtual camera: fastest motion, HR pixels per frame.")] = 16.0,
    true_flow: Annotated[float, typer.Option(help="Stage 1: share of the photo windows whose neighbours are "
                                                  "aligned with the true motion instead of the predicted flow, "
                                                  "so the fusion learns what exact alignment is worth "
                                                  "(0 to 1).")] = 0.0,
    scale: Annotated[int, typer.Option(help="Upscaling factor: 2 or 4.")] = 4,
    window: Annotated[int, typer.Option(help="Frames per window (odd): 5 or 7.")] = 5,
    stage: Annotated[int, typer.Option(help="0: the flow network alone on the virtual camera's known motion "
                                            "(photo windows; everything else frozen), 1: fidelity (L1), "
                                            "2: adversarial.")] = 1,
    steps: Annotated[int, typer.Option(help="Length of the learning-rate schedule (steps).")] = 40_000,
    batch: Annotated[int, typer.Option(help="Windows per step.")] = 8,
    patch: Annotated[int, typer.Option(help="Low-resolution patch side (pixels).")] = 48,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate.")] = 3e-4,
    init: Annotated[Optional[Path], typer.Option(help="Start from these weights (best.pt/last.pt of another run).")] = None,
    perceptual: Annotated[float, typer.Option(help="Weight of the VGG16 perceptual loss.")] = 0.0,
    vgg_layers: Annotated[str, typer.Option(help="VGG16 feature maps of the perceptual loss (L1 between them), or 'lpips': the LPIPS distance on VGG16 (normalised relu1_2..relu5_3, learned weights; eval reports LPIPS on AlexNet).")] = "relu1_2,relu2_2,relu3_3",
    perceptual_crop: Annotated[int, typer.Option(
        help="The perceptual loss sees one random window this many HR pixels square of each output patch "
             "(0: all of it); VGG16 on a whole patch costs several times the generator.")] = 0,
    perceptual_on: Annotated[str, typer.Option(
        help="Stage 1: which windows the perceptual loss covers: 'all', or 'compressed' (only those whose "
             "low-res input went through an encoder; clean input keeps its fidelity).")] = "all",
    psnr_slack: Annotated[float, typer.Option(
        help="Stage 1 with --perceptual: best.pt is the checkpoint with the lowest val LPIPS among those whose "
             "val PSNR-Y is at most this many dB below the starting weights' (and no less stable in time).")] = 0.05,
    gate: Annotated[float, typer.Option(
        help="Stage 1: weight of the compression gate's supervision (its per-pixel estimate of how hard "
             "each window was compressed, against the known setting). Needs a generator with a gate, "
             "e.g. --generator '{\"gate\": 16}'.")] = 0.0,
    gate_lr_scale: Annotated[float, typer.Option(
        help="Stage 1: learning rate of the compression gate, relative to the rest of the generator "
             "(0 freezes it, e.g. to keep a calibrated gate while the rest fine-tunes).")] = 20.0,
    steady: Annotated[float, typer.Option(
        help="Stage 1: weight of the steadiness loss. Each sample gives two outputs one frame apart, "
             "whose change must match the ground truth's (flicker, what tOF/tLP measure; validation "
             "then logs them). Doubles the generator's work per step.")] = 0.0,
    adv: Annotated[float, typer.Option(help="Stage 2: weight of the adversarial (hinge) loss.")] = 0.005,
    temporal: Annotated[float, typer.Option(help="Stage 2: weight of the temporal loss (consecutive-frame "
                                                 "change must match the ground truth's).")] = 0.5,
    pingpong: Annotated[float, typer.Option(help="Stage 2: weight of the Ping-Pong loss (the reversed "
                                                 "window must give the same frame).")] = 0.5,
    ftemporal: Annotated[float, typer.Option(help="Stage 2: weight of the temporal loss on VGG features "
                                                  "(the space tLP measures flicker in).")] = 0.0,
    tflow: Annotated[float, typer.Option(help="Stage 2: weight of the motion loss (the flow between "
                                              "consecutive outputs must match the ground truth's; what tOF "
                                              "measures).")] = 0.0,
    ema: Annotated[float, typer.Option(help="Stage 2: decay of a moving average of the weights, which is "
                                            "what is validated and kept, e.g. 0.999 (0: off).")] = 0.0,
    warmup: Annotated[int, typer.Option(help="Steps of linear learning-rate warm-up.")] = 300,
    noise_steps: Annotated[int, typer.Option(help="Stage 2: steps over which the discriminator's "
                                                  "instance noise fades to zero.")] = 5000,
    generator: Annotated[str, typer.Option(help='Generator overrides as JSON, e.g. \'{"trunk": 64}\'.')] = "{}",
    val_every: Annotated[int, typer.Option(help="Validate (and keep the best) every N steps.")] = 500,
    max_minutes: Annotated[float, typer.Option(help="Stop cleanly after this many minutes (0: no limit).")] = 0.0,
    until: Annotated[int, typer.Option(help="Stop cleanly at this step, leaving the schedule (--steps) "
                                            "as it is; resume later with a larger --until (0: at --steps).")] = 0,
    threads: Annotated[int, typer.Option(help="CPU threads (0: PyTorch's default).")] = 0,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    plot: Annotated[bool, typer.Option("--plot", help="Only redraw the run's curves.png.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors.")] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More detail.")] = 0,
) -> None:
    """Train the MST-GAN generator (stage 1: fidelity, stage 2: GAN); resumable."""
    setup_logging(quiet, max(verbose, 1))
    from ..train.plot import plot_curves

    if plot:
        png = plot_curves(out)
        if png is None:
            raise fail(f"nothing to plot in {out} (no log.jsonl, or matplotlib missing)", 2)
        say(f"wrote {png}", quiet)
        return
    if scale not in (2, 4) or window not in (3, 5, 7) or stage not in (0, 1, 2):
        raise fail("--scale must be 2 or 4, --window 3, 5 or 7, --stage 0, 1 or 2", 2)
    if degrade not in ("realworld", "bicubic"):
        raise fail(f"--degrade must be realworld or bicubic, not {degrade!r}", 2)
    if steady < 0 or (steady > 0 and stage != 1):
        raise fail(f"--steady is a stage 1 weight, 0 or more (stage 2 has --temporal); got {steady} at stage {stage}", 2)
    if perceptual_on not in ("all", "compressed"):
        raise fail(f"--perceptual-on must be all or compressed, not {perceptual_on!r}", 2)
    if gate_lr_scale < 0:
        raise fail(f"--gate-lr-scale must be 0 or more, not {gate_lr_scale}", 2)
    if not 0.0 <= true_flow <= 1.0:
        raise fail(f"--true-flow must be between 0 and 1, not {true_flow}", 2)
    try:
        from ..train.degrade import DegradeConfig
        mix = json.loads(degrade_config)
        if not isinstance(mix, dict):
            raise ValueError("not a JSON object")
        if mix and degrade != "realworld":
            raise ValueError("only --degrade realworld has a mixture")
        DegradeConfig.from_dict(mix)
    except (ValueError, TypeError) as e:  # json.JSONDecodeError is a ValueError; TypeError: a wrong value type
        raise fail(f"--degrade-config {degrade_config!r}: {e}", 2) from None
    for p in (data, val, *([test] if test else [])):
        if not p.is_dir():
            raise fail(f"data folder not found: {p}", 2)
    from ..train.loop import TrainConfig, train

    cfg = TrainConfig(data=str(data), val=str(val), out=str(out), scale=scale, window=window,
                      generator=json.loads(generator), stage=stage, steps=steps, batch=batch,
                      degrade=degrade, degrade_config=mix, val_degrade=val_degrade, w_flow=flow, true_flow=true_flow, max_speed=max_speed,
                      test=str(test or ""),
                      patch=patch, lr=lr, init=str(init or ""), w_perceptual=perceptual,
                      vgg_layers=vgg_layers, perceptual_crop=perceptual_crop, psnr_slack=psnr_slack, perceptual_on=perceptual_on, gate_lr_scale=gate_lr_scale, w_gate=gate, w_steady=steady, w_adv=adv, w_temporal=temporal, w_pingpong=pingpong,
                      w_ftemporal=ftemporal, w_tflow=tflow, ema=ema, warmup=warmup, noise_steps=noise_steps,
                      val_every=val_every, max_minutes=max_minutes, until=until, threads=threads, seed=seed)
    run = train(cfg, on_log=training_reporter(steps, quiet))
    say(f"run saved in {run} (resume with the same command)", quiet)
