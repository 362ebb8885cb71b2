"""HDR and wide gamut end to end (issue 18, item 4): PQ and HLG transfers with BT.2020 tagged on
the output, the mastering display and content light level carried, bit depth and 4:2:2 / 4:4:4
chroma kept by default, and one warning where the encoder cannot keep them.

Each test makes its own tiny clip (64x48, 6 frames) with the ffmpeg binary and upscales it x2
with bicubic interpolation, then reads the output back as a player would."""
from __future__ import annotations

import logging
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from conftest import FAST, bicubic, ffmpeg, video_stream
from mstgan_cli import upscale_file
from mstgan_cli.media import ffmpeg as ff
from mstgan_cli.media.colour import LIGHT_LEVEL, MASTERING, HdrMetadata
from mstgan_cli.media.encode import plan_encoder
from mstgan_cli.media.probe import chroma_format, probe
from mstgan_cli.options import EncodeSettings, UpscaleOptions

# A BT.2020 / P3-D65-ish mastering display of 1000 cd/m2, in x265's units (as HDR10 masters say).
MASTER = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,50)"
MASTER_SIDE = {"red_x": "34000/50000", "red_y": "16000/50000", "green_x": "13250/50000",
               "green_y": "34500/50000", "blue_x": "7500/50000", "blue_y": "3000/50000",
               "white_point_x": "15635/50000", "white_point_y": "16450/50000",
               "min_luminance": "50/10000", "max_luminance": "10000000/10000"}
BT2020 = "color_primaries=bt2020:colorspace=bt2020nc:range=tv"


def _clip(path: Path, pix_fmt: str, *codec: str, params: str = "") -> Path:
    vf = ["-vf", f"setparams={params}"] if params else []
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-frames:v", "6", *vf,
           "-pix_fmt", pix_fmt, *codec, str(path))
    return path


def _x265(params: str = "") -> list[str]:
    return ["-c:v", "libx265", "-x265-params", "log-level=error" + (":" + params if params else "")]


def _up(src: Path, out: Path, **encode: object) -> Path:
    fast = {} if encode.get("lossless") else {"preset": FAST.preset}
    settings = EncodeSettings(**{**fast, **encode})  # type: ignore[arg-type]
    upscale_file(src, UpscaleOptions(output=out, scale=2, encode=settings), bicubic)
    return out


def _side(stream: dict[str, Any], kind: str) -> dict[str, Any]:
    found = [s for s in stream.get("side_data_list") or [] if s["side_data_type"] == kind]
    assert found, f"no {kind} in {stream.get('side_data_list')}"
    return found[0]


def _values(mastering: dict[str, Any]) -> dict[str, Fraction]:
    return {k: Fraction(mastering[k]) for k in MASTER_SIDE}


def _container_side_data(path: Path) -> str:
    """What the ffmpeg binary says about the stream's own (container) side data."""
    proc = subprocess.run([ff.find_ffmpeg().ffmpeg, "-hide_banner", "-i", str(path)],
                          capture_output=True, text=True, check=False)
    return proc.stderr.split("Side data:", 1)[1] if "Side data:" in proc.stderr else ""


def test_pq_with_mastering_display_and_light_level(tmp_path: Path) -> None:
    """HDR10 (PQ, BT.2020, 10 bits) keeps its tags and its static metadata: x264 writes them as
    SEI, and the MP4 container gets them too (mdcv/clli boxes)."""
    src = _clip(tmp_path / "pq.mkv", "yuv420p10le",
                *_x265(f"hdr-opt=1:repeat-headers=1:master-display={MASTER}:max-cll=1000,400"),
                params=f"color_trc=smpte2084:{BT2020}")
    assert probe(src).video.hdr == HdrMetadata(
        (13250, 34500, 7500, 3000, 34000, 16000, 15635, 16450, 10000000, 50), (1000, 400))
    out = _up(src, tmp_path / "pq_x2.mp4")
    v = video_stream(out)
    assert (v["codec_name"], v["pix_fmt"], v["width"], v["height"]) == ("h264", "yuv420p10le", 128, 96)
    assert (v["color_transfer"], v["color_primaries"], v["color_space"], v["color_range"]) == \
        ("smpte2084", "bt2020", "bt2020nc", "tv")
    mastering = _side(v, MASTERING)
    assert _values(mastering) == _values(MASTER_SIDE)
    light = _side(v, LIGHT_LEVEL)
    assert (light["max_content"], light["max_average"]) == (1000, 400)
    if ff.has_option(ff.find_ffmpeg(), "mastering_display"):
        container = _container_side_data(out)
        assert "Mastering display metadata" in container and "MaxCLL=1000, MaxFALL=400" in container


def test_pq_metadata_without_a_bitstream_field_goes_in_the_container(tmp_path: Path) -> None:
    """FFV1 (--lossless into .mkv) has no place for HDR metadata in its bitstream: the Matroska
    Colour elements hold it, and decoders hand it to every frame as before."""
    if not ff.has_option(ff.find_ffmpeg(), "mastering_display"):
        pytest.skip("this ffmpeg has no -mastering_display")
    src = _clip(tmp_path / "pq.mkv", "yuv420p10le",
                *_x265(f"master-display={MASTER}:max-cll=1000,400"),
                params=f"color_trc=smpte2084:{BT2020}")
    out = _up(src, tmp_path / "pq_lossless.mkv", lossless=True)
    v = video_stream(out)
    assert (v["codec_name"], v["pix_fmt"], v["color_transfer"]) == ("ffv1", "yuv444p10le", "smpte2084")
    assert _values(_side(v, MASTERING)) == _values(MASTER_SIDE)  # (Matroska: reduced fractions)
    assert (_side(v, LIGHT_LEVEL)["max_content"], _side(v, LIGHT_LEVEL)["max_average"]) == (1000, 400)
    assert "MaxCLL=1000, MaxFALL=400" in _container_side_data(out)


def test_hlg_keeps_its_transfer_and_bt2020(tmp_path: Path) -> None:
    src = _clip(tmp_path / "hlg.mkv", "yuv420p10le", *_x265(),
                params=f"color_trc=arib-std-b67:{BT2020}")
    out = _up(src, tmp_path / "hlg_x2.mkv")
    v = video_stream(out)
    assert (v["pix_fmt"], v["color_transfer"], v["color_primaries"], v["color_space"]) == \
        ("yuv420p10le", "arib-std-b67", "bt2020", "bt2020nc")
    assert not v.get("side_data_list")  # none in, none made up


@pytest.mark.parametrize("pix_fmt", ["yuv420p10le", "yuv420p12le"])
def test_deep_source_gives_ten_bits(tmp_path: Path, pix_fmt: str) -> None:
    """10 and 12 bits in, 10 out by default (H.264 goes to 10 bits); SDR BT.709 tags kept."""
    src = _clip(tmp_path / f"{pix_fmt}.mkv", pix_fmt, *_x265(),
                params="color_primaries=bt709:color_trc=bt709:colorspace=bt709:range=tv")
    out = _up(src, tmp_path / f"{pix_fmt}_x2.mp4")
    v = video_stream(out)
    assert (v["pix_fmt"], v["color_transfer"], v["color_space"]) == ("yuv420p10le", "bt709", "bt709")


@pytest.mark.parametrize(("pix_fmt", "codec", "suffix"), [
    ("yuv422p10le", ["-c:v", "prores_ks"], ".mov"),
    ("yuv422p", ["-c:v", "libx264", "-preset", "ultrafast"], ".mkv")])
def test_422_kept(tmp_path: Path, pix_fmt: str, codec: list[str], suffix: str) -> None:
    """A 4:2:2 source (10-bit ProRes, 8-bit H.264 High 4:2:2) gives 4:2:2 at its own depth."""
    src = _clip(tmp_path / f"src{suffix}", pix_fmt, *codec)
    out = _up(src, tmp_path / f"x2{suffix}")
    v = video_stream(out)
    assert (v["codec_name"], v["pix_fmt"]) == ("h264", pix_fmt)
    assert chroma_format(v["pix_fmt"]) == "422"


def test_444_kept(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """4:4:4 in, 4:4:4 out (x264 High 4:4:4), with no warning; an explicit --pix-fmt wins."""
    src = _clip(tmp_path / "src.mp4", "yuv444p", "-c:v", "libx264", "-preset", "ultrafast")
    with caplog.at_level(logging.WARNING, logger="mstgan_cli"):
        out = _up(src, tmp_path / "x2.mp4")
    assert video_stream(out)["pix_fmt"] == "yuv444p"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    chosen = _up(src, tmp_path / "x2_420.mp4", pix_fmt="yuv420p")
    assert video_stream(chosen)["pix_fmt"] == "yuv420p"


def test_chroma_and_depth_the_encoder_cannot_keep_fall_back_with_one_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """MPEG-4 part 2 (the .avi default) takes 8-bit 4:2:0 only: a 10-bit 4:4:4 source gives
    yuv420p and exactly one warning naming both losses."""
    src = _clip(tmp_path / "src.mkv", "yuv444p10le", "-c:v", "ffv1")
    with caplog.at_level(logging.WARNING, logger="mstgan_cli"):
        out = _up(src, tmp_path / "x2.avi", preset=None)
    assert video_stream(out)["pix_fmt"] == "yuv420p"
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "4:4:4" in warnings[0] and "10-bit" in warnings[0] and "yuv420p" in warnings[0]


def test_plans_of_8bit_420_sources_are_unchanged() -> None:
    """The new defaults touch nothing an 8-bit 4:2:0 SDR source got before (same encoder, pixel
    format and options), and the HDR metadata lands in each encoder's own parameter list."""
    for suffix in (".mp4", ".mkv", ".webm", ".avi", ".ts"):
        assert plan_encoder(EncodeSettings(), suffix, False, chroma="420") == \
            plan_encoder(EncodeSettings(), suffix, False)
    hdr = HdrMetadata((13250, 34500, 7500, 3000, 34000, 16000, 15635, 16450, 10000000, 50), (1000, 400))
    x265 = plan_encoder(EncodeSettings(codec="hevc", lossless=True), ".mkv", True, hdr=hdr)
    assert x265.options["x265-params"] == f"lossless=1:master-display={MASTER}:max-cll=1000,400"
    svt = plan_encoder(EncodeSettings(codec="av1"), ".mkv", True, hdr=hdr)
    assert svt.options["svtav1-params"] == ("mastering-display=G(0.265,0.69)B(0.15,0.06)R(0.68,0.32)"
                                            "WP(0.3127,0.329)L(1000,0.005):content-light=1000,400")
