"""Every common container, each from a tiny clip made here: the upscale keeps every frame at its
time and copies every other stream (issue 18); DVB and PGS bitmap subtitles, written here byte
by byte. Also MPEG-TS that is damaged on the way."""
from __future__ import annotations

import logging
import re
import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from mstgan_cli import cli
from mstgan_cli.errors import OutputError
from mstgan_cli.media.decode import VideoDecoder
from mstgan_cli.media.encode import READ_ONLY_SUFFIXES, plan_encoder
from mstgan_cli.media.probe import probe
from mstgan_cli.options import EncodeSettings, UpscaleOptions
from mstgan_cli.job.upscale import upscale_file
from mstgan_cli.job.plan import default_output

from conftest import FAST, bicubic, ffmpeg, frame_times, opts, packets_md5, streams

_V = ["-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25"]
_A = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
_N = ["-frames:v", "10", "-t", "0.4"]
_AV = ["-map", "0:v", "-map", "1:a"]

# name -> (file name, ffmpeg arguments after the inputs, whether a subtitle file is an input)
CONTAINERS: dict[str, tuple[str, list[str], bool]] = {
    "mp4": ("clip.mp4", [*_AV, "-map", "2:s", "-c:v", "libx264", "-c:a", "aac", "-c:s", "mov_text"], True),
    "mkv": ("clip.mkv", [*_AV, "-map", "2:s", "-c:v", "libx264", "-c:a", "libopus", "-c:s", "ass"], True),
    "mov": ("clip.mov", [*_AV, "-c:v", "libx264", "-c:a", "aac"], False),
    "webm-vp9": ("vp9.webm", [*_AV, "-map", "2:s", "-c:v", "libvpx-vp9", "-c:a", "libopus",
                              "-c:s", "webvtt"], True),
    "webm-av1": ("av1.webm", [*_AV, "-c:v", "libsvtav1", "-svtav1-params", "lp=1", "-c:a", "libopus"],
                 False),
    "avi-mpeg4": ("clip.avi", [*_AV, "-c:v", "mpeg4", "-c:a", "mp3"], False),
    # broadcast: H.264 with AC-3 and AAC tracks
    "mpegts": ("clip.ts", [*_AV, "-map", "1:a", "-c:v", "libx264", "-c:a:0", "ac3", "-c:a:1", "aac"], False),
    "m2ts": ("clip.m2ts", [*_AV, "-c:v", "libx264", "-c:a", "ac3", "-mpegts_m2ts_mode", "1"], False),
    "mpeg-ps": ("clip.mpg", [*_AV, "-c:v", "mpeg2video", "-c:a", "mp2", "-f", "vob"], False),
    "y4m": ("clip.y4m", ["-map", "0:v", "-pix_fmt", "yuv420p"], False),
}


def make(name: str, folder: Path) -> Path:
    file_name, args, subtitles = CONTAINERS[name]
    out = folder / file_name
    inputs = [*_V, *_A]
    if subtitles:
        srt = folder / "subs.srt"
        srt.write_text("1\n00:00:00,000 --> 00:00:00,200\nHello\n\n2\n00:00:00,200 --> 00:00:00,400\nWorld\n")
        inputs += ["-i", str(srt)]
    ffmpeg(*inputs, *_N, *args, str(out))
    return out


def decoded_times(path: Path) -> list[float]:
    """Presentation time (s) of every decoded picture, in order."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [float(frame.pts * stream.time_base) for frame in container.decode(stream)]


def kinds(path: Path) -> list[tuple[str, str]]:
    return [(s["codec_type"], s["codec_name"]) for s in streams(path)]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("containers")
    return {name: make(name, folder) for name in CONTAINERS}


@pytest.mark.parametrize("name", list(CONTAINERS))
def test_each_container_keeps_every_frame_time_and_stream(name: str, made: dict[str, Path],
                                                          tmp_path: Path) -> None:
    src = made[name]
    suffix = ".mkv" if src.suffix in READ_ONLY_SUFFIXES else src.suffix
    result = upscale_file(src, opts(tmp_path, f"out{suffix}", scale=2), bicubic)
    out = result.output
    want = decoded_times(src)
    assert len(want) == 10 and result.frames == 10
    assert decoded_times(out) == pytest.approx(want, abs=0.0005)  # Matroska keeps ms
    src_kinds, out_kinds = kinds(src), kinds(out)
    assert [k for k, _ in out_kinds] == [k for k, _ in src_kinds]
    assert out_kinds[1:] == src_kinds[1:]  # audio and subtitles copied as they were
    for n, (kind, _) in enumerate(src_kinds[1:]):
        if kind == "audio":
            spec = f"a:{sum(1 for k, _ in src_kinds[1:n + 1] if k == 'audio')}"
            assert packets_md5(out, spec) == packets_md5(src, spec)


def test_mpegts_and_m2ts_keep_their_clock(made: dict[str, Path], tmp_path: Path) -> None:
    """The TS muxer of the ffmpeg command delays copied timestamps by 1.4 s unless told not to;
    a broadcast recording must come out on its own clock (audio and video alike)."""
    for name in ("mpegts", "m2ts"):
        src = made[name]
        out = upscale_file(src, opts(tmp_path, f"{name}{src.suffix}", scale=2), bicubic).output
        with av.open(str(src)) as a, av.open(str(out)) as b:
            assert [s.start_time for s in b.streams] == [s.start_time for s in a.streams]
            assert b.format.name == "mpegts"


def test_containers_mstgan_does_not_write_default_to_matroska(made: dict[str, Path]) -> None:
    for name in ("mpeg-ps", "y4m"):
        assert default_output(made[name], UpscaleOptions(model="bicubic")).suffix == ".mkv"
    with pytest.raises(OutputError, match=r"does not write.*\.mkv"):
        plan_encoder(EncodeSettings(), ".mpg", deep=False)
    with pytest.raises(OutputError, match="yuv4mpegpipe"):
        plan_encoder(EncodeSettings(), ".y4m", deep=False)


def test_a_folder_with_every_container_upscales_with_exit_code_0(made: dict[str, Path],
                                                                 tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    for name, src in made.items():
        (archive / f"{name}{src.suffix}").write_bytes(src.read_bytes())
    out = tmp_path / "up"
    result = CliRunner().invoke(cli.app, ["upscale", str(archive), "-o", str(out), "--model", "bicubic",
                                          "--scale", "2", "--preset", "ultrafast", "-q"])
    assert result.exit_code == 0, result.output
    for name, src in made.items():
        suffix = ".mkv" if src.suffix in READ_ONLY_SUFFIXES else src.suffix
        done = out / f"{name}{suffix}"
        assert len(decoded_times(done)) == 10, name


# Bitmap subtitles of broadcast and Blu-ray. FFmpeg encodes them only from other bitmap
# subtitles, which nothing here makes, so each stream is written byte by byte: a few display
# sets, each one rectangle (x, y, width, height) of pixel code 1 (a palette entry that is set),
# or None: a page without regions, which clears the screen.
Rect = tuple[int, int, int, int]
# (seconds after the video's first frame, what is shown)
SUBTITLE_SETS: tuple[tuple[float, Rect | None], ...] = (
    (0.1, (100, 400, 40, 10)), (0.4, (120, 420, 60, 12)), (0.7, None))


def _dvb_segment(kind: int, body: bytes, page: int = 1) -> bytes:
    return struct.pack(">BBHH", 0x0F, kind, page, len(body)) + body


def dvb_display_set(version: int, rect: Rect | None) -> bytes:
    """One DVB display set (ETSI EN 300 743): page composition (0x10) of region 0 at (x, y),
    region composition (0x11: w x h, 8-bit, CLUT 0, object 0 at its corner), CLUT definition
    (0x12: entry 1 in full range), object data (0x13: each line one 8-bit pixel-code run of w
    pixels of code 1, top and bottom field) and end of display set (0x80). What an FFmpeg
    packet holds: the TS muxer wraps it in the PES data field (data_identifier 0x20,
    subtitle_stream_id 0x00, ..., end marker 0xFF) and the demuxer takes that off again."""
    if rect is None:  # normal case, no region: the screen is cleared
        return _dvb_segment(0x10, bytes([5, version << 4])) + _dvb_segment(0x80, b"")
    x, y, w, h = rect
    page = bytes([5, (version << 4) | (2 << 2)]) + struct.pack(">BBHH", 0, 0, x, y)  # mode change
    region = (bytes([0, (version << 4) | 0x08]) + struct.pack(">HH", w, h)
              + bytes([(3 << 5) | (3 << 2), 0, 0, 0]) + struct.pack(">HHH", 0, 0, 0))
    clut = bytes([0, version << 4, 1, 0x20 | 0x01, 200, 128, 128, 0])  # Y Cr Cb T: opaque grey
    line = bytes([0x12, 0x00, 0x80 | w, 1, 0x00, 0x00, 0xF0])  # run of w code 1, end, end of line
    top, bottom = line * ((h + 1) // 2), line * (h // 2)
    obj = struct.pack(">HBHH", 0, version << 4, len(top), len(bottom)) + top + bottom
    obj += b"\x00" * ((len(top) + len(bottom)) % 2)  # (8_stuff_bits to a 16-bit boundary)
    return (_dvb_segment(0x10, page) + _dvb_segment(0x11, region) + _dvb_segment(0x12, clut)
            + _dvb_segment(0x13, obj) + _dvb_segment(0x80, b""))


def dvb_clip(folder: Path) -> Path:
    """A broadcast recording: H.264 + AC-3 (made by ffmpeg) and DVB subtitles in MPEG-TS, 25
    frames; the subtitle packets are muxed beside them with PyAV at SUBTITLE_SETS' times."""
    plain = folder / "plain.ts"
    ffmpeg(*_V, *_A, "-frames:v", "25", "-t", "1", *_AV, "-c:v", "libx264", "-c:a", "ac3", str(plain))
    out = folder / "dvb.ts"
    with av.open(str(plain)) as src, av.open(str(out), "w", format="mpegts") as dst:
        video, audio = src.streams.video[0], src.streams.audio[0]
        copies = {video.index: dst.add_stream_from_template(video),
                  audio.index: dst.add_stream_from_template(audio)}
        # a stream without an encoder where PyAV has one (add_mux_stream), else dvbsub's, unused
        sub = dst.add_mux_stream("dvb_subtitle") if hasattr(dst, "add_mux_stream") \
            else dst.add_stream("dvbsub")
        sub.time_base = Fraction(1, 90000)
        sub.metadata["language"] = "deu"
        start = video.start_time * video.time_base
        pending = [(round((start + Fraction(t).limit_denominator(1000)) * 90000),
                    dvb_display_set(n, rect)) for n, (t, rect) in enumerate(SUBTITLE_SETS)]

        def mux_subtitles(until: float) -> None:
            while pending and pending[0][0] <= until:
                pts, data = pending.pop(0)
                packet = av.Packet(data)
                packet.stream, packet.time_base, packet.pts, packet.dts = sub, sub.time_base, pts, pts
                dst.mux(packet)
        for packet in src.demux(video, audio):
            if packet.dts is None:
                continue
            mux_subtitles(float(packet.dts * packet.time_base * 90000))
            packet.stream = copies[packet.stream.index]
            dst.mux(packet)
        mux_subtitles(float("inf"))
    return out


def pgs_display_set(pts: int, number: int, rect: Rect | None) -> bytes:
    """One PGS display set as a raw .sup holds it ("PG", pts, dts, then each segment): a
    presentation composition (0x16, epoch start) of object 0 at (x, y) in window 0 (0x17), a
    palette (0x14: entry 1), the object (0x15: run-length lines of w pixels of entry 1) and the
    end (0x80); or an empty composition, which clears the screen."""
    def seg(kind: int, data: bytes) -> bytes:
        return b"PG" + struct.pack(">IIBH", pts, pts, kind, len(data)) + data
    if rect is None:
        return (seg(0x16, struct.pack(">HHBHBBBB", 1920, 1080, 0x10, number, 0, 0, 0, 0))
                + seg(0x17, bytes([1, 0]) + struct.pack(">HHHH", 0, 0, 1, 1)) + seg(0x80, b""))
    x, y, w, h = rect
    rle = bytes([0, 0x80 | w, 1, 0, 0]) * h  # (w < 64) a run of w pixels of entry 1, end of line
    return (seg(0x16, struct.pack(">HHBHBBBB", 1920, 1080, 0x10, number, 0x80, 0, 0, 1)
                + struct.pack(">HBBHH", 0, 0, 0, x, y))
            + seg(0x17, bytes([1, 0]) + struct.pack(">HHHH", x, y, w, h))
            + seg(0x14, bytes([0, 0, 1, 200, 128, 128, 255]))
            + seg(0x15, struct.pack(">HBB", 0, 0, 0xC0) + (len(rle) + 4).to_bytes(3, "big")
                  + struct.pack(">HH", w, h) + rle)
            + seg(0x80, b""))


def pgs_clip(folder: Path) -> Path:
    """A Blu-ray stream: H.264 + AC-3 + PGS subtitles (a raw .sup written here) in .m2ts."""
    sup = folder / "subs.sup"
    sup.write_bytes(b"".join(pgs_display_set(round(t * 90000), n, rect)
                             for n, (t, rect) in enumerate(SUBTITLE_SETS)))
    out = folder / "pgs.m2ts"
    ffmpeg(*_V, *_A, "-i", str(sup), "-frames:v", "25", "-t", "1", *_AV, "-map", "2:s",
           "-c:v", "libx264", "-c:a", "ac3", "-c:s", "copy", "-mpegts_m2ts_mode", "1", str(out))
    return out


def bitmap_subtitles(path: Path) -> list[tuple[float, list[Rect]]]:
    """(time in s, [(x, y, w, h) of each bitmap rectangle]) of each subtitle the decoder
    gives, every pixel of which must be code 1."""
    found = []
    with av.open(str(path)) as container:
        stream = container.streams.subtitles[0]
        for packet in container.demux(stream):
            if packet.size == 0 or packet.pts is None:
                continue
            rects = []
            for sub in stream.decode(packet):
                assert sub.type == b"bitmap"
                pixels = np.frombuffer(bytes(sub.planes[0]), np.uint8)
                assert pixels.size == sub.width * sub.height and set(pixels.tolist()) == {1}
                rects.append((sub.x, sub.y, sub.width, sub.height))
            found.append((round(float(packet.pts * stream.time_base), 3), rects))
    return found


@pytest.mark.parametrize("suffix", [".ts", ".mkv"])
def test_dvb_subtitles_of_a_broadcast_recording_are_copied(tmp_path: Path, suffix: str) -> None:
    """MPEG-TS with H.264, AC-3 and DVB bitmap subtitles (two pictures, then a clear) upscaled
    to .ts and .mkv: the subtitle stream stays dvb_subtitle, its packets bit-identical, at
    their times, and still decodes to the same rectangles."""
    src = dvb_clip(tmp_path)
    start = round(decoded_times(src)[0], 3)  # (the subtitles were placed after the first frame)
    subs = bitmap_subtitles(src)  # the clip is real: FFmpeg decodes what was written
    assert [(round(t - start, 3), r) for t, r in subs if r] == \
        [(t, [rect]) for t, rect in SUBTITLE_SETS if rect]
    assert len(subs) == 3
    result = upscale_file(src, opts(tmp_path, f"up{suffix}", scale=2), bicubic)
    out = result.output
    assert result.frames == 25 and len(decoded_times(out)) == 25
    assert kinds(out) == [("video", "h264"), ("audio", "ac3"), ("subtitle", "dvb_subtitle")]
    for spec in ("s:0", "a:0"):
        assert packets_md5(out, spec) == packets_md5(src, spec), spec
    assert frame_times(out, "s:0") == pytest.approx(frame_times(src, "s:0"), abs=0.0005)
    assert frame_times(out, "s:0") == pytest.approx([start + t for t, _ in SUBTITLE_SETS], abs=0.0005)
    got = bitmap_subtitles(out)
    assert [r for _, r in got] == [r for _, r in subs]
    assert [t for t, _ in got] == pytest.approx([t for t, _ in subs], abs=0.0015)
    assert streams(out)[2]["tags"]["language"] == "deu"


def test_pgs_subtitles_of_a_blu_ray_stream_are_copied(tmp_path: Path) -> None:
    """.m2ts with H.264, AC-3 and PGS (HDMV presentation graphics; FFmpeg has no encoder for
    them) upscaled to .m2ts and .mkv: the subtitle stream stays hdmv_pgs_subtitle, its bytes
    identical, each display set at its time. (Matroska keeps a display set in one block, as
    FFmpeg's muxer merges its segments; a TS keeps one packet per segment.)"""
    src = pgs_clip(tmp_path)
    subs = bitmap_subtitles(src)
    assert [r for _, r in subs if r] == [[rect] for _, rect in SUBTITLE_SETS if rect]
    for suffix in (".m2ts", ".mkv"):
        out = upscale_file(src, opts(tmp_path, f"up{suffix}", scale=2), bicubic).output
        assert kinds(out) == [("video", "h264"), ("audio", "ac3"), ("subtitle", "hdmv_pgs_subtitle")]
        assert packets_md5(out, "s:0") == packets_md5(src, "s:0"), suffix
        times = frame_times(out, "s:0")
        want = frame_times(src, "s:0") if suffix == ".m2ts" else sorted(set(frame_times(src, "s:0")))
        assert times == pytest.approx(want, abs=0.0005), suffix
        assert [r for _, r in bitmap_subtitles(out) if r] == [r for _, r in subs if r], suffix


def damage(src: Path, dest: Path, first: int, count: int) -> Path:
    """Copy an MPEG-TS file with ``count`` 188-byte packets from ``first`` on overwritten by
    noise after their sync byte (what a bad antenna or a scratched disc does)."""
    data = bytearray(src.read_bytes())
    noise = bytes((i * 97 + 31) % 256 for i in range(187))
    for n in range(first, first + count):
        data[n * 188 + 1:(n + 1) * 188] = noise
    dest.write_bytes(bytes(data))
    return dest


def test_damaged_mpegts_is_upscaled_with_a_warning(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """40 of 250 TS packets of a 50-frame clip (25 fps) ruined: the frames that still decode
    are all upscaled at their times, the job succeeds, and the warning counts the frames that
    are gone (their packets lost: holes in the frame times, which a packet count cannot see).
    The same clip undamaged gets no such warning."""
    src = tmp_path / "long.ts"
    ffmpeg(*_V, *_A, "-frames:v", "50", "-t", "2", *_AV, "-c:v", "libx264", "-g", "5",
           "-bf", "0", "-c:a", "aac", str(src))
    bad = damage(src, tmp_path / "bad.ts", src.stat().st_size // 188 // 2, 40)
    with caplog.at_level(logging.WARNING, logger="mstgan_cli"):
        result = upscale_file(bad, opts(tmp_path, "bad_up.ts", scale=2, encode=FAST), bicubic)
    decodable = decoded_times(bad)
    assert 0 < len(decodable) < 50
    assert result.frames == len(decodable)
    assert decoded_times(result.output) == pytest.approx(decodable, abs=1e-6)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    counts = [re.search(r"(\d+) of (\d+) frames are missing \(lost", w) for w in warnings]
    said = [(int(m[1]), int(m[2])) for m in counts if m]
    assert said == [(50 - len(decodable), 50)], warnings
    assert result.bad_frames == 50 - len(decodable) and result.missing_frames == 0
    assert not any("concealed" in w for w in warnings), warnings
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mstgan_cli"):
        clean = upscale_file(src, opts(tmp_path, "clean_up.ts", scale=2, encode=FAST), bicubic)
    assert (clean.frames, clean.bad_frames, clean.missing_frames) == (50, 0, 0)
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def interlaced_clip(folder: Path) -> Path:
    """40 MPEG-2 pictures, each two fields woven from 50 fps motion (a pan of 3 pixels a field,
    so the fields comb), flagged top field first."""
    src = folder / "interlaced.mpg"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=50", "-frames:v", "40",
           "-vf", "scroll=horizontal=0.05,tinterlace=merge,setfield=tff", "-c:v", "mpeg2video", "-q:v", "2",
           "-flags", "+ilme+ildct", str(src))
    return src


def test_interlaced_source_is_detected_and_bwdif_keeps_frames_and_times(tmp_path: Path) -> None:
    """An interlaced MPEG-2 clip (fields woven from 50 fps motion) says so in its field order;
    deinterlacing in the decoder gives the same number of frames at the same times."""
    src = interlaced_clip(tmp_path)
    info = probe(src)
    assert info.video.interlaced and info.video.field_order == "tt"
    assert not probe(make("mov", tmp_path)).video.interlaced

    def decode(deinterlace: bool) -> tuple[list[int], np.ndarray]:
        colour = info.video.colour.resolved(info.video.height)
        with VideoDecoder(info, colour, deinterlace=deinterlace) as decoder:
            frames = list(decoder)
        return [f.pts for f in frames], np.stack([f.rgb for f in frames]).astype(np.int16)

    woven_pts, woven = decode(False)
    pts, frames = decode(True)
    assert len(pts) == 40 and pts == woven_pts
    assert np.abs(frames - woven).mean() > 0.2  # lines were interpolated, not passed through


def _combing(path: Path, step: int = 2) -> float:
    """How much lines one source line apart (``step`` output lines, the upscale factor) differ,
    against lines two source lines apart: woven fields of moving pictures comb (odd lines from
    another instant), deinterlaced frames do not."""
    with av.open(str(path)) as container:
        y = np.stack([f.to_ndarray(format="gray").astype(np.float64)
                      for f in container.decode(video=0)])
    s, n = step, y.shape[1]
    near = np.abs(y[:, s:n - s] - (y[:, :n - 2 * s] + y[:, 2 * s:]) / 2).mean()
    far = np.abs(y[:, 2 * s:n - 2 * s] - (y[:, :n - 4 * s] + y[:, 4 * s:]) / 2).mean()
    return float(near / far)


def test_deinterlace_auto_off_and_bwdif_from_the_command_line(tmp_path: Path) -> None:
    """--deinterlace auto weaves the fields of a flagged source (saying so once), off keeps them
    (with a warning), bwdif also does an unflagged source; every output keeps all 40 frames."""
    src = interlaced_clip(tmp_path)
    runner = CliRunner()

    def run(mode: str | None, source: Path = src) -> tuple[Path, str]:
        out = tmp_path / f"{source.stem}-{mode}.mkv"
        args = ["upscale", str(source), "-o", str(out), "--scale", "2", "-m", "bicubic",
                "--preset", "ultrafast"] + ([] if mode is None else ["--deinterlace", mode])
        result = runner.invoke(cli.app, args)
        assert result.exit_code == 0, result.output
        assert len(decoded_times(out)) == len(decoded_times(source))
        return out, " ".join(result.output.split())  # (rich wraps lines)

    auto, said = run(None)
    assert said.count("interlaced (top field first): deinterlacing with bwdif") == 1, said
    off, said_off = run("off")
    assert "--deinterlace off" in said_off and "deinterlacing with" not in said_off
    assert _combing(auto) < 0.8 * _combing(off), (_combing(auto), _combing(off))
    assert decoded_times(auto) == decoded_times(off)
    # a source that does not say it is interlaced: auto leaves it, bwdif deinterlaces anyway
    plain = tmp_path / "unflagged.mkv"
    ffmpeg("-i", str(src), "-vf", "setfield=prog", "-c:v", "ffv1", str(plain))
    assert not probe(plain).video.interlaced
    left, said_plain = run("auto", plain)
    forced, _ = run("bwdif", plain)
    assert "interlaced" not in said_plain
    assert _combing(forced) < 0.8 * _combing(left)
    bad = runner.invoke(cli.app, ["upscale", str(src), "--deinterlace", "yadif"])
    assert bad.exit_code == 64 and "yadif" in bad.output
