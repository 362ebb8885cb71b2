"""Join video-only segment files into one, packet for packet (no re-encoding).

Each segment was encoded on its own with the source's own timestamps, so its packets already
sit at their final times: joining copies them in order. Decode timestamps continue from one
segment to the next because every segment's encoder shifts them by the same reorder delay; a
packet whose dts would not increase (possible with variable frame rates) or is unknown (Matroska
stores none) is moved one tick after the previous one if that keeps it at or before its pts,
and the join fails otherwise.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import av

from ..errors import FFmpegError
from .encode import av_error

log = logging.getLogger("mstgan_cli")


def join_segments(parts: Sequence[Path], dest: Path) -> int:
    """Write ``dest`` (its format from its extension) with the video packets of ``parts`` in
    order. All parts must come from the same encoder settings. Returns the packets written.
    Raises FFmpegError/OutputError."""
    if not parts:
        raise FFmpegError("no segments to join")
    written = 0
    try:
        out = av.open(str(dest), mode="w")
    except Exception as exc:  # noqa: BLE001
        raise av_error(exc, f"cannot create {dest}") from exc
    try:
        first = av.open(str(parts[0]))
        stream = out.add_stream_from_template(first.streams.video[0])
        first.close()
        last_dts: int | None = None
        for part in parts:
            with av.open(str(part)) as src:
                src_stream = src.streams.video[0]
                for packet in src.demux(src_stream):
                    if packet.size == 0:  # the demuxer's end-of-stream marker
                        continue
                    if last_dts is not None and (packet.dts is None or packet.dts <= last_dts):
                        # (Matroska stores no dts: its demuxer leaves the first few unset)
                        if packet.pts is None or last_dts + 1 > packet.pts:
                            raise FFmpegError(f"cannot join {part.name}: its decode times overlap "
                                              "the previous segment's")
                        packet.dts = last_dts + 1
                    if packet.dts is not None:
                        last_dts = packet.dts
                    packet.stream = stream
                    out.mux(packet)
                    written += 1
        out.close()
    except FFmpegError:
        _abort(out)
        raise
    except Exception as exc:  # noqa: BLE001
        _abort(out)
        raise av_error(exc, f"joining segments into {dest.name}") from exc
    log.debug("joined %d segments (%d packets) into %s", len(parts), written, dest)
    return written


def _abort(container: av.container.OutputContainer) -> None:
    try:
        container.close()
    except Exception:  # noqa: BLE001, S110 - best effort on an error path
        pass
