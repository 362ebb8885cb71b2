"""Everything that touches FFmpeg: discovery, probe, decode, encode, remux."""
from __future__ import annotations

from .colour import Colour
from .decode import DecodedFrame, VideoDecoder
from .encode import EncoderPlan, VideoEncoder, plan_encoder
from .ffmpeg import FFmpegTools, find_ffmpeg
from .probe import MediaInfo, StreamInfo, VideoInfo, probe
from .remux import remux

__all__ = ["Colour", "DecodedFrame", "EncoderPlan", "FFmpegTools", "MediaInfo", "StreamInfo",
           "VideoDecoder", "VideoEncoder", "VideoInfo", "find_ffmpeg", "plan_encoder", "probe",
           "remux"]
