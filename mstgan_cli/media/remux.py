"""The final mux: the new video plus everything else from the source, stream-copied.

Video comes from the intermediate file; every other stream of the source (audio, subtitles,
attachments, data, cover art) keeps its place and its bits (``-c copy``), with chapters, global
and per-stream metadata. ``-copyts`` keeps every timestamp as it was in both inputs, so audio and
video stay in sync exactly as in the source.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

from ..errors import FFmpegError
from . import ffmpeg
from .probe import MediaInfo, StreamInfo, ffmpeg_input

log = logging.getLogger("mstgan_cli")

# Per-stream tags that described the old video stream and would be wrong for the new one.
_STALE_VIDEO_TAGS = {"BPS", "DURATION", "NUMBER_OF_FRAMES", "NUMBER_OF_BYTES", "ENCODER",
                     "_STATISTICS_WRITING_APP", "_STATISTICS_WRITING_DATE_UTC", "_STATISTICS_TAGS",
                     "ROTATE", "VENDOR_ID"}
_DISPOSITIONS = ("default", "dub", "original", "comment", "lyrics", "karaoke", "forced",
                 "hearing_impaired", "visual_impaired")


def _is_stale(tag: str) -> bool:
    return re.sub(r"-[a-z]{3}$", "", tag).upper() in _STALE_VIDEO_TAGS


# Text subtitle codec each container takes, for when a copy is refused (e.g. srt -> .mp4).
_TEXT_SUBTITLES = {".mp4": "mov_text", ".m4v": "mov_text", ".mov": "mov_text", ".mkv": "srt",
                   ".webm": "webvtt"}
_TEXT_SUBTITLE_CODECS = {"subrip", "srt", "ass", "ssa", "mov_text", "webvtt", "text"}
# Audio encoder each container takes, for an audio stream it refuses as it is (e.g. WMA, mu-law
# or, in older FFmpeg, Opus/FLAC into .mp4); elsewhere such a stream is left out.
_AUDIO_FALLBACK = {".mp4": "aac", ".m4v": "aac", ".mov": "aac", ".3gp": "aac", ".ts": "aac",
                   ".m2ts": "aac", ".mts": "aac", ".flv": "aac", ".webm": "libopus"}
# A file suffix of each stream format's muxer, for trying its audio in a scratch file.
_STREAM_SUFFIXES = {"mp4": ".mp4", "mpegts": ".ts", "nut": ".nut", "matroska": ".mkv"}
# Outputs whose muxer (MPEG-TS, MPEG-PS) delays timestamps unless told not to.
MPEG_SYSTEM_SUFFIXES = frozenset({".ts", ".m2ts", ".mts", ".m2t", ".mpg", ".mpeg", ".vob", ".m2p"})


# What each stream format for a pipe (``-o - --format F``) takes besides the video, and how.
STREAM_FORMATS: dict[str, tuple[frozenset[str], list[str]]] = {
    "matroska": (frozenset({"audio", "subtitle", "attachment", "data"}), []),
    "nut": (frozenset({"audio"}), []),
    "mpegts": (frozenset({"audio"}), []),
    # delay_moov: the moov (with each track's edit list) waits for the first fragment, so a
    # track that starts later or earlier than the others keeps its offset; with the moov written
    # before any packet every track would start at 0 (or at its first dts). A fragment at least
    # every second, keyframe or not, so a player gets pictures while the upscale runs.
    "mp4": (frozenset({"audio"}), ["-movflags", "frag_keyframe+empty_moov+default_base_moof+delay_moov",
                                   "-frag_duration", "1000000"]),
    "yuv4mpegpipe": (frozenset(), ["-c:v", "wrapped_avframe", "-strict", "-1"]),
}


def remux_args(video_file: Path, info: MediaInfo, dest: Path, *, drop: frozenset[str] = frozenset(),
               convert_subtitles: bool = False, others: Path | None = None,
               fmt: str = "matroska", encode_audio: dict[int, str] | None = None,
               skip: frozenset[int] = frozenset()) -> list[str]:
    """FFmpeg arguments that mux ``video_file``'s video with the rest of ``info``'s source.
    ``drop``: stream kinds to leave out; ``convert_subtitles``: re-encode text subtitles to the
    container's own text format instead of copying them. ``others``: take the other streams from
    this file instead of the source, where they lie in the source's order without the video (what
    a decoder's side output kept of a stream read from stdin); None there means none were kept.
    ``fmt``: the stream format when ``dest`` is ``-`` (stdout), a key of :data:`STREAM_FORMATS`.
    ``encode_audio``: source stream index -> audio encoder, for streams re-encoded instead of
    copied; ``skip``: source stream indices left out."""
    tools = ffmpeg.find_ffmpeg()
    from_stdin = str(info.path) == "-"
    # an image sequence has nothing but its pictures: no other streams, chapters or metadata
    source = None if info.sequence is not None else others if from_stdin else info.path
    args = [tools.ffmpeg, "-hide_banner", "-nostdin", "-nostats", "-v", "error", "-y", "-copyts",
            *_hdr_args(info, tools), "-i", ffmpeg_input(video_file)]
    if source is not None:
        args += ["-i", ffmpeg_input(source)]
    out_index = 0
    video_out = 0
    codecs: list[str] = []
    others_order = {s.index: k for k, s in enumerate(info.other_streams)}
    for stream in info.streams:
        if stream.index == info.video.index:
            args += ["-map", "0:0"]
            video_out = out_index
            if from_stdin or source is None:  # no source file to copy the video's tags from
                for tag, value in _video_tags(info).items():
                    if not _is_stale(tag):
                        args += [f"-metadata:s:{out_index}", f"{tag}={value}"]
            else:
                args += [f"-map_metadata:s:{out_index}", f"1:s:{stream.index}"]
            out_index += 1
            continue
        if stream.kind in drop or stream.index in skip or source is None:
            continue
        src = others_order[stream.index] if from_stdin else stream.index
        args += ["-map", f"1:{src}", f"-map_metadata:s:{out_index}", f"1:s:{src}"]
        text_sub = stream.kind == "subtitle" and stream.codec in _TEXT_SUBTITLE_CODECS
        target = _TEXT_SUBTITLES.get(dest.suffix.lower())
        if convert_subtitles and text_sub and target:
            codecs += [f"-c:{out_index}", target]
        if encode_audio and stream.index in encode_audio:
            codecs += [f"-c:{out_index}", encode_audio[stream.index]]
        out_index += 1
    for tag in _video_tags(info):
        if _is_stale(tag):
            args += [f"-metadata:s:{video_out}", f"{tag}="]
    flags = [d for d in _DISPOSITIONS if _video_disposition(info).get(d)]
    args += [f"-disposition:{video_out}", "+".join(flags) or "0"]
    if source is not None:
        args += ["-map_metadata", "1", "-map_chapters", "1"]
    args += ["-c", "copy", *codecs, "-max_muxing_queue_size", "4096"]
    if str(dest) == "-":  # a stream for a pipe: no seeking back
        args += [*STREAM_FORMATS[fmt][1], "-f", fmt, "pipe:1"]
        return args
    if dest.suffix.lower() in (".mp4", ".m4v", ".mov"):
        args += ["-movflags", "+faststart"]
    if dest.suffix.lower() in MPEG_SYSTEM_SUFFIXES:
        # the ffmpeg command's default -muxdelay 0.7 / -muxpreload 0.5 shift every copied
        # timestamp of an MPEG-TS/PS output (by 1.4 s in MPEG-TS); -copyts means keep them
        args += ["-muxdelay", "0", "-muxpreload", "0"]
    args.append(ffmpeg_input(dest))
    return args


def _hdr_args(info: MediaInfo, tools: ffmpeg.FFmpegTools) -> list[str]:
    """Input options that give the new video the source's mastering display and content light
    level as stream side data, which the Matroska and MP4/MOV muxers store (``Colour``
    elements, ``mdcv``/``clli`` boxes): the only place for them with encoders that have no
    bitstream field (FFV1, VP9, ProRes), beside the SEI x264/x265 write. Nothing where the
    ffmpeg is older than these options."""
    hdr = info.video.hdr
    if hdr is None:
        return []
    args: list[str] = []
    for option, value in (("mastering_display", hdr.master_display),
                          ("content_light", hdr.max_cll)):
        if value is None:
            continue
        if not ffmpeg.has_option(tools, option):
            log.debug("ffmpeg %d.%d has no -%s; the container gets no %s", *tools.version,
                      option, option.replace("_", " "))
            continue
        args += [f"-{option}:v:0", value]
    return args


def _video_tags(info: MediaInfo) -> dict[str, str]:
    return next(s.tags for s in info.streams if s.index == info.video.index)


def _video_disposition(info: MediaInfo) -> dict[str, int]:
    return next(s.disposition for s in info.streams if s.index == info.video.index)


def remux(video_file: Path, info: MediaInfo, dest: Path, *, others: Path | None = None,
          fmt: str = "matroska") -> tuple[StreamInfo, ...]:
    """Write ``dest``: the video of ``video_file`` + all other streams, chapters and metadata of
    the source, stream-copied. If the output container refuses some of them (a timecode track,
    an attachment, srt into .mp4 when the container changed), retries with text subtitles
    converted and data/attachments left out, then without subtitles, warning about each loss.
    ``dest`` ``-`` writes the stream format ``fmt`` to stdout (one attempt: a pipe cannot be
    rewound; kinds the format does not take are left out, with a warning). ``others``: see
    :func:`remux_args`. Returns the streams of the source that were left out.
    Raises FFmpegError/OutputError when even the video and audio cannot be muxed."""
    if str(info.path) == "-" and others is None:
        lost_all = info.other_streams
    else:
        lost_all = ()
    if str(dest) == "-":
        args, lost = stream_args(video_file, info, fmt, others=others, lost_all=lost_all)
        ffmpeg.run(args, "muxing to stdout", pass_stdout=True)
        return lost
    attempts: list[tuple[frozenset[str], bool]] = [
        (frozenset(), False),
        (frozenset({"data", "attachment"}), True),
        (frozenset({"data", "attachment", "subtitle"}), False)]
    first_error: FFmpegError | None = None
    encode_audio: dict[int, str] = {}
    skip: frozenset[int] = frozenset()
    for drop, convert in attempts:
        lost = tuple(s for s in info.other_streams if s.kind in drop)
        if first_error is not None and not lost and not convert:
            continue
        try:
            _mux(video_file, info, dest, drop, convert, others, encode_audio, skip)
        except FFmpegError as exc:
            if first_error is not None:
                continue
            first_error = exc  # does the container refuse some audio streams as they are?
            encode_audio, skip = _audio_plan(info, dest, others)
            if not (encode_audio or skip):
                continue
            try:  # the same attempt again, those re-encoded or left out
                _mux(video_file, info, dest, drop, convert, others, encode_audio, skip)
            except FFmpegError:
                continue
        lost += tuple(s for s in info.other_streams if s.index in skip and s not in lost)
        if encode_audio:
            log.warning("the %s container cannot hold %s as stored; re-encoded to %s",
                        dest.suffix, _names(tuple(s for s in info.other_streams
                                                  if s.index in encode_audio)),
                        "/".join(sorted(set(encode_audio.values()))))
        if first_error is not None and (lost or convert):
            log.warning("the %s container refused some streams as they were (%s)", dest.suffix,
                        ffmpeg.summary(first_error.stderr_tail))
            if lost:
                log.warning("left out %d stream(s): %s", len(lost), _names(lost))
            if convert:
                log.warning("text subtitles were converted to %s", _TEXT_SUBTITLES.get(dest.suffix.lower()))
        return lost + tuple(s for s in lost_all if s not in lost)
    assert first_error is not None
    raise first_error


def stream_args(video_file: Path, info: MediaInfo, fmt: str, *, others: Path | None = None,
                lost_all: tuple[StreamInfo, ...] = ()) -> tuple[list[str], tuple[StreamInfo, ...]]:
    """The FFmpeg arguments that mux ``video_file`` and the source's other streams to stdout in
    stream format ``fmt``, and the streams left out (each kind the format does not take, audio
    it can hold neither as stored nor re-encoded; warned about). A pipe cannot be retried, so
    audio the format refuses as stored is found first (a packet of each into a scratch file
    beside ``video_file``) and re-encoded to the format's audio codec. ``video_file`` need not
    exist yet (a FIFO the encoder will write)."""
    kinds = STREAM_FORMATS[fmt][0]
    drop = frozenset(s.kind for s in info.other_streams if s.kind not in kinds)
    lost = tuple(s for s in info.other_streams if s.kind in drop or s in lost_all)
    if lost:
        log.warning("%s streams carry no %s; left out %d stream(s): %s", fmt,
                    "/".join(sorted(drop)) or "other streams", len(lost), _names(lost))
    encode_audio: dict[int, str] = {}
    skip: frozenset[int] = frozenset()
    suffix = _STREAM_SUFFIXES.get(fmt)
    if suffix and "audio" in kinds and any(s.kind == "audio" for s in info.other_streams):
        encode_audio, skip = _audio_plan(info, video_file.with_name(f"audio-check{suffix}"), others)
    if encode_audio:
        log.warning("%s streams cannot hold %s as stored; re-encoded to %s", fmt,
                    _names(tuple(s for s in info.other_streams if s.index in encode_audio)),
                    "/".join(sorted(set(encode_audio.values()))))
    skipped = tuple(s for s in info.other_streams if s.index in skip and s not in lost)
    if skipped:
        log.warning("%s streams cannot hold these as stored nor re-encoded; left out %d "
                    "stream(s): %s", fmt, len(skipped), _names(skipped))
    args = remux_args(video_file, info, Path("-"), drop=drop, others=others, fmt=fmt,
                      encode_audio=encode_audio, skip=skip)
    return args, lost + skipped


def _mux(video_file: Path, info: MediaInfo, dest: Path, drop: frozenset[str], convert: bool,
         others: Path | None, encode_audio: dict[int, str], skip: frozenset[int]) -> None:
    ffmpeg.run(remux_args(video_file, info, dest, drop=drop, convert_subtitles=convert,
                          others=others, encode_audio=encode_audio, skip=skip), "muxing the output")


def _audio_plan(info: MediaInfo, dest: Path,
                others: Path | None) -> tuple[dict[int, str], frozenset[int]]:
    """The audio streams of the source that ``dest``'s container refuses to take as they are,
    found by muxing a packet of each into a scratch file of the same kind: which to re-encode
    (source index -> encoder: the container's own audio codec, if it takes that), which to leave
    out (it takes neither)."""
    from_stdin = str(info.path) == "-"
    source = others if from_stdin else info.path
    if source is None:
        return {}, frozenset()
    order = {s.index: k for k, s in enumerate(info.other_streams)}
    trial = dest.with_name(f"{dest.name}.audio-check{dest.suffix}")
    tools = ffmpeg.find_ffmpeg()
    encode: dict[int, str] = {}
    skip: set[int] = set()
    try:
        for s in info.other_streams:
            if s.kind != "audio":
                continue
            src = order[s.index] if from_stdin else s.index

            def fits(codec: str, src: int = src) -> bool:
                try:
                    ffmpeg.run([tools.ffmpeg, "-hide_banner", "-nostdin", "-nostats", "-v", "error",
                                "-y", "-i", ffmpeg_input(source), "-map", f"0:{src}", "-c", codec,
                                "-frames:0", "2", ffmpeg_input(trial)], "checking an audio stream")
                except FFmpegError:
                    return False
                return True
            if fits("copy"):
                continue
            target = _AUDIO_FALLBACK.get(dest.suffix.lower())
            if target and target != s.codec and fits(target):
                encode[s.index] = target
            else:
                skip.add(s.index)
    finally:
        trial.unlink(missing_ok=True)
    return encode, frozenset(skip)


def _names(streams: tuple[StreamInfo, ...]) -> str:
    return ", ".join(s.label for s in streams)
