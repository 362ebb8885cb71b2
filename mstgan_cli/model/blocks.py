"""Building blocks of the MST-GAN generator: convolutions, flow warping, flow composition.

Everything here uses only ops that torch.export and TensorRT handle well (conv, depthwise conv,
pixel_shuffle, interpolate, grid_sample, elementwise); no I/O, no device choices.
"""
from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F


def act() -> nn.Module:
    return nn.LeakyReLU(0.1, inplace=True)


class ResBlock(nn.Module):
    """Main-path residual block: two full 3x3 convolutions. (B, C, H, W) -> (B, C, H, W).

    ``mid``: channels between the two convolutions (default C; fewer after structured pruning)."""

    def __init__(self, ch: int, mid: int | None = None) -> None:
        super().__init__()
        mid = mid or ch
        self.conv1 = nn.Conv2d(ch, mid, 3, 1, 1)
        self.conv2 = nn.Conv2d(mid, ch, 3, 1, 1)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(x)))


class DSConv(nn.Module):
    """Depthwise-separable convolution (depthwise kxk, then pointwise 1x1): the cheap layer
    used everywhere off the main path. (B, Cin, H, W) -> (B, Cout, H/stride, W/stride)."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.dw = nn.Conv2d(cin, cin, k, stride, k // 2, groups=cin)
        self.pw = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))


class DetailBlock(nn.Module):
    """Residual detail-enhancement block: depthwise-separable convs with a learned per-pixel,
    per-channel gate that decides how much re-amplified detail to add back.
    (B, C, H, W) -> (B, C, H, W). ``mid``: channels inside the body (default C)."""

    def __init__(self, ch: int, mid: int | None = None) -> None:
        super().__init__()
        mid = mid or ch
        self.body = nn.Sequential(DSConv(ch, mid), act(), DSConv(mid, ch))
        self.gate = nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        detail = self.body(x)
        return x + detail * torch.sigmoid(self.gate(x))


def bicubic_phase_taps(scale: int, a: float = -0.75) -> torch.Tensor:
    """1-D taps of bicubic upsampling by an integer `scale` (PyTorch's convention: align_corners
    False, A = -0.75), one row per output phase over the 5 input pixels i-2 .. i+2. (scale, 5)."""

    def cubic(x: float) -> float:
        x = abs(x)
        if x <= 1:
            return ((a + 2) * x - (a + 3)) * x * x + 1
        if x < 2:
            return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
        return 0.0

    taps = torch.zeros(scale, 5, dtype=torch.float64)
    for p in range(scale):
        src = (p + 0.5) / scale - 0.5          # source position of phase p, relative to pixel i
        lo = int(torch.floor(torch.tensor(src)))
        for j in range(lo - 1, lo + 3):        # the four pixels around it
            taps[p, j + 2] = cubic(src - j)
    return taps


class BicubicPhases(nn.Module):
    """Bicubic upsampling by `scale` as s*s sub-pixel phases: (N, 3, h, w) -> (N, 3*s*s, h, w), so
    that ``pixel_shuffle(BicubicPhases(s)(x), s)`` equals ``F.interpolate(x, scale_factor=s,
    mode="bicubic", align_corners=False)`` (borders replicated, as PyTorch clamps its taps).

    One grouped 5x5 convolution on the low-resolution frame instead of an interpolation kernel over
    the high-resolution one: several times faster on CPUs, and the phases can be added to the
    network's residual before a single pixel shuffle. No learned weights (not in checkpoints)."""

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = scale
        t = bicubic_phase_taps(scale)
        k = torch.einsum("yi,xj->yxij", t, t).reshape(scale * scale, 1, 5, 5)  # phase (py, px)
        self.register_buffer("weight", k.repeat(3, 1, 1, 1).float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, (2, 2, 2, 2), mode="replicate")
        return F.conv2d(x, self.weight.to(x.dtype), groups=3)


def pixel_shuffle(x: torch.Tensor, scale: int) -> torch.Tensor:
    """``F.pixel_shuffle`` ((N, C*s*s, H, W) -> (N, C, H*s, W*s), the same values) whose result is
    planar (contiguous NCHW) whatever the input's memory format.

    On the channels-last output of a convolution, ``F.pixel_shuffle`` keeps channels-last: the
    picture comes out with its 3 colours interleaved. Inductor then compiles the shuffle to a
    scalar loop (480x272 -> 1920x1088: ~13 ms), and the encoder's hand-off, which writes planar
    GBR, reads each colour with a stride of three (9 against 5 CPU-ms per frame). Written as the
    view, permute and reshape it stands for, it compiles to ~3-5 ms and the picture is planar;
    eager takes the same time as ``F.pixel_shuffle`` on channels-last input and less on NCHW."""
    n, c, h, w = x.shape
    return (x.view(n, c // (scale * scale), scale, scale, h, w)
            .permute(0, 1, 4, 2, 5, 3).reshape(n, c // (scale * scale), h * scale, w * scale))


def base_grid(h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """Pixel coordinates (1, 2, H, W): channel 0 is x, channel 1 is y."""
    ys = torch.arange(h, device=like.device, dtype=like.dtype).view(1, 1, h, 1).expand(1, 1, h, w)
    xs = torch.arange(w, device=like.device, dtype=like.dtype).view(1, 1, 1, w).expand(1, 1, h, w)
    return torch.cat([xs, ys], dim=1)


_GATHER_WARPS: contextvars.ContextVar[bool] = contextvars.ContextVar("gather_warps", default=False)


@contextlib.contextmanager
def warps_as_gathers(enabled: bool = True) -> Iterator[None]:
    """Inside, :func:`flow_warp` on CPU tensors is written as :func:`gather_warp`: for graphs
    that Inductor compiles for the CPU (AOTInductor packages, INT8), traced inside this.
    ``enabled=False`` keeps ``grid_sample`` (to measure what gathers gain:
    ``benchmarks/e2e_precision.py --grid-sample-too``)."""
    token = _GATHER_WARPS.set(enabled)
    try:
        yield
    finally:
        _GATHER_WARPS.reset(token)


def flow_warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward warp: out(p) = x(p + flow(p)), bilinear, border padding.

    x: (B, C, H, W); flow: (B, 2, H, W) in pixels (x, y). Returns (B, C, H, W) in x's dtype.
    Computed in fp32 whatever the dtypes: a bf16 grid misplaces samples by up to half a pixel at
    160 px (fp16 at ~2000 px), and torch 2.13's CPU bf16 grid_sample returns garbage for
    channels-last inputs.
    """
    b, _, h, w = x.shape
    assert flow.shape[-2:] == (h, w), f"flow {tuple(flow.shape)} does not match features {tuple(x.shape)}"
    if _GATHER_WARPS.get() and x.device.type == "cpu":
        return gather_warp(x, flow)
    flow = flow.float()
    coords = base_grid(h, w, flow) + flow
    # normalise to [-1, 1] with align_corners=True: pixel 0 -> -1, pixel W-1 -> +1
    gx = coords[:, 0] * (2.0 / max(w - 1, 1)) - 1.0
    gy = coords[:, 1] * (2.0 / max(h - 1, 1)) - 1.0
    grid = torch.stack([gx, gy], dim=-1)  # (B, H, W, 2)
    out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.to(x.dtype)


def gather_warp(x: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """:func:`flow_warp` for Inductor on the CPU: the same bilinear, border-padded backward warp,
    written as four gathers of whole pixels (rows of C channels) from the channels-last features.

    Inductor compiles this into contiguous channel loads with one coordinate computation per
    pixel; its decomposition of ``grid_sample`` recomputes every pixel's coordinates for each
    channel. Kept flat, (pixels, C): written as (B, H, W, C) gathers, Inductor fuses more and
    runs slower (``benchmarks/RESULTS.md``). Eagerly the gathers are several times slower than
    ``grid_sample``, and TensorRT has its own grid sampling, so only graphs traced inside
    :func:`warps_as_gathers` use this. Same results up to rounding.
    """
    b, c, h, w = x.shape
    flow = flow.float()
    xs = (torch.arange(w, device=x.device, dtype=torch.float32).view(1, 1, w) + flow[:, 0]).clamp(0, w - 1)
    ys = (torch.arange(h, device=x.device, dtype=torch.float32).view(1, h, 1) + flow[:, 1]).clamp(0, h - 1)
    x0f, y0f = xs.floor(), ys.floor()
    wx, wy = (xs - x0f).reshape(-1, 1), (ys - y0f).reshape(-1, 1)  # weights of the right/lower pixels
    x0, y0 = x0f.long(), y0f.long()
    x1, y1 = (x0 + 1).clamp(max=w - 1), (y0 + 1).clamp(max=h - 1)  # weight 0 where clamped
    frame = torch.arange(b, device=x.device).view(b, 1, 1) * h
    r0, r1 = (frame + y0) * w, (frame + y1) * w
    rows = x.permute(0, 2, 3, 1).reshape(b * h * w, c)  # a view of channels-last features

    def pixels(index: torch.Tensor) -> torch.Tensor:
        return rows[index.reshape(-1)].float()

    top = pixels(r0 + x0) * (1 - wx) + pixels(r0 + x1) * wx
    bottom = pixels(r1 + x0) * (1 - wx) + pixels(r1 + x1) * wx
    out = top * (1 - wy) + bottom * wy
    return out.view(b, h, w, c).permute(0, 3, 1, 2).to(x.dtype)


def compose_flow(f_ab: torch.Tensor, f_bc: torch.Tensor) -> torch.Tensor:
    """Chain two flows: f_ac(p) = f_ab(p) + f_bc(p + f_ab(p)). All (B, 2, H, W) in pixels."""
    return f_ab + flow_warp(f_bc, f_ab)


def resize_flow(flow: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Resize a flow field to (h, w), scaling its vectors accordingly. (B, 2, H, W) -> (B, 2, h, w)."""
    fh, fw = flow.shape[-2:]
    out = F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False)
    scale = torch.tensor([w / fw, h / fh], device=flow.device, dtype=flow.dtype).view(1, 2, 1, 1)
    return out * scale
