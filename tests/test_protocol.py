"""The benchmark protocol: every method and metric, the exact degradation, flags and means."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from mstgan_cli import cli
from mstgan_cli.media.frames import read_frames
from mstgan_cli.metrics import psnr_y
from mstgan_cli.evaluate.protocol import (LanczosUpscaler, default_methods, hr_frames, not_worse,
                                         protocol_markdown, run_protocol)
from mstgan_cli.model.generator import GeneratorConfig, MSTGANGenerator
from mstgan_cli.runtime.engine import ModelUpscaler
from mstgan_cli.train.data import downscale

from conftest import LookAhead

METRICS = ("psnr_y", "ssim_y", "lpips", "tof", "tlp")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_model(scale: int = 4) -> ModelUpscaler:
    torch.manual_seed(0)
    net = MSTGANGenerator(GeneratorConfig(scale=scale, feat=8, trunk=8, enc_blocks=1, trunk_blocks=1,
                                          detail_blocks=1, flow_levels=3, flow_ch=8))
    return ModelUpscaler(net, device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def result(clips) -> dict:
    """x4 on two clips: 64x48 (a multiple of 4) and 90x66 (cropped to 88x64)."""
    return run_protocol([clips.get("mp4"), clips.get("mkv_rich")], 4,
                        {"tiny": tiny_model(), "bicubic": "bicubic", "lanczos": "lanczos",
                         "lookahead": lambda: LookAhead(4, delay=3)}, max_frames=6)


def test_every_method_and_metric_per_clip_and_mean(result: dict) -> None:
    assert result["methods"] == ["tiny", "bicubic", "lanczos", "lookahead"] and result["errors"] == {}
    assert result["scale"] == 4 and result["crop"] == 4 and result["metrics"] == list(METRICS)
    first, second = result["clips"]
    assert first["hr_size"] == [64, 48] and first["lr_size"] == [16, 12] and first["frames"] == 6
    assert second["hr_size"] == [88, 64] and second["lr_size"] == [22, 16]
    for clip in result["clips"]:
        assert set(clip["methods"]) == set(result["methods"])
        for s in clip["methods"].values():
            assert all(math.isfinite(s[k]) for k in METRICS) and s["frames"] == 6 and s["fps"] > 0
        assert clip["not_worse_than_bicubic"]["bicubic"] == {**{k: True for k in METRICS}, "all": True}
    for m in result["methods"]:
        want = (first["methods"][m]["psnr_y"] + second["methods"][m]["psnr_y"]) / 2
        assert result["mean"][m]["psnr_y"] == pytest.approx(want) and result["mean"][m]["clips"] == 2
    # a random tiny network is far worse than bicubic; Lanczos is a close cousin of bicubic
    assert first["not_worse_than_bicubic"]["tiny"]["all"] is False
    assert abs(first["methods"]["lanczos"]["psnr_y"] - first["methods"]["bicubic"]["psnr_y"]) < 1.5
    json.dumps(result)  # plain types only (floats may be inf, which the CLI's writer handles)
    table = protocol_markdown(result)
    assert table.count("\n| ") == 2 * 4 + 4 + 1 and "mean of 2" in table and "tLP×100" in table


def test_lr_is_exactly_the_training_degradation(clips, result: dict) -> None:
    """Bicubic's PSNR from the protocol equals the one computed by hand with train.data.downscale."""
    clip = clips.get("mkv_rich")
    values = []
    for hr in hr_frames(clip, 4, max_frames=6):
        sr = F.interpolate(downscale(hr, 4)[None], scale_factor=4, mode="bicubic", align_corners=False)[0].clamp(0, 1)
        values.append(float(psnr_y(sr, hr, crop=4)))
    assert result["clips"][1]["methods"]["bicubic"]["psnr_y"] == pytest.approx(sum(values) / len(values), rel=1e-9)
    frame = next(read_frames(clip))
    assert tuple(frame.shape) == (3, 66, 90)


def test_held_back_frames_pair_with_their_targets(result: dict) -> None:
    """LookAhead holds 3 frames back; its bilinear output must land on the right HR frames."""
    for clip in result["clips"]:
        s = clip["methods"]["lookahead"]
        assert abs(s["psnr_y"] - clip["methods"]["bicubic"]["psnr_y"]) < 1.5  # bilinear vs bicubic


def test_a_failing_method_is_reported_and_the_rest_runs(clips) -> None:
    r = run_protocol([clips.get("mp4")], 2, ["no-such-model", "lanczos"], max_frames=3)
    assert "no-such-model" in r["errors"] and r["methods"] == ["lanczos", "bicubic"]
    assert set(r["clips"][0]["methods"]) == {"lanczos", "bicubic"}
    assert "Not measured: no-such-model" in protocol_markdown(r)


def test_defaults_and_helpers() -> None:
    names = default_methods(4)
    assert names.index("bicubic") < names.index("lanczos")
    assert not_worse({"psnr_y": 30, "lpips": 0.2}, {"psnr_y": 29, "lpips": 0.1}) == \
        {"psnr_y": True, "lpips": False, "all": False}
    up = LanczosUpscaler(2)
    out = list(up.process([torch.full((3, 5, 7), 0.25)]))[0]
    assert out.shape == (3, 10, 14) and torch.allclose(out, torch.full_like(out, 0.25), atol=1e-5)


def test_protocol_command(clip, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.app, ["eval", "--protocol", "x2", str(clip("mp4")), "--methods",
                                          "bicubic,lanczos", "--max-frames", "3", "--json", "--out",
                                          str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["methods"] == ["bicubic", "lanczos"] and data["clips"][0]["frames"] == 3
    assert "| clip.mp4 | lanczos |" in result.stderr
    assert json.loads((tmp_path / "protocol_x2.json").read_text())["scale"] == 2
    assert (tmp_path / "protocol_x2.md").read_text().startswith("Protocol x2")
    bad = CliRunner().invoke(cli.app, ["eval", "--protocol", "x3", str(clip("mp4"))])
    assert bad.exit_code == 64  # a usage error


def test_compressed_input_and_the_temporal_gain(clips, tmp_path: Path) -> None:
    """--degrade h264:CRF feeds every method the same H.264-decoded LR (one stream per clip), which
    bicubic upscales as it is; --temporal-gain runs our model on windows of the repeated centre
    frame too: on a clip whose frames are all the same the neighbours can add nothing."""
    from PIL import Image

    from mstgan_cli.train.degrade import degrade_clip

    clip = clips.get("mp4")
    res = run_protocol([clip], 4, {"mstgan-tiny": tiny_model(), "bicubic": "bicubic"}, max_frames=6,
                       degrade="h264:30", centre_only=True)
    assert res["degrade"] == "h264:30" and "H.264" in res["degradation"] and res["errors"] == {}
    assert res["methods"] == ["mstgan-tiny", "mstgan-tiny centre-only", "bicubic"]
    hr = torch.stack(list(hr_frames(clip, 4, 6)))
    lr = degrade_clip(hr, 4, "h264:30")
    assert float((lr - downscale(hr, 4)).abs().mean()) > 0.002  # really compressed
    want = sum(psnr_y(F.interpolate(lr[i:i + 1], scale_factor=4, mode="bicubic", align_corners=False)[0].clamp(0, 1),
                      hr[i], crop=4).item() for i in range(6)) / 6
    assert res["clips"][0]["methods"]["bicubic"]["psnr_y"] == pytest.approx(want, abs=0.05)
    gain = res["temporal_gain"]["mstgan-tiny"]
    assert set(gain) == {res["clips"][0]["name"], "mean"} and math.isfinite(gain["mean"])
    assert "Temporal gain of mstgan-tiny" in protocol_markdown(res)
    still = tmp_path / "still"
    still.mkdir()
    g = torch.Generator().manual_seed(1)
    frame = F.interpolate(torch.rand(1, 3, 12, 16, generator=g), size=(48, 64), mode="bicubic").clamp(0, 1)
    for i in range(5):
        Image.fromarray((frame[0] * 255).round().byte().permute(1, 2, 0).numpy()).save(still / f"{i:03d}.png")
    res = run_protocol([still], 4, {"mstgan-tiny": tiny_model(), "bicubic": "bicubic"}, centre_only=True)
    assert abs(res["temporal_gain"]["mstgan-tiny"]["mean"]) < 0.01
    with pytest.raises(ValueError, match="unknown degradation"):
        run_protocol([clip], 4, ["bicubic"], degrade="h265:23")
