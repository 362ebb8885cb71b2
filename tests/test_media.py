"""media/: FFmpeg discovery, probe, decode (frames + timestamps), encoder choices, error mapping."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from mstgan_cli.errors import FFmpegError, InputError, OutputError
from mstgan_cli.media import ffmpeg as ff
from mstgan_cli.media.colour import Colour
from mstgan_cli.media.decode import VideoDecoder
from mstgan_cli.media.encode import plan_encoder
from mstgan_cli.media.probe import bit_depth, probe
from mstgan_cli.options import EncodeSettings

from conftest import frame_times


# FFmpeg discovery ---------------------------------------------------------------------------------
def test_env_override_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = ff.find_ffmpeg()
    (tmp_path / "ffmpeg").symlink_to(real.ffmpeg)
    monkeypatch.setenv("MSTGAN_FFMPEG", str(tmp_path / "ffmpeg"))
    tools = ff.find_ffmpeg()
    assert tools.ffmpeg == str(tmp_path / "ffmpeg") and tools.source == "$MSTGAN_FFMPEG"
    assert tools.major >= 4


def test_env_override_pointing_nowhere_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MSTGAN_FFMPEG", "/nonexistent/ffmpeg")
    with pytest.raises(FFmpegError, match="MSTGAN_FFMPEG"):
        ff.find_ffmpeg()


def test_falls_back_to_the_bundled_ffmpeg_then_explains_what_to_install(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MSTGAN_FFMPEG", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    tools = ff.find_ffmpeg()  # the imageio-ffmpeg package's static build
    assert "imageio_ffmpeg" in tools.ffmpeg and tools.source == "imageio-ffmpeg"
    assert tools.version >= (7, 0)
    monkeypatch.setattr(ff, "bundled_ffmpeg", lambda: None)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(FFmpegError, match="install FFmpeg"):
        ff.find_ffmpeg()


def _fake_ffmpeg(folder: Path, body: str) -> Path:
    """An ``ffmpeg`` script that answers -version like FFmpeg 6.0 and then does ``body``."""
    folder.mkdir(exist_ok=True)
    script = folder / "ffmpeg"
    script.write_text("#!/bin/sh\n"
                      'case "$*" in *-version*) echo "ffmpeg version 6.0-static"; exit 0;; esac\n'
                      f"{body}\n")
    script.chmod(0o755)
    return script


def test_a_wrapper_that_exits_0_when_ffmpeg_crashes_is_not_trusted(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 20, defect 6: an activated venv put a wrapper script first on PATH that exits 0
    when the FFmpeg inside it segfaults. A real test decode finds it out: on PATH it is passed
    over for the bundled FFmpeg (with a warning), as $MSTGAN_FFMPEG it is an error."""
    wrapper = _fake_ffmpeg(tmp_path / "venv-bin", "exit 0")
    crasher = _fake_ffmpeg(tmp_path / "crash-bin", 'kill -SEGV $$')
    monkeypatch.delenv("MSTGAN_FFMPEG", raising=False)
    monkeypatch.setenv("PATH", f"{wrapper.parent}:/usr/bin:/bin")
    with caplog.at_level("WARNING", logger="mstgan_cli"):
        tools = ff.find_ffmpeg()
    assert tools.source == "imageio-ffmpeg"
    assert "does not work" in caplog.text and "exit status 0, nothing written" in caplog.text
    monkeypatch.setenv("MSTGAN_FFMPEG", str(crasher))
    with pytest.raises(FFmpegError, match=r"MSTGAN_FFMPEG=.* does not work: .*signal"):
        ff.find_ffmpeg()


def test_the_check_is_a_real_decode_and_a_pass_is_cached(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    monkeypatch.setenv("MSTGAN_CACHE_DIR", str(tmp_path / "cache"))
    real = ff.bundled_ffmpeg()
    assert real is not None
    assert ff.check_works(real) is None
    monkeypatch.setattr(ff, "_self_test", lambda path: pytest.fail("the pass was not cached"))
    assert ff.check_works(real) is None  # from the cache file
    broken = _fake_ffmpeg(tmp_path / "bin", "exit 0")
    calls: list[str] = []
    monkeypatch.setattr(ff, "_self_test", lambda path: calls.append(path) or "broken")
    assert ff.check_works(str(broken)) == "broken" and ff.check_works(str(broken)) == "broken"
    assert len(calls) == 2  # a failure is not cached: the binary may be fixed


def test_failed_run_carries_stderr_tail_and_disk_full_is_an_output_error() -> None:
    tools = ff.find_ffmpeg()
    with pytest.raises(FFmpegError) as info:
        ff.run([tools.ffmpeg, "-v", "error", "-i", "file:/nonexistent.mp4", "-f", "null", "-"], "probing")
    assert "No such file" in info.value.stderr_tail
    with pytest.raises(OutputError, match="no space"):
        ff.raise_for_failure("muxing", "x\nav_interleaved_write_frame(): No space left on device\n", 1)


# Probe ---------------------------------------------------------------------------------------------
def test_probe_reports_streams_size_and_frames(clip) -> None:
    info = probe(clip("mp4"))
    v = info.video
    assert (v.width, v.height, v.nb_frames, v.rotation) == (64, 48, 12, 0)
    assert [s.kind for s in info.streams] == ["video", "audio"]
    assert v.time_base > 0 and v.avg_rate == Fraction(25)


def test_probe_rotation_and_display_size(clip) -> None:
    v = probe(clip("rotated")).video
    assert v.rotation in (90, 270)
    assert v.upright_size == (48, 64) and v.display_size == (48, 64)


def test_probe_colour_and_depth(clip) -> None:
    v = probe(clip("ten_bit")).video
    assert v.bit_depth == 10
    assert v.colour == Colour("bt2020nc", "tv", "bt2020", "smpte2084")
    assert bit_depth("yuv420p") == 8 and bit_depth("p010le") == 10 and bit_depth("yuv444p12le") == 12


@pytest.mark.parametrize("name, message", [("text", "not a video"), ("audio_only", "no video")])
def test_probe_rejects_non_videos(clip, name: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        probe(clip(name))


def test_probe_rejects_missing_and_folders(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        probe(tmp_path / "nope.mp4")
    with pytest.raises(InputError, match="folder"):
        probe(tmp_path)


# Decode --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mp4", "vfr"])
def test_decoder_yields_every_frame_with_its_timestamp(clip, name: str) -> None:
    path = clip(name)
    info = probe(path)
    with VideoDecoder(info, info.video.colour.resolved(info.video.height)) as dec:
        frames = list(dec)
    assert all(f.rgb.shape == (48, 64, 3) and f.rgb.dtype.name == "uint8" for f in frames)
    times = [round(float(f.pts * dec.time_base), 4) for f in frames]
    assert times == frame_times(path)
    assert dec.decode_errors == 0


def test_decoder_is_upright_and_deep(clip) -> None:
    info = probe(clip("rotated"))
    with VideoDecoder(info, info.video.colour.resolved(48)) as dec:
        first = next(iter(dec))
    assert first.rgb.shape == (64, 48, 3)
    info = probe(clip("ten_bit"))
    with VideoDecoder(info, info.video.colour.resolved(48)) as dec:
        first = next(iter(dec))
    assert first.rgb.dtype.name == "uint16" and first.rgb.max() > 255


def test_decoder_stops_ffmpeg_when_abandoned(clip) -> None:
    info = probe(clip("big"))
    dec = VideoDecoder(info, info.video.colour.resolved(240))
    with dec:
        next(iter(dec))
        proc = dec._proc
    assert proc is not None and proc.poll() is not None


# Encoder choices ----------------------------------------------------------------------------------
def test_encoder_defaults_follow_container_and_depth() -> None:
    assert plan_encoder(EncodeSettings(), ".mp4", deep=False).codec == "libx264"
    assert plan_encoder(EncodeSettings(), ".mp4", deep=True).pix_fmt == "yuv420p10le"
    assert plan_encoder(EncodeSettings(), ".webm", deep=False).codec == "libvpx-vp9"
    plan = plan_encoder(EncodeSettings(codec="hevc", crf=22, preset="slow"), ".mkv", deep=False)
    assert (plan.codec, plan.options["crf"], plan.options["preset"]) == ("libx265", "22", "slow")


def test_lossless_choices() -> None:
    ffv1 = plan_encoder(EncodeSettings(lossless=True), ".mkv", deep=False)
    assert (ffv1.codec, ffv1.pix_fmt) == ("ffv1", "yuv444p")
    x264 = plan_encoder(EncodeSettings(lossless=True), ".mp4", deep=True)
    assert (x264.codec, x264.options["qp"], x264.pix_fmt) == ("libx264", "0", "yuv444p10le")
    with pytest.raises(OutputError, match="lossless"):
        plan_encoder(EncodeSettings(lossless=True, codec="prores"), ".mov", deep=False)


def test_bad_encoder_requests_are_output_errors() -> None:
    with pytest.raises(OutputError, match="unknown video encoder"):
        plan_encoder(EncodeSettings(codec="nosuchcodec"), ".mp4", deep=False)
    with pytest.raises(OutputError, match="pixel format"):
        plan_encoder(EncodeSettings(pix_fmt="rgb24"), ".mp4", deep=False)


def test_commands_are_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG", logger="mstgan_cli")
    ff.run([ff.find_ffmpeg().ffmpeg, "-hide_banner", "-version"], "version")
    assert any(r.levelname == "DEBUG" and "-version" in r.getMessage() for r in caplog.records)


def test_error_summary_skips_ffmpeg_epilogues() -> None:
    stderr = ("[mp4 @ 0x1a2b] [error] Could not find tag for codec pcm_s16le in stream #1\n"
              "[aost#0:1/copy @ 0x1bc5] [error] Error initializing output stream: \nConversion failed!\n")
    assert ff.summary(stderr) == "Could not find tag for codec pcm_s16le in stream #1"


@pytest.mark.parametrize("deep", [False, True])
def test_planar_float_frames_encode_to_the_same_pixels_as_interleaved_rgb(tmp_path: Path, deep: bool,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # the pipeline hands the encoder gbr_frame(...) instead of to_array(...) frames: same YCbCr
    import numpy as np
    import torch

    from mstgan_cli.media import encode
    from mstgan_cli.media.encode import VideoEncoder, gbr_frame
    from mstgan_cli.job.pipeline import to_array

    monkeypatch.setattr(encode, "GBR_ROWS", 8)  # blocks of 8, 8 and 6 rows

    w, h = 70, 22  # a width whose planes are padded to their line size
    chw = torch.rand(3, h, w, generator=torch.Generator().manual_seed(0)) * 1.2 - 0.1  # some out of range
    chw[:, 0, :4] = torch.tensor([0.0, 1.0, 0.5 / 255, 254.5 / 255])  # edges and rounding ties
    frame = gbr_frame(chw.numpy(), deep)
    assert frame.format.name == ("gbrp16le" if deep else "gbrp") and (frame.width, frame.height) == (w, h)
    enc = VideoEncoder(tmp_path / "x.mkv", plan_encoder(EncodeSettings(), ".mkv", deep), size=(w, h), src_size=(w, h),
                       time_base=Fraction(1, 25), rate=Fraction(25), colour=Colour("bt709", "tv"))
    try:
        planar, interleaved = enc._to_frame(frame), enc._to_frame(to_array(chw, deep))
        assert planar.format.name == interleaved.format.name == ("yuv420p10le" if deep else "yuv420p")
        size = 2 if deep else 1

        def pixels(plane) -> np.ndarray:  # the visible part of a plane (rows are padded)
            return np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, :plane.width * size]
        for a, b in zip(planar.planes, interleaved.planes):
            assert np.array_equal(pixels(a), pixels(b))
        assert pixels(planar.planes[0]).std() > 10  # a picture, not a blank
        enc.write(frame, 0)
        enc.close()
    finally:
        enc.abort()
    assert probe(tmp_path / "x.mkv").video.width == w
