"""Training data: windows of consecutive frames cut from real clips, and clips synthesised from
photos with realistic camera motion (whose exact optical flow is known, and returned, so the flow
network can be supervised). Degradation: antialiased bicubic downscaling, or the mixture of real
encoders, blur, noise and resize kernels of :mod:`mstgan_cli.train.degrade`.

All sources are decoded once into uint8 arrays in memory (and cached as .npy next to the run)
so a training step spends its time in the model, not in FFmpeg.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from ..model.blocks import flow_warp
from .degrade import Degrader, compress_video, compression_strength, downscale

log = logging.getLogger("mstgan_cli")

VIDEO_EXTS = {".mkv", ".mp4", ".mov", ".avi", ".webm"}
PHOTO_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def read_video_rgb(path: Path, max_frames: int | None = None) -> np.ndarray:
    """Decode a whole (short) clip to (N, H, W, 3) uint8 RGB. Training-data use only."""
    import av  # PyAV: in-process decoding of the training clips

    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if max_frames and len(frames) >= max_frames:
                break
    if not frames:
        raise ValueError(f"{path}: no frames")
    return np.stack(frames)


def read_photo_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _cached(cache: Path | None, name: str, load) -> np.ndarray:
    if cache is None:
        return load()
    cache.mkdir(parents=True, exist_ok=True)
    f = cache / (name + ".npy")
    if f.exists():
        return np.load(f, mmap_mode="r")
    arr = load()
    tmp = f.with_suffix(".tmp.npy")
    np.save(tmp, arr)
    tmp.replace(f)
    return np.load(f, mmap_mode="r")


@dataclass
class Sources:
    videos: list[np.ndarray]   # each (N, H, W, 3) uint8
    photos: list[np.ndarray]   # each (H, W, 3) uint8
    names: list[str]

    @classmethod
    def load(cls, root: Path, cache: Path | None = None) -> "Sources":
        """Every clip under root/videos and photo under root/photos."""
        videos, photos, names = [], [], []
        for p in sorted((root / "videos").glob("*")):
            if p.suffix.lower() in VIDEO_EXTS:
                videos.append(_cached(cache, "v_" + p.stem, lambda p=p: read_video_rgb(p)))
                names.append(p.name)
        for p in sorted((root / "photos").glob("*")):
            if p.suffix.lower() in PHOTO_EXTS:
                photos.append(_cached(cache, "p_" + p.stem, lambda p=p: read_photo_rgb(p)))
                names.append(p.name)
        if not videos and not photos:
            raise FileNotFoundError(f"no videos/ or photos/ under {root}")
        log.info("training sources: %d clips, %d photos", len(videos), len(photos))
        return cls(videos, photos, names)


def _to_tensor(a: np.ndarray) -> torch.Tensor:
    """(..., H, W, 3) uint8 -> (..., 3, H, W) float32 in [0, 1]."""
    t = torch.from_numpy(np.array(a)).float().div_(255.0)  # copies out of the read-only cache
    return t.movedim(-1, -3)


class Batch(NamedTuple):
    """lr (B, T, 3, p, p), hr (B, T, 3, s*p, s*p) in [0, 1]; flow (B, T, 2, p, p): the true motion
    from the centre frame to every frame in LR pixels (``flow_warp(lr[:, i], flow[:, i]) ~ lr[:, c]``),
    where known; flow_weight (B, T, 1, p, p): 1 where it is known (photo windows, away from the edges
    of moving objects and of the picture), else 0; strength (B,): how hard each window's LR was
    compressed (``degrade.compression_strength``; 0 for clean bicubic)."""

    lr: torch.Tensor
    hr: torch.Tensor
    flow: torch.Tensor
    flow_weight: torch.Tensor
    strength: torch.Tensor


class WindowSampler:
    """Draws batches of (lr, hr) windows with their known motion.

    Half the windows (``video_fraction``) come from real clips (random start, crop, flip, time
    reversal, temporal stride), the rest are synthesised from photos by a moving virtual camera,
    sometimes with an object moving on its own. LR: ``degrader`` (default: antialiased bicubic).
    """

    def __init__(self, sources: Sources, scale: int, window: int, patch: int, seed: int,
                 video_fraction: float = 0.5, degrader: Degrader | None = None,
                 fast_motion: float = 0.3, max_speed: float = 6.0) -> None:
        self.src = sources
        self.scale, self.window, self.patch = scale, window, patch
        self.video_fraction = video_fraction if sources.videos and sources.photos else float(bool(sources.videos))
        self.rng = np.random.default_rng(seed)
        weights = np.array([len(v) for v in sources.videos], dtype=np.float64)
        self.video_p = weights / weights.sum() if len(weights) else None
        self.degrader = degrader
        self.fast_motion, self.max_speed = fast_motion, max_speed

    def state(self) -> dict:
        return {"bit_generator": self.rng.bit_generator.state}

    def load_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state["bit_generator"]

    def batch(self, size: int) -> Batch:
        hrs, flows, weights, lrs, strengths = [], [], [], [], []
        p, t = self.patch, self.window
        for _ in range(size):
            hr, flow, weight = self._textured_window()
            hrs.append(hr)
            if flow is None:
                flow, weight = torch.zeros(t, 2, p, p), torch.zeros(t, 1, p, p)
            flows.append(flow)
            weights.append(weight)
            if self.degrader is None:
                lr, info = downscale(hr, self.scale), {"kind": "clean"}
            else:
                lr, info = self.degrader(hr, self.rng)
            lrs.append(lr)
            strengths.append(compression_strength(info))
        return Batch(torch.stack(lrs), torch.stack(hrs), torch.stack(flows), torch.stack(weights),
                     torch.tensor(strengths, dtype=torch.float32))

    def _textured_window(self, tries: int = 4):
        """Flat patches (sky, walls) teach little: redraw most of them, keep a few."""
        for _ in range(tries):
            if self.rng.random() < self.video_fraction:
                clip, flow, weight = self._video_window(), None, None
            else:
                clip, flow, weight = self._photo_window()
            centre = clip[self.window // 2].mean(0)
            texture = (centre[1:] - centre[:-1]).abs().mean() + (centre[:, 1:] - centre[:, :-1]).abs().mean()
            if texture > 0.03 or self.rng.random() < 0.15:
                break
        return clip, flow, weight

    # --- real clips ------------------------------------------------------------------------
    def _video_window(self) -> torch.Tensor:
        rng, t = self.rng, self.window
        vid = self.src.videos[rng.choice(len(self.src.videos), p=self.video_p)]
        stride = 2 if rng.random() < 0.2 and len(vid) > 2 * t else 1
        start = int(rng.integers(0, len(vid) - (t - 1) * stride))
        hp = self.patch * self.scale
        n, h, w, _ = vid.shape
        # a clip smaller than the patch (QCIF, early film) is used whole, mirrored out to the patch
        ch, cw = min(h, hp), min(w, hp)
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        clip = _to_tensor(vid[start:start + (t - 1) * stride + 1:stride, y:y + ch, x:x + cw])
        if (ch, cw) != (hp, hp):
            clip = F.pad(clip, (0, hp - cw, 0, hp - ch), mode="reflect")
        if rng.random() < 0.5:
            clip = clip.flip(-1)
        if rng.random() < 0.5:
            clip = clip.flip(0)
        return clip

    # --- clips synthesised from photos ----------------------------------------------------
    def _photo_window(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(T, 3, hp, hp) frames, their flow from the centre (T, 2, p, p) in LR pixels and its
        weight (T, 1, p, p)."""
        rng, t = self.rng, self.window
        photo = self.src.photos[int(rng.integers(len(self.src.photos)))]
        hp = self.patch * self.scale
        # the camera sees a region `zoom` times the patch, so content density varies
        zoom = float(rng.uniform(1.0, 2.0))
        travel = (t // 2) * self.max_speed * 1.5  # HR pixels the view may move each way
        margin = int((hp + 2 * travel) * zoom * 1.1) + 16
        h, w, _ = photo.shape
        margin = min(margin, h, w)
        y, x = int(rng.integers(0, h - margin + 1)), int(rng.integers(0, w - margin + 1))
        region = _to_tensor(photo[y:y + margin, x:x + margin])[None]  # (1, 3, M, M)
        frames, flow = self._camera_path(region, hp, zoom, fast=rng.random() < self.fast_motion)
        inside = _lands_inside(flow)
        if rng.random() < 0.5:  # an object that moves on its own
            obj, oflow = self._camera_path(region, hp, zoom * float(rng.uniform(0.6, 1.0)), fast=True)
            mask = self._mask(hp)
            frames = frames * (1 - mask) + obj * mask
            # where the motion is known: pixels of the background that land on background in the
            # other frame, and of the object that land on the object
            m_src = mask.expand(t, 1, hp, hp)
            bg = (m_src < 0.02) & (flow_warp(m_src, flow) < 0.02)
            fg = (m_src > 0.98) & (flow_warp(m_src, oflow) > 0.98)
            flow = torch.where(m_src > 0.5, oflow, flow)
            inside = (bg & inside) | (fg & _lands_inside(oflow))
        s = self.scale
        flow_lr = F.avg_pool2d(flow, s) / s
        weight = (F.avg_pool2d(inside.float(), s) > 0.999).float()
        weight[t // 2] = 0.0
        return frames.clamp_(0.0, 1.0), flow_lr, weight

    def _camera_path(self, region: torch.Tensor, hp: int, zoom: float, fast: bool,
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """T views of `region` (1, 3, M, M) along a smooth random path -> (T, 3, hp, hp), and the
        flow from the centre view to each view (T, 2, hp, hp) in HR pixels."""
        rng, t = self.rng, self.window
        m = region.shape[-1]
        vmax = self.max_speed if fast else 2.0  # HR pixels per frame
        v = rng.uniform(-vmax, vmax, size=2)
        acc = rng.uniform(-0.3, 0.3, size=2) * (vmax / 2.0)
        dzoom = rng.uniform(-0.01, 0.01)
        drot = math.radians(rng.uniform(-0.6, 0.6))
        theta = []
        for k in range(-(t // 2), t - t // 2):  # the centre t // 2 at k = 0 (even t too: --steady)
            shift = v * k + 0.5 * acc * k * k          # HR pixels in output space
            z = zoom * (1.0 + dzoom * k)
            a = drot * k
            cos, sin = math.cos(a) * z * hp / m, math.sin(a) * z * hp / m
            tx, ty = shift * z * 2.0 / m
            theta.append([[cos, -sin, tx], [sin, cos, ty]])
        theta_t = torch.tensor(theta, dtype=torch.float64)
        grid = F.affine_grid(theta_t.float(), [t, 3, hp, hp], align_corners=False)
        frames = F.grid_sample(region.expand(t, -1, -1, -1), grid, mode="bicubic",
                               padding_mode="reflection", align_corners=False)
        # output pixel u of view k shows region point A_k u + b_k; the centre's pixel u shows
        # A_c u + b_c, which view k shows at A_k^-1 (A_c u + b_c - b_k)
        base = F.affine_grid(torch.eye(2, 3, dtype=torch.float64)[None], [1, 3, hp, hp], align_corners=False)
        c = t // 2
        a_c, b_c = theta_t[c, :, :2], theta_t[c, :, 2]
        world = base @ a_c.T + b_c                                        # (1, hp, hp, 2)
        flows = []
        for k in range(t):
            a_k, b_k = theta_t[k, :, :2], theta_t[k, :, 2]
            u_k = (world - b_k) @ torch.linalg.inv(a_k).T
            flows.append(((u_k - base) * (hp / 2.0))[0].permute(2, 0, 1))  # normalised -> pixels
        return frames, torch.stack(flows).float()

    def _mask(self, hp: int) -> torch.Tensor:
        """A soft ellipse at a random place, (1, 1, hp, hp)."""
        rng = self.rng
        cy, cx = rng.uniform(0.2, 0.8, size=2) * hp
        ry, rx = rng.uniform(0.15, 0.4, size=2) * hp
        yy = torch.arange(hp).view(-1, 1).float()
        xx = torch.arange(hp).view(1, -1).float()
        d = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
        return torch.sigmoid((1.0 - d) * 8.0)[None, None]


def _lands_inside(flow: torch.Tensor) -> torch.Tensor:
    """(T, 1, H, W) bool: pixel + flow lies inside the picture (what it shows there is known)."""
    h, w = flow.shape[-2:]
    xs = torch.arange(w).view(1, 1, w) + flow[:, 0]
    ys = torch.arange(h).view(1, h, 1) + flow[:, 1]
    return ((xs >= 0) & (xs <= w - 1) & (ys >= 0) & (ys <= h - 1))[:, None]


# Photo pans of the evaluation splits: per photo (in name order) a step in HR pixels per frame that
# is not a whole number of LR pixels, so every frame samples the scene at another sub-pixel phase.
PAN_STEPS = ((2.30, 0.90), (-1.70, 1.10), (1.30, -2.10), (0.90, 1.90))


def photo_pan(img: np.ndarray, step: tuple[float, float], frames: int = 30,
              size: tuple[int, int] = (960, 540)) -> np.ndarray:
    """A view of `size` (W, H) sliding over a photo (H, W, 3) uint8 by a fixed sub-pixel `step` per
    frame (bicubic resampling), centred on the photo; shrunk (to multiples of 8) when the photo is
    too small for the travel. The classic case for multi-frame super-resolution: the exact motion
    of a scene with real detail. Returns (frames, H', W', 3) uint8."""
    t = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).float().div(255)[None]
    _, _, h, w = t.shape
    W, H = size
    travel_x, travel_y = abs(step[0]) * frames, abs(step[1]) * frames
    if W + travel_x + 8 > w or H + travel_y + 8 > h:
        W, H = int(min(W, w - travel_x - 8)) // 8 * 8, int(min(H, h - travel_y - 8)) // 8 * 8
    x0 = (w - W - travel_x) / 2 + (travel_x if step[0] < 0 else 0)
    y0 = (h - H - travel_y) / 2 + (travel_y if step[1] < 0 else 0)
    ys = torch.arange(H, dtype=torch.float64)
    xs = torch.arange(W, dtype=torch.float64)
    out = []
    for k in range(frames):
        px = x0 + step[0] * k + xs  # source pixel centres
        py = y0 + step[1] * k + ys
        gx = (2 * px + 1) / w - 1   # align_corners=False normalisation
        gy = (2 * py + 1) / h - 1
        grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], dim=-1)[None].float()
        f = F.grid_sample(t, grid, mode="bicubic", padding_mode="border", align_corners=False)[0]
        out.append((f.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())
    return np.stack(out)


# the pans validation (and the logged test curves) measure: smaller and shorter than the test
# protocol's (960x540, 30 frames) so a validation stays a small part of a training run
VAL_PAN_SIZE, VAL_PAN_FRAMES = (480, 272), 12


def load_val_clips(root: Path, scale: int, max_frames: int = 40, cache: Path | None = None,
                   degrade: str = "bicubic", prefix: str = "val_",
                   pans: bool = False) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """Validation clips as (name, lr (N, 3, h, w), hr (N, 3, s*h, s*w)), HR cropped to a multiple of
    the scale. degrade: "bicubic" (antialiased bicubic) or "h264:CRF" (then x264 medium, yuv420p, at
    that CRF); names other than bicubic's carry it ("clip.mkv@h264:23"). With ``pans`` the photos/
    of `root` join as photo pans (:func:`photo_pan`, VAL_PAN_SIZE, VAL_PAN_FRAMES frames), named
    "pan_<photo>": real video gives the neighbours little to add, a sub-pixel pan a lot, and a run
    should be chosen (and watched) on both. Frames stay on the CPU."""
    kind, _, arg = degrade.partition(":")
    if kind not in ("bicubic", "h264") or (kind == "h264" and not arg.isdigit()):
        raise ValueError(f"unknown validation degradation {degrade!r}: use bicubic or h264:CRF")
    sources = [(p.name, lambda p=p: _cached(cache, prefix + p.stem, lambda: read_video_rgb(p))[:max_frames])
               for p in sorted((root / "videos").glob("*")) if p.suffix.lower() in VIDEO_EXTS]
    photos = sorted(p for p in (root / "photos").glob("*") if p.suffix.lower() in PHOTO_EXTS) if pans else []
    sources += [(f"pan_{p.stem}", lambda i=i, p=p: _cached(
                     cache, f"{prefix}pan{VAL_PAN_SIZE[0]}x{VAL_PAN_SIZE[1]}_{p.stem}",
                     lambda: photo_pan(read_photo_rgb(p), PAN_STEPS[i % len(PAN_STEPS)], VAL_PAN_FRAMES, VAL_PAN_SIZE)))
                for i, p in enumerate(photos)]
    out = []
    for name, load in sources:
        hr = _to_tensor(load())
        h, w = hr.shape[-2:]
        hr = hr[..., : h - h % scale, : w - w % scale]
        lr = downscale(hr, scale)
        if kind == "h264":
            lr = compress_video(lr, "h264", int(arg))
        out.append((name if kind == "bicubic" else f"{name}@{degrade}", lr, hr))
    return out
