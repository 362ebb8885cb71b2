"""Structured (channel) pruning of the generator by filter importance.

What is pruned: the inner channels of every residual block, i.e. the output filters of a block's
first convolution together with the matching input channels of its second. The residual streams
(encoder features, trunk) keep their width, so every other layer, the flow network, the cached
per-frame features and the checkpoint layout outside the blocks stay as they are; a pruned model is
an ordinary generator whose config lists the inner widths (``enc_mid``, ``trunk_mid``,
``detail_mid``). The trunk's residual blocks hold about half of the parameters and of the
FLOPs per pixel, so this is where pruning pays.

Importance of an inner channel j of a block computing ``conv2(act(conv1(x)))``: the norm of its
filter in conv1 (weights and bias) times the norm of its column in conv2. LeakyReLU is positively
homogeneous, so scaling filter j by a and column j by 1/a leaves the block's function unchanged;
only the product is meaningful (a filter-L1 criterion alone, as in Li et al. 2017, can be fooled
by that rescaling). The detail blocks have a depthwise convolution between the two 1x1 layers:
its per-channel kernel joins the product, and the bias it adds on a removed channel (a constant
after the first layer is gone) is folded into the output layer's bias.

After pruning, the model is fine-tuned (``mstgan prune`` runs the ordinary training loop from the
pruned weights), which recovers most of what the removed channels did.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.nn as nn

from ..model.blocks import DetailBlock, ResBlock
from ..model.generator import GeneratorConfig, MSTGANGenerator, count_params

GROUPS = ("enc", "trunk", "detail")
ALIGN = 8  # kept widths are multiples of this (vector-friendly on CPUs and tensor cores)


def kept_width(width: int, keep: float) -> int:
    """Channels kept out of `width` for a keep ratio: a multiple of ALIGN, at least ALIGN, at most width."""
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep ratio must be in (0, 1], got {keep}")
    n = int(round(width * keep / ALIGN)) * ALIGN
    return min(width, max(ALIGN, n))


def _norm(*tensors: torch.Tensor) -> torch.Tensor:
    """Per-channel L2 norm over all the given (C, ...) tensors together -> (C,)."""
    return torch.sqrt(sum(t.detach().float().flatten(1).pow(2).sum(1) for t in tensors))


def res_importance(block: ResBlock) -> torch.Tensor:
    """Importance of each inner channel of a residual block, (mid,)."""
    c1, c2 = block.conv1, block.conv2
    return _norm(c1.weight, c1.bias[:, None]) * _norm(c2.weight.transpose(0, 1))


def detail_importance(block: DetailBlock) -> torch.Tensor:
    """Importance of each inner channel of a detail block, (mid,)."""
    first, second = block.body[0], block.body[2]
    return (_norm(first.pw.weight, first.pw.bias[:, None]) * _norm(second.dw.weight)
            * _norm(second.pw.weight.transpose(0, 1)))


def _take(conv: nn.Conv2d, out_idx: torch.Tensor | None = None, in_idx: torch.Tensor | None = None) -> nn.Conv2d:
    """A copy of conv restricted to the given output / input channels."""
    w = conv.weight.detach()
    b = conv.bias.detach() if conv.bias is not None else None
    groups = conv.groups
    if out_idx is not None:
        w = w[out_idx]
        b = b[out_idx] if b is not None else None
    if in_idx is not None and groups == 1:
        w = w[:, in_idx]
    if groups != 1:  # depthwise: channels in == out == groups
        groups = w.shape[0]
    new = nn.Conv2d(w.shape[1] * groups, w.shape[0], conv.kernel_size, conv.stride, conv.padding,
                    groups=groups, bias=b is not None)
    with torch.no_grad():
        new.weight.copy_(w)
        if b is not None:
            new.bias.copy_(b)
    return new


def _prune_res(block: ResBlock, keep: torch.Tensor) -> None:
    block.conv1 = _take(block.conv1, out_idx=keep)
    block.conv2 = _take(block.conv2, in_idx=keep)


def _prune_detail(block: DetailBlock, keep: torch.Tensor) -> None:
    first, second = block.body[0], block.body[2]
    dropped = torch.ones(first.pw.out_channels, dtype=torch.bool)
    dropped[keep] = False
    # a removed channel still contributed the constant bias of the depthwise conv: fold it
    folded = second.pw.bias.detach() + second.pw.weight.detach()[:, dropped, 0, 0] @ second.dw.bias.detach()[dropped]
    first.pw = _take(first.pw, out_idx=keep)
    second.dw = _take(second.dw, out_idx=keep)
    second.pw = _take(second.pw, in_idx=keep)
    with torch.no_grad():
        second.pw.bias.copy_(folded)


@dataclass
class PruneResult:
    model: MSTGANGenerator
    params_before: int
    params_after: int
    widths: dict[str, list[int]] = field(default_factory=dict)       # group -> kept inner widths
    importance: dict[str, list[list[float]]] = field(default_factory=dict)  # per block, per channel

    @property
    def params_saved(self) -> float:
        return 1.0 - self.params_after / self.params_before


def prune_generator(model: MSTGANGenerator, keep: dict[str, float]) -> PruneResult:
    """Prune the inner channels of the residual blocks of the groups in `keep` ('enc', 'trunk',
    'detail') to about that fraction each, keeping the most important channels (in their original
    order). Returns a new generator (the input model is left untouched) with a config that records
    the widths."""
    unknown = set(keep) - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown pruning groups {sorted(unknown)} (known: {', '.join(GROUPS)})")
    cfg = model.config
    new = MSTGANGenerator(cfg)
    new.load_state_dict(model.state_dict())
    new.eval()
    blocks = {"enc": list(new.enc_body), "trunk": list(new.trunk), "detail": list(new.detail)}
    widths: dict[str, list[int]] = {}
    importance: dict[str, list[list[float]]] = {}
    for group, ratio in keep.items():
        widths[group], importance[group] = [], []
        for block in blocks[group]:
            score = detail_importance(block) if isinstance(block, DetailBlock) else res_importance(block)
            n = kept_width(len(score), ratio)
            idx = torch.sort(torch.topk(score, n).indices).values
            (_prune_detail if isinstance(block, DetailBlock) else _prune_res)(block, idx)
            widths[group].append(n)
            importance[group].append([round(float(v), 5) for v in score])
    new_cfg = replace(cfg, **{f"{g}_mid": tuple(w) for g, w in widths.items()})
    pruned = MSTGANGenerator(new_cfg)
    pruned.load_state_dict(new.state_dict())  # shapes must match the config exactly
    return PruneResult(pruned.eval(), count_params(model), count_params(pruned), widths, importance)


def pruning_overrides(config: GeneratorConfig) -> dict:
    """The GeneratorConfig fields that differ from the defaults of its scale and window (what the
    training loop's ``generator`` overrides need to rebuild it)."""
    base = GeneratorConfig(scale=config.scale, window=config.window).to_dict()
    return {k: v for k, v in config.to_dict().items() if k not in ("scale", "window") and base.get(k) != v}


# --- prune, fine-tune, compare: what `mstgan prune` runs ---------------------------------------

def parse_keep(spec: str) -> dict[str, float]:
    """'trunk=0.5,enc=0.75' -> {'trunk': 0.5, 'enc': 0.75}; a bare number applies to every group."""
    spec = spec.strip()
    try:
        if "=" not in spec:
            return {g: float(spec) for g in GROUPS}
        out = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            group, value = part.split("=", 1)
            out[group.strip()] = float(value)
    except ValueError as exc:
        raise ValueError(f"bad --keep {spec!r}: expected e.g. 'trunk=0.5,enc=0.75' or '0.5'") from exc
    unknown = set(out) - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown pruning groups {sorted(unknown)} (known: {', '.join(GROUPS)})")
    for v in out.values():
        kept_width(8, v)  # validates the range
    return out


def run_prune(parent: Path, out: Path, keep: dict[str, float], train_overrides: dict,
              on_log=None) -> dict:
    """Prune `parent` (a generator checkpoint) into `out`, fine-tune it there with the training loop
    (resumable: run again to continue), export ``out/pruned.pt`` from the best checkpoint, and write
    ``out/prune.json``: parameters, FLOPs per pixel and validation PSNR-Y of the parent, of the
    pruned model before fine-tuning and of the fine-tuned one. Returns that summary."""
    import json
    from dataclasses import asdict

    from ..model.checkpoint import atomic_save, export_generator, load_generator
    from ..model.registry import flops_per_pixel
    from ..train.data import load_val_clips
    from ..train.loop import TrainConfig, train, validate

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    init, summary_file = out / "pruned-init.pt", out / "prune.json"
    cfg = TrainConfig(out=str(out), **train_overrides)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    model, _ = load_generator(parent)
    if summary_file.exists() and init.exists():  # resuming: pruned and measured already
        summary = json.loads(summary_file.read_text())
    else:
        val_clips = load_val_clips(Path(cfg.val), model.config.scale, cache=Path(cfg.cache))
        cpu = torch.device("cpu")
        res = prune_generator(model, keep)
        atomic_save({"config": res.model.config.to_dict(), "state_dict": res.model.state_dict()}, init)
        summary = {
            "parent": str(parent), "keep": keep, "widths": res.widths, "importance": res.importance,
            "parent_params": res.params_before, "params": res.params_after,
            "parent_flops_per_pixel": flops_per_pixel(model.config)["streaming"],
            "flops_per_pixel": flops_per_pixel(res.model.config)["streaming"],
            "parent_val": validate(model, val_clips, cfg.val_frames, cpu),
            "pruned_val_before_finetune": validate(res.model, val_clips, cfg.val_frames, cpu),
        }
        summary_file.write_text(json.dumps(summary, indent=1))
    pruned_cfg = GeneratorConfig(**torch.load(init, weights_only=True)["config"])
    cfg = replace(cfg, scale=pruned_cfg.scale, window=pruned_cfg.window,
                  generator=pruning_overrides(pruned_cfg), init=str(init))
    if cfg.steps > 0:
        train(cfg, on_log=on_log)
        best = torch.load(out / "best.pt", map_location="cpu", weights_only=True)
    else:  # prune and measure only
        best = {**torch.load(init, weights_only=True), "step": 0, "val": summary["pruned_val_before_finetune"]}
    tuned = MSTGANGenerator(GeneratorConfig(**best["config"]))
    tuned.load_state_dict(best["state_dict"])
    log_file = out / "log.jsonl"
    steps = max((json.loads(line).get("step", 0) for line in log_file.read_text().splitlines()),
                default=0) if log_file.exists() else 0
    summary.update({
        "finetune_steps": steps, "finetune_target_steps": cfg.steps, "best_step": best["step"],
        "val": best["val"], "train_config": asdict(cfg),
        "params_saved": 1 - summary["params"] / summary["parent_params"],
        "flops_saved": 1 - summary["flops_per_pixel"] / summary["parent_flops_per_pixel"],
        "delta_psnr_y": best["val"]["psnr_y"] - summary["parent_val"]["psnr_y"],
    })
    summary["meets_targets"] = (summary["params_saved"] >= 0.25 and summary["flops_saved"] >= 0.20
                                and summary["delta_psnr_y"] >= -0.1)
    export_generator(tuned, out / "pruned.pt", {
        "kind": "fidelity", "description": f"{Path(parent).stem} pruned (inner widths {summary['widths']}) "
                                           f"and fine-tuned {best['step']} steps",
        "params": summary["params"], "flops_per_pixel": flops_per_pixel(tuned.config),
        "pruned_from": str(parent), "prune": {k: summary[k] for k in ("keep", "widths", "params_saved",
                                                                     "flops_saved", "delta_psnr_y")}})
    summary_file.write_text(json.dumps(summary, indent=1))
    return summary
