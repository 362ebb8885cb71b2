"""The generator cut into the three pieces the streaming runtime calls, as export-friendly modules.

A backend (eager, torch.compile, TensorRT, INT8) compiles each piece on its own. Every piece takes
and returns flat tensors only (no lists, no None), so torch.export, torch.compile and
torch-tensorrt all see the same graphs:

- ``EncodePart(frames)``: frames (N, 3, h, w) in [0, 1] -> the feature pyramid
  ((N, C, h, w), (N, C, h/2, w/2), (N, C, h/4, w/4)).                          [once per frame]
- ``FlowPart(a, b)``: neighbouring frames (N, 3, h, w) -> flows a->b and b->a, (N, 2, h, w),
  in the flow network's dtype (the runtime keeps it in fp32: cheap, and flows in bf16/fp16
  would be off by a sizeable fraction of a pixel).                             [once per pair]
- ``WindowPart(centre_lr, *rest)``: the centre frame (N, 3, h, w), then the T pyramids (T*3
  tensors, frame by frame), then the T-1 forward and the T-1 backward neighbour flows
  (see :func:`pack_window`) -> the super-resolved centre (N, 3, s*h, s*w), not clamped.
                                                                               [once per window]

h and w are multiples of ``config.size_multiple``. The low-resolution frames and the flows are fp32
whatever the precision (8-bit pixels and sub-pixel flows do not survive bf16), the features are in
the model's dtype, and the output is fp32: the network's residual is added to an fp32 bicubic
skip. All on one device.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from ..model.generator import PYRAMID_LEVELS, MSTGANGenerator


class EncodePart(nn.Module):
    def __init__(self, model: MSTGANGenerator) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.model.encode(frames.to(self.model.enc_in.weight.dtype))


class FlowPart(nn.Module):
    def __init__(self, model: MSTGANGenerator) -> None:
        super().__init__()
        self.model = model

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dtype = self.model.flownet.level_nets[0].net[0].weight.dtype
        return self.model.pair_flows(a.to(dtype), b.to(dtype))


class WindowPart(nn.Module):
    """Chains the neighbour flows into flows from the centre, then reconstructs the centre."""

    def __init__(self, model: MSTGANGenerator) -> None:
        super().__init__()
        self.model = model
        self.window = model.config.window

    def forward(self, centre_lr: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        feats, fwd, bwd = unpack_window(rest, self.window)
        flows = self.model.flows_to_centre(fwd, bwd)
        return self.model.reconstruct(centre_lr, feats, flows)


def pack_window(centre_lr: torch.Tensor, feats: Sequence[Sequence[torch.Tensor]],
                fwd: Sequence[torch.Tensor], bwd: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """The flat argument tuple of :class:`WindowPart` (centre first)."""
    return (centre_lr, *[f for pyr in feats for f in pyr], *fwd, *bwd)


def unpack_window(rest: Sequence[torch.Tensor], window: int
                  ) -> tuple[list[tuple[torch.Tensor, ...]], list[torch.Tensor], list[torch.Tensor]]:
    n_feat = window * PYRAMID_LEVELS
    assert len(rest) == n_feat + 2 * (window - 1), \
        f"expected {n_feat + 2 * (window - 1)} tensors after the centre, got {len(rest)}"
    feats = [tuple(rest[i * PYRAMID_LEVELS:(i + 1) * PYRAMID_LEVELS]) for i in range(window)]
    fwd = list(rest[n_feat:n_feat + window - 1])
    bwd = list(rest[n_feat + window - 1:])
    return feats, fwd, bwd


def part_modules(model: MSTGANGenerator) -> dict[str, nn.Module]:
    """The three parts of one generator (sharing its parameters), by name."""
    return {"encode": EncodePart(model), "flows": FlowPart(model), "window": WindowPart(model)}


def sample_inputs(model: MSTGANGenerator, n: int, h: int, w: int, dtype: torch.dtype = torch.float32,
                  device: torch.device | str = "cpu") -> dict[str, tuple[torch.Tensor, ...]]:
    """Random inputs of the right shapes for each part (for export, tracing, engine builds)."""
    cfg = model.config
    t = cfg.window
    opts = dict(dtype=dtype, device=device)
    frames = torch.rand(n, 3, h, w, device=device)  # input frames stay fp32 (see the module doc)
    feats = [tuple(torch.randn(n, cfg.feat, h >> lvl, w >> lvl, **opts) for lvl in range(PYRAMID_LEVELS))
             for _ in range(t)]
    flows = [torch.randn(n, 2, h, w, device=device) for _ in range(2 * (t - 1))]  # fp32
    return {"encode": (frames,), "flows": (frames, torch.rand(n, 3, h, w, device=device)),
            "window": pack_window(frames, feats, flows[:t - 1], flows[t - 1:])}


# the largest batch and H/W (low-resolution pixels) that graphs exported with the default dynamic
# shapes take: the CPU's compiled packages and int8's quantised graphs (engine.ModelUpscaler tiles
# larger frames and caps its batch for them)
MAX_BATCH, MAX_SIDE = 64, 4096


def dynamic_shapes(model: MSTGANGenerator, max_batch: int = MAX_BATCH, max_side: int = MAX_SIDE) -> dict[str, object]:
    """torch.export dynamic-shape specs for each part: batch, and H/W as multiples of the
    network's size multiple (the pyramid levels follow as H/2, H/4)."""
    from torch.export import Dim

    m = model.config.size_multiple
    n = Dim("n", min=1, max=max_batch)
    hq = Dim("hq", min=1, max=max_side // m)
    wq = Dim("wq", min=1, max=max_side // m)
    full = {0: n, 2: m * hq, 3: m * wq}
    levels = [{0: n, 2: (m >> lvl) * hq, 3: (m >> lvl) * wq} for lvl in range(PYRAMID_LEVELS)]
    t = model.config.window
    # (centre_lr, rest): torch.export sees the varargs of WindowPart.forward as one tuple
    window = (full, (*[levels[lvl] for _ in range(t) for lvl in range(PYRAMID_LEVELS)],
                     *[full] * (2 * (t - 1))))
    return {"encode": (full,), "flows": (full, full), "window": window}
