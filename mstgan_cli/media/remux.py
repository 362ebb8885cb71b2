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
from .probe import MediaInfo, ffmpeg_input

log = logging.getLogger("mstgan_cli")

# Per-stream tags that described the old video stream and would be wrong for the new one.
_STALE_VIDEO_TAGS = {"BPS", "DURATION", "NUMBER_OF_FRAMES", "NUMBER_OF_BYTES", "ENCODER",
                     "_STATISTICS_WRITING_APP", "_STATISTICS_WRITING_DATE_UTC", "_STATISTICS_TAGS",
                     "ROTATE", "VENDOR_ID"}
_DISPOSITIONS = ("default", "dub", "original", "comment", "lyrics", "karaoke", "forced",
                 "hearing_impaired", "visual_impaired")


def _is_stale(tag: str) -> bool:
    return re.sub(r"-[a-z]{3}$", "", tag).upper() in _STALE_VIDEO_TAGS


def remux_args(video_file: Path, info: MediaInfo, dest: Path, *, keep_data: bool = True) -> list[str]:
    """FFmpeg arguments that mux ``video_file``'s video with the rest of ``info``'s source."""
    tools = ffmpeg.find_ffmpeg()
    args = [tools.ffmpeg, "-hide_banner", "-nostdin", "-nostats", "-v", "error", "-y", "-copyts",
            "-i", ffmpeg_input(video_file), "-i", ffmpeg_input(info.path)]
    out_index = 0
    video_out = 0
    for stream in info.streams:
        if stream.index == info.video.index:
            args += ["-map", "0:0"]
            video_out = out_index
        elif stream.kind == "data" and not keep_data:
            continue
        else:
            args += ["-map", f"1:{stream.index}"]
        args += [f"-map_metadata:s:{out_index}", f"1:s:{stream.index}"]
        out_index += 1
    for tag in _video_tags(info):
        if _is_stale(tag):
            args += [f"-metadata:s:{video_out}", f"{tag}="]
    flags = [d for d in _DISPOSITIONS if _video_disposition(info).get(d)]
    args += [f"-disposition:{video_out}", "+".join(flags) or "0"]
    args += ["-map_metadata", "1", "-map_chapters", "1", "-c", "copy",
             "-max_muxing_queue_size", "4096"]
    if dest.suffix.lower() in (".mp4", ".m4v", ".mov"):
        args += ["-movflags", "+faststart"]
    args.append(ffmpeg_input(dest))
    return args


def _video_tags(info: MediaInfo) -> dict[str, str]:
    return next(s.tags for s in info.streams if s.index == info.video.index)


def _video_disposition(info: MediaInfo) -> dict[str, int]:
    return next(s.disposition for s in info.streams if s.index == info.video.index)


def remux(video_file: Path, info: MediaInfo, dest: Path) -> None:
    """Write ``dest``: the video of ``video_file`` + all other streams, chapters and metadata of
    the source, stream-copied. If the container refuses the source's data streams (e.g. a
    timecode track), retries without them and logs a warning. Raises FFmpegError/OutputError."""
    try:
        ffmpeg.run(remux_args(video_file, info, dest), "muxing the output")
        return
    except FFmpegError:
        data = [s for s in info.other_streams if s.kind == "data"]
        if not data:
            raise
    log.warning("the output container refused %d data stream(s) (%s); writing without them",
                len(data), ", ".join(s.codec for s in data))
    ffmpeg.run(remux_args(video_file, info, dest, keep_data=False), "muxing the output")
