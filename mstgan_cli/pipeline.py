"""The upscale loop: decode -> upscale -> encode as three overlapping stages, then the final mux.

Threads and bounded queues: a decoder thread feeds low-resolution frames, the calling thread runs
the model (so Ctrl-C lands there), an encoder thread resizes, converts and encodes. Memory stays
bounded by the queue sizes; no frame touches the disk. The output is written under a hidden
temporary name in the output folder and renamed into place only when complete; on any error or
interrupt the temporary files are removed.
"""
from __future__ import annotations

import logging
import os
import queue
import secrets
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import InputError, ModelError, MstganError, OutputError
from .media.probe import MediaInfo, count_packets, probe
from .media.decode import VideoDecoder
from .media.encode import EncoderPlan, VideoEncoder, plan_encoder
from .media.remux import remux
from .options import UpscaleOptions
from .plan import (SizePlan, UpscalerFactory, check_model_scale, check_output, default_output,
                   frame_budget, is_stdout, output_colour, plan_size, upscaler_factory)
from .runtime.upscaler import FrameUpscaler

log = logging.getLogger("mstgan_cli")


@dataclass(frozen=True)
class Progress:
    """A progress report. ``stage`` is "upscaling" (frames counting up) or "muxing"."""

    stage: str
    frames: int
    total: int | None
    elapsed: float

    @property
    def fps(self) -> float:
        return self.frames / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the average rate so far; None when unknown."""
        if not self.total or self.frames <= 0:
            return None
        return max(0.0, (self.total - self.frames) / self.fps) if self.fps else None


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class UpscaleResult:
    """What happened. ``skipped`` holds the reason when no work was needed (output then None)."""

    input: Path
    output: Path | None
    frames: int = 0
    bad_frames: int = 0
    size: tuple[int, int] | None = None
    model_scale: int | None = None
    seconds: float = 0.0
    skipped: str | None = None


_END = object()


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _put(q: queue.Queue[object], item: object, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue[object], stop: threading.Event) -> object:
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set():
                return _END


# Conversions go through numpy: on the CPU it is several times faster than torch for these
# layout changes (HWC <-> CHW) and dtype casts, and it releases the GIL while it works.
def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8/uint16 RGB -> (3, H, W) float32 in [0, 1]."""
    chw = rgb.transpose(2, 0, 1).astype(np.float32)
    chw *= 1.0 / (65535.0 if rgb.dtype == np.uint16 else 255.0)
    return torch.from_numpy(chw)


def to_array(frame: torch.Tensor, deep: bool) -> np.ndarray:
    """(3, H, W) float RGB in [0, 1] -> (H, W, 3) uint16 (``deep``) or uint8, rounded."""
    peak = 65535.0 if deep else 255.0
    chw = frame.detach().to("cpu", torch.float32).numpy() * peak
    chw += 0.5
    np.clip(chw, 0.0, peak, out=chw)
    return np.ascontiguousarray(chw.astype(np.uint16 if deep else np.uint8).transpose(1, 2, 0))


class _Run:
    """One upscale in flight: owns the threads, queues and temporary files."""

    def __init__(self, info: MediaInfo, options: UpscaleOptions, output: Path,
                 size: SizePlan, enc_plan: EncoderPlan, progress: ProgressCallback | None) -> None:
        self.info, self.options, self.output, self.size = info, options, output, size
        self.enc_plan = enc_plan
        self.progress = progress
        token = f"mstgan-{os.getpid()}-{secrets.token_hex(3)}"
        self.tmpdir: Path | None = None
        if is_stdout(output):  # nothing is written beside a pipe; the video waits in a temp folder
            self.tmpdir = Path(tempfile.mkdtemp(prefix=f"{token}-"))
            self.video_tmp = self.tmpdir / "video.mkv"
            self.part_tmp = self.tmpdir / "unused.mkv"
        else:
            self.video_tmp = output.with_name(f".{output.stem}.{token}.video{output.suffix}")
            self.part_tmp = output.with_name(f".{output.stem}.{token}.part{output.suffix}")
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.encoder: VideoEncoder | None = None
        self.frames_out = 0
        self.started = time.monotonic()
        self._last_report = 0.0

    # Temporary files ---------------------------------------------------------------------------
    def reserve(self) -> None:
        """Create the temporary names now, so an unwritable folder fails before any work."""
        for path in (self.video_tmp, self.part_tmp):
            try:
                with open(path, "xb"):
                    pass
            except OSError as exc:
                raise OutputError(f"cannot write in {self.output.parent}: {exc.strerror or exc}") from exc

    def cleanup(self) -> None:
        for path in (self.video_tmp, self.part_tmp):
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("could not remove temporary file %s: %s", path, exc)
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    def report(self, stage: str, force: bool = False) -> None:
        now = time.monotonic()
        if self.progress and (force or now - self._last_report >= 0.1):
            self._last_report = now
            self.progress(Progress(stage, self.frames_out, self.info.video.estimated_frames,
                                   now - self.started))

    # Stages ------------------------------------------------------------------------------------
    def decode_stage(self, decoder: VideoDecoder, q: queue.Queue[object]) -> None:
        try:
            for frame in decoder:
                if not _put(q, (to_tensor(frame.rgb), frame.pts), self.stop):
                    return
            _put(q, _END, self.stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            _put(q, _Failed(exc), self.stop)

    def encode_stage(self, decoder: VideoDecoder, q: queue.Queue[object], src_size: tuple[int, int]) -> None:
        try:
            while not self.stop.is_set():
                item = _get(q, self.stop)
                if item is _END:
                    break
                frame, pts = item  # type: ignore[misc]
                if self.encoder is None:
                    self.encoder = self._open_encoder(decoder, src_size)
                self.encoder.write(to_array(frame, decoder.deep), pts)
                self.frames_out += 1
                self.report("upscaling")
            if self.encoder is not None and not self.stop.is_set():
                self.encoder.close()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self.errors.append(exc)
            self.stop.set()

    def _open_encoder(self, decoder: VideoDecoder, src_size: tuple[int, int]) -> VideoEncoder:
        v = self.info.video
        colour = output_colour(v.colour, self.size.size[1])
        plan = self.enc_plan
        log.info("encoding %dx%d %s %s (%s, %s range)", *self.size.size, plan.codec, plan.pix_fmt,
                 colour.matrix, colour.range)
        return VideoEncoder(self.video_tmp, plan, size=self.size.size, src_size=src_size,
                            time_base=decoder.time_base, rate=v.avg_rate, colour=colour,
                            sar=self.size.sar)

    def upscale(self, decoder: VideoDecoder, upscaler: FrameUpscaler) -> None:
        """Run the three stages to the end; re-raise the first failure of any stage here."""
        up_w, up_h = self.info.video.upright_size
        scale = int(upscaler.scale)
        src_size = (up_w * scale, up_h * scale)
        in_q: queue.Queue[object] = queue.Queue(maxsize=frame_budget(up_w, up_h))
        out_q: queue.Queue[object] = queue.Queue(maxsize=frame_budget(*src_size))
        pts_fifo: deque[int] = deque()
        threads = [threading.Thread(target=self.decode_stage, args=(decoder, in_q),
                                    name="mstgan-decode", daemon=True),
                   threading.Thread(target=self.encode_stage, args=(decoder, out_q, src_size),
                                    name="mstgan-encode", daemon=True)]

        def frames() -> Iterator[torch.Tensor]:
            while True:
                item = _get(in_q, self.stop)
                if item is _END:
                    return
                if isinstance(item, _Failed):
                    raise item.exc
                tensor, pts = item  # type: ignore[misc]
                pts_fifo.append(pts)
                yield tensor

        for t in threads:
            t.start()
        ok = False
        try:
            for out in upscaler.process(frames()):
                if tuple(out.shape) != (3, src_size[1], src_size[0]):
                    raise ModelError(f"the model returned a {tuple(out.shape)} frame, expected "
                                     f"(3, {src_size[1]}, {src_size[0]})")
                if not pts_fifo:
                    raise ModelError("the model returned more frames than it was given")
                if not _put(out_q, (out, pts_fifo.popleft()), self.stop):
                    break  # the encoder failed; its error is raised below
            else:
                if not self.stop.is_set():  # (if set, the encoder failed: report that instead)
                    if pts_fifo:
                        raise ModelError(f"the model held back {len(pts_fifo)} frame(s) at the end")
                    _put(out_q, _END, self.stop)
                    threads[1].join()
                    ok = not self.errors
        finally:
            if not ok:
                self.stop.set()
                decoder.kill()
            for t in threads:
                t.join(timeout=60)
            if not ok and self.encoder is not None:
                self.encoder.abort()
        if self.errors:
            raise self.errors[0]
        if not ok:
            raise MstganError("the upscale stopped before the end of the video")


def _bad_frames(info: MediaInfo, decoder: VideoDecoder) -> int:
    """Frames the decoder could not deliver; warns about them (counted only after errors)."""
    if decoder.decode_errors == 0:
        return 0
    expected = count_packets(info.path, info.video.index) or decoder.frames
    bad = max(0, expected - decoder.frames)
    if bad:
        log.warning("%d of %d frames could not be decoded and were skipped (%d decoder errors)",
                    bad, expected, decoder.decode_errors)
    else:
        log.warning("the decoder reported %d errors; damaged frames were concealed, none dropped",
                    decoder.decode_errors)
    return bad


def upscale_file(input_path: str | os.PathLike[str], options: UpscaleOptions | None = None,
                 factory: UpscalerFactory | None = None,
                 progress: ProgressCallback | None = None) -> UpscaleResult:
    """Upscale one video file and write ``options.output`` (default ``<stem>_2160p.<ext>``).

    ``factory`` builds the model for a requested factor (default: :func:`upscaler_factory` of the
    options, i.e. a baseline by name or the runtime's ``load_upscaler``). ``progress`` is called
    from a worker thread with :class:`Progress` reports. Raises the typed errors of
    :mod:`mstgan_cli.errors`; KeyboardInterrupt propagates after the temporary files are removed.
    """
    started = time.monotonic()
    options = options or UpscaleOptions()
    src = Path(input_path)
    info = probe(src)
    size = plan_size(info, options)
    if size is None:
        w, h = info.video.display_size
        return UpscaleResult(src, None, skipped=f"{src.name} is {w}x{h}, already at or above the "
                                                f"{options.size_label} target; nothing to do")
    output = options.output or default_output(src, options)
    check_output(src, output, options.overwrite)
    suffix = ".mkv" if is_stdout(output) else output.suffix
    enc_plan = plan_encoder(options.encode, suffix, info.video.bit_depth > 8)  # fails early
    upscaler = (factory or upscaler_factory(options))(size.requested_scale)
    check_model_scale(size, upscaler, options)
    log.info("%s: %dx%d -> %dx%d, model x%d", src.name, *info.video.display_size, *size.size,
             upscaler.scale)
    run = _Run(info, options, output, size, enc_plan, progress)
    run.reserve()
    try:
        decoder = VideoDecoder(info, info.video.colour.resolved(info.video.height))
        with decoder:
            run.upscale(decoder, upscaler)
        if decoder.frames == 0:
            raise InputError(f"no frames could be decoded from {src}")
        bad = _bad_frames(info, decoder)
        if run.encoder is not None and run.encoder.nudged:
            log.warning("%d frames had non-increasing timestamps and were moved one tick later",
                        run.encoder.nudged)
        run.report("muxing", force=True)
        if is_stdout(output):
            remux(run.video_tmp, info, output)
        else:
            remux(run.video_tmp, info, run.part_tmp)
            os.replace(run.part_tmp, output)
    finally:
        run.cleanup()
    return UpscaleResult(src, output, decoder.frames, bad, size.size, int(upscaler.scale),
                         time.monotonic() - started)
