"""mstgan eval: a clip against itself, its files, mismatches, VMAF, and the --flicker mode."""
from __future__ import annotations

import csv
import importlib.util
import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mstgan_cli import cli
from mstgan_cli.errors import InputError
from mstgan_cli.media.vmaf import vmaf_available
from mstgan_cli.evaluate.files import evaluate, evaluate_flicker
from mstgan_cli.evaluate.report import dumps, jsonable

from conftest import ffmpeg

runner = CliRunner()
SUMMARY = {"psnr_y", "ssim_y", "lpips", "tof", "tlp"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def invoke(*args: str):
    return runner.invoke(cli.app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 PNG frames (64x48) and a folder with one frame fewer."""
    d = tmp_path_factory.mktemp("frames")
    full = d / "full"
    full.mkdir()
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-frames:v", "10", str(full / "f%d.png"))
    short = d / "short"
    short.mkdir()
    for i in range(1, 10):
        (short / f"f{i}.png").write_bytes((full / f"f{i}.png").read_bytes())
    return d


def test_a_clip_against_itself_is_perfect_and_writes_csv_plot_json(clip, tmp_path: Path) -> None:
    video = clip("mp4")
    result = invoke("eval", str(video), "--ref", str(video), "--out", str(tmp_path), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)                       # stdout holds the JSON and nothing else
    expected = SUMMARY | ({"vmaf"} if vmaf_available() else set())
    assert set(summary) == expected
    assert summary["psnr_y"] == "inf"                          # strict JSON: infinity as a string
    assert summary["ssim_y"] == pytest.approx(1.0)
    assert summary["lpips"] == pytest.approx(0.0, abs=1e-6)
    assert summary["tof"] == pytest.approx(0.0, abs=1e-6) and summary["tlp"] == pytest.approx(0.0, abs=1e-6)
    if vmaf_available():
        assert summary["vmaf"] > 90
    with open(tmp_path / "clip_eval.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and rows[0]["frame"] == "0" and rows[0]["tof"] == ""   # no pair yet
    assert float(rows[5]["ssim_y"]) == pytest.approx(1.0) and rows[5]["psnr_y"] == "inf"
    saved = json.loads((tmp_path / "clip_eval.json").read_text())
    assert saved["frames"] == 12 and saved["size"] == [64, 48] and set(saved["summary"]) == expected
    png = tmp_path / "clip_eval.png"
    if importlib.util.find_spec("matplotlib"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert not png.exists() and "matplotlib is not installed" in result.stderr


def test_degraded_output_scores_worse_with_a_crop(clip, tmp_path: Path) -> None:
    video = clip("mp4")
    blurred = tmp_path / "blurred.mkv"
    ffmpeg("-i", str(video), "-vf", "gblur=sigma=1.5", "-c:v", "ffv1", str(blurred))
    r = evaluate(blurred, video, crop=4, vmaf=False)
    assert r.frames == 12 and r.crop == 4
    assert 15 < r.summary["psnr_y"] < 40 and r.summary["ssim_y"] < 0.99 and r.summary["lpips"] > 0.01
    assert "vmaf" not in r.summary and "vmaf" not in r.rows[0]


def test_folders_of_frames_and_count_mismatch(frames_dir: Path, tmp_path: Path) -> None:
    full, short = frames_dir / "full", frames_dir / "short"
    r = evaluate(full, full, lpips_net=None, vmaf=False)
    assert r.frames == 10 and set(r.summary) == {"psnr_y", "ssim_y", "tof"}
    with pytest.raises(InputError, match="frame counts differ.*10.*9|frame counts differ.*9.*10"):
        evaluate(full, short, vmaf=False)
    result = invoke("eval", str(short), "--ref", str(full), "--out", str(tmp_path))
    assert result.exit_code == 2 and "frame counts differ" in result.stderr
    assert result.stdout == ""


def test_video_against_frames_of_another_length_is_a_clear_error(clip, frames_dir: Path) -> None:
    with pytest.raises(InputError, match="the output has 12 frames, the reference 10|the reference has 10"):
        evaluate(clip("mp4"), frames_dir / "full", lpips_net=None, temporal=False, vmaf=False)
    r = evaluate(clip("mp4"), frames_dir / "full", lpips_net=None, temporal=False, vmaf=False, max_frames=10)
    assert r.frames == 10 and r.summary["psnr_y"] > 20   # same testsrc2 content, coded differently


def test_size_mismatch_and_mode_errors(clip, tmp_path: Path) -> None:
    small = tmp_path / "small.mkv"
    ffmpeg("-i", str(clip("mp4")), "-vf", "scale=32:24", "-c:v", "ffv1", str(small))
    result = invoke("eval", str(small), "--ref", str(clip("mp4")), "--out", str(tmp_path))
    assert result.exit_code == 2 and "frame sizes differ" in result.stderr and "32x24" in result.stderr
    assert invoke("eval", str(small)).exit_code == 64                      # no mode chosen: usage
    assert invoke("eval", str(small), "--ref", str(small), "--flicker").exit_code == 64
    missing = invoke("eval", str(tmp_path / "nope.mp4"), "--ref", str(small))
    assert missing.exit_code == 2 and "not found" in missing.stderr


@pytest.mark.skipif(not vmaf_available(), reason="this FFmpeg has no libvmaf")
def test_vmaf_is_measured_through_ffmpeg(clip, frames_dir: Path) -> None:
    r = evaluate(clip("mp4"), frames_dir / "full", lpips_net=None, temporal=False, vmaf=True, max_frames=10)
    assert len([row for row in r.rows if "vmaf" in row]) == 10
    assert 0 < r.summary["vmaf"] <= 100


def test_flicker_command_with_and_without_input(clip, tmp_path: Path) -> None:
    src = clip("mp4")
    up = tmp_path / "up.mkv"
    ffmpeg("-i", str(src), "-vf", "scale=128:96:flags=bicubic", "-c:v", "ffv1", str(up))
    with_input = evaluate_flicker(up, src)
    assert with_input.mode == "input" and with_input.scale == 2 and with_input.frames == 12
    assert 0.8 < with_input.ratio < 1.2 and with_input.verdict == "stable"  # bicubic vs bicubic
    result = invoke("eval", str(up), "--flicker", "--scale", "2", "--json", "--out", str(tmp_path), "-q")
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    assert d["reference"] == "self" and d["frames"] == 12 and d["verdict"] in ("stable", "slight flicker", "flickers")
    assert {"flicker", "output_warp_error", "reference_warp_error", "scenes", "cuts", "measured_pairs"} <= set(d)
    assert (tmp_path / "up_flicker.csv").exists() and (tmp_path / "up_flicker.json").exists()
    assert (tmp_path / "up_flicker.png").exists() == bool(importlib.util.find_spec("matplotlib"))


def test_json_is_strict() -> None:
    assert jsonable({"a": math.inf, "b": math.nan, "c": (1.0, -math.inf)}) == {"a": "inf", "b": None, "c": [1.0, "-inf"]}
    json.loads(dumps({"x": math.nan}))
