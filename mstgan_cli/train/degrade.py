"""Degradations of training windows: what real low-resolution video looks like.

A window of HR frames (T, 3, H, W) becomes its LR input (T, 3, H/s, W/s). One set of parameters
is drawn per window and shared by its frames (a camera's blur and a file's codec do not change
between neighbours); noise is drawn anew for every frame, as sensor and film noise are.

Three kinds of window, mixed by :class:`DegradeConfig`:

* ``clean``: antialiased bicubic (:func:`downscale`), exactly the benchmark protocol's ``bicubic``;
* ``h264``: the same, then H.264 (x264, yuv420p) at a random CRF: what ``--degrade h264:CRF``
  measures and what most files people have are;
* ``mixed``: a second-order pipeline in the manner of Real-ESRGAN / RealBasicVSR: optional blur
  (isotropic or anisotropic Gaussian), a random resize kernel, optionally an intermediate scale with
  its own noise, sensor noise (Gaussian colour/grey, or Poisson), and a real encoder (H.264,
  MPEG-2 or JPEG; not HEVC, see :func:`compress_video`) at random quality, with 4:2:0 chroma
  subsampling.

Compression runs through FFmpeg's libraries in-process (PyAV's codec contexts, no container), so
blocking, ringing, chroma bleeding and the temporal behaviour of P/B frames are those of the real
encoders users' files went through.
"""
from __future__ import annotations

import math
from fractions import Fraction
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F

KINDS = ("clean", "h264", "mixed")


def downscale(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """The benchmark degradation: antialiased bicubic by 1/scale. (..., 3, H, W) -> (..., 3, H/s, W/s),
    float in [0, 1] (clamped: bicubic overshoots)."""
    return resize(hr, (hr.shape[-2] // scale, hr.shape[-1] // scale), "bicubic")


def resize(x: torch.Tensor, size: tuple[int, int], kernel: str) -> torch.Tensor:
    """(..., 3, H, W) -> (..., 3, *size), antialiased when shrinking, clamped to [0, 1].
    kernel: bicubic, bilinear or area."""
    lead = x.shape[:-3]
    x = x.reshape(-1, *x.shape[-3:])
    if kernel == "area":
        y = F.interpolate(x, size=size, mode="area")
    else:
        y = F.interpolate(x, size=size, mode=kernel, antialias=size[0] < x.shape[-2], align_corners=False)
    return y.clamp_(0.0, 1.0).reshape(*lead, *y.shape[-3:])


@dataclass(frozen=True)
class DegradeConfig:
    """Mixture of the three kinds of window and the ranges of their parameters."""

    p_clean: float = 0.3
    p_h264: float = 0.35          # the rest is "mixed"
    p_clean_420: float = 0.0      # share of the clean windows passed through 4:2:0 chroma (as every
                                  # video file is) without compression: chroma format alone must not
                                  # say "compressed"
    h264_crf: tuple[int, int] = (16, 34)
    # mixed
    p_blur: float = 0.5
    blur_sigma: tuple[float, float] = (0.3, 2.4)   # HR pixels
    p_second: float = 0.3         # an intermediate scale with its own noise
    p_noise: float = 0.6
    noise_sigma: tuple[float, float] = (1.0, 10.0)  # 8-bit levels
    p_compress: float = 0.9
    # no HEVC: see compress_video
    codecs: tuple[tuple[str, float], ...] = (("h264", 0.6), ("mpeg2", 0.2), ("jpeg", 0.2))

    def __post_init__(self) -> None:
        for k in ("p_clean", "p_h264", "p_clean_420", "p_blur", "p_second", "p_noise", "p_compress"):
            if not 0.0 <= getattr(self, k) <= 1.0:
                raise ValueError(f"{k} must be between 0 and 1, not {getattr(self, k)}")
        if self.p_clean + self.p_h264 > 1.0 + 1e-9:
            raise ValueError(f"p_clean + p_h264 must be at most 1, not {self.p_clean + self.p_h264:g}")
        for k in ("h264_crf", "blur_sigma", "noise_sigma"):
            lo, hi = getattr(self, k)
            if lo > hi:
                raise ValueError(f"{k} must be (low, high), not ({lo}, {hi})")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "DegradeConfig":
        if not d:
            return cls()
        d = dict(d)
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown degradation settings {', '.join(unknown)} "
                             f"(known: {', '.join(f.name for f in fields(cls))})")
        for k in ("h264_crf", "blur_sigma", "noise_sigma"):
            if k in d:
                d[k] = tuple(d[k])
        if "codecs" in d:
            d["codecs"] = tuple((str(a), float(b)) for a, b in d["codecs"])
        return cls(**d)


# --- building blocks --------------------------------------------------------------------------
def gaussian_kernel(sigma_x: float, sigma_y: float, angle: float) -> torch.Tensor:
    """A normalised (k, k) anisotropic Gaussian, k odd and about 3 sigma each side."""
    k = 2 * math.ceil(3 * max(sigma_x, sigma_y)) + 1
    r = torch.arange(k, dtype=torch.float32) - k // 2
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    c, s = math.cos(angle), math.sin(angle)
    u, v = c * xx + s * yy, -s * xx + c * yy
    g = torch.exp(-0.5 * ((u / sigma_x) ** 2 + (v / sigma_y) ** 2))
    return g / g.sum()


def blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) convolved with (k, k), reflected borders."""
    k = kernel.shape[-1]
    w = kernel.to(x.dtype)[None, None].expand(3, 1, k, k)
    return F.conv2d(F.pad(x, (k // 2,) * 4, mode="reflect"), w, groups=3)


def add_noise(x: torch.Tensor, rng: np.random.Generator, sigma_range: tuple[float, float]) -> torch.Tensor:
    """Gaussian (colour or grey) or Poisson noise, independent per frame. x (N, 3, h, w) in [0, 1]."""
    g = torch.Generator().manual_seed(int(rng.integers(2**62)))
    if rng.random() < 0.7:
        sigma = float(rng.uniform(*sigma_range)) / 255.0
        shape = (x.shape[0], 1 if rng.random() < 0.4 else 3, *x.shape[-2:])
        x = x + torch.randn(shape, generator=g) * sigma
    else:  # shot noise: variance proportional to the signal
        peak = 10 ** float(rng.uniform(1.6, 3.0))  # photons at white
        x = torch.poisson(x.clamp(0, 1) * peak, generator=g) / peak
    return x.clamp_(0.0, 1.0)


def _to_u8(x: torch.Tensor) -> np.ndarray:
    """(N, 3, h, w) float [0, 1] -> (N, h, w, 3) uint8."""
    return (x.clamp(0, 1) * 255.0).round_().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def _from_u8(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).float().div_(255.0)


# How `mstgan upscale` turns a file's 4:2:0 frames into RGB (media.decode's scale filter, with the
# matrix an untagged SD stream gets there): chroma interpolated, not repeated over pixel pairs as
# PyAV's to_ndarray does. Training and the protocol decode the same way, so a model (and its
# compression gate, which reads chroma detail) sees in training what it sees in use.
DECODE_SCALE = "flags=bicubic+accurate_rnd+full_chroma_int+full_chroma_inp:in_color_matrix=bt601:in_range=tv"


def _to_rgb(frames: list) -> np.ndarray:
    """4:2:0 av.VideoFrames of one size -> (N, h, w, 3) uint8, through DECODE_SCALE."""
    import av

    f0 = frames[0]
    g = av.filter.Graph()
    src = g.add_buffer(width=f0.width, height=f0.height, format=f0.format.name, time_base=Fraction(1, 25))
    chain = [src, g.add("scale", DECODE_SCALE), g.add("format", "rgb24"), g.add("buffersink")]
    for a, b in zip(chain, chain[1:]):
        a.link_to(b)
    g.configure()
    out = []
    for i, f in enumerate(frames):
        f.pts = i
        g.push(f)
        out.append(g.pull().to_ndarray(format="rgb24"))
    return np.stack(out)


def _encoder(codec: str, quality: float, w: int, h: int):
    import av

    if codec == "h264":
        ctx = av.CodecContext.create("libx264", "w")
        ctx.options = {"crf": str(int(quality)), "preset": "medium"}
    elif codec == "mpeg2":
        ctx = av.CodecContext.create("mpeg2video", "w")
        ctx.qscale = True  # fixed quantiser
        ctx.global_quality = int(quality * 118)  # FF_QP2LAMBDA: qscale -> lambda
        ctx.options = {"qmin": str(int(quality)), "qmax": str(int(quality))}
        ctx.bit_rate = 0
    else:
        raise ValueError(f"unknown codec {codec}")
    ctx.width, ctx.height, ctx.pix_fmt = w, h, "yuv420p"
    # one thread: frame-threaded encoders decide by timing, so the same window could come out
    # differently from run to run (and a resumed sampler must repeat itself); the frames are tiny
    ctx.thread_count = 1
    ctx.time_base = Fraction(1, 25)
    ctx.framerate = Fraction(25, 1)
    return ctx


def compress_video(x: torch.Tensor, codec: str, quality: float) -> torch.Tensor:
    """Encode the frames of x (N, 3, h, w) as one stream with a real encoder and decode them back
    (to RGB as `mstgan upscale` decodes a file: DECODE_SCALE).

    codec: h264 (quality: the CRF) or mpeg2 (the fixed quantiser, 2..31). Frames are padded by edge
    replication to even sizes (4:2:0) of at least 64 x 64 and cropped back. Encoder and decoder run
    single-threaded, so that the same frames always come back the same.

    No HEVC: the libx265 of PyAV 18.1's wheels corrupts the process's heap on frames under one
    64-pixel CTU (glibc aborts), and at 64 x 64 one of six encodes of the same frames differed."""
    if codec not in ("h264", "mpeg2"):
        raise ValueError(f"unknown codec {codec!r}: h264 or mpeg2")
    _, _, h, w = x.shape
    # at least 64 x 64: on smaller frames FFmpeg's H.264 decoder gave about 1 % of streams back
    # differently from run to run (32 x 32: 3 of 300; 64 x 64: 0 of 300)
    ph, pw = max(h % 2, 64 - h), max(w % 2, 64 - w)
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return _from_u8(_to_rgb(encode_decode_yuv(x, codec, quality)))[..., :h, :w]


def encode_decode_yuv(x: torch.Tensor, codec: str, quality: float) -> list:
    """The stream of :func:`compress_video` (x already even-sized, at least 64 x 64), decoded but
    still 4:2:0: one av.VideoFrame per frame of x, for a caller that converts them its own way."""
    import av

    n = x.shape[0]
    frames = _to_u8(x)
    enc = _encoder(codec, quality, frames.shape[2], frames.shape[1])
    dec = av.CodecContext.create({"h264": "h264", "mpeg2": "mpeg2video"}[codec], "r")
    dec.thread_count = 1
    out: list = []

    def drain(packets) -> None:
        for p in packets:
            out.extend(dec.decode(p))

    for i, a in enumerate(frames):
        vf = av.VideoFrame.from_ndarray(a, format="rgb24").reformat(format="yuv420p")
        vf.pts = i
        drain(enc.encode(vf))
    drain(enc.encode(None))
    drain([None])
    if len(out) != n:
        raise RuntimeError(f"{codec}: {n} frames in, {len(out)} out")
    return out


def chroma_420(x: torch.Tensor) -> torch.Tensor:
    """x (N, 3, h, w) through 4:2:0 and back, with no encoder: the chroma of a video file without
    its compression. The same conversions (PyAV's reformat in, DECODE_SCALE out, 8 bits) as
    :func:`compress_video`, so the two differ by the codec alone."""
    import av

    n, _, h, w = x.shape
    if h % 2 or w % 2:
        x = F.pad(x, (0, w % 2, 0, h % 2), mode="replicate")
    out = [av.VideoFrame.from_ndarray(a, format="rgb24").reformat(format="yuv420p") for a in _to_u8(x)]
    return _from_u8(_to_rgb(out))[..., :h, :w]


def compress_jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """Each frame through JPEG (4:2:0) at the given quality."""
    import io

    from PIL import Image

    out = []
    for a in _to_u8(x):
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="JPEG", quality=int(quality), subsampling=2)
        buf.seek(0)
        with Image.open(buf) as im:
            out.append(np.asarray(im.convert("RGB")))
    return _from_u8(np.stack(out))


def compress(x: torch.Tensor, codec: str, rng: np.random.Generator) -> tuple[torch.Tensor, dict]:
    """x through `codec` at a random quality drawn from the range users meet."""
    if codec == "jpeg":
        q = int(rng.integers(30, 96))
        return compress_jpeg(x, q), {"codec": "jpeg", "q": q}
    if codec == "mpeg2":
        q = int(rng.integers(2, 12))
        return compress_video(x, "mpeg2", q), {"codec": "mpeg2", "q": q}
    crf = int(rng.integers(18, 35))
    return compress_video(x, codec, crf), {"codec": codec, "crf": crf}


def compression_strength(info: dict) -> float:
    """How hard a window's LR was compressed, on one rough scale for all codecs: 0 for none (clean,
    or a mixed window that skipped the encoder), about 0.2 for visually transparent settings (x264
    CRF 16, MPEG-2 qscale 3, JPEG 85), 0.5 for typical files (CRF 24), near 1 for the worst the
    sampler draws (CRF 34, qscale 11, JPEG 30). The target of the compression gate's supervision
    (``model.generator.CompressionGate``)."""
    if "crf" in info:
        return float(min(1.0, max(0.0, (info["crf"] - 12) / 24)))
    if info.get("codec") == "mpeg2":
        return float(min(1.0, max(0.0, (info["q"] - 1) / 11)))
    if info.get("codec") == "jpeg":
        return float(min(1.0, max(0.0, (100 - info["q"]) / 78)))
    return 0.0


# --- the pipeline -----------------------------------------------------------------------------
def _choice(rng: np.random.Generator, options: tuple[tuple[str, float], ...]) -> str:
    names = [o[0] for o in options]
    p = np.array([o[1] for o in options], dtype=np.float64)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


class Degrader:
    """Turns HR windows into LR windows, drawing its random choices from the caller's generator
    (so a resumed sampler degrades exactly as an uninterrupted one)."""

    def __init__(self, scale: int, config: DegradeConfig | None = None) -> None:
        self.scale = scale
        self.cfg = config or DegradeConfig()

    def kind(self, rng: np.random.Generator) -> str:
        u = rng.random()
        if u < self.cfg.p_clean:
            return "clean"
        return "h264" if u < self.cfg.p_clean + self.cfg.p_h264 else "mixed"

    def __call__(self, hr: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, dict]:
        """hr (T, 3, H, W) in [0, 1], H and W multiples of the scale -> (lr (T, 3, H/s, W/s), what was done)."""
        kind = self.kind(rng)
        s, cfg = self.scale, self.cfg
        size = (hr.shape[-2] // s, hr.shape[-1] // s)
        if kind == "clean":
            # (the generator is drawn from only when the share is set, so older runs resume alike)
            if cfg.p_clean_420 > 0 and rng.random() < cfg.p_clean_420:
                return chroma_420(downscale(hr, s)), {"kind": kind, "chroma": "420"}
            return downscale(hr, s), {"kind": kind}
        if kind == "h264":
            crf = int(rng.integers(cfg.h264_crf[0], cfg.h264_crf[1] + 1))
            return compress_video(downscale(hr, s), "h264", crf), {"kind": kind, "crf": crf}
        info: dict = {"kind": kind}
        x = hr
        if rng.random() < cfg.p_blur:
            sx = float(rng.uniform(*cfg.blur_sigma))
            sy = sx if rng.random() < 0.5 else float(rng.uniform(*cfg.blur_sigma))
            x = blur(x, gaussian_kernel(sx, sy, float(rng.uniform(0, math.pi))))
            info["blur"] = round(max(sx, sy), 2)
        kernel = _choice(rng, (("bicubic", 0.5), ("bilinear", 0.25), ("area", 0.25)))
        info["kernel"] = kernel
        if rng.random() < cfg.p_second:  # first order down to an intermediate size, then on
            f = float(rng.uniform(0.4, 0.9))  # of the way from HR to LR, in log scale
            mid = tuple(max(size[i], round(hr.shape[-2 + i] * (size[i] / hr.shape[-2 + i]) ** f)) for i in range(2))
            x = resize(x, mid, kernel)
            if rng.random() < 0.5:
                x = add_noise(x, rng, (1.0, 5.0))
            kernel = _choice(rng, (("bicubic", 0.5), ("bilinear", 0.25), ("area", 0.25)))
            info["second"] = True
        x = resize(x, size, kernel)
        if rng.random() < cfg.p_noise:
            x = add_noise(x, rng, cfg.noise_sigma)
            info["noise"] = True
        if rng.random() < cfg.p_compress:
            x, c = compress(x, _choice(rng, cfg.codecs), rng)
            info.update(c)
        return x, info


# --- the evaluation degradations (the protocol's --degrade) -------------------------------------
EVAL_DEGRADATIONS = ("bicubic", "h264:CRF", "realworld")
REALWORLD_EVAL = {"blur_sigma": 1.0, "noise_sigma": 3.0, "crf": 26}


def parse_eval_degrade(spec: str) -> tuple[str, int | None]:
    """'bicubic' -> ('bicubic', None); 'h264:23' -> ('h264', 23); 'realworld' -> ('realworld', None).
    ValueError for anything else."""
    kind, _, arg = spec.strip().partition(":")
    if kind == "h264" and arg.isdigit() and 0 <= int(arg) <= 51:
        return kind, int(arg)
    if kind in ("bicubic", "realworld") and not arg:
        return kind, None
    raise ValueError(f"unknown degradation {spec!r}: use bicubic, h264:CRF (0-51) or realworld")


def describe_eval_degrade(spec: str) -> str:
    kind, crf = parse_eval_degrade(spec)
    if kind == "bicubic":
        return "antialiased bicubic, 1/scale"
    if kind == "h264":
        return f"antialiased bicubic, 1/scale, then H.264 (x264 medium, yuv420p, one stream) at CRF {crf}"
    r = REALWORLD_EVAL
    return (f"Gaussian blur sigma {r['blur_sigma']} HR px, antialiased bicubic 1/scale, Gaussian noise "
            f"sigma {r['noise_sigma']}/255 (seeded, per frame), then H.264 (x264 medium, yuv420p) at CRF {r['crf']}")


def degrade_clip(hr: torch.Tensor, scale: int, spec: str, seed: int = 0) -> torch.Tensor:
    """A whole clip's LR input under an evaluation degradation: hr (N, 3, H, W) in [0, 1], H and W
    multiples of the scale -> (N, 3, H/s, W/s). Compression runs over the clip as one stream, as
    in a file; everything is deterministic for a given seed."""
    kind, crf = parse_eval_degrade(spec)
    if kind == "realworld":
        k = gaussian_kernel(REALWORLD_EVAL["blur_sigma"], REALWORLD_EVAL["blur_sigma"], 0.0)
        lr = torch.cat([downscale(blur(hr[i:i + 8], k), scale) for i in range(0, len(hr), 8)])
        g = torch.Generator().manual_seed(seed)
        lr = (lr + torch.randn(lr.shape, generator=g) * (REALWORLD_EVAL["noise_sigma"] / 255.0)).clamp_(0, 1)
        return compress_video(lr, "h264", REALWORLD_EVAL["crf"])
    lr = torch.cat([downscale(hr[i:i + 8], scale) for i in range(0, len(hr), 8)])
    return lr if kind == "bicubic" else compress_video(lr, "h264", crf)
