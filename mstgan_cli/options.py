"""What a user can ask for: frozen option objects the CLI builds and the library consumes."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from fractions import Fraction
from pathlib import Path

DEFAULT_MODEL = "mstgan"
MODEL_SCALES = (2, 4)  # the factors shipped models come in; --target picks among these
STREAM_FORMATS = ("matroska", "nut", "mpegts", "mp4", "yuv4mpegpipe")  # for -o - (stdout)


class Precision(str, Enum):
    """Arithmetic the model runs in. ``auto`` lets the runtime pick the fastest safe one."""

    AUTO = "auto"
    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"
    INT8 = "int8"


class Deinterlace(str, Enum):
    """What to do with interlaced pictures (two fields woven into one frame: DVD, broadcast).

    ``auto`` weaves the fields of pictures the stream flags interlaced into full frames with
    ``bwdif`` and passes progressive ones as they are; ``bwdif`` deinterlaces every picture,
    flagged or not (for sources that are interlaced but say they are not); ``off`` upscales each
    picture as it is stored, fields and all (with a warning on a source flagged interlaced).
    The frame count and every frame's time stay those of the stored pictures."""

    AUTO = "auto"
    OFF = "off"
    BWDIF = "bwdif"


class Backend(str, Enum):
    """What runs the model: PyTorch as written, Inductor (ahead-of-time packages on the CPU,
    torch.compile on CUDA), or TensorRT (CUDA, an extra).
    ``auto`` picks the fastest one available for the device and precision."""

    AUTO = "auto"
    EAGER = "eager"
    COMPILE = "compile"
    TENSORRT = "tensorrt"


def parse_device(text: str) -> str:
    """Validate a device spelling: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``. Returns it lower-cased."""
    value = text.strip().lower()
    if value in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", value):
        return value
    raise ValueError(f"unknown device {text!r}; use auto, cpu, cuda or cuda:N")


def parse_fps(text: str) -> Fraction:
    """A frame rate: ``25``, ``23.976``, ``24000/1001`` or ``30000:1001``, above 0 and at most
    1000. Decimals are taken as written (``29.97`` is 2997/100; give ``30000/1001`` for NTSC)."""
    value = text.strip()
    try:
        rate = Fraction(value.replace(":", "/"))
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"frame rate {text!r}: give a number such as 25, 23.976 or 24000/1001") from None
    if not 0 < rate <= 1000:
        raise ValueError(f"frame rate {text!r}: must be above 0 and at most 1000")
    return rate


_NAMED_TARGETS = {
    "720p": (1280, 720), "hd": (1280, 720), "1080p": (1920, 1080), "fhd": (1920, 1080),
    "1440p": (2560, 1440), "qhd": (2560, 1440), "2160p": (3840, 2160), "4k": (3840, 2160),
    "uhd": (3840, 2160), "4320p": (7680, 4320), "8k": (7680, 4320),
}


def _even(x: float) -> int:
    return max(2, 2 * round(x / 2))


@dataclass(frozen=True)
class Target:
    """A frame size to fit the video into (aspect ratio kept).

    Named targets (``2160p``, ``4k``...) follow the video's orientation: a portrait video aims at
    2160x3840. An explicit ``WxH`` is taken literally.
    """

    width: int
    height: int
    label: str
    follow_orientation: bool = True

    @classmethod
    def parse(cls, text: str) -> Target:
        """``720p|1080p|1440p|2160p|4k|8k|4320p`` or ``WxH`` (e.g. ``2560x1080``)."""
        key = text.strip().lower()
        if key in _NAMED_TARGETS:
            w, h = _NAMED_TARGETS[key]
            return cls(w, h, f"{h}p")
        m = re.fullmatch(r"(\d+)\s*[x:*]\s*(\d+)", key)
        if m and int(m.group(1)) >= 2 and int(m.group(2)) >= 2:
            return cls(int(m.group(1)), int(m.group(2)), f"{m.group(1)}x{m.group(2)}", False)
        if m:  # a WxH, but not a frame size
            raise ValueError(f"target {text.strip()!r}: width and height must each be at least 2 pixels")
        raise ValueError(f"unknown target {text!r}; use 720p, 1080p, 1440p, 2160p, 4k, 8k or WxH")

    def fit(self, width: float, height: float) -> tuple[int, int] | None:
        """Largest even (W, H) with the aspect of ``width x height`` inside the target box, or
        None when the video already reaches the box (nothing to upscale)."""
        tw, th = self.width, self.height
        if self.follow_orientation and height > width and tw > th:
            tw, th = th, tw
        s = min(tw / width, th / height)
        if s <= 1.0:
            return None
        return min(_even(width * s), tw - tw % 2), min(_even(height * s), th - th % 2)


DEFAULT_TARGET = Target(3840, 2160, "2160p")


@dataclass(frozen=True)
class EncodeSettings:
    """How the upscaled video is encoded. ``None`` means "pick a good default for the container"."""

    codec: str | None = None       # encoder name or alias: h264, hevc, av1, vp9, ffv1, libx264, ...
    crf: int | None = None         # constant-quality level (lower is better)
    preset: str | None = None      # encoder speed preset (e.g. x264's "slow")
    pix_fmt: str | None = None     # e.g. yuv420p, yuv420p10le, yuv444p
    lossless: bool = False         # FFV1 in .mkv, or the codec's mathematically lossless mode


@dataclass(frozen=True)
class RuntimeTuning:
    """How the model runtime runs, not what it computes: the same output frames (up to rounding)
    either way. The library never changes these by itself; the ``mstgan`` command decides.

    ``keep_freed_memory``: on the CPU, tell glibc's malloc to keep freed blocks in the process
    (:mod:`mstgan_cli.runtime.memory`; process-wide, so off unless the caller asks; the command
    asks). ``gather_warps``: graphs compiled for the CPU warp by gathering pixels instead of
    ``grid_sample`` (faster). ``int8_bf16``: int8 convolutions whose output is only re-quantised
    write it in bf16 where the CPU computes in bf16 (faster). The last two are measurement
    switches, for benchmarks (``mstgan upscale --warps grid-sample --int8-activations fp32``, hidden
    options); they key the compiled packages.
    """

    keep_freed_memory: bool = False
    gather_warps: bool = True
    int8_bf16: bool = True


@dataclass(frozen=True)
class UpscaleOptions:
    """Everything :func:`mstgan_cli.job.upscale.upscale_file` needs besides the input path.

    Exactly one of ``scale`` and ``target`` drives the output size; with neither, the target is
    2160p (3840x2160).
    """

    output: Path | None = None
    scale: int | None = None
    target: Target | None = None
    model: str = DEFAULT_MODEL
    precision: Precision = Precision.AUTO
    backend: Backend = Backend.AUTO
    device: str = "auto"
    window: int | None = None      # frames the model sees at once (5 or 7); None = model default
    batch: int = 1                 # windows per model call
    tile: int | None = None        # tile edge in input pixels; None = whole frames
    encode: EncodeSettings = field(default_factory=EncodeSettings)
    overwrite: bool = False
    segment_seconds: float = 60.0  # long files go in resumable segments of about this length; 0: never
    stream_format: str = "matroska"  # what ``output == "-"`` writes: matroska, nut, mpegts, mp4, yuv4mpegpipe
    tuning: RuntimeTuning = field(default_factory=RuntimeTuning)  # how, not what (not in the settings hash)
    deinterlace: Deinterlace = Deinterlace.AUTO  # interlaced pictures: auto, off, bwdif
    fps: Fraction | None = None    # frame rate of an image sequence input; None: 25

    def __post_init__(self) -> None:
        if not isinstance(self.deinterlace, Deinterlace):  # a plain string from Python callers
            try:
                object.__setattr__(self, "deinterlace", Deinterlace(str(self.deinterlace).lower()))
            except ValueError:
                raise ValueError(f"unknown deinterlace mode {self.deinterlace!r}; use auto, off "
                                 "or bwdif") from None
        if self.fps is not None and not isinstance(self.fps, Fraction):  # 25, "24000/1001"
            object.__setattr__(self, "fps", parse_fps(str(self.fps)))
        if self.fps is not None and not 0 < self.fps <= 1000:
            raise ValueError("the frame rate must be above 0 and at most 1000")
        if self.segment_seconds < 0:
            raise ValueError("segment length must be 0 (no segments) or more seconds")
        if self.stream_format not in STREAM_FORMATS:
            raise ValueError(f"unknown stream format {self.stream_format!r}; use "
                             f"{', '.join(STREAM_FORMATS)}")
        if self.scale is not None and self.target is not None:
            raise ValueError("give either a scale or a target, not both")
        if self.scale is not None and self.scale < 1:
            raise ValueError("scale must be a positive integer")
        if self.window is not None and self.window not in (5, 7):
            raise ValueError("window must be 5 or 7")
        if self.batch < 1:
            raise ValueError("batch must be at least 1")
        if self.tile is not None and self.tile < 16:
            raise ValueError("tile must be at least 16 pixels")

    @property
    def effective_target(self) -> Target | None:
        return None if self.scale is not None else (self.target or DEFAULT_TARGET)

    @property
    def size_label(self) -> str:
        """Suffix for the default output name: ``2160p``, ``x2``, ``2560x1080``."""
        target = self.effective_target
        return f"x{self.scale}" if target is None else target.label
