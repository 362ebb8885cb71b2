"""The upscale of one input: plan, run the stages (in one pass or in resumable segments), mux,
check, rename.

The output is written under a hidden temporary name in the output folder, checked against the
input (:mod:`mstgan_cli.job.integrity`) and renamed into place only when complete; on any error or
interrupt the temporary files are removed (finished segments of a long file stay, to resume).
Input ``-`` reads a stream from stdin, output ``-`` writes one to stdout (:mod:`mstgan_cli.job.pipes`).
An image sequence (``frames/%06d.png``, :mod:`mstgan_cli.media.sequence`) may be the input (at
``options.fps``), the output (one picture per frame, collected in a hidden staging folder and
moved into place once counted), or both; such jobs run in one pass (no segments).
"""
from __future__ import annotations

import fcntl
import logging
import os
import re
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import torch

from . import segments as seg
from ..errors import InputError, OutputError
from ..locks import is_locked
from .identity import run_key
from .integrity import Expected, IntegrityReport, verify, verify_encoded, verify_pictures
from ..media.decode import VideoDecoder
from ..media.encode import EncoderPlan, VideoEncoder, plan_encoder
from ..media.images import ImageEncoder, picture_colour, plan_image_encoder
from ..media.join import join_segments
from ..media.probe import MediaInfo, StreamInfo, count_packets, packet_index, probe
from ..media.remux import remux, stream_args
from ..media.sequence import Staging, parse_pattern, remove_stale_staging
from ..options import Deinterlace, UpscaleOptions
from .pipes import LiveStdout, StdinSource, intermediate_suffix, side_streams, stream_encode
from .plan import (SizePlan, UpscalerFactory, check_model_scale, check_output, default_output,
                   is_stdout, output_colour, plan_size, upscaler_factory)
from .plan import ResampleOnly
from ..runtime.upscaler import FrameUpscaler, InterpolationUpscaler
from .pipeline import LowResFrame, Pipeline, to_array, to_tensor

log = logging.getLogger("mstgan_cli")
# one line per job naming the input, output size and model: the command shows it at its default
# verbosity (this logger's level INFO), where the rest of the library's info lines need -v
job_log = logging.getLogger("mstgan_cli.job")

__all__ = ["Progress", "ProgressCallback", "UpscaleResult", "to_array", "to_tensor", "upscale_file"]


@dataclass(frozen=True)
class Progress:
    """A progress report. ``stage`` is "upscaling" (frames counting up), "muxing" ("checking"
    for pictures), then "done"."""

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
    """What happened. ``skipped`` holds the reason when no work was needed (output then None).
    ``segments`` is the number of segments (0: one pass), ``resumed`` how many of them an
    earlier run had finished; ``integrity`` the passed check of the output; ``missing_frames``
    how many frames a truncated input's container promised beyond its end."""

    input: Path
    output: Path | None
    frames: int = 0
    bad_frames: int = 0
    size: tuple[int, int] | None = None
    model_scale: int | None = None
    seconds: float = 0.0
    skipped: str | None = None
    integrity: IntegrityReport | None = None
    segments: int = 0
    resumed: int = 0
    missing_frames: int = 0
    model: str | None = None  # the model that ran: "mstgan-x4-lossy", "bicubic", a checkpoint path


@dataclass
class _Pass:
    """What the stages delivered: the pts of every encoded frame, their time base, bad frames;
    ``truncated``: the demuxer said the input ends early."""

    pts: list[int]
    time_base: Fraction
    bad_frames: int = 0
    segments: int = 0
    resumed: int = 0
    work: seg.WorkFolder | None = None
    truncated: bool = False
    encoded: list[int] | None = None  # pts of the packets the encoder wrote (time_base units)
    numbers: list[int] | None = None  # of the pictures written, for an image sequence output


class _Job:
    """One upscale in flight: owns the temporary files and the progress reports."""

    def __init__(self, info: MediaInfo, options: UpscaleOptions, output: Path, size: SizePlan,
                 enc_plan: EncoderPlan, progress: ProgressCallback | None) -> None:
        self.info, self.options, self.output, self.size = info, options, output, size
        self.enc_plan = enc_plan
        self.progress = progress
        token = f"mstgan-{os.getpid()}-{secrets.token_hex(3)}"
        self.tmpdir: Path | None = None
        pattern = None if is_stdout(output) else parse_pattern(output)
        # an image sequence output: its pictures collect in a staging folder (nothing else is made)
        self.staging = Staging(pattern, token) if pattern is not None else None
        if self.staging is not None:
            self.video_tmp = self.staging.pattern.path(0)  # (unused: pictures have their own names)
            self.part_tmp = self.staging.path / "unused"
            self.side_tmp = self.staging.path / "unused.mkv"
        elif is_stdout(output):  # nothing is written beside a pipe; the video waits in a temp folder
            self.tmpdir = Path(tempfile.mkdtemp(prefix=f"{token}-"))
            self.video_tmp = self.tmpdir / f"video{intermediate_suffix(options.stream_format)}"
            self.part_tmp = self.tmpdir / "unused.mkv"
            self.side_tmp = self.tmpdir / "side.mkv"
        else:
            self.video_tmp = output.with_name(f".{output.stem}.{token}.video{output.suffix}")
            self.part_tmp = output.with_name(f".{output.stem}.{token}.part{output.suffix}")
            self.side_tmp = output.with_name(f".{output.stem}.{token}.side.mkv")
        self._beside = (self.video_tmp, self.part_tmp)
        self._locks: list[BinaryIO] = []
        self.frames_done = 0
        self.total = info.video.estimated_frames
        self.started = time.monotonic()
        self._last_report = 0.0
        self.announcement: str | None = None  # said once, when the first frame is there
        self.deinterlace: str | None = None  # what the decoder does to fields (deinterlace_mode)

    def reserve(self) -> None:
        """Create the temporary names now, so an unwritable folder fails before any work. Each
        is held locked (flock) while this job lives: a later run removes only files whose lock
        it can take, those of a job that was killed or crashed (:func:`remove_stale`). An image
        sequence output makes and locks its staging folder instead."""
        if self.staging is not None:
            self.staging.create()
            return
        self._unlock()
        for path in (self.video_tmp, self.part_tmp):
            try:
                handle = open(path, "xb")
            except OSError as exc:
                raise OutputError(f"cannot write in {self.output.parent}: {exc.strerror or exc}") from exc
            self._locks.append(handle)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # a file system without locks: the file still reserves the name
                pass

    def _unlock(self) -> None:
        for handle in self._locks:
            handle.close()
        self._locks = []

    def move_into(self, folder: Path | None) -> None:
        """Keep the temporary files in ``folder`` instead (None: back beside the output)."""
        for path in (self.video_tmp, self.part_tmp):
            path.unlink(missing_ok=True)
        if folder is None:
            self.video_tmp, self.part_tmp = self._beside
        else:
            self._beside = (self.video_tmp, self.part_tmp)
            self.video_tmp = folder / self.video_tmp.name.lstrip(".")
            self.part_tmp = folder / self.part_tmp.name.lstrip(".")
        self.reserve()

    def cleanup(self) -> None:
        if self.staging is not None:  # (gone already when the pictures were moved into place)
            self.staging.remove()
            return
        self._unlock()
        for path in (self.video_tmp, self.part_tmp, self.side_tmp):
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("could not remove temporary file %s: %s", path, exc)
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    def report(self, stage: str, frames: int = 0, force: bool = False) -> None:
        now = time.monotonic()
        if self.progress and (force or now - self._last_report >= 0.1):
            self._last_report = now
            self.progress(Progress(stage, self.frames_done + frames, self.total, now - self.started))

    def pipeline(self, upscaler: FrameUpscaler, decoder: VideoDecoder, path: Path) -> Pipeline:
        """The decode -> upscale -> encode pipeline for frames of ``decoder``, encoding into ``path``."""
        v = self.info.video

        def open_encoder(src_size: tuple[int, int]) -> VideoEncoder:
            if self.announcement:  # (an input with no frame is one error line, nothing else)
                job_log.info("%s", self.announcement)
                self.announcement = None
            plan = self.enc_plan
            if self.staging is not None:
                return self.picture_encoder(src_size, decoder.time_base)
            colour = output_colour(v.colour, self.size.size[1])
            log.info("encoding %dx%d %s %s (%s, %s range)", *self.size.size, plan.codec,
                     plan.pix_fmt, colour.matrix, colour.range)
            return VideoEncoder(path, plan, size=self.size.size, src_size=src_size,
                                time_base=decoder.time_base, rate=v.avg_rate, colour=colour,
                                sar=self.size.sar, threads=encoder_threads(upscaler, v.upright_size, self.size.size))
        return Pipeline(upscaler, v.upright_size, decoder.deep, open_encoder,
                      lambda n: self.report("upscaling", n))

    def picture_encoder(self, src_size: tuple[int, int], time_base: Fraction) -> ImageEncoder:
        """The encoder of an image sequence output: a sequence input's frame N is picture N
        (numbered from its pts), a video's frames are pictures 1, 2, 3, ... in order."""
        assert self.staging is not None
        v, seq, plan = self.info.video, self.info.sequence, self.enc_plan
        log.info("writing %dx%d %s pictures (%s) into %s", *self.size.size, plan.codec,
                 plan.pix_fmt, self.staging.target.text)
        return ImageEncoder(self.staging.pattern, plan, size=self.size.size, src_size=src_size,
                            time_base=time_base, colour=picture_colour(v.colour, plan.pix_fmt),
                            sar=self.size.sar, first=seq.start if seq else 1,
                            fps=seq.fps if seq else None)

    def decoder(self, **kwargs: object) -> VideoDecoder:
        return VideoDecoder(self.info, self.info.video.colour.resolved(self.info.video.height),
                            deinterlace=self.deinterlace, **kwargs)  # type: ignore[arg-type]


_FIELD_NAMES = {"tt": "top field first", "tb": "top field first", "bb": "bottom field first",
                "bt": "bottom field first"}


def deinterlace_mode(info: MediaInfo, mode: Deinterlace, name: str) -> str | None:
    """What the decoder does to fields under ``mode`` (``"interlaced"``: the pictures flagged so,
    ``"all"``: every picture, None: nothing), saying once why for an interlaced source."""
    v = info.video
    if mode is Deinterlace.BWDIF:
        return "all"
    if not v.interlaced:
        return None
    order = _FIELD_NAMES.get(v.field_order, v.field_order)
    if mode is Deinterlace.OFF:
        log.warning("%s is interlaced (%s) and --deinterlace off: its fields are upscaled as "
                    "they are woven, combing and all", name, order)
        return None
    log.warning("%s is interlaced (%s): deinterlacing with bwdif, one frame per picture "
                "(--deinterlace off keeps the fields)", name, order)
    return "interlaced"


def _temp_name(stem: str) -> re.Pattern[str]:
    """The hidden temporary files of a job on output ``stem``: ``.STEM.mstgan-PID-HEX.KIND...``
    (group 1: the job's token)."""
    return re.compile(rf"^\.{re.escape(stem)}\.(mstgan-\d+-[0-9a-f]+)\.(?:video|part|side)\b")


def remove_stale(output: Path) -> list[Path]:
    """Remove the temporary files that earlier jobs on ``output`` left beside it when they were
    killed (kill -9, a crash, a lost node): those whose lock nobody holds. A running job (in this
    process, another, or on another machine sharing the folder) holds its lock, so its files
    stay. Returns what was removed."""
    pattern = _temp_name(output.stem)
    groups: dict[str, list[Path]] = {}
    try:
        for entry in os.scandir(output.parent):
            m = pattern.match(entry.name)
            if m and entry.is_file(follow_symlinks=False):
                groups.setdefault(m.group(1), []).append(Path(entry.path))
    except OSError:
        return []
    removed: list[Path] = []
    for paths in groups.values():
        if any(_locked(p) for p in paths):
            continue
        for p in paths:
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    if removed:
        log.warning("removed %d temporary file(s) of an earlier run on %s that did not finish",
                    len(removed), output.name)
    return removed


def _locked(path: Path) -> bool:
    """Whether some process holds ``path``'s lock (a file that cannot be opened counts as held)."""
    try:
        return is_locked(path)
    except OSError:
        return True


# CPU seconds per pixel measured on the 2-core development CPU: x264 `medium` per output pixel
# (benchmarks/encode_cost.py: 0.82 s per 3840x2160 frame), the fastest CPU model path (int8,
# compiled) per input pixel (benchmarks/results/precision.md: 0.56 s per 480x272 frame)
ENCODER_CPU_S_PER_OUT_PX = 0.1e-6
MODEL_CPU_S_PER_IN_PX = 4.3e-6


def encoder_threads(upscaler: FrameUpscaler, in_size: tuple[int, int], out_size: tuple[int, int]) -> int:
    """Threads for the video encoder: 1 when a model on the CPU does most of the work, else the
    codec's choice.

    On a small CPU the model's intra-op threads already use every core; x264's own pool (1.5
    threads per core) then preempts them at every parallel region and the model waits for its
    stragglers. One encoder thread costs the same CPU time without that (2-core CPU, fp32 compile,
    320x180 -> 1280x720: end to end 74% -> 87% of the model-only fps;
    benchmarks/pipeline_overlap.py). But one thread keeps up only while encoding a frame takes
    less CPU time than the model's wall time per frame (its CPU time spread over its threads):
    when the output grows by much more than x4 (a 320x180 clip to 4K: 144x the pixels) the single
    encoder thread becomes the bottleneck (the README's example: 58 s with one thread, 39 s with
    x264's own). A model on a GPU leaves the cores to the encoder."""
    device = getattr(upscaler, "device", None)
    if not (isinstance(device, torch.device) and device.type == "cpu"):
        return 0
    growth = out_size[0] * out_size[1] / max(1, in_size[0] * in_size[1])
    encoder_s = growth * ENCODER_CPU_S_PER_OUT_PX  # per input pixel
    model_wall_s = MODEL_CPU_S_PER_IN_PX / max(1, torch.get_num_threads())
    return 1 if encoder_s < model_wall_s else 0


def _holes(pts: list[int], time_base: Fraction, rate: Fraction | None) -> int | None:
    """Frames missing between the decoded ones of a constant-rate stream: a step of n frame
    durations (1/``rate``) from one frame to the next leaves n - 1 out. None where the steps
    are not whole frame durations, within a tick and 1 % (a variable rate), or where steps of
    one frame are not the most common (a rate the frames do not keep, e.g. a field rate)."""
    if not rate or rate <= 0 or len(pts) < 2:
        return None
    step = 1 / (rate * time_base)  # time base ticks per frame
    if step < 2:  # a time base too coarse to tell one frame's step from two
        return None
    counts: dict[int, int] = {}
    ordered = sorted(pts)
    for a, b in zip(ordered, ordered[1:]):
        n = round((b - a) / step)
        if n < 1 or abs((b - a) - n * step) > 1 + step / 100:
            return None
        counts[n] = counts.get(n, 0) + 1
    if counts.get(1, 0) < max(counts.values()):
        return None
    return sum((n - 1) * k for n, k in counts.items())


def _bad_frames(info: MediaInfo, decoder: VideoDecoder, pts: list[int]) -> int:
    """Frames missing from what the decoder delivered (``pts``, in its time base); warns about
    them. The larger of two estimates: video packets in the file less frames decoded (packets
    there but undecodable; counted only after decoder errors), and the holes in the frames'
    times at the stream's frame rate (constant-rate sources only): frames whose packets were
    lost, as in a damaged MPEG-TS, which no packet count sees. Not the holes of a truncated
    input: the frames of its cut-off last packets (B-frames among them) are counted as missing
    from its end (:func:`_missing_frames`)."""
    holes = 0 if decoder.truncated else _holes(pts, decoder.time_base, info.video.avg_rate) or 0
    if decoder.decode_errors == 0 and holes == 0:
        return 0
    if decoder.decode_errors == 0:
        log.warning("%d of %d frames are missing (lost packets: gaps in the frame times); the "
                    "rest were upscaled at their times", holes, decoder.frames + holes)
        return holes
    expected = None if str(info.path) == "-" else info.sequence.count if info.sequence else \
        count_packets(info.path, info.video.index)
    bad = max(0, (expected or decoder.frames) - decoder.frames, holes)
    if bad:
        log.warning("%d of %d frames are missing (lost or undecodable packets; %d decoder "
                    "errors): they were skipped, the rest were upscaled at their times",
                    bad, decoder.frames + bad, decoder.decode_errors)
    else:
        log.warning("the decoder reported %d errors; damaged frames were concealed, none dropped",
                    decoder.decode_errors)
    return bad


def _missing_frames(info: MediaInfo, done: _Pass) -> int:
    """Frames the input's container promises (its frame count, else duration x rate) that were
    not there to decode: a truncated file, e.g. an interrupted download. Warns about them.

    A rounded duration, an edit list or a variable rate can promise a frame or two that never
    were, so without the demuxer saying the file ends early only a video that stops well short
    of its stated duration counts as incomplete."""
    v, pts = info.video, done.pts
    promised = v.nb_frames or (round(v.duration * v.avg_rate) if v.duration and v.avg_rate else None)
    if not promised or not pts:
        if done.truncated:
            log.warning("%s ends early (a truncated file?): the frames after that point are "
                        "missing", _input_name(info))
        return 0
    missing = promised - len(pts) - done.bad_frames
    if missing <= 0:
        return 0
    if not done.truncated:
        frame = float(1 / v.avg_rate) if v.avg_rate else 0.04
        covered = float((max(pts) - min(pts)) * done.time_base) + frame
        if v.duration is None or covered >= v.duration - 2 * frame:
            return 0
    log.warning("%s is incomplete (a truncated file?): %d of the %d frames its container "
                "promises were there, %d missing", info.path.name, len(pts), promised, missing)
    return missing


def _one_pass(job: _Job, upscaler: FrameUpscaler, stdin: StdinSource | None,
              live: LiveStdout | None = None) -> _Pass:
    """Every frame through the pipeline into ``job.video_tmp``; with ``live``, a FIFO whose
    video goes to stdout as it is encoded."""
    side = None
    if stdin is not None and job.info.other_streams and job.staging is None:
        side = (job.side_tmp, tuple(s.index for s in job.info.other_streams))
    decoder = job.decoder(stdin=stdin.chunks() if stdin else None, side_output=side)
    pipe = job.pipeline(upscaler, decoder, job.video_tmp)
    frames = (LowResFrame(f.rgb, f.pts) for f in decoder)
    if live is not None:
        if job.options.stream_format == "yuv4mpegpipe":
            frames = constant_rate(frames, job.info)
        frames = live.guard(frames)  # the muxing FFmpeg failed: stop at the next frame
    try:
        if live is not None:
            live.start()
        with decoder:
            pipe.run(frames, decoder.kill)
        if decoder.frames == 0:
            raise InputError(f"no frames could be decoded from {job.info.path}")
        if live is not None:
            live.finish()
    except BaseException as exc:
        if live is not None:
            failed = live.failed
            live.abort()
            if failed and not isinstance(exc, (KeyboardInterrupt, InputError)):
                raise live.error() from exc
        raise
    bad = _bad_frames(job.info, decoder, pipe.written)
    if pipe.encoder is not None and pipe.encoder.nudged:
        log.warning("%d frames had non-increasing timestamps and were moved one tick later",
                    pipe.encoder.nudged)
    return _Pass(pipe.written, decoder.time_base, bad, truncated=decoder.truncated,
                 encoded=pipe.encoder.packet_pts if pipe.encoder is not None else None,
                 numbers=list(pipe.encoder.numbers) if isinstance(pipe.encoder, ImageEncoder) else None)


def _rate_check(info: MediaInfo) -> Callable[[int], None]:
    """A check to call with each frame's pts in order: OutputError at the first whose distance
    from the one before differs from the first distance by more than a tick and 1 % (rounding
    in a millisecond time base), since YUV4MPEG states one frame rate and nothing else."""
    last: int | None = None
    step: int | None = None
    n = 0

    def see(pts: int) -> None:
        nonlocal last, step, n
        if last is not None:
            d = pts - last
            if step is None:
                step = d
            elif abs(d - step) > 1 + step / 100:
                tb = info.video.time_base
                raise OutputError(
                    f"--format yuv4mpegpipe holds one constant frame rate, and frame {n} of "
                    f"{_input_name(info)} comes {float(d * tb) * 1000:.1f} ms after the one before "
                    f"(not {float(step * tb) * 1000:.1f} ms): a variable frame rate. Use --format "
                    "matroska or nut, which keep each frame's time")
        last, n = pts, n + 1
    return see


def constant_rate(frames: Iterator[LowResFrame], info: MediaInfo) -> Iterator[LowResFrame]:
    """``frames`` as they are, stopping with OutputError at the first that breaks the rate of
    those before (:func:`_rate_check`)."""
    see = _rate_check(info)
    for frame in frames:
        see(frame.pts)
        yield frame


def _input_name(info: MediaInfo) -> str:
    return "the input stream" if str(info.path) == "-" else info.path.name


def check_constant_rate(info: MediaInfo) -> None:
    """Before anything reaches a pipe: a file whose packets do not come at one rate cannot go
    to ``--format yuv4mpegpipe`` (OutputError). Demuxes the video, decodes nothing."""
    index = packet_index(info.path, info.video.index, info.video.time_base)
    if index is None:
        return  # some packet without a time: the frames are checked as they are decoded
    see = _rate_check(info)
    for pts in sorted(index.pts):
        see(pts)


def _segmented(job: _Job, upscaler: FrameUpscaler) -> _Pass | None:
    """Upscale a long file in resumable segments into ``job.video_tmp``; None when it is not
    worth splitting (then the caller runs one pass)."""
    info, options = job.info, job.options
    if info.sequence is not None or job.staging is not None:  # pictures: one pass
        return None
    if not seg.wants_segments(info, options.segment_seconds):
        return None
    index = packet_index(info.path, info.video.index, info.video.time_base)
    if index is None or not index.keyframes:
        return None
    context = seg.context_frames(upscaler)
    plan = seg.plan_segments(index, options.segment_seconds, context)
    if len(plan) < 2:
        return None
    key = run_key(options, info.path, segments=options.segment_seconds, context=context,
                  suffix=job.output.suffix.lower(), scale=int(upscaler.scale))
    work = seg.WorkFolder(job.output, key, plan)
    done = work.open()
    job.move_into(work.path)  # so that a killed run leaves nothing outside the work folder
    job.total = len(index.pts)
    if done:
        log.warning("resuming %s: %d of %d segments were finished by an earlier run",
                    job.output.name, done, len(plan))
    pts: list[int] = []
    time_base: Fraction | None = None
    try:
        for s in plan:
            finished = work.done(s)
            if finished is None:
                start = None if s.seek is None else \
                    float(s.seek * index.time_base) - (info.start_time or 0.0)
                decoder = job.decoder(seek=start)
                pipe = job.pipeline(upscaler, decoder, work.file(s, part=True))

                def run(frames: Iterator[LowResFrame], pipe: Pipeline = pipe,
                        decoder: VideoDecoder = decoder) -> list[int]:
                    pipe.run(frames, decoder.kill)
                    return pipe.written
                finished = (seg.run_segment(work, s, index, decoder, run), decoder.time_base)
            if time_base is not None and finished[1] != time_base:
                raise seg.SegmentMismatch("segments disagree about the time base")
            time_base = finished[1]
            pts += finished[0]
            job.frames_done = len(pts)
        assert time_base is not None
        join_segments([work.file(s) for s in plan], job.video_tmp)
    except seg.SegmentMismatch:
        work.remove()
        raise
    except BaseException:
        finished_now = sum(1 for s in plan if work.done(s) is not None)
        if not finished_now:
            work.remove()  # nothing worth keeping
            raise
        for s in plan:  # an unfinished piece is worth nothing
            work.file(s, part=True).unlink(missing_ok=True)
        work.release()
        log.warning("stopped: %d of %d segments are finished and kept in %s; the same command "
                    "resumes there", finished_now, len(plan), work.path)
        raise
    return _Pass(pts, time_base, 0, len(plan), done, work)


def upscale_file(input_path: str | os.PathLike[str], options: UpscaleOptions | None = None,
                 factory: UpscalerFactory | None = None,
                 progress: ProgressCallback | None = None,
                 stdin: BinaryIO | None = None) -> UpscaleResult:
    """Upscale one video and write ``options.output`` (default ``<stem>_2160p.<ext>``).

    ``input_path`` may be an image sequence pattern (``frames/%06d.png``; frame rate
    ``options.fps``, default 25), and so may ``options.output`` (one picture per frame; default
    for a sequence input ``frames_2160p/%06d.png``).

    ``input_path`` ``-`` reads a stream from ``stdin`` (default ``sys.stdin.buffer``); output
    ``-`` writes ``options.stream_format`` to stdout. Long files run in resumable segments
    (``options.segment_seconds``). ``factory`` builds the model for a requested factor (default:
    :func:`upscaler_factory` of the options). ``progress`` is called from a worker thread with
    :class:`Progress` reports. The output is checked against the input before it is renamed
    into place (IntegrityError on a mismatch). Raises the typed errors of
    :mod:`mstgan_cli.errors`; KeyboardInterrupt propagates after the temporary files are removed.
    """
    started = time.monotonic()
    options = options or UpscaleOptions()
    if options.output is not None and is_stdout(options.output) and _stdout_is_terminal():
        raise OutputError("stdout is a terminal, not a place for a video stream; pipe it into a "
                          "program (-o - | ffplay -) or redirect it (-o - > out.mkv)")
    source: StdinSource | None = None
    if str(input_path) == "-":
        source = StdinSource(stdin or sys.stdin.buffer)
        src = Path("-")
        if options.output is None:
            raise OutputError("reading from stdin needs an output: -o FILE, or -o - for stdout")
        info, lost = side_streams(source.probe())
    else:
        src = Path(input_path)
        info, lost = probe(src, fps=options.fps), ()
    if options.fps is not None and info.sequence is None:
        raise InputError(f"a frame rate (--fps) is for an image sequence input such as "
                         f"frames/%06d.png; {src.name} is a video and has its own timing")
    size = plan_size(info, options)
    if size is None:
        w, h = info.video.display_size
        return UpscaleResult(src, None, skipped=f"{src.name} is {w}x{h}, already at or above the "
                                                f"{options.size_label} target; nothing to do")
    output = options.output or default_output(src, options)
    check_output(src, output, options.overwrite, info.sequence)
    to_stdout = is_stdout(output)
    pictures = None if to_stdout else parse_pattern(output)  # an image sequence output
    fmt = options.stream_format
    suffix = intermediate_suffix(fmt) if to_stdout else output.suffix
    encode = stream_encode(options.encode, fmt) if to_stdout else options.encode
    if pictures is not None:  # (fails early, as a video's plan)
        enc_plan = plan_image_encoder(encode, suffix, info.video.bit_depth > 8)
        dropped = lost + info.other_streams
        if info.other_streams:
            log.warning("an image sequence holds only pictures; left out %d stream(s): %s",
                        len(info.other_streams), ", ".join(_names(info.other_streams)))
    else:
        enc_plan = plan_encoder(encode, suffix, info.video.bit_depth > 8,  # fails early
                                chroma=info.video.chroma, hdr=info.video.hdr)
    upscaler = (factory or upscaler_factory(options))(size.requested_scale)
    check_model_scale(size, upscaler, options)
    if hasattr(upscaler, "expect"):  # lets --backend auto compile the model for long jobs
        upscaler.expect(info.video.estimated_frames, info.video.height, info.video.width)
    model = model_name(upscaler, options.model)
    job = _Job(info, options, output, size, enc_plan, progress)
    name = str(src) if info.sequence is not None else src.name
    job.deinterlace = deinterlace_mode(info, options.deinterlace, name)
    job.announcement = "{}: {}x{} -> {}x{} with {}{}".format(
        name, *info.video.display_size, *size.size, model, _how(upscaler))
    if pictures is not None:
        remove_stale_staging(pictures)
    elif not to_stdout:
        remove_stale(output)
    job.reserve()
    live: LiveStdout | None = None
    streamed: tuple[StreamInfo, ...] = ()
    done = None
    try:
        if to_stdout and (source is None or not info.other_streams):
            # to stdout as it is encoded; from stdin only without audio or subtitles, which
            # come in a side file as the decoder reads (see pipes.py)
            if fmt == "yuv4mpegpipe" and source is None and info.sequence is None:
                check_constant_rate(info)
            job.video_tmp.unlink()
            args, streamed = stream_args(job.video_tmp, info, fmt)
            live = LiveStdout(job.video_tmp, args)
        if source is None and not to_stdout:
            try:
                done = _segmented(job, upscaler)
            except seg.SegmentMismatch as exc:
                log.warning("%s; upscaling in one pass instead", exc)
                job.frames_done = 0
                job.move_into(None)
        done = done or _one_pass(job, upscaler, source, live)
        missing = _missing_frames(info, done)
        job.frames_done = len(done.pts)
        others = job.side_tmp if source is not None and info.other_streams else None
        if live is not None:  # gone down the pipe: what the encoder wrote is what can be checked
            report = verify_encoded(done.encoded or [], done.time_base,
                                    Expected(done.pts, done.time_base, ()))
            report = replace(report, left_out=_names(lost + streamed))
        elif job.staging is not None:  # pictures: counted in the staging folder, then moved
            job.report("checking", force=True)
            report = verify_pictures(job.staging.pattern, done.numbers or [],
                                     Expected(done.pts, done.time_base, ()), size.size,
                                     left_out=dropped)
            job.staging.commit(done.numbers or [], options.overwrite)
        elif to_stdout:  # checked before anything reaches the pipe, which cannot be taken back
            job.report("muxing", force=True)
            report = verify(job.video_tmp, Expected(done.pts, done.time_base, ()), streams=False)
            left_out = remux(job.video_tmp, info, output, others=others, fmt=fmt)
            report = replace(report, left_out=_names(lost + left_out))
        else:
            job.report("muxing", force=True)
            left_out = remux(job.video_tmp, info, job.part_tmp, others=others)
            report = verify(job.part_tmp, Expected.of(info, done.pts, done.time_base, left_out),
                            left_out=lost + left_out)
            os.replace(job.part_tmp, output)
        if done.work is not None:
            done.work.remove()
    finally:
        job.cleanup()
        if done is not None and done.work is not None:
            done.work.release()
    job.report("done", force=True)
    return UpscaleResult(src, output, len(done.pts), done.bad_frames, size.size,
                         int(upscaler.scale), time.monotonic() - started, integrity=report,
                         segments=done.segments, resumed=done.resumed, missing_frames=missing,
                         model=model)


def model_name(upscaler: FrameUpscaler, asked: str) -> str:
    """The name of what ``upscaler`` runs: a shipped model's own name, a baseline's, else what
    was asked for."""
    name = getattr(upscaler, "name", None)
    if isinstance(name, str) and name:
        return name
    if isinstance(upscaler, InterpolationUpscaler):
        return upscaler.mode
    if isinstance(upscaler, ResampleOnly):
        return "lanczos"
    return asked


def _how(upscaler: FrameUpscaler) -> str:
    """' (x4, fp32 eager on cpu)' for a model, ' (x2)' for a baseline."""
    parts = [str(getattr(upscaler, k)) for k in ("precision", "backend") if getattr(upscaler, k, None)]
    device = getattr(upscaler, "device", None)
    return f" (x{upscaler.scale}" + (f", {' '.join(parts)}" if parts else "") + \
        (f" on {device}" if device is not None else "") + ")"


def _stdout_is_terminal() -> bool:
    try:
        return os.isatty(sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):  # replaced by a buffer (tests, embedding)
        return False


def _names(streams: tuple[StreamInfo, ...]) -> list[str]:
    return [s.label for s in streams]
