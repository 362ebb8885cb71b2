"""The MST-GAN generator: multi-frame, multi-scale, flow-aligned video super-resolution.

Reads top to bottom: the flow network, the alignment module, the config, the generator.

Data flow for one window of T low-resolution frames (centre c):

    frames (B, T, 3, h, w)
      -> encode: per-frame feature pyramid, 3 levels (C channels at h, h/2, h/4)     [per frame]
      -> pair_flows: flow between each pair of neighbours, both directions          [per pair]
      -> chain the neighbour flows into flows from the centre to every frame        [per window]
      -> MSFA: warp each neighbour's pyramid to the centre, refine level by level,
               coarse to fine, into one aligned feature map per frame
      -> temporal aggregation: attention of every aligned frame against the centre, 1x1 fusion
      -> (optional) compression gate: how compressed the centre frame looks around each pixel,
               modulating the trunk's input and output (FiLM)
      -> trunk of residual blocks + residual detail-enhancement blocks (depthwise-separable)
      -> pixel-shuffle upsampling, added to a bicubic-interpolated skip of the centre frame
    output (B, 3, s*h, s*w)

The first two steps depend on single frames or single pairs only, so a streaming runtime
computes them once per frame and reuses them in every window that contains the frame.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .blocks import BicubicPhases, DetailBlock, DSConv, ResBlock, act, compose_flow, flow_warp, pixel_shuffle

PYRAMID_LEVELS = 3  # feature pyramid: 1, 1/2, 1/4


class FlowLevel(nn.Module):
    """One SPyNet-style level: predicts a flow correction from (reference, warped, flow)."""

    def __init__(self, ch: int, k: int = 3) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(8, ch, k, 1, k // 2), act(),
            nn.Conv2d(ch, ch, k, 1, k // 2), act(),
            nn.Conv2d(ch, ch // 2 + ch // 4, k, 1, k // 2), act(),
            nn.Conv2d(ch // 2 + ch // 4, 2, k, 1, k // 2),
        )

    def forward(self, ref: torch.Tensor, warped: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([ref, warped, flow], dim=1))


class FlowNet(nn.Module):
    """Coarse-to-fine optical flow between two frames.

    forward(a, b): a, b (N, 3, h, w) in [0, 1], h and w divisible by 2**(levels-1).
    Returns flow (N, 2, h, w) in pixels such that b warped by it (``flow_warp(b, flow)``) matches a.
    Coarse levels catch large motion, fine levels the sub-pixel detail.
    """

    def __init__(self, levels: int, ch: int, k: int = 3) -> None:
        super().__init__()
        self.levels = levels
        self.level_nets = nn.ModuleList(FlowLevel(ch, k) for _ in range(levels))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        pa, pb = [a - 0.5], [b - 0.5]
        for _ in range(self.levels - 1):
            pa.append(F.avg_pool2d(pa[-1], 2))
            pb.append(F.avg_pool2d(pb[-1], 2))
        flow = torch.zeros_like(pa[-1][:, :2])
        for lvl in range(self.levels - 1, -1, -1):
            if lvl != self.levels - 1:
                flow = F.interpolate(flow, scale_factor=2.0, mode="bilinear", align_corners=False) * 2.0
            warped = flow_warp(pb[lvl], flow)
            flow = flow + self.level_nets[lvl](pa[lvl], warped, flow)
        return flow


class LevelRefine(nn.Module):
    """Correction of a warped neighbour feature against the centre's feature at one pyramid level."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(DSConv(2 * ch, ch), act(), DSConv(ch, ch))

    def forward(self, centre: torch.Tensor, warped: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([centre, warped], dim=1))


class MSFA(nn.Module):
    """Multi-scale feature alignment of one neighbour to the centre.

    Every level warps the neighbour's features with the flow (scaled to that level). The coarse
    levels (1/4, then 1/2) compare the warped features with the centre's and predict a correction,
    refined coarse to fine: they catch what the flow got wrong on large structures. The full
    level keeps the flow-warped fine detail and adds the upsampled correction, so the costly
    full-resolution work is one bilinear warp.

    centre, neighbour: pyramids (tuples of (N, C, h/2**l, w/2**l)); flow: (N, 2, h, w) from the
    centre to the neighbour. Returns the aligned feature (N, C, h, w). The centre's full-resolution
    level is never read (it may be None): the caller need not copy it for every neighbour.
    """

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.refine = nn.ModuleList(LevelRefine(ch) for _ in range(PYRAMID_LEVELS - 1))

    def forward(self, centre: tuple[torch.Tensor, ...], neighbour: tuple[torch.Tensor, ...],
                flow: torch.Tensor) -> torch.Tensor:
        flows = [flow]
        for _ in range(PYRAMID_LEVELS - 1):
            flows.append(F.avg_pool2d(flows[-1], 2) * 0.5)
        corr = None
        for lvl in range(PYRAMID_LEVELS - 1, 0, -1):
            warped = flow_warp(neighbour[lvl], flows[lvl])
            c = self.refine[lvl - 1](centre[lvl], warped + (corr if corr is not None else 0.0))
            corr = c if corr is None else c + corr
            corr = F.interpolate(corr, scale_factor=2.0, mode="bilinear", align_corners=False)
        return flow_warp(neighbour[0], flows[0]) + corr


class CompressionGate(nn.Module):
    """How compressed the picture looks around each pixel, and what the trunk does about it.

    A clean smooth picture and a compressed one look alike to the trunk's 3x3 receptive field, so
    a model trained on both smooths faint clean texture as if it were codec noise (and spares
    codec noise as if it were texture). The gate looks wider: a small convolutional stack on the
    centre frame, its evidence averaged over about 36 LR pixels around each pixel (block edges,
    flattened texture, missing grain elsewhere in the neighbourhood), gives a strength in [0, 1]
    per pixel; a 1x1 network turns it into a per-channel scale and shift (FiLM) of the trunk's
    input and output. Local, not global, so tiles of one frame agree away from their borders.

    Training may supervise :meth:`logits` with the known compression of each window
    (``train.degrade.compression_strength``); the FiLM starts as the identity (last layer zeroed),
    so a gate added to trained weights changes nothing at its first step.
    """

    POOL = 9  # at 1/4 resolution: 36 LR pixels

    def __init__(self, ch: int, trunk: int) -> None:
        super().__init__()
        self.evidence = nn.Sequential(
            nn.Conv2d(3, ch, 3, 1, 1), act(),
            nn.Conv2d(ch, ch, 3, 2, 1), act(),
            nn.Conv2d(ch, ch, 3, 2, 1), act(),
        )
        self.to_logit = nn.Conv2d(ch, 1, 1)
        self.film = nn.Sequential(nn.Conv2d(1, ch, 1), act(), nn.Conv2d(ch, 4 * trunk, 1))
        nn.init.zeros_(self.film[-1].weight)
        nn.init.zeros_(self.film[-1].bias)

    @staticmethod
    def residuals(lr: torch.Tensor) -> torch.Tensor:
        """What the gate looks at: the fine detail of luma and chroma (each minus its 3x3 mean,
        x10). Learned from RGB the gate finds nothing in hundreds of steps (it sees content first);
        from these residuals it separates clean from H.264 windows within 300 (AUC 0.94)."""
        y = 0.299 * lr[:, 0:1] + 0.587 * lr[:, 1:2] + 0.114 * lr[:, 2:3]
        z = torch.cat([y, lr[:, 2:3] - y, lr[:, 0:1] - y], dim=1)
        return (z - F.avg_pool2d(F.pad(z, (1, 1, 1, 1), mode="replicate"), 3, 1)) * 10.0

    def logits(self, lr: torch.Tensor) -> torch.Tensor:
        """lr (N, 3, h, w) in [0, 1], h and w multiples of 4 -> (N, 1, h/4, w/4) logits of the
        compression strength."""
        e = self.evidence(self.residuals(lr))
        e = F.avg_pool2d(e, self.POOL, 1, self.POOL // 2, count_include_pad=False)
        return self.to_logit(e)

    def forward(self, lr: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, ...]:
        """(scale_in, shift_in, scale_out, shift_out), each (N, trunk, *size)."""
        q = torch.sigmoid(self.logits(lr))
        q = F.interpolate(q, size=size, mode="bilinear", align_corners=False)
        return self.film(q).chunk(4, dim=1)


@dataclass(frozen=True)
class GeneratorConfig:
    """Shape of the generator. Stored in every checkpoint; capabilities follow from it."""

    scale: int = 4          # 2 or 4
    window: int = 5         # frames per window, odd (5 or 7)
    feat: int = 32          # per-frame feature channels
    trunk: int = 48         # channels of the reconstruction trunk
    enc_blocks: int = 2     # residual blocks in the per-frame encoder
    trunk_blocks: int = 3   # residual blocks (full 3x3 convs) in the trunk
    detail_blocks: int = 1  # depthwise-separable detail-enhancement blocks
    flow_levels: int = 4    # pyramid levels of the flow network
    flow_ch: int = 16       # width of the flow network
    flow_kernel: int = 3    # kernel side of the flow network's convolutions (odd; SPyNet uses 7)
    gate: int = 0           # width of the compression gate (CompressionGate; 0: none)
    # inner widths of each residual block after structured pruning (`mstgan prune`);
    # empty: every block is as wide as its stream (feat for the encoder, trunk for the trunk)
    enc_mid: tuple[int, ...] = ()
    trunk_mid: tuple[int, ...] = ()
    detail_mid: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for name, blocks in (("enc_mid", self.enc_blocks), ("trunk_mid", self.trunk_blocks),
                             ("detail_mid", self.detail_blocks)):
            widths = tuple(int(w) for w in getattr(self, name))  # JSON gives lists
            object.__setattr__(self, name, widths)
            if widths and (len(widths) != blocks or min(widths) < 1):
                raise ValueError(f"{name} needs {blocks} positive widths, got {list(widths)}")
        if self.flow_kernel < 1 or self.flow_kernel % 2 == 0:
            raise ValueError(f"flow_kernel must be odd and positive, got {self.flow_kernel}")

    def mids(self, name: str) -> list[int | None]:
        """Inner width of every block of a group ('enc', 'trunk' or 'detail'); None: unpruned."""
        widths = getattr(self, f"{name}_mid")
        return list(widths) if widths else [None] * getattr(self, f"{name}_blocks")

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this (pad, then crop the output)."""
        return max(2 ** (self.flow_levels - 1), 2 ** (PYRAMID_LEVELS - 1))

    def to_dict(self) -> dict:
        """Plain dict for checkpoints; unpruned configs keep their original keys (and hashes)."""
        d = asdict(self)
        for name in ("enc_mid", "trunk_mid", "detail_mid"):
            d[name] = list(d[name])
            if not d[name]:
                del d[name]
        if d["flow_kernel"] == 3:
            del d["flow_kernel"]
        if not d["gate"]:
            del d["gate"]
        return d


class MSTGANGenerator(nn.Module):
    """Multi-frame super-resolution of the centre frame of a window.

    forward(frames): frames (B, T, 3, h, w) float in [0, 1], T == config.window, h and w multiples
    of config.size_multiple. Returns (B, 3, s*h, s*w), not clamped (clamp for display).
    """

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        assert config.scale in (2, 3, 4), f"unsupported scale {config.scale}"
        assert config.window % 2 == 1 and config.window >= 3, "window must be odd and >= 3"
        self.config = config
        c, t = config.feat, config.trunk
        # per-frame encoder (main path: full convs), then a cheap pyramid
        self.enc_in = nn.Conv2d(3, c, 3, 1, 1)
        self.enc_body = nn.Sequential(*[ResBlock(c, m) for m in config.mids("enc")])
        self.down = nn.ModuleList(DSConv(c, c, 3, stride=2) for _ in range(PYRAMID_LEVELS - 1))
        self.flownet = FlowNet(config.flow_levels, config.flow_ch, config.flow_kernel)
        self.msfa = MSFA(c)
        # temporal aggregation
        self.embed = nn.Conv2d(c, c // 2, 1)
        self.fuse = nn.Conv2d(config.window * c, t, 1)
        # reconstruction
        self.trunk = nn.Sequential(*[ResBlock(t, m) for m in config.mids("trunk")])
        self.detail = nn.Sequential(*[DetailBlock(t, m) for m in config.mids("detail")])
        self.trunk_out = nn.Conv2d(t, t, 3, 1, 1)
        self.gate = CompressionGate(config.gate, t) if config.gate else None
        self.up = nn.Conv2d(t, 3 * config.scale**2, 3, 1, 1)
        self.skip = BicubicPhases(config.scale)
        self.act = act()

    # --- per-frame and per-pair work (cacheable) ---------------------------------------------
    def encode(self, frames: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """frames (N, 3, h, w) in [0, 1] -> pyramid of features ((N, C, h/2**l, w/2**l) for l in 0..2)."""
        x = self.act(self.enc_in(frames - 0.5))
        x = self.enc_body(x)
        pyr = [x]
        for down in self.down:
            pyr.append(self.act(down(pyr[-1])))
        return tuple(pyr)

    def pair_flows(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Flows a->b and b->a for neighbouring frames a, b (N, 3, h, w). Both (N, 2, h, w)."""
        n = a.shape[0]
        flows = self.flownet(torch.cat([a, b], 0), torch.cat([b, a], 0))
        return flows[:n], flows[n:]

    # --- per-window work ---------------------------------------------------------------------
    @staticmethod
    def flows_to_centre(fwd: list[torch.Tensor], bwd: list[torch.Tensor]) -> list[torch.Tensor | None]:
        """Chain neighbour flows into flows from the centre to every frame of the window.

        fwd[i]: flow frame i -> i+1, bwd[i]: flow frame i+1 -> i, for i in 0..T-2.
        Returns T entries (None at the centre), each (N, 2, h, w).
        """
        t = len(fwd) + 1
        c = t // 2
        out: list[torch.Tensor | None] = [None] * t
        acc = None
        for i in range(c, t - 1):  # centre -> right
            acc = fwd[i] if acc is None else compose_flow(acc, fwd[i])
            out[i + 1] = acc
        acc = None
        for i in range(c - 1, -1, -1):  # centre -> left
            acc = bwd[i] if acc is None else compose_flow(acc, bwd[i])
            out[i] = acc
        return out

    def reconstruct(self, centre_lr: torch.Tensor, feats: list[tuple[torch.Tensor, ...]],
                    flows: list[torch.Tensor | None]) -> torch.Tensor:
        """centre_lr (N, 3, h, w); feats: T pyramids; flows: T flows from the centre (None at the
        centre). Returns (N, 3, s*h, s*w)."""
        t = len(feats)
        c = t // 2
        assert t == self.config.window, f"window of {t} frames, model expects {self.config.window}"
        n = centre_lr.shape[0]
        centre = feats[c]
        # All T-1 neighbours go through alignment and the attention embedding as one batch
        # ((T-1)*N, ...): every module runs once per window (fewer, larger kernels, and a graph in
        # which each convolution has one call site, as PT2E quantisation needs).
        nbrs = [i for i in range(t) if i != c]
        k = len(nbrs)
        # (only the coarse levels of the centre are compared, so only they are repeated)
        aligned = self.msfa((None, *(p.repeat(k, 1, 1, 1) for p in centre[1:])),
                            tuple(torch.cat([feats[i][lvl] for i in nbrs]) for lvl in range(len(centre))),
                            torch.cat([flows[i] for i in nbrs]))  # ((T-1)*N, C, h, w)
        emb = self.embed(torch.cat([centre[0], aligned])).unflatten(0, (k + 1, n))
        corr = torch.sigmoid((emb[1:] * emb[:1]).mean(dim=2, keepdim=True))  # (T-1, N, 1, h, w)
        weighted = list((aligned.unflatten(0, (k, n)) * corr).unbind(0))
        weighted.insert(c, centre[0])
        fused = self.act(self.fuse(torch.cat(weighted, dim=1)))  # (N, trunk, h, w)
        if self.gate is not None:
            g_in, b_in, g_out, b_out = self.gate(centre_lr.to(fused.dtype), fused.shape[-2:])
            fused = fused * (1.0 + g_in) + b_in
        x = self.detail(self.trunk(fused))
        if self.gate is not None:
            x = x * (1.0 + g_out) + b_out
        x = self.trunk_out(x) + fused
        # the bicubic skip is added before the pixel shuffle, as its s*s sub-pixel phases, in the
        # centre frame's dtype: a runtime that keeps the 8-bit input frames in fp32 gets an fp32
        # picture even when the network runs in bf16/fp16 (bf16 cannot hold k/255 exactly)
        return pixel_shuffle(self.up(x).to(centre_lr.dtype) + self.skip(centre_lr), self.config.scale)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        out, _ = self.forward_with_flows(frames)
        return out

    def forward_with_flows(self, frames: torch.Tensor, align: Callable[[list], list] | None = None,
                           ) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        """Like forward, also returning the flows from the centre to every frame (for losses).
        ``align`` (training): maps the predicted flows to the flows the neighbours are aligned with
        (e.g. the true motion where it is known); the predicted ones are returned either way."""
        b, t, ch, h, w = frames.shape
        assert ch == 3, f"expected RGB frames, got {ch} channels"
        assert t == self.config.window, f"window of {t} frames, model expects {self.config.window}"
        m = self.config.size_multiple
        assert h % m == 0 and w % m == 0, f"height and width must be multiples of {m}, got {h}x{w}"
        c = t // 2
        flat = frames.reshape(b * t, ch, h, w)
        pyr = self.encode(flat)
        feats = [tuple(p.reshape(b, t, *p.shape[1:])[:, i] for p in pyr) for i in range(t)]
        flows = self.window_flows(frames)
        return self.reconstruct(frames[:, c], feats, align(flows) if align else flows), flows

    def window_flows(self, frames: torch.Tensor) -> list[torch.Tensor | None]:
        """The flows from the centre to every frame of a window (B, T, 3, h, w): T entries, None at
        the centre, each (B, 2, h, w), chained from neighbour flows as the streaming runtime does."""
        b, t = frames.shape[:2]
        c = t // 2
        # only the neighbour flows that point away from the centre are needed here
        a = torch.cat([frames[:, i] for i in range(c, t - 1)] + [frames[:, i + 1] for i in range(0, c)], 0)
        nb = torch.cat([frames[:, i + 1] for i in range(c, t - 1)] + [frames[:, i] for i in range(0, c)], 0)
        fl = self.flownet(a, nb).split(b, dim=0)
        fwd: list[torch.Tensor] = [fl[0]] * (t - 1)
        bwd: list[torch.Tensor] = [fl[0]] * (t - 1)
        for k, i in enumerate(range(c, t - 1)):
            fwd[i] = fl[k]
        for k, i in enumerate(range(0, c)):
            bwd[i] = fl[(t - 1 - c) + k]
        return self.flows_to_centre(fwd, bwd)


def load_matching(model: MSTGANGenerator, state_dict: dict) -> tuple[dict, list[str]]:
    """Load the tensors of ``state_dict`` that fit ``model`` (same name and shape) and make every
    residual block that got none of its weights start as the identity (its last convolution zeroed),
    so that a deeper model grown from a shallower one computes the same pictures at its first step
    and training only has to learn what the new blocks add. Returns (loaded tensors, grown blocks).
    """
    own = model.state_dict()
    fits = {k: v.float() for k, v in state_dict.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(fits, strict=False)
    grown = []
    for name, block in model.named_modules():
        if not isinstance(block, (ResBlock, DetailBlock)):
            continue
        if any(f"{name}.{k}" in fits for k, _ in block.named_parameters()):
            continue
        last = block.conv2 if isinstance(block, ResBlock) else block.body[-1].pw
        with torch.no_grad():
            last.weight.zero_()
            last.bias.zero_()
        grown.append(name)
    return fits, grown


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
