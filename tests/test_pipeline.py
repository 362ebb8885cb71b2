"""The upscale loop end to end on generated clips: exact frames and timestamps, streams kept,
sizes, colour, and every failure leaving nothing behind."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mstgan_cli.errors import InputError, ModelError, OutputError
from mstgan_cli.options import EncodeSettings, Target, UpscaleOptions
from mstgan_cli.job.upscale import Progress, upscale_file

from conftest import (FAST, LookAhead, bicubic, ffmpeg, ffprobe, flat_yuv_clip, frame_times, leftovers,
                      opts, packets_md5, read_yuv, streams, video_stream)


def test_mp4_upscaled_with_exact_frames_times_and_audio(clip, tmp_path: Path) -> None:
    src = clip("mp4")
    reports: list[Progress] = []
    result = upscale_file(src, opts(tmp_path, "out.mp4"), bicubic, reports.append)
    out = tmp_path / "out.mp4"
    assert result.output == out and result.frames == 12 and result.bad_frames == 0
    v = video_stream(out)
    assert (v["width"], v["height"]) == (960, 720) == result.size
    assert frame_times(out) == frame_times(src)
    assert [s["codec_type"] for s in streams(out)] == ["video", "audio"]
    assert packets_md5(out, "a:0") == packets_md5(src, "a:0")  # audio copied bit for bit
    tags = ffprobe(out, "-show_format")["format"]["tags"]
    assert tags.get("title") == "Test clip"
    assert [r.stage for r in reports[-2:]] == ["muxing", "done"] and reports[-1].frames == 12
    assert leftovers(tmp_path) == []


def test_default_name_and_2160p_target(clip, tmp_path: Path) -> None:
    src = tmp_path / "in.mp4"
    src.write_bytes(clip("rotated").read_bytes())
    result = upscale_file(src, UpscaleOptions(model="bicubic", encode=FAST), bicubic)
    assert result.output == tmp_path / "in_2160p.mp4"
    v = video_stream(result.output)
    assert (v["width"], v["height"]) == (2160, 2880)  # portrait 48x64 fits 2160x3840, upright
    assert not any("rotation" in sd for sd in v.get("side_data_list", []))
    assert "rotate" not in v.get("tags", {})


def test_mkv_keeps_subtitles_chapters_attachments_and_metadata(clip, tmp_path: Path) -> None:
    src = clip("mkv_rich")
    upscale_file(src, opts(tmp_path, "out.mkv"), bicubic)
    out = tmp_path / "out.mkv"
    kinds = [(s["codec_type"], s.get("tags", {}).get("language")) for s in streams(out)]
    assert kinds == [(s["codec_type"], s.get("tags", {}).get("language")) for s in streams(src)]
    assert ("subtitle", "deu") in kinds and ("attachment", None) in kinds
    v = video_stream(out)
    assert (v["width"], v["height"]) == (982, 720)  # 90x66 fitted into 1280x720, even sizes
    assert v["tags"].get("title") == "Main video"
    info = ffprobe(out, "-show_chapters", "-show_format")
    assert [c["tags"]["title"] for c in info["chapters"]] == ["One", "Two"]
    assert info["format"]["tags"].get("title") == "Rich clip"
    assert frame_times(out) == frame_times(src)
    assert packets_md5(out, "s:0") == packets_md5(src, "s:0")


def test_variable_frame_rate_timestamps_survive(clip, tmp_path: Path) -> None:
    src = clip("vfr")
    upscale_file(src, opts(tmp_path, "vfr_out.mkv", scale=2), bicubic)
    times = frame_times(tmp_path / "vfr_out.mkv")
    assert times == frame_times(src) and len(set(round(b - a, 3) for a, b in zip(times, times[1:]))) > 3


def test_ten_bit_source_gives_ten_bit_output_with_colour_tags(clip, tmp_path: Path) -> None:
    upscale_file(clip("ten_bit"), opts(tmp_path, "deep.mkv", scale=2), bicubic)
    v = video_stream(tmp_path / "deep.mkv")
    assert v["pix_fmt"] == "yuv420p10le" and (v["width"], v["height"]) == (128, 96)
    assert (v["color_space"], v["color_primaries"], v["color_transfer"], v["color_range"]) == \
        ("bt2020nc", "bt2020", "smpte2084", "tv")


@pytest.mark.parametrize("yuv, matrix, range_, deep", [
    ((91, 101, 191), "bt709", "tv", False),     # RGB (200, 60, 30) in BT.709, limited range
    ((123, 96, 75), "smpte170m", "tv", False),  # RGB (40, 180, 60) in BT.601
    ((121, 181, 108), "bt709", "pc", False),    # RGB (90, 120, 220), full range
    ((477, 661, 655), "bt2020nc", "tv", True),  # RGB (180, 90, 200) in 10-bit BT.2020
])
def test_flat_colour_survives_decode_rgb_encode(tmp_path: Path, yuv, matrix, range_, deep) -> None:
    src = flat_yuv_clip(tmp_path / "flat.mkv", yuv, matrix=matrix, range_=range_, deep=deep)
    enc = EncodeSettings(lossless=True, pix_fmt="yuv420p10le" if deep else "yuv420p")
    upscale_file(src, opts(tmp_path, "flat_out.mkv", scale=2, encode=enc), bicubic)
    out = tmp_path / "flat_out.mkv"
    v = video_stream(out)
    assert (v["color_space"], v["color_range"]) == (matrix, range_)
    values = read_yuv(out).reshape(3, -1)  # 3 frames
    n = 64 * 48
    planes = [values[:, :n], values[:, n:n + n // 4], values[:, n + n // 4:]]
    tolerance = 8 if deep else 2  # "a couple of code values" (x4 for 10-bit codes)
    for plane, expected in zip(planes, yuv):
        assert abs(int(plane.min()) - expected) <= tolerance and abs(int(plane.max()) - expected) <= tolerance


def test_scale_is_exact_and_lookahead_models_keep_order(clip, tmp_path: Path) -> None:
    src = clip("mp4")
    result = upscale_file(src, opts(tmp_path, "x4.mp4", scale=4), lambda s: LookAhead(s))
    v = video_stream(tmp_path / "x4.mp4")
    assert (v["width"], v["height"]) == (256, 192) and result.model_scale == 4
    assert frame_times(tmp_path / "x4.mp4") == frame_times(src)


def test_target_beyond_the_largest_model_warns(clip, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="mstgan_cli")
    result = upscale_file(clip("mp4"), opts(tmp_path, "big.mp4"), bicubic)  # x15 needed
    assert result.model_scale == 4 and "Lanczos" in caplog.text


def test_already_at_target_does_nothing(clip, tmp_path: Path) -> None:
    result = upscale_file(clip("mp4"), opts(tmp_path, "none.mp4", target=Target.parse("64x48")), bicubic)
    assert result.skipped and "already" in result.skipped and result.output is None
    assert list(tmp_path.iterdir()) == []


def test_damaged_frames_are_skipped_with_a_warning(clip, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="mstgan_cli")
    result = upscale_file(clip("damaged"), opts(tmp_path, "fixed.mkv", scale=2), bicubic)
    assert (result.frames, result.bad_frames) == (10, 2)
    assert "2 of 12 frames are missing (lost or undecodable packets" in caplog.text
    assert len(frame_times(tmp_path / "fixed.mkv")) == 10


def _bursty_vfr(path: Path) -> Path:
    """A clean VFR clip (written with PyAV, ms timestamps): 12 frames at 50 fps, then 12 at
    10 fps. Its frames come closer than 1/(average rate), which makes FFmpeg's rawvideo muxer on
    the decoder's pipe log "non monotonically increasing dts" errors about a stream that stores
    no timestamps."""
    import av
    import numpy as np
    from fractions import Fraction

    ms = Fraction(1, 1000)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.time_base = stream.codec_context.time_base = ms
        for i, pts in enumerate([20 * k for k in range(12)] + [240 + 100 * k for k in range(12)]):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 10 * i, np.uint8), format="rgb24")
            frame.pts, frame.time_base = pts, ms
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def test_clean_vfr_file_gets_no_damage_warning(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="mstgan_cli")
    src = _bursty_vfr(tmp_path / "bursty.mkv")
    result = upscale_file(src, opts(tmp_path, "out.mkv", scale=2), bicubic)
    assert (result.frames, result.bad_frames, result.missing_frames) == (24, 0, 0)
    assert "decoder reported" not in caplog.text and "frames are missing" not in caplog.text
    assert frame_times(tmp_path / "out.mkv") == frame_times(src)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_truncated_file_is_reported_incomplete(tmp_path: Path, caplog, suffix: str) -> None:
    """The first 60 % of a file (an interrupted download): what is there is upscaled, and the
    warning says the input is incomplete and how many of its frames are missing (the demuxer's
    "partial file" is not a damaged frame, and the packets that are there are not the count)."""
    caplog.set_level(logging.WARNING, logger="mstgan_cli")
    whole, promised = tmp_path / f"whole{suffix}", 24
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=24", "-f", "lavfi",
           "-i", "sine=frequency=440:sample_rate=48000", "-frames:v", str(promised), "-t", "1",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-movflags", "+faststart",
           str(whole))
    data = whole.read_bytes()
    src = tmp_path / f"cut{suffix}"
    src.write_bytes(data[:len(data) * 6 // 10])
    result = upscale_file(src, opts(tmp_path, "out.mkv", scale=2), bicubic)
    assert 0 < result.frames < promised
    assert result.missing_frames == promised - result.frames
    assert f"{src.name} is incomplete" in caplog.text
    assert f"{result.frames} of the {promised} frames" in caplog.text
    assert "damaged frames were concealed" not in caplog.text


@pytest.mark.parametrize("fallback", [True, False], ids=["re-encoded", "left-out"])
def test_mp4_output_takes_audio_it_cannot_hold_as_stored(tmp_path: Path, caplog, monkeypatch,
                                                        fallback: bool) -> None:
    """WMA (which no MP4 holds) next to Opus from a .mkv, into .mp4: the WMA track is
    re-encoded to AAC, or left out with a warning where the container has no audio codec to
    fall back on; the Opus track is copied (the mux used to fail outright, exit code 4)."""
    import importlib

    if not fallback:  # (mstgan_cli.media.remux is also the name of a function there)
        monkeypatch.setattr(importlib.import_module("mstgan_cli.media.remux"), "_AUDIO_FALLBACK", {})
    caplog.set_level(logging.WARNING, logger="mstgan_cli")
    src = tmp_path / "wma.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-f", "lavfi",
           "-i", "sine=frequency=440:sample_rate=48000", "-f", "lavfi", "-i", "sine=frequency=300",
           "-map", "0", "-map", "1", "-map", "2", "-frames:v", "6", "-t", "0.24", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", "-c:a:0", "wmav2", "-c:a:1", "libopus", str(src))
    result = upscale_file(src, opts(tmp_path, "out.mp4", scale=2), bicubic)
    out = tmp_path / "out.mp4"
    codecs = [(s["codec_type"], s["codec_name"]) for s in streams(out)]
    if fallback:
        assert codecs == [("video", "h264"), ("audio", "aac"), ("audio", "opus")]
        assert "#1 audio (wmav2) as stored; re-encoded to aac" in caplog.text
        assert result.integrity.left_out == []
    else:
        assert codecs == [("video", "h264"), ("audio", "opus")]
        assert "left out 1 stream(s): #1 audio (wmav2)" in caplog.text
        assert result.integrity.left_out == ["#1 audio (wmav2)"]
    assert packets_md5(out, "a:" + ("1" if fallback else "0")) == packets_md5(src, "a:1")
    assert leftovers(tmp_path) == []


def test_no_decodable_frames_is_an_input_error(clip, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no frames"):
        upscale_file(clip("undecodable"), opts(tmp_path, "x.mkv", scale=2), bicubic)
    assert list(tmp_path.iterdir()) == []


def test_output_problems_are_refused_before_any_work(clip, tmp_path: Path) -> None:
    src = clip("mp4")
    with pytest.raises(OutputError, match="overwrite the input"):
        upscale_file(src, opts(src.parent, src.name, overwrite=True), bicubic)
    (tmp_path / "exists.mp4").write_bytes(b"x")
    with pytest.raises(OutputError, match="already exists"):
        upscale_file(src, opts(tmp_path, "exists.mp4"), bicubic)
    with pytest.raises(OutputError, match="does not exist"):
        upscale_file(src, opts(tmp_path / "missing", "x.mp4"), bicubic)
    result = upscale_file(src, opts(tmp_path, "exists.mp4", overwrite=True), bicubic)
    assert result.frames == 12 and (tmp_path / "exists.mp4").stat().st_size > 1000


def test_unwritable_folder_is_an_output_error(clip, tmp_path: Path, monkeypatch) -> None:
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr("mstgan_cli.job.upscale.open", denied, raising=False)
    with pytest.raises(OutputError, match="cannot write"):
        upscale_file(clip("mp4"), opts(tmp_path, "x.mp4"), bicubic)


class _Interrupting:
    """Upscales a few frames, then behaves like Ctrl-C (or another failure) arrived."""

    def __init__(self, scale: int, exc: BaseException, after: int = 3) -> None:
        self.scale, self.exc, self.after = scale, exc, after

    def process(self, frames):
        for i, out in enumerate(bicubic(self.scale).process(frames)):
            if i == self.after:
                raise self.exc
            yield out


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), ModelError("model fell over")])
def test_interrupt_or_failure_removes_temporary_files(clip, tmp_path: Path, exc) -> None:
    with pytest.raises(type(exc)):
        upscale_file(clip("big"), opts(tmp_path, "x.mp4", scale=2), lambda s: _Interrupting(s, exc))
    assert list(tmp_path.iterdir()) == []


def test_encoder_failure_midway_is_raised_and_cleaned(clip, tmp_path: Path, monkeypatch) -> None:
    from mstgan_cli.media.encode import VideoEncoder
    real_write = VideoEncoder.write

    def write(self, rgb, pts):
        if self.frames == 4:
            raise OutputError("x.mp4: no space left on device")
        real_write(self, rgb, pts)
    monkeypatch.setattr(VideoEncoder, "write", write)
    with pytest.raises(OutputError, match="no space"):
        upscale_file(clip("mp4"), opts(tmp_path, "x.mp4", scale=2), bicubic)
    assert list(tmp_path.iterdir()) == []


def test_models_that_break_the_contract_are_model_errors(clip, tmp_path: Path) -> None:
    class Dropping:
        scale = 2

        def process(self, frames):
            for i, f in enumerate(bicubic(2).process(frames)):
                if i != 5:
                    yield f
    with pytest.raises(ModelError, match="held back"):
        upscale_file(clip("mp4"), opts(tmp_path, "x.mp4", scale=2), lambda s: Dropping())
    with pytest.raises(ModelError, match="--scale 2"):
        upscale_file(clip("mp4"), opts(tmp_path, "x.mp4", scale=2), lambda s: bicubic(4))
    assert list(tmp_path.iterdir()) == []


def test_disk_full_for_real_on_a_tiny_tmpfs(clip, tmp_path: Path) -> None:
    import subprocess
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                      capture_output=True, check=False).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        with pytest.raises(OutputError, match="no space"):
            upscale_file(clip("mp4"), opts(mnt, "x.mkv", scale=4, encode=EncodeSettings(lossless=True)), bicubic)
        assert list(mnt.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_real_generator_runs_through_the_pipeline(clip, tmp_path: Path) -> None:
    """The runtime's ModelUpscaler (look-ahead window, padding) honours the frame contract."""
    generator = pytest.importorskip("mstgan_cli.model.generator")
    engine = pytest.importorskip("mstgan_cli.runtime.engine")
    cfg = generator.GeneratorConfig(scale=2, window=5, feat=8, trunk=8, enc_blocks=1, trunk_blocks=1,
                                    detail_blocks=1, flow_ch=8)
    net = generator.MSTGANGenerator(cfg)
    src = clip("mp4")
    result = upscale_file(src, opts(tmp_path, "net.mp4", scale=2, model="test-net"),
                          lambda s: engine.ModelUpscaler(net, device="cpu", precision="fp32"))
    assert result.frames == 12 and frame_times(tmp_path / "net.mp4") == frame_times(src)


def test_changing_container_converts_or_drops_what_it_refuses(clip, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="mstgan_cli")
    upscale_file(clip("mkv_rich"), opts(tmp_path, "as.mp4", scale=2), bicubic)
    kinds = {(s["codec_type"], s["codec_name"]) for s in streams(tmp_path / "as.mp4")}
    assert ("subtitle", "mov_text") in kinds and ("audio", "vorbis") in kinds
    assert "left out 1 stream(s): #3 attachment" in caplog.text


def test_lanczos_baseline_and_awkward_file_names(clip, tmp_path: Path) -> None:
    src = tmp_path / "-odd näme: 1.mp4"
    src.write_bytes(clip("mp4").read_bytes())
    result = upscale_file(src, UpscaleOptions(model="lanczos", scale=2, encode=FAST))
    assert result.output == tmp_path / "-odd näme: 1_x2.mp4" and result.model_scale == 1
    assert video_stream(result.output)["width"] == 128


def test_encoder_gets_one_thread_only_while_the_cpu_model_dominates(monkeypatch) -> None:
    import torch

    from mstgan_cli.job.upscale import encoder_threads

    class OnCpu:
        device = torch.device("cpu")

    class OnGpu:
        device = torch.device("cuda")

    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    # x4 on 2 cores: the model takes most of the CPU, one x264 thread keeps up and preempts nothing
    assert encoder_threads(OnCpu(), (480, 270), (1920, 1080)) == 1
    # 320x180 to 4K: 144x the pixels, one x264 thread would be the bottleneck (README example)
    assert encoder_threads(OnCpu(), (320, 180), (3840, 2160)) == 0
    assert encoder_threads(OnGpu(), (480, 270), (1920, 1080)) == 0  # the cores are the encoder's
    monkeypatch.setattr(torch, "get_num_threads", lambda: 16)
    assert encoder_threads(OnCpu(), (480, 270), (1920, 1080)) == 0  # the model's share is short
