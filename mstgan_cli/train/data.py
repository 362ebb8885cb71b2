"""Training data: windows of consecutive frames cut from real clips, and clips synthesised from
photos with realistic camera motion. Degradation: antialiased bicubic downscaling.

All sources are decoded once into uint8 arrays in memory (and cached as .npy next to the run)
so a training step spends its time in the model, not in FFmpeg.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

log = logging.getLogger("mstgan_cli")

VIDEO_EXTS = {".mkv", ".mp4", ".mov", ".avi", ".webm"}
PHOTO_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def downscale(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """The benchmark degradation: antialiased bicubic by 1/scale. (..., 3, H, W) -> (..., 3, H/s, W/s),
    float in [0, 1] (clamped: bicubic overshoots)."""
    lead = hr.shape[:-3]
    x = hr.reshape(-1, *hr.shape[-3:])
    h, w = x.shape[-2:]
    lr = F.interpolate(x, size=(h // scale, w // scale), mode="bicubic", antialias=True, align_corners=False)
    return lr.clamp_(0.0, 1.0).reshape(*lead, *lr.shape[-3:])


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


class WindowSampler:
    """Draws batches of (lr, hr) windows.

    lr: (B, T, 3, p, p), hr: (B, T, 3, s*p, s*p), float32 in [0, 1]. Half the windows come from
    real clips (random start, crop, flip, time reversal, temporal stride), half are synthesised
    from photos by a moving virtual camera.
    """

    def __init__(self, sources: Sources, scale: int, window: int, patch: int, seed: int,
                 video_fraction: float = 0.5) -> None:
        self.src = sources
        self.scale, self.window, self.patch = scale, window, patch
        self.video_fraction = video_fraction if sources.videos and sources.photos else float(bool(sources.videos))
        self.rng = np.random.default_rng(seed)
        weights = np.array([len(v) for v in sources.videos], dtype=np.float64)
        self.video_p = weights / weights.sum() if len(weights) else None

    def state(self) -> dict:
        return {"bit_generator": self.rng.bit_generator.state}

    def load_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state["bit_generator"]

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        hrs = [self._textured_window() for _ in range(size)]
        hr = torch.stack(hrs)
        return downscale(hr, self.scale), hr

    def _textured_window(self, tries: int = 4) -> torch.Tensor:
        """Flat patches (sky, walls) teach little: redraw most of them, keep a few."""
        for _ in range(tries):
            clip = self._video_window() if self.rng.random() < self.video_fraction else self._photo_window()
            centre = clip[self.window // 2].mean(0)
            texture = (centre[1:] - centre[:-1]).abs().mean() + (centre[:, 1:] - centre[:, :-1]).abs().mean()
            if texture > 0.03 or self.rng.random() < 0.15:
                return clip
        return clip

    # --- real clips ------------------------------------------------------------------------
    def _video_window(self) -> torch.Tensor:
        rng, t = self.rng, self.window
        vid = self.src.videos[rng.choice(len(self.src.videos), p=self.video_p)]
        stride = 2 if rng.random() < 0.2 and len(vid) > 2 * t else 1
        start = int(rng.integers(0, len(vid) - (t - 1) * stride))
        hp = self.patch * self.scale
        n, h, w, _ = vid.shape
        y, x = int(rng.integers(0, h - hp + 1)), int(rng.integers(0, w - hp + 1))
        clip = _to_tensor(vid[start:start + (t - 1) * stride + 1:stride, y:y + hp, x:x + hp])
        if rng.random() < 0.5:
            clip = clip.flip(-1)
        if rng.random() < 0.5:
            clip = clip.flip(0)
        return clip

    # --- clips synthesised from photos ----------------------------------------------------
    def _photo_window(self) -> torch.Tensor:
        rng, t = self.rng, self.window
        photo = self.src.photos[int(rng.integers(len(self.src.photos)))]
        hp = self.patch * self.scale
        # the camera sees a region `zoom` times the patch, so content density varies
        zoom = float(rng.uniform(1.0, 2.0))
        margin = int(hp * zoom * 1.6) + 16
        h, w, _ = photo.shape
        margin = min(margin, h, w)
        y, x = int(rng.integers(0, h - margin + 1)), int(rng.integers(0, w - margin + 1))
        region = _to_tensor(photo[y:y + margin, x:x + margin])[None]  # (1, 3, M, M)
        frames = self._camera_path(region, hp, zoom, fast=rng.random() < 0.3)
        if rng.random() < 0.5:  # an object that moves on its own
            obj = self._camera_path(region, hp, zoom * float(rng.uniform(0.6, 1.0)), fast=True)
            mask = self._mask(hp)
            frames = frames * (1 - mask) + obj * mask
        return frames.clamp_(0.0, 1.0)

    def _camera_path(self, region: torch.Tensor, hp: int, zoom: float, fast: bool) -> torch.Tensor:
        """T views of `region` (1, 3, M, M) along a smooth random path -> (T, 3, hp, hp)."""
        rng, t = self.rng, self.window
        m = region.shape[-1]
        vmax = 6.0 if fast else 2.0  # HR pixels per frame
        v = rng.uniform(-vmax, vmax, size=2)
        acc = rng.uniform(-0.3, 0.3, size=2)
        dzoom = rng.uniform(-0.01, 0.01)
        drot = math.radians(rng.uniform(-0.6, 0.6))
        theta = []
        for k in range(-(t // 2), t // 2 + 1):
            shift = v * k + 0.5 * acc * k * k          # HR pixels in output space
            z = zoom * (1.0 + dzoom * k)
            a = drot * k
            cos, sin = math.cos(a) * z * hp / m, math.sin(a) * z * hp / m
            tx, ty = shift * z * 2.0 / m
            theta.append([[cos, -sin, tx], [sin, cos, ty]])
        theta_t = torch.tensor(theta, dtype=torch.float32)
        grid = F.affine_grid(theta_t, [t, 3, hp, hp], align_corners=False)
        return F.grid_sample(region.expand(t, -1, -1, -1), grid, mode="bicubic",
                             padding_mode="reflection", align_corners=False)

    def _mask(self, hp: int) -> torch.Tensor:
        """A soft ellipse at a random place, (1, 1, hp, hp)."""
        rng = self.rng
        cy, cx = rng.uniform(0.2, 0.8, size=2) * hp
        ry, rx = rng.uniform(0.15, 0.4, size=2) * hp
        yy = torch.arange(hp).view(-1, 1).float()
        xx = torch.arange(hp).view(1, -1).float()
        d = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
        return torch.sigmoid((1.0 - d) * 8.0)[None, None]


def load_val_clips(root: Path, scale: int, max_frames: int = 40, cache: Path | None = None,
                   ) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """Validation clips as (name, lr (N, 3, h, w), hr (N, 3, s*h, s*w)), HR cropped to a multiple of
    the scale. Frames stay on the CPU."""
    out = []
    for p in sorted((root / "videos").glob("*")):
        if p.suffix.lower() not in VIDEO_EXTS:
            continue
        arr = _cached(cache, "val_" + p.stem, lambda p=p: read_video_rgb(p))[:max_frames]
        hr = _to_tensor(arr)
        h, w = hr.shape[-2:]
        hr = hr[..., : h - h % scale, : w - w % scale]
        out.append((p.name, downscale(hr, scale), hr))
    return out
