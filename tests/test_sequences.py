"""Image sequences (``frames/%06d.png``) in and out: exact frame count and numbering, timestamps
from --fps, 16-bit pictures kept deep, nothing half-written, clear errors for gaps."""
from __future__ import annotations

import logging
import os
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from mstgan_cli import cli
from mstgan_cli.errors import IntegrityError, OutputError
from mstgan_cli.job.upscale import upscale_file
from mstgan_cli.media.sequence import parse_pattern
from mstgan_cli.options import UpscaleOptions

from conftest import bicubic, ffmpeg, frame_times, video_stream

pytestmark = pytest.mark.usefixtures("one_torch_thread")
runner = CliRunner()

W, H, N = 64, 48, 6


def make_pictures(folder: Path, pattern: str = "%06d.png", start: int = 1, n: int = N,
                  deep: bool = False) -> Path:
    """``n`` flat pictures ``folder/pattern`` numbered from ``start``, picture k of grey level
    ``levels(deep)[k]``, written with PyAV (8-bit, or 16-bit PNG/TIFF when ``deep``)."""
    folder.mkdir(parents=True, exist_ok=True)
    p = parse_pattern(folder / pattern)
    assert p is not None
    for k in range(n):
        value = levels(deep)[k]
        rgb = np.full((H, W, 3), value, np.uint16 if deep else np.uint8)
        rgb[:, :, 2] = value // 2  # not grey: channels must not be swapped
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb48le" if deep else "rgb24")
        _write_picture(frame, p.path(start + k))
    return folder / pattern


def levels(deep: bool) -> list[int]:
    return [1000 + 9000 * k + 7 for k in range(N)] if deep else [20 + 40 * k for k in range(N)]


def _write_picture(frame: av.VideoFrame, path: Path) -> None:
    codec = {".png": "png", ".tif": "tiff", ".jpg": "mjpeg"}[path.suffix]
    deep = frame.format.name == "rgb48le"
    pix_fmt = {"png": "rgb48be" if deep else "rgb24", "tiff": "rgb48le" if deep else "rgb24",
               "mjpeg": "yuvj444p"}[codec]
    cc = av.CodecContext.create(codec, "w")
    cc.width, cc.height, cc.pix_fmt, cc.time_base = W, H, pix_fmt, Fraction(1, 25)
    if codec == "mjpeg":
        cc.color_range = 2
        cc.options = {"flags": "+qscale", "global_quality": str(2 * 118)}
    packets = cc.encode(frame.reformat(format=pix_fmt)) + cc.encode(None)
    path.write_bytes(b"".join(bytes(p) for p in packets))


def read_picture(path: Path) -> tuple[str, np.ndarray]:
    """(pixel format, (H, W, 3) RGB) of one picture, 16 bits when it has them."""
    with av.open(str(path)) as c:
        frame = next(c.decode(video=0))
    deep = "48" in frame.format.name or "64" in frame.format.name
    return frame.format.name, frame.to_ndarray(format="rgb48le" if deep else "rgb24")


def hidden(folder: Path) -> list[str]:
    """Anything a job would leave behind: staging folders, temporary files."""
    return sorted(p.name for p in folder.rglob("*") if p.name.startswith(".") or "mstgan-" in p.name)


def small_clip(tmp: Path) -> Path:
    """A 6-frame 64x48 MP4 with an AAC track and an SRT subtitle track."""
    srt = tmp / "s.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:00,200\nHello\n")
    out = tmp / "clip.mkv"
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={W}x{H}:rate=25", "-f", "lavfi",
           "-i", "sine=frequency=440:sample_rate=48000", "-i", str(srt), "-map", "0:v", "-map", "1:a",
           "-map", "2:s", "-frames:v", str(N), "-t", "0.24", "-c:v", "libx264", "-pix_fmt", "yuv420p",
           "-c:a", "aac", "-c:s", "srt", str(out))
    return out


def test_video_to_sequence_numbers_from_1_and_warns_about_the_other_streams(tmp_path: Path, caplog) -> None:
    src = small_clip(tmp_path)
    out = tmp_path / "up" / "f%06d.png"  # the folder does not exist: it is made
    with caplog.at_level(logging.WARNING, logger="mstgan_cli"):
        result = upscale_file(src, UpscaleOptions(output=out, scale=2), bicubic)
    names = sorted(p.name for p in (tmp_path / "up").iterdir())
    assert names == [f"f{k:06d}.png" for k in range(1, N + 1)]
    assert result.frames == N and result.output == out and result.size == (2 * W, 2 * H)
    assert result.integrity is not None and result.integrity.frames_found == N
    assert result.integrity.left_out == ["#1 audio (aac)", "#2 subtitle (subrip)"]
    fmt, rgb = read_picture(tmp_path / "up" / "f000001.png")
    assert fmt == "rgb24" and rgb.shape == (2 * H, 2 * W, 3)
    said = [r.getMessage() for r in caplog.records if "audio" in r.getMessage()]
    assert len(said) == 1 and "#1 audio (aac)" in said[0] and "#2 subtitle (subrip)" in said[0]
    assert hidden(tmp_path) == []


def test_sequence_to_video_times_come_from_fps(tmp_path: Path) -> None:
    src = make_pictures(tmp_path / "frames", start=7)
    out = tmp_path / "up.mkv"
    result = upscale_file(src, UpscaleOptions(output=out, scale=2, fps=Fraction(30000, 1001)), bicubic)
    assert result.frames == N
    v = video_stream(out)
    assert (v["width"], v["height"]) == (2 * W, 2 * H)
    assert v["color_range"] == "tv"  # a video's usual range, not the pictures' full one
    assert frame_times(out) == [round(k * 1001 / 30000, 3) for k in range(N)]
    default = upscale_file(src, UpscaleOptions(output=tmp_path / "up25.mp4", scale=2), bicubic)
    assert default.frames == N and frame_times(tmp_path / "up25.mp4") == [round(k * 0.04, 4) for k in range(N)]
    with av.open(str(out)) as c:  # frame k of the video is picture 7 + k
        greens = [int(f.to_ndarray(format="rgb24")[H, W, 1]) for f in c.decode(video=0)]
    assert np.allclose(greens, levels(False), atol=3)
    assert hidden(tmp_path) == []


def test_sequence_to_sequence_keeps_numbers_and_16_bits(tmp_path: Path) -> None:
    src = make_pictures(tmp_path / "in", "%04d.png", start=7, deep=True)
    out = tmp_path / "out" / "%04d.png"
    result = upscale_file(src, UpscaleOptions(output=out, scale=2), bicubic)
    assert result.frames == N and result.integrity.frames_found == N
    assert sorted(p.name for p in out.parent.iterdir()) == [f"{k:04d}.png" for k in range(7, 7 + N)]
    for k, value in enumerate(levels(True)):
        fmt, rgb = read_picture(out.parent / f"{7 + k:04d}.png")
        assert fmt == "rgb48be" and rgb.shape == (2 * H, 2 * W, 3)
        assert abs(int(rgb[H, W, 0]) - value) <= 1 and abs(int(rgb[H, W, 2]) - value // 2) <= 1
    assert hidden(tmp_path) == []


def test_sequence_of_jpeg_to_tiff(tmp_path: Path) -> None:
    src = make_pictures(tmp_path / "jpg", "img_%03d.jpg", start=0)
    out = tmp_path / "tif" / "img_%03d.tif"
    upscale_file(src, UpscaleOptions(output=out, scale=2), bicubic)
    assert sorted(p.name for p in out.parent.iterdir()) == [f"img_{k:03d}.tif" for k in range(N)]
    fmt, rgb = read_picture(out.parent / "img_005.tif")
    assert fmt == "rgb24" and abs(int(rgb[H, W, 1]) - levels(False)[5]) <= 3


def test_existing_pictures_need_overwrite_which_replaces_the_whole_sequence(tmp_path: Path) -> None:
    src = make_pictures(tmp_path / "in", n=N)
    out = tmp_path / "out" / "%06d.png"
    out.parent.mkdir()
    (out.parent / "000001.png").write_bytes(b"keep me")
    (out.parent / "000099.png").write_bytes(b"stale")  # of an earlier, longer run
    (out.parent / "notes.txt").write_text("not a picture of the sequence")
    with pytest.raises(OutputError, match="--overwrite"):
        upscale_file(src, UpscaleOptions(output=out, scale=2), bicubic)
    assert (out.parent / "000001.png").read_bytes() == b"keep me"
    upscale_file(src, UpscaleOptions(output=out, scale=2, overwrite=True), bicubic)
    assert sorted(p.name for p in out.parent.iterdir()) == \
        [f"{k:06d}.png" for k in range(1, N + 1)] + ["notes.txt"]
    with pytest.raises(OutputError, match="overwrite the input"):
        upscale_file(src, UpscaleOptions(output=src, scale=2, overwrite=True), bicubic)
    assert hidden(tmp_path) == []


class Fails:
    """Bicubic until the fourth frame, then an error, as a model that runs out of memory."""

    scale = 2

    def process(self, frames):
        for n, out in enumerate(bicubic(2).process(frames)):
            if n == 3:
                raise RuntimeError("out of memory")
            yield out


def test_a_failed_job_writes_no_picture(tmp_path: Path) -> None:
    src = make_pictures(tmp_path / "in")
    for out in (tmp_path / "new" / "%06d.png", tmp_path / "in" / "up_%06d.png"):
        with pytest.raises(RuntimeError):
            upscale_file(src, UpscaleOptions(output=out, scale=2), lambda scale: Fails())
        assert not (tmp_path / "new").exists()
        assert sorted(p.name for p in (tmp_path / "in").iterdir()) == [f"{k:06d}.png" for k in range(1, N + 1)]
        assert hidden(tmp_path) == []


def test_the_integrity_check_counts_the_pictures(tmp_path: Path, monkeypatch) -> None:
    from mstgan_cli.media import images

    src = make_pictures(tmp_path / "in")
    real = images.ImageEncoder.write

    def skip_one(self, rgb, pts):  # the encoder "loses" the third picture
        real(self, rgb, pts)
        if self.frames == 3:
            self.pattern.path(self.numbers[-1]).unlink()
    monkeypatch.setattr(images.ImageEncoder, "write", skip_one)
    with pytest.raises(IntegrityError, match="5 pictures in the output, 6 frames"):
        upscale_file(src, UpscaleOptions(output=tmp_path / "out" / "%06d.png", scale=2), bicubic)
    assert not (tmp_path / "out").exists() and hidden(tmp_path) == []


def invoke(*args: str):
    return runner.invoke(cli.app, ["upscale", *args, "-m", "bicubic", "--scale", "2"],
                         catch_exceptions=False)


def test_cli_pattern_matching_nothing_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "frames").mkdir()
    result = invoke(str(tmp_path / "frames" / "%06d.png"), "-o", str(tmp_path / "o.mkv"))
    assert result.exit_code == 2 and result.stdout == ""
    assert "no pictures match" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    result = invoke(str(tmp_path / "nowhere" / "%06d.png"), "-o", str(tmp_path / "o.mkv"))
    assert result.exit_code == 2 and "does not exist" in result.stderr


def test_cli_missing_frame_in_the_middle_is_exit_2_naming_it(tmp_path: Path) -> None:
    src = make_pictures(tmp_path / "frames", start=1)
    (tmp_path / "frames" / "000004.png").unlink()
    result = invoke(str(src), "-o", str(tmp_path / "o.mkv"))
    assert result.exit_code == 2 and result.stderr.startswith("error:")
    assert "frame 4 (000004.png)" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o.mkv").exists()


def test_cli_a_picture_of_another_size_is_exit_2_naming_it(tmp_path: Path) -> None:
    src = make_pictures(tmp_path / "frames")
    ffmpeg("-f", "lavfi", "-i", "color=c=red:size=32x24", "-frames:v", "1", "-update", "1",
           str(tmp_path / "frames" / "000003.png"))
    result = invoke(str(src), "-o", str(tmp_path / "out" / "%06d.png"))
    assert result.exit_code == 2 and "000003.png is 32x24" in result.stderr
    assert not (tmp_path / "out").exists() and hidden(tmp_path) == []


def test_cli_sequence_round_trip_with_fps_and_help(tmp_path: Path) -> None:
    src = make_pictures(tmp_path / "frames")
    result = invoke(str(src), "-o", str(tmp_path / "o.mp4"), "--fps", "24000/1001", "--preset", "ultrafast")
    assert result.exit_code == 0, result.output
    assert "wrote" in result.stderr and f"{N} frames" in result.stderr
    assert frame_times(tmp_path / "o.mp4")[-1] == round(5 * 1001 / 24000, 4)
    default = invoke(str(src))  # beside the input folder: frames_x2/%06d.png
    assert default.exit_code == 0, default.output
    assert len(list((tmp_path / "frames_x2").glob("*.png"))) == N
    video = runner.invoke(cli.app, ["upscale", str(tmp_path / "o.mp4"), "--fps", "30", "-m", "bicubic"])
    assert video.exit_code == 64 and "--fps" in video.output
    bad = invoke(str(src), "--fps", "0")
    assert bad.exit_code == 64
    help_text = runner.invoke(cli.app, ["upscale", "--help"], env={"COLUMNS": "200"}).output
    assert "%06d.png" in help_text and "--fps" in help_text and "25" in help_text


def test_patterns_are_spelled_as_ffmpeg_spells_them(tmp_path: Path) -> None:
    p = parse_pattern("shots/100%%_%04d.png")
    assert p is not None and p.name(7) == "100%_0007.png" and p.ffmpeg == "file:shots/100%%_%04d.png"
    assert p.number("100%_0007.png") == 7 and p.number("100%_007.png") is None
    assert parse_pattern("a/%d.tif").name(12) == "12.tif" and parse_pattern("a/%6d.jpg").name(3) == "000003.jpg"
    for not_a_pattern in ("clip_%03d.mp4", "a/%s.png", "a/%d_%d.png", "frames/000001.png", "-"):
        assert parse_pattern(not_a_pattern) is None, not_a_pattern


def test_staging_folders_of_killed_runs_are_removed(tmp_path: Path) -> None:
    src = make_pictures(tmp_path / "in")
    inside = tmp_path / "out" / ".mstgan-123-abcdef.frames"  # a dead job's, in the folder
    beside = tmp_path / ".new.mstgan-456-abcdef.frames"  # and one for a folder it never made
    for folder in (inside, beside):
        folder.mkdir(parents=True)
        (folder / "000001.png").write_bytes(b"half")
    (inside / "lock").write_text("")  # unlocked: dead
    os.utime(beside, (time.time() - 3600,) * 2)  # no lock file, an hour old: dead
    upscale_file(src, UpscaleOptions(output=tmp_path / "out" / "%06d.png", scale=2), bicubic)
    upscale_file(src, UpscaleOptions(output=tmp_path / "new" / "%06d.png", scale=2), bicubic)
    assert not inside.exists() and not beside.exists() and hidden(tmp_path) == []
    assert len(list((tmp_path / "new").iterdir())) == N
