"""Decisions before any frame moves: sizes, model factor, names, colour, model resolution."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from mstgan_cli.job import plan
from mstgan_cli.errors import ModelError
from mstgan_cli.media.colour import Colour
from mstgan_cli.media.probe import MediaInfo, StreamInfo, VideoInfo
from mstgan_cli.options import EncodeSettings, Target, UpscaleOptions
from mstgan_cli.job.upscale import Progress, to_array, to_tensor


def _info(w: int, h: int, rotation: int = 0, sar: Fraction = Fraction(1)) -> MediaInfo:
    video = VideoInfo(0, "h264", w, h, "yuv420p", sar, rotation, Fraction(1, 25), Fraction(25), 10,
                      0.4, Colour())
    return MediaInfo(Path("in.mp4"), "mov", 0.4, (StreamInfo(0, "video", "h264"),), video, 0)


@pytest.mark.parametrize("text, size", [("720p", (1280, 720)), ("4K", (3840, 2160)), ("8k", (7680, 4320)),
                                        ("2560x1080", (2560, 1080)), ("1440p", (2560, 1440))])
def test_targets_parse(text: str, size: tuple[int, int]) -> None:
    t = Target.parse(text)
    assert (t.width, t.height) == size
    with pytest.raises(ValueError):
        Target.parse("big")


def test_fit_keeps_aspect_with_even_sizes_and_knows_when_done() -> None:
    t = Target.parse("2160p")
    assert t.fit(1920, 1080) == (3840, 2160)
    assert t.fit(90, 66) == (2946, 2160)
    assert t.fit(1080, 1920) == (2160, 3840)           # portrait follows orientation
    assert Target.parse("3840x2160").fit(1080, 1920) == (1216, 2160)  # explicit box is literal
    assert t.fit(3840, 1600) is None and t.fit(4096, 2160) is None


def test_plan_picks_the_smallest_model_that_reaches_the_target() -> None:
    opts = UpscaleOptions()
    assert plan.plan_size(_info(1920, 1080), opts).requested_scale == 2
    p = plan.plan_size(_info(1280, 720), opts)
    assert (p.size, p.requested_scale) == ((3840, 2160), 4)  # x3 needed: x4 then area down
    p = plan.plan_size(_info(320, 180), opts)
    assert p.requested_scale == 4 and p.needed == 12


def test_plan_uses_display_geometry() -> None:
    rotated = plan.plan_size(_info(1920, 1080, rotation=90), UpscaleOptions())
    assert rotated.size == (2160, 3840)
    anamorphic = plan.plan_size(_info(720, 480, sar=Fraction(32, 27)), UpscaleOptions())
    assert anamorphic.size == (3840, 2160) and anamorphic.sar == 1
    exact = plan.plan_size(_info(720, 480, sar=Fraction(32, 27)), UpscaleOptions(scale=2))
    assert exact.size == (1440, 960) and exact.sar == Fraction(32, 27)


def test_default_output_names() -> None:
    src = Path("/videos/trip.mov")
    assert plan.default_output(src, UpscaleOptions()) == Path("/videos/trip_2160p.mov")
    assert plan.default_output(src, UpscaleOptions(scale=2)) == Path("/videos/trip_x2.mov")
    lossless = UpscaleOptions(target=Target.parse("1080p"), encode=EncodeSettings(lossless=True))
    assert plan.default_output(src, lossless) == Path("/videos/trip_1080p.mkv")


def test_output_colour_keeps_tags_or_follows_player_conventions() -> None:
    tagged = Colour("smpte170m", "pc", "smpte170m", "smpte170m")
    assert plan.output_colour(tagged, 2160) == tagged
    assert plan.output_colour(Colour(), 2160) == Colour("bt709", "tv")
    assert plan.output_colour(Colour(), 480) == Colour("smpte170m", "tv")
    assert plan.output_colour(Colour("gbr", "pc"), 1080).matrix == "bt709"


def test_baselines_resolve_without_the_runtime() -> None:
    assert plan.upscaler_factory(UpscaleOptions(model="bicubic"))(4).scale == 4
    assert plan.upscaler_factory(UpscaleOptions(model="lanczos"))(4).scale == 1
    names = [m["name"] for m in plan.list_models()]
    assert {"bicubic", "bilinear", "nearest", "lanczos"} <= set(names)


def test_default_family_falls_back_to_a_shipped_factor(monkeypatch: pytest.MonkeyPatch) -> None:
    import mstgan_cli.runtime as runtime
    calls: list[tuple[object, object]] = []

    def fake_load(model, scale=None, **kwargs):
        calls.append((model, scale))
        if scale == 2:
            raise ModelError("unknown model 'mstgan-x2'")
        return plan.ResampleOnly()
    monkeypatch.setattr(runtime, "load_upscaler", fake_load)
    plan.upscaler_factory(UpscaleOptions())(2)
    assert calls == [(None, 2), (None, 4)]
    calls.clear()
    with pytest.raises(ModelError):
        plan.upscaler_factory(UpscaleOptions(scale=2))(2)  # --scale is exact: no fallback
    plan.upscaler_factory(UpscaleOptions(model="mstgan-x4", tile=128))(2)
    assert calls[-1] == ("mstgan-x4", None)  # a named model keeps its own factor


def test_frame_conversions_round_trip() -> None:
    rgb = (np.arange(5 * 7 * 3) % 256).astype(np.uint8).reshape(5, 7, 3)
    t = to_tensor(rgb)
    assert t.shape == (3, 5, 7) and t.dtype == torch.float32 and float(t.max()) <= 1.0
    assert np.array_equal(to_array(t, deep=False), rgb)
    deep = (np.arange(5 * 7 * 3) * 997 % 65536).astype(np.uint16).reshape(5, 7, 3)
    assert np.array_equal(to_array(to_tensor(deep), deep=True), deep)
    assert to_array(torch.tensor([[[-0.5]], [[1.5]], [[0.5]]]), deep=False).tolist() == [[[0, 255, 128]]]


def test_progress_rate_and_eta() -> None:
    p = Progress("upscaling", 25, 100, 5.0)
    assert p.fps == 5.0 and p.eta == 15.0
    assert Progress("upscaling", 0, None, 0.0).eta is None
