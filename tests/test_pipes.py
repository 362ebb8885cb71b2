"""Streams: a video read once from stdin, a video written to stdout in several formats, and
only video bytes on stdout."""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import av
import pytest
from typer.testing import CliRunner

from mstgan_cli import cli
from mstgan_cli.media.ffmpeg import find_ffmpeg

from conftest import frame_times, packets_md5, streams, video_stream

MSTGAN = [sys.executable, "-m", "mstgan_cli", "upscale"]
FAST = ["--scale", "2", "--model", "bicubic", "--preset", "ultrafast"]
runner = CliRunner()


def ffmpeg_cmd(*args: str) -> list[str]:
    return [find_ffmpeg().ffmpeg, "-hide_banner", "-nostdin", "-v", "error", *args]


def chain(*commands: list[str], timeout: float = 180) -> tuple[bytes, list[bytes], list[int]]:
    """Run commands joined by pipes, like a shell; returns the last stdout, every stderr, codes."""
    procs: list[subprocess.Popen[bytes]] = []
    errs = [tempfile.TemporaryFile() for _ in commands]
    for i, cmd in enumerate(commands):
        stdin = procs[-1].stdout if procs else subprocess.DEVNULL
        procs.append(subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=errs[i]))
        if i:
            procs[-2].stdout.close()  # type: ignore[union-attr]  (the next process owns it now)
    out, _ = procs[-1].communicate(timeout=timeout)
    for p in procs:
        p.wait(timeout=timeout)
    texts = []
    for f in errs:
        f.seek(0)
        texts.append(f.read())
        f.close()
    return out, texts, [p.returncode for p in procs]


def test_yuv4mpeg_in_nut_out_into_ffmpeg(clip, tmp_path: Path) -> None:
    """ffmpeg -i in -f yuv4mpegpipe - | mstgan upscale - -o - --format nut | ffmpeg -i - out.mp4"""
    src, out = clip("mp4"), tmp_path / "out.mp4"
    _, errs, codes = chain(ffmpeg_cmd("-i", str(src), "-f", "yuv4mpegpipe", "-"),
                           [*MSTGAN, "-", "-o", "-", "--format", "nut", *FAST],
                           ffmpeg_cmd("-f", "nut", "-i", "-", "-c", "copy", str(out)))
    assert codes == [0, 0, 0], errs
    assert b"wrote stdout" in errs[1]
    v = video_stream(out)
    assert (v["width"], v["height"]) == (128, 96)
    times = frame_times(out)
    assert len(times) == 12 and [round(t - times[0], 3) for t in times] == \
        [round(i * 0.04, 3) for i in range(12)]


def test_stdout_holds_only_the_stream(clip) -> None:
    nut = subprocess.run([*MSTGAN, str(clip("mp4")), "-o", "-", "--format", "nut", *FAST],
                         capture_output=True, check=False, timeout=120)
    assert nut.returncode == 0, nut.stderr.decode()
    assert nut.stdout.startswith(b"nut/multimedia container\0")
    y4m = subprocess.run([*MSTGAN, str(clip("mp4")), "-o", "-", "--format", "yuv4mpegpipe", *FAST],
                         capture_output=True, check=False, timeout=120)
    assert y4m.returncode == 0, y4m.stderr.decode()
    header, _, rest = y4m.stdout.partition(b"\n")
    assert header.startswith(b"YUV4MPEG2 W128 H96 F25:1")
    assert len(rest) == 12 * (len(b"FRAME\n") + 128 * 96 * 3 // 2)  # 12 raw 4:2:0 frames
    assert b"left out 1 stream(s): #1 audio" in y4m.stderr


@pytest.mark.parametrize("fmt, magic", [("mpegts", b"\x47"), ("mp4", b"\0\0\0")])
def test_other_stream_formats(clip, tmp_path: Path, fmt: str, magic: bytes) -> None:
    proc = subprocess.run([*MSTGAN, str(clip("mp4")), "-o", "-", "--format", fmt, *FAST],
                          capture_output=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.startswith(magic)
    out = tmp_path / f"piped.{'ts' if fmt == 'mpegts' else fmt}"
    out.write_bytes(proc.stdout)
    with av.open(str(out)) as container:  # (PyAV: the bundled FFmpeg 6.0 crashes reading MPEG-TS)
        assert [s.type for s in container.streams] == ["video", "audio"]
        assert sum(1 for _ in container.decode(video=0)) == 12


def test_matroska_from_stdin_keeps_audio_subtitles_and_attachments(clip, tmp_path: Path) -> None:
    src, out = clip("mkv_rich"), tmp_path / "out.mkv"
    with open(src, "rb") as stdin:
        proc = subprocess.run([*MSTGAN, "-", "-o", str(out), *FAST], stdin=stdin,
                              capture_output=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == b""
    assert [s["codec_type"] for s in streams(out)] == ["video", "audio", "subtitle", "attachment"]
    assert packets_md5(out, "a:0") == packets_md5(src, "a:0")
    assert packets_md5(out, "s:0") == packets_md5(src, "s:0")
    assert frame_times(out) == frame_times(src)
    assert video_stream(out)["tags"].get("title") == "Main video"
    assert [p.name for p in tmp_path.iterdir()] == ["out.mkv"]


def test_stdin_mistakes_are_one_line_errors(tmp_path: Path) -> None:
    no_output = runner.invoke(cli.app, ["upscale", "-", *FAST], input=b"whatever")
    assert no_output.exit_code == 3 and "needs an output" in no_output.stderr
    garbage = runner.invoke(cli.app, ["upscale", "-", "-o", str(tmp_path / "x.mkv"), *FAST],
                            input=b"this is not a video\n" * 100)
    assert garbage.exit_code == 2 and "not a video" in garbage.stderr
    empty = runner.invoke(cli.app, ["upscale", "-", "-o", str(tmp_path / "x.mkv"), *FAST], input=b"")
    assert empty.exit_code == 2 and "empty" in empty.stderr
    wrong = runner.invoke(cli.app, ["upscale", "-", "-o", str(tmp_path / "x.mkv"), "--format", "nut"])
    assert wrong.exit_code == 64  # a usage error: --format without -o -
    assert list(tmp_path.iterdir()) == []


def _starts(path: Path) -> dict[str, float]:
    """The first presentation time (s) of the video and of the audio, read with PyAV (the bundled
    FFmpeg 6.0's ffprobe crashes on MPEG-TS)."""
    first: dict[str, float] = {}
    with av.open(str(path)) as container:
        for packet in container.demux():
            if packet.pts is None or packet.stream.type not in ("video", "audio"):
                continue
            t = float(packet.pts * packet.stream.time_base)
            first[packet.stream.type] = min(first.get(packet.stream.type, t), t)
    return first


@pytest.mark.parametrize("fmt", ["matroska", "nut", "mpegts", "mp4"])
@pytest.mark.parametrize("from_stdin", [True, False], ids=["stdin", "file"])
def test_stream_formats_keep_audio_video_offsets(clip, tmp_path: Path, fmt: str,
                                                 from_stdin: bool) -> None:
    """The clip's AAC audio starts 21 ms before its video (encoder priming, an MP4 edit list):
    every stream format keeps that offset, whether the input is a file or arrives on stdin (the
    side file once moved the audio up to zero; fragmented MP4 started every track at zero)."""
    src = clip("mp4")
    want = _starts(src)
    assert want["video"] - want["audio"] > 0.02
    args = [*MSTGAN, "-" if from_stdin else str(src), "-o", "-", "--format", fmt, *FAST]
    with open(src, "rb") as stdin:
        proc = subprocess.run(args, stdin=stdin if from_stdin else subprocess.DEVNULL,
                              capture_output=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    out = tmp_path / f"piped.{ {'matroska': 'mkv', 'mpegts': 'ts'}.get(fmt, fmt) }"
    out.write_bytes(proc.stdout)
    got = _starts(out)
    # within a millisecond: Matroska stores milliseconds
    assert got["video"] - got["audio"] == pytest.approx(want["video"] - want["audio"], abs=0.0011)


def test_stream_to_a_terminal_is_refused(clip) -> None:
    """`-o -` with stdout on a terminal: one line on stderr, exit code 3, not a byte of video
    dumped into the terminal (as ffmpeg refuses)."""
    import os
    import pty

    leader, follower = pty.openpty()
    try:
        proc = subprocess.run([*MSTGAN, str(clip("mp4")), "-o", "-", *FAST], stdout=follower,
                              stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=120, check=False)
        os.set_blocking(leader, False)
        try:
            dumped = os.read(leader, 1 << 16)
        except (BlockingIOError, OSError):
            dumped = b""
    finally:
        os.close(follower)
        os.close(leader)
    assert proc.returncode == 3, proc.stderr.decode()
    assert b"stdout is a terminal" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert dumped == b""


class _GatedBicubic:
    """Bicubic that, after ``after`` frames, waits until ``open_`` is set (by a reader that has
    seen bytes on stdout): a stream that is only muxed once every frame is done never opens it."""

    def __init__(self, after: int, open_: "threading.Event") -> None:
        self.scale, self.after, self.open = 2, after, open_
        self.waited: bool | None = None

    def process(self, frames):  # type: ignore[no-untyped-def]
        from mstgan_cli.runtime.upscaler import InterpolationUpscaler
        for n, out in enumerate(InterpolationUpscaler(2).process(frames)):
            if n == self.after:
                self.waited = self.open.wait(timeout=60)
            yield out


@pytest.mark.parametrize("fmt", ["matroska", "nut", "mpegts", "mp4"])
def test_stdout_streams_while_the_upscale_runs(tmp_path: Path, fmt: str) -> None:
    """-o - writes the first frames (with the audio) before the last are upscaled: the model
    waits, half-way through, for bytes to arrive at the other end of the pipe."""
    import os
    import threading

    from mstgan_cli.job.upscale import upscale_file
    from mstgan_cli.options import EncodeSettings, UpscaleOptions

    src = tmp_path / "in.mkv"
    subprocess.run(ffmpeg_cmd("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-f", "lavfi",
                              "-i", "sine=frequency=440:sample_rate=48000", "-t", "6",
                              "-c:v", "libx264", "-c:a", "aac", str(src)), check=True)
    arrived = threading.Event()
    received = bytearray()
    read_end, write_end = os.pipe()

    def reader() -> None:
        while chunk := os.read(read_end, 1 << 16):
            received.extend(chunk)
            arrived.set()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    gated = _GatedBicubic(after=100, open_=arrived)
    saved = os.dup(1)
    os.dup2(write_end, 1)  # the muxing FFmpeg writes to fd 1, as it does under a shell pipe
    try:
        result = upscale_file(src, UpscaleOptions(output=Path("-"), scale=2, stream_format=fmt,
                                                  encode=EncodeSettings(preset="ultrafast")),
                              lambda s: gated)
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(write_end)
    thread.join(timeout=30)
    os.close(read_end)
    assert gated.waited is True, "no byte reached stdout before the last frames were upscaled"
    assert result.frames == 150 and result.integrity is not None and result.integrity.ok
    out = tmp_path / f"out.{fmt}"
    out.write_bytes(bytes(received))
    with av.open(str(out)) as container:
        assert [s.type for s in container.streams] == ["video", "audio"]
        assert sum(1 for _ in container.decode(video=0)) == 150


def test_yuv4mpeg_refuses_a_variable_frame_rate(tmp_path: Path) -> None:
    """YUV4MPEG states one rate: a VFR file is refused before any byte is written, a VFR stream
    from stdin at its first irregular frame; both say what to use instead (exit code 3)."""
    src = tmp_path / "vfr.mkv"
    subprocess.run(ffmpeg_cmd("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-frames:v", "30",
                              "-vf", "setpts='N/25/TB+gte(N,10)*(N-10)/25/TB'", "-fps_mode",
                              "passthrough", "-c:v", "libx264", str(src)), check=True)
    for from_stdin in (False, True):
        args = [*MSTGAN, "-" if from_stdin else str(src), "-o", "-", "--format", "yuv4mpegpipe", *FAST]
        with open(src, "rb") as stdin:
            proc = subprocess.run(args, stdin=stdin if from_stdin else subprocess.DEVNULL,
                                  capture_output=True, timeout=180, check=False)
        err = proc.stderr.decode()
        assert proc.returncode == 3, err
        assert "variable frame rate" in err and "--format matroska" in err, err
        assert "Traceback" not in err
        if not from_stdin:
            assert proc.stdout == b""
    # the same clip at a constant rate goes through
    cfr = tmp_path / "cfr.mkv"
    subprocess.run(ffmpeg_cmd("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-frames:v", "30",
                              "-c:v", "libx264", str(cfr)), check=True)
    proc = subprocess.run([*MSTGAN, str(cfr), "-o", "-", "--format", "yuv4mpegpipe", *FAST],
                          capture_output=True, timeout=180, check=False)
    assert proc.returncode == 0 and proc.stdout.startswith(b"YUV4MPEG2"), proc.stderr.decode()
    assert proc.stdout.count(b"FRAME") == 30


def test_a_reader_that_leaves_early_is_one_line(tmp_path: Path) -> None:
    """`mstgan upscale in.mkv -o - | head -c N`: the job stops when the pipe closes, with one
    line that says so and the output exit code, and leaves no temporary files."""
    src = tmp_path / "long.mkv"
    subprocess.run(ffmpeg_cmd("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-t", "20",
                              "-c:v", "libx264", str(src)), check=True)
    proc = subprocess.Popen([*MSTGAN, str(src), "-o", "-", *FAST], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None and proc.stderr is not None
    assert len(proc.stdout.read(20000)) == 20000
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 3, err
    assert "closed the pipe" in err and "Traceback" not in err, err
    assert not list(tmp_path.glob(".*mstgan*"))


def test_a_stream_muxer_that_fails_at_once_is_an_error_not_a_hang(tmp_path: Path, monkeypatch) -> None:
    """The FFmpeg that muxes to stdout dies before the encoder has opened the FIFO (here: made to
    fail at its start): the job ends with that FFmpeg's error instead of waiting for a reader."""
    import threading

    import mstgan_cli.job.upscale as up
    from mstgan_cli.errors import FFmpegError
    from mstgan_cli.options import EncodeSettings, UpscaleOptions

    src = tmp_path / "in.mkv"
    subprocess.run(ffmpeg_cmd("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-t", "2",
                              "-c:v", "libx264", str(src)), check=True)
    real = up.stream_args

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        cmd, lost = real(*args, **kwargs)
        return [cmd[0], "-hide_banner", "-v", "error", "-no_such_option", "1"], lost

    monkeypatch.setattr(up, "stream_args", broken)
    outcome: list[BaseException | None] = []

    def job() -> None:
        try:
            up.upscale_file(src, UpscaleOptions(output=Path("-"), scale=2,
                                                encode=EncodeSettings(preset="ultrafast")),
                            lambda s: __import__("mstgan_cli.runtime.upscaler", fromlist=["x"])
                            .InterpolationUpscaler(s))
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001
            outcome.append(exc)

    thread = threading.Thread(target=job, daemon=True)
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive(), "the job waited for ever on the FIFO"
    assert isinstance(outcome[0], FFmpegError), outcome
    assert "muxing to stdout failed" in str(outcome[0])
