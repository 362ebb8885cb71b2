"""The no-reference flicker score: flicker ranks below stability, motion and cuts do not fool it."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mstgan_cli.metrics.flicker import FlickerMeter, flicker_ratio, reference_pairs, verdict
from mstgan_cli.train.data import downscale

S = 4
H, W = 144, 192


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def texture(h: int, w: int, seed: int) -> torch.Tensor:
    """(3, h, w) in [0, 1]: coloured 1/f noise (the spectrum of natural images), softened a
    little as a camera lens would."""
    g = torch.Generator().manual_seed(seed)
    fy = torch.fft.fftfreq(h)[:, None]
    fx = torch.fft.rfftfreq(w)[None, :]
    radius = torch.sqrt(fy**2 + fx**2).clamp_min(1.0 / max(h, w))
    amp = torch.exp(-((radius * 2.2) ** 2) * 2) / radius   # 1/f with a soft optical roll-off
    phase = torch.rand(3, h, w // 2 + 1, generator=g) * 2 * math.pi
    x = torch.fft.irfft2(amp * torch.exp(1j * phase), s=(h, w))
    x = 0.6 * x + 0.4 * x.mean(0, keepdim=True)
    return ((x - x.mean()) / (4 * x.std()) + 0.5).clamp(0, 1)


def pan(tex: torch.Tensor, n: int, dy: int, dx: int) -> list[torch.Tensor]:
    """A camera pan over ``tex``: n frames of (3, H, W) moving (dy, dx) px per frame."""
    return [tex[:, 40 + i * dy:40 + i * dy + H, 40 + i * dx:40 + i * dx + W].contiguous() for i in range(n)]


def blur(x: torch.Tensor) -> torch.Tensor:
    k = torch.tensor([1.0, 4, 6, 4, 1])
    k = (k[:, None] * k[None]) / 256
    return F.conv2d(F.pad(x[None], (2, 2, 2, 2), mode="reflect"), k.expand(3, 1, 5, 5).contiguous(), groups=3)[0]


@pytest.fixture(scope="module")
def clip() -> dict[str, list[torch.Tensor]]:
    """Two panning scenes with a cut at frame 8: the true HR frames, their LR (the protocol's
    degradation), and outputs that are stable or flicker."""
    hr = pan(texture(H + 80, W + 80, 1), 8, 1, 3) + pan(texture(H + 80, W + 80, 2), 6, 3, -2)
    lr = [downscale(f, S) for f in hr]
    g = torch.Generator().manual_seed(0)
    return {
        "hr": hr, "lr": lr,
        "bicubic": [F.interpolate(f[None], scale_factor=S, mode="bicubic", align_corners=False)[0].clamp(0, 1)
                    for f in lr],
        # a frame-by-frame GAN's failure modes: detail that comes and goes, and noise
        "sharpen_every_other": [(f + (f - blur(f)) * (i % 2)).clamp(0, 1) for i, f in enumerate(hr)],
        "blur_every_other": [blur(f) if i % 2 else f for i, f in enumerate(hr)],
        "noise": [(f + torch.randn(f.shape, generator=g) * 3 / 255).clamp(0, 1) for f in hr],
    }


def measure(outputs, inputs=None, **kw):
    meter = FlickerMeter(mode="input" if inputs is not None else "self", scale=S, **kw)
    for o, r in reference_pairs(outputs, inputs, S):
        meter.update(o, r)
    return meter.result()


def test_panning_without_flicker_is_stable_and_flicker_ranks_below_it(clip) -> None:
    stable = measure(clip["hr"], clip["lr"])       # the perfect upscale of a panning clip
    bicubic = measure(clip["bicubic"], clip["lr"])
    assert bicubic.ratio == pytest.approx(1.0) and bicubic.motion == pytest.approx(0.0, abs=1e-6)
    assert stable.verdict == "stable" and stable.ratio < 1.0, stable
    print(f"\nflicker ratios (x4, with input): true HR {stable.ratio:.3f}, bicubic {bicubic.ratio:.3f}", end="")
    for name in ("sharpen_every_other", "blur_every_other", "noise"):
        r = measure(clip[name], clip["lr"])
        print(f", {name} {r.ratio:.3f}", end="")
        assert r.ratio > stable.ratio + 0.3, (name, r.ratio, stable.ratio)
        assert r.output > stable.output + 1.0
        # noise of sigma 3 levels is still steadier than this aliased texture's bicubic shimmer
        assert r.verdict == ("stable" if name == "noise" else "flickers")


def test_without_the_input_the_ranking_holds(clip) -> None:
    stable = measure(clip["hr"])
    assert stable.mode == "self" and math.isnan(stable.motion)
    assert stable.verdict == "stable"
    for name in ("sharpen_every_other", "blur_every_other", "noise"):
        assert measure(clip[name]).ratio > stable.ratio + 0.3, name


def test_scene_cut_is_found_and_left_out(clip) -> None:
    r = measure(clip["hr"], clip["lr"])
    assert r.cuts == [8]
    assert [(s.start, s.end) for s in r.scenes] == [(0, 8), (8, 14)]
    assert [s.pairs for s in r.scenes] == [7, 5]
    cut_pair = next(p for p in r.pairs if p.frame == 8)
    assert cut_pair.cut and not cut_pair.measured and math.isnan(cut_pair.output)
    assert all(s.verdict == "stable" for s in r.scenes)
    d = r.to_dict()
    assert d["measured_pairs"] == 12 and len(d["scenes"]) == 2 and "pairs" not in d


def test_static_scene_flicker_is_caught() -> None:
    still = [texture(H, W, 3)] * 6
    lr = [downscale(f, S) for f in still]
    calm = measure(still, lr)
    assert calm.output == pytest.approx(0.0, abs=0.05) and calm.verdict == "stable"
    g = torch.Generator().manual_seed(1)
    noisy = measure([(f + torch.randn(f.shape, generator=g) * 2 / 255).clamp(0, 1) for f in still], lr)
    assert noisy.verdict == "flickers" and noisy.ratio > 2.0


def test_helpers() -> None:
    assert verdict(1.0) == "stable" and verdict(1.2) == "slight flicker" and verdict(2) == "flickers"
    assert verdict(math.nan) == "unmeasured"
    assert flicker_ratio(0.0, 0.0) == 1.0 and math.isnan(flicker_ratio(math.nan, 1.0))
    with pytest.raises(ValueError, match="differ in length"):
        list(reference_pairs([torch.zeros(3, 8, 8)] * 3, [torch.zeros(3, 2, 2)] * 2, S))
    with pytest.raises(ValueError, match="integer scale"):
        list(reference_pairs([torch.zeros(3, 8, 8)], None, 1.5))
