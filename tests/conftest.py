"""Small clips made with FFmpeg once per test session, and helpers to inspect outputs."""
from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch

from mstgan_cli.media.colour import MATRIX_IDS, RANGE_IDS
from mstgan_cli.media.ffmpeg import find_ffmpeg
from mstgan_cli.media.libav import describe, packets
from mstgan_cli.options import EncodeSettings, Target, UpscaleOptions
from mstgan_cli.runtime.upscaler import InterpolationUpscaler

FAST = EncodeSettings(preset="ultrafast")


def ffmpeg(*args: str, stdin: bytes | None = None) -> bytes:
    """Run the ffmpeg binary the library would use; return stdout, fail the test on error."""
    proc = subprocess.run([find_ffmpeg().ffmpeg, "-hide_banner", "-nostdin", "-v", "error", "-y", *args],
                          input=stdin, capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout


def ffprobe(path: Path, *args: str) -> dict[str, Any]:
    """What ``ffprobe -show_format -show_streams -show_chapters`` prints, in the same keys (read
    in process by mstgan_cli.media.libav: the bundled FFmpeg ships no ffprobe). ``args`` are
    accepted for readability and ignored: everything is always shown."""
    return describe("file:" + str(path))


def streams(path: Path) -> list[dict[str, Any]]:
    return ffprobe(path, "-show_streams")["streams"]


def video_stream(path: Path) -> dict[str, Any]:
    return next(s for s in streams(path) if s["codec_type"] == "video"
                and not s.get("disposition", {}).get("attached_pic"))


def frame_times(path: Path, stream: str = "v:0") -> list[float]:
    """Presentation times (s) of every packet of a stream (``v:0``, ``a:1``, ...), sorted."""
    kind, _, nth = stream.partition(":")
    kinds = {"v": "video", "a": "audio", "s": "subtitle", "d": "data"}
    matching = [s for s in streams(path) if s["codec_type"] == kinds[kind]]
    chosen = matching[int(nth or 0)]
    tb = Fraction(chosen["time_base"])
    return sorted(round(float(pts * tb), 4)
                  for pts, _, _ in packets("file:" + str(path), chosen["index"]) if pts is not None)


def packets_md5(path: Path, spec: str) -> str:
    return ffmpeg("-i", str(path), "-map", f"0:{spec}", "-c", "copy", "-f", "md5", "-").decode().strip()


def read_yuv(path: Path) -> np.ndarray:
    """The stored planes of every frame (4:2:0: Y then U then V), flat, without any conversion."""
    with av.open(str(path)) as container:
        return np.concatenate([f.to_ndarray().ravel() for f in container.decode(video=0)])


def opts(tmp: Path, name: str, **kw: Any) -> UpscaleOptions:
    """Options for a quick test run: bicubic, 720p unless told, ultrafast x264, into tmp/name."""
    kw.setdefault("target", Target.parse("720p") if "scale" not in kw else None)
    kw.setdefault("encode", FAST)
    kw.setdefault("model", "bicubic")
    return UpscaleOptions(output=tmp / name, **kw)


def bicubic(scale: int) -> InterpolationUpscaler:
    return InterpolationUpscaler(scale, "bicubic")


class LookAhead:
    """A fake multi-frame model: holds back ``delay`` frames like a sliding window, then flushes."""

    def __init__(self, scale: int, delay: int = 3) -> None:
        self.scale, self.delay = scale, delay
        self.inner = InterpolationUpscaler(scale, "bilinear")

    def process(self, frames: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
        held: list[torch.Tensor] = []
        for f in frames:
            held.append(f)
            if len(held) > self.delay:
                yield from self.inner.process([held.pop(0)])
        yield from self.inner.process(held)


class Clips:
    """Builds each named clip once per session under a temporary folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._made: dict[str, Path] = {}

    def get(self, name: str) -> Path:
        if name not in self._made:
            self._made[name] = getattr(self, f"_{name}")(self.root)
        return self._made[name]

    # Each builder returns the clip's path. Sizes are tiny and clips short so runs take seconds.
    def _mp4(self, d: Path) -> Path:
        out = d / "clip.mp4"
        ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-f", "lavfi",
               "-i", "sine=frequency=440:sample_rate=48000", "-frames:v", "12", "-t", "0.48",
               "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-metadata", "title=Test clip",
               "-metadata:s:a:0", "language=eng", str(out))
        return out

    def _mkv_rich(self, d: Path) -> Path:
        srt = d / "subs.srt"
        srt.write_text("1\n00:00:00,000 --> 00:00:00,200\nHello\n\n2\n00:00:00,200 --> 00:00:00,400\nWorld\n")
        meta = d / "chapters.txt"
        meta.write_text(";FFMETADATA1\ntitle=Rich clip\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=200\n"
                        "title=One\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=200\nEND=400\ntitle=Two\n")
        note = d / "note.txt"
        note.write_text("an attachment")
        out = d / "rich.mkv"
        ffmpeg("-f", "lavfi", "-i", "mandelbrot=size=90x66:rate=25", "-f", "lavfi",
               "-i", "sine=frequency=300", "-i", str(srt), "-i", str(meta),
               "-map", "0:v", "-map", "1:a", "-map", "2:s", "-map_metadata", "3", "-map_chapters", "3",
               "-frames:v", "10", "-t", "0.4", "-c:v", "libx264", "-pix_fmt", "yuv420p",
               "-c:a", "libvorbis", "-c:s", "srt", "-metadata:s:a:0", "language=fra",
               "-metadata:s:s:0", "language=deu", "-metadata:s:v:0", "title=Main video",
               "-attach", str(note), "-metadata:s:t:0", "mimetype=text/plain", str(out))
        return out

    def _vfr(self, d: Path) -> Path:
        out = d / "vfr.mkv"
        ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-frames:v", "12",
               "-vf", "setpts='(0.04*N+0.013*N*N)/TB'", "-fps_mode", "passthrough",
               "-c:v", "libx264", "-pix_fmt", "yuv420p", str(out))
        return out

    def _ten_bit(self, d: Path) -> Path:
        out = d / "tenbit.mkv"
        ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-frames:v", "8",
               "-pix_fmt", "yuv420p10le", "-c:v", "libx265", "-x265-params", "log-level=error",
               # tag the frames (not the encoder): FFmpeg 7.1+ would convert to output-option tags
               "-vf", "setparams=color_primaries=bt2020:color_trc=smpte2084:colorspace=bt2020nc:range=tv",
               str(out))
        return out

    def _rotated(self, d: Path) -> Path:
        plain = d / "plain_for_rotation.mp4"
        ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-frames:v", "8",
               "-c:v", "libx264", "-pix_fmt", "yuv420p", str(plain))
        out = d / "rotated.mp4"
        ffmpeg("-display_rotation", "90", "-i", str(plain), "-c", "copy", str(out))
        return out

    def _png_mkv(self, d: Path) -> Path:
        out = d / "frames_png.mkv"
        ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-frames:v", "12", "-c:v", "png", str(out))
        return out

    def _damaged(self, d: Path) -> Path:
        return _corrupt_png_frames(self.get("png_mkv"), d / "damaged.mkv", frames=(5, 6))

    def _undecodable(self, d: Path) -> Path:
        return _corrupt_png_frames(self.get("png_mkv"), d / "undecodable.mkv", frames=range(12))

    def _audio_only(self, d: Path) -> Path:
        out = d / "audio.m4a"
        ffmpeg("-f", "lavfi", "-i", "sine=frequency=440", "-t", "0.3", "-c:a", "aac", str(out))
        return out

    def _text(self, d: Path) -> Path:
        out = d / "notes.mp4"
        out.write_text("this is not a video\n" * 20)
        return out

    def _big(self, d: Path) -> Path:
        out = d / "big.mp4"
        ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-frames:v", "200",
               "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(out))
        return out


def _corrupt_png_frames(src: Path, out: Path, frames: Iterable[int]) -> Path:
    data = bytearray(src.read_bytes())
    starts = [m.start() for m in re.finditer(re.escape(b"\x89PNG\r\n\x1a\n"), bytes(data))]
    for i in frames:  # zero the IHDR width: the packet stays, the decoder rejects the picture
        ihdr = data.index(b"IHDR", starts[i])
        data[ihdr + 4:ihdr + 8] = b"\x00\x00\x00\x00"
    out.write_bytes(bytes(data))
    return out


def flat_yuv_clip(path: Path, yuv: tuple[int, int, int], *, matrix: str, range_: str,
                  deep: bool = False, frames: int = 3, size: tuple[int, int] = (32, 24)) -> Path:
    """A losslessly coded (FFV1) clip whose every pixel is the YCbCr triple ``yuv``, tagged with
    ``matrix``/``range_``. Written with PyAV: the FFmpeg CLI (7.1+) would convert instead of tag."""
    w, h = size
    dtype, pix_fmt = (np.uint16, "yuv420p10le") if deep else (np.uint8, "yuv420p")
    planes = np.concatenate([np.full(h * w, yuv[0], dtype), np.full(h * w // 4, yuv[1], dtype),
                             np.full(h * w // 4, yuv[2], dtype)]).reshape(h * 3 // 2, w)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        stream.codec_context.colorspace = MATRIX_IDS[matrix]
        stream.codec_context.color_range = RANGE_IDS[range_]
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(planes, format=pix_fmt)
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Clips:
    return Clips(tmp_path_factory.mktemp("clips"))


@pytest.fixture
def clip(clips: Clips) -> Callable[[str], Path]:
    return clips.get


def leftovers(folder: Path) -> list[str]:
    """Temporary files the pipeline would have left behind."""
    return sorted(p.name for p in folder.iterdir() if ".mstgan-" in p.name)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` (over ~30 s, e.g. torch.compile builds) run only with MSTGAN_SLOW=1."""
    import os

    if os.environ.get("MSTGAN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow; set MSTGAN_SLOW=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread for a module: its tensors are tiny, and on a busy machine extra threads
    only wait (use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The tests' own mstgan cache (int8 calibrations, compiled packages, engines): a test never
    reads what a user's earlier run left in ~/.cache/mstgan, nor leaves anything there."""
    import os

    path = tmp_path_factory.mktemp("mstgan-cache")
    old = os.environ.get("MSTGAN_CACHE_DIR")
    os.environ["MSTGAN_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("MSTGAN_CACHE_DIR", None)
    else:
        os.environ["MSTGAN_CACHE_DIR"] = old
