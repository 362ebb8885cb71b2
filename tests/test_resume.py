"""Long files in segments: an interrupted run resumes where it stopped and gives the same frames
as one uninterrupted pass; nothing stale is left behind."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from mstgan_cli.errors import ModelError, OutputError
from mstgan_cli.media.probe import packet_index, probe
from mstgan_cli.options import EncodeSettings, UpscaleOptions
from mstgan_cli.job.upscale import upscale_file
from mstgan_cli.runtime.upscaler import InterpolationUpscaler
from mstgan_cli.job.segments import WorkFolder, plan_segments

from conftest import ffmpeg, frame_times

LOSSLESS = EncodeSettings(lossless=True)


class TemporalMean:
    """A multi-frame stand-in: output i is the bicubic upscale of the mean of frames i-2 .. i+2
    (mirrored at the ends), so a frame fed the wrong neighbours comes out different."""

    context = 2

    def __init__(self, scale: int, fail_after: int | None = None) -> None:
        self.scale, self.fail_after, self.count = scale, fail_after, 0
        self.inner = InterpolationUpscaler(scale, "bicubic")

    def process(self, frames):
        buf: list[torch.Tensor] = []
        emitted = 0

        def out(i: int, total: int | None) -> torch.Tensor:
            idx = []
            for j in range(i - 2, i + 3):
                j = -j if j < 0 else j
                j = 2 * (total - 1) - j if total is not None and j > total - 1 else j
                idx.append(min(max(j, 0), len(buf) - 1))
            self.count += 1
            if self.fail_after is not None and self.count > self.fail_after:
                raise ModelError("injected failure")
            return next(self.inner.process([torch.stack([buf[k] for k in idx]).mean(0)]))

        for f in frames:
            buf.append(f)
            while emitted + 2 < len(buf):
                yield out(emitted, None)
                emitted += 1
        while emitted < len(buf):
            yield out(emitted, len(buf))
            emitted += 1


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s at 25 fps with a keyframe every 5 frames and an audio track."""
    out = tmp_path_factory.mktemp("long") / "long.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-f", "lavfi",
           "-i", "sine=frequency=440:sample_rate=48000", "-frames:v", "50", "-t", "2",
           "-c:v", "libx264", "-g", "5", "-keyint_min", "5", "-pix_fmt", "yuv420p",
           "-c:a", "libvorbis", str(out))
    return out


def decoded(path: Path) -> list[tuple[int, np.ndarray]]:
    with av.open(str(path)) as container:
        return [(f.pts, f.to_ndarray()) for f in container.decode(video=0)]


def same_frames(a: Path, b: Path) -> bool:
    fa, fb = decoded(a), decoded(b)
    return len(fa) == len(fb) and all(pa == pb and np.array_equal(xa, xb)
                                      for (pa, xa), (pb, xb) in zip(fa, fb))


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def options(out: Path, **kw) -> UpscaleOptions:
    kw.setdefault("segment_seconds", 0.4)
    kw.setdefault("model", "temporal-mean")
    return UpscaleOptions(output=out, scale=2, encode=LOSSLESS, **kw)


def _kill_once(proc: subprocess.Popen, ready) -> None:
    """SIGKILL `proc` as soon as `ready()` holds (within 120 s, the process still running);
    skip the test when it finished before the kill."""
    deadline = time.monotonic() + 120
    while not ready():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if proc.returncode != -signal.SIGKILL:  # pragma: no cover - it finished before the kill
        pytest.skip("the run finished before it could be killed")


def test_plan_cuts_at_keyframes_with_context_from_the_keyframe_before(long_clip) -> None:
    info = probe(long_clip)
    index = packet_index(long_clip, info.video.index, info.video.time_base)
    plan = plan_segments(index, 0.4, context=2)
    assert [(s.first, s.stop) for s in plan] == [(0, 10), (10, 20), (20, 30), (30, 40), (40, 50)]
    assert all(pts in index.keyframes for pts in (index.pts[s.first] for s in plan))
    second = plan[1]  # context frames 8 and 9 come after the keyframe at frame 5
    assert (second.before, second.after, second.seek) == (2, 2, index.pts[5])
    assert (plan[0].before, plan[0].seek, plan[-1].after) == (0, None, 0)
    assert len(plan_segments(index, 1.5, context=2)) == 1  # the last piece would be too short


def test_segments_give_the_frames_of_one_pass(long_clip, tmp_path: Path) -> None:
    one = upscale_file(long_clip, options(tmp_path / "one.mkv", segment_seconds=0), TemporalMean)
    segmented = upscale_file(long_clip, options(tmp_path / "seg.mkv"), TemporalMean)
    assert (one.segments, segmented.segments, segmented.frames) == (0, 5, 50)
    assert segmented.integrity is not None and segmented.integrity.ok
    assert same_frames(tmp_path / "one.mkv", tmp_path / "seg.mkv")
    assert frame_times(tmp_path / "seg.mkv", "a:0") == frame_times(long_clip, "a:0")
    assert hidden(tmp_path) == []


def test_failure_after_two_segments_resumes_with_identical_frames(long_clip, tmp_path: Path) -> None:
    upscale_file(long_clip, options(tmp_path / "whole.mkv"), TemporalMean)
    out = tmp_path / "out.mkv"
    # segment 1 yields 12 outputs (10 + 2 context), segment 2 yields 14: fail inside segment 3
    with pytest.raises(ModelError, match="injected"):
        upscale_file(long_clip, options(out), lambda s: TemporalMean(s, fail_after=30))
    work = tmp_path / ".out.mkv.mstgan-work"
    assert sorted(p.name for p in work.glob("seg-*")) == [
        "seg-00000.json", "seg-00000.mkv", "seg-00001.json", "seg-00001.mkv"]
    assert not out.exists() and hidden(tmp_path) == [work.name]
    counter = TemporalMean(2)
    result = upscale_file(long_clip, options(out), lambda s: counter)
    assert (result.segments, result.resumed, result.frames) == (5, 2, 50)
    assert counter.count == 12 + 14 + 14  # only segments 3, 4 and 5 were upscaled
    assert same_frames(out, tmp_path / "whole.mkv")
    assert hidden(tmp_path) == []


def test_other_settings_discard_the_pieces_of_an_earlier_run(long_clip, tmp_path: Path, caplog) -> None:
    out = tmp_path / "out.mkv"
    with pytest.raises(ModelError):
        upscale_file(long_clip, options(out), lambda s: TemporalMean(s, fail_after=30))
    caplog.set_level(logging.WARNING, logger="mstgan_cli")
    result = upscale_file(long_clip, options(out, model="bicubic"), lambda s: TemporalMean(s))
    assert result.resumed == 0 and "discarding" in caplog.text
    assert hidden(tmp_path) == []


def test_interrupt_before_any_segment_leaves_nothing(long_clip, tmp_path: Path) -> None:
    with pytest.raises(ModelError):
        upscale_file(long_clip, options(tmp_path / "o.mkv"), lambda s: TemporalMean(s, fail_after=5))
    assert list(tmp_path.iterdir()) == []


def test_a_second_process_on_the_same_output_is_refused(long_clip, tmp_path: Path) -> None:
    out = tmp_path / "o.mkv"
    info = probe(long_clip)
    plan = plan_segments(packet_index(long_clip, 0, info.video.time_base), 0.4, 2)
    holder = WorkFolder(out, "someone-else", plan)
    holder.open()
    try:
        with pytest.raises(OutputError, match="another mstgan"):
            upscale_file(long_clip, options(out), TemporalMean)
    finally:
        holder.remove()


def test_frames_the_decoder_cannot_deliver_fall_back_to_one_pass(tmp_path: Path, caplog) -> None:
    src = tmp_path / "png.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-frames:v", "30", "-c:v", "png", str(src))
    data = bytearray(src.read_bytes())
    starts = [i for i in range(len(data)) if data.startswith(b"\x89PNG\r\n\x1a\n", i)]
    ihdr = data.index(b"IHDR", starts[17])  # frame 17 (segment 2) becomes undecodable
    data[ihdr + 4:ihdr + 8] = b"\0\0\0\0"
    src.write_bytes(bytes(data))
    caplog.set_level(logging.WARNING, logger="mstgan_cli")
    result = upscale_file(src, options(tmp_path / "o.mkv"), TemporalMean)
    assert "one pass instead" in caplog.text
    assert (result.segments, result.frames, result.bad_frames) == (0, 29, 1)
    assert hidden(tmp_path) == []


@pytest.fixture(scope="module")
def slow_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("slow") / "slow.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25", "-frames:v", "125", "-c:v", "libx264",
           "-preset", "ultrafast", "-g", "10", "-pix_fmt", "yuv420p", str(out))
    return out


def test_sigkill_mid_file_then_the_same_command_resumes(slow_clip, tmp_path: Path) -> None:
    def command(out: Path, seconds: str) -> list[str]:
        return [sys.executable, "-m", "mstgan_cli", "upscale", str(slow_clip), "-o", str(out),
                "--scale", "2", "--model", "bicubic", "--lossless", "--segment-seconds", seconds]
    out = tmp_path / "out.mkv"
    marker = tmp_path / ".out.mkv.mstgan-work" / "seg-00001.json"
    proc = subprocess.Popen(command(out, "1"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _kill_once(proc, marker.exists)
    assert not out.exists()
    again = subprocess.run(command(out, "1"), capture_output=True, timeout=300, check=False,
                           env={**os.environ, "COLUMNS": "200"})
    assert again.returncode == 0, again.stderr.decode()
    assert "resuming" in again.stderr.decode()
    upscale_file(slow_clip, UpscaleOptions(output=tmp_path / "whole.mkv", scale=2, model="bicubic",
                                           encode=LOSSLESS, segment_seconds=0))
    assert same_frames(out, tmp_path / "whole.mkv")
    assert hidden(tmp_path) == []


def test_the_real_generator_gives_the_same_frames_in_segments(tmp_path: Path) -> None:
    """MST-GAN's sliding window (radius 2) fed each segment's neighbours: identical frames."""
    generator = pytest.importorskip("mstgan_cli.model.generator")
    engine = pytest.importorskip("mstgan_cli.runtime.engine")
    cfg = generator.GeneratorConfig(scale=2, window=5, feat=8, trunk=8, enc_blocks=1, trunk_blocks=1,
                                    detail_blocks=1, flow_ch=8)
    torch.manual_seed(0)
    net = generator.MSTGANGenerator(cfg)
    up = engine.ModelUpscaler(net, device="cpu", precision="fp32")
    src = tmp_path / "small.mkv"  # 30 frames of 32x24: 3 segments, a few seconds on a CPU
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=32x24:rate=25", "-frames:v", "30", "-c:v", "libx264",
           "-g", "5", "-pix_fmt", "yuv420p", str(src))
    upscale_file(src, options(tmp_path / "one.mkv", segment_seconds=0), lambda s: up)
    result = upscale_file(src, options(tmp_path / "seg.mkv"), lambda s: up)
    assert result.segments == 3
    assert same_frames(tmp_path / "one.mkv", tmp_path / "seg.mkv")


def test_sigkill_of_a_one_pass_job_leaves_nothing_the_next_run_keeps(slow_clip, tmp_path: Path) -> None:
    """kill -9 of a one-pass job leaves its hidden temporary files beside the output; the next
    run on that output removes them, and only them: the files of a job that is still running
    (here one whose lock this test holds) stay."""
    import fcntl

    out = tmp_path / "out.mkv"
    command = [sys.executable, "-m", "mstgan_cli", "upscale", str(slow_clip), "-o", str(out),
               "--scale", "2", "--model", "bicubic", "--lossless", "--segment-seconds", "0"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _kill_once(proc, lambda: any(p.name.endswith(".video.mkv") and p.stat().st_size > 0
                                 for p in tmp_path.iterdir()))
    stale = hidden(tmp_path)
    assert len(stale) >= 2 and all(".mstgan-" in name for name in stale)
    live = tmp_path / ".out.mstgan-1-abcdef.video.mkv"  # a job still at work: its lock is held
    with open(live, "wb") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        again = subprocess.run(command, capture_output=True, timeout=300, check=False,
                               env={**os.environ, "COLUMNS": "200"})
    assert again.returncode == 0, again.stderr.decode()
    assert f"removed {len(stale)} temporary file(s) of an earlier run" in again.stderr.decode()
    assert hidden(tmp_path) == [live.name] and out.exists()
