"""Side-by-side comparisons: a labelled collage of frames (rows = moments, columns = methods), as
in the MST-GAN paper's figures, and a split-screen video (left one method, right another).

The input is upscaled here (it is the low-resolution source), every method seeing the same
frames. For a multi-frame model, each chosen frame is upscaled inside a segment of its
``radius`` neighbours on each side, so the model sees the same window it would in a full run.
"""
from __future__ import annotations

import logging
import math
import os
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..media.frames import RawVideoWriter, read_frames, read_timed_frames, source_info, tensor_to_rgb8
from ..runtime.upscaler import FrameUpscaler, InterpolationUpscaler

log = logging.getLogger("mstgan_cli")

GAP = 8           # px between cells and around the grid
HEADER = 32       # px above the grid for column labels
ROW_LABEL = 72    # px left of the grid for row labels
FONT_SIZE = 18
BIG_COLLAGE = 60_000_000  # pixels: warn above this (suggest --region)


@dataclass(frozen=True)
class CollageResult:
    """``size``: (width, height) of the PNG; ``times``: the seconds of the frames shown (the
    frame nearest each requested time); ``columns``: method labels, left to right."""

    path: Path
    size: tuple[int, int]
    times: list[float]
    columns: list[str]


def collage_size(rows: int, cols: int, cell: tuple[int, int]) -> tuple[int, int]:
    """(width, height) of a collage of ``rows`` x ``cols`` cells of ``cell`` = (w, h) pixels."""
    cw, ch = cell
    return ROW_LABEL + GAP + cols * (cw + GAP), HEADER + rows * (ch + GAP)


def _font(size: int = FONT_SIZE):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: a small bitmap font
        return ImageFont.load_default()


def pick_segments(frames: Iterator[tuple[float, torch.Tensor]], at: Sequence[float],
                  radius: int) -> list[tuple[float, list[torch.Tensor], int]]:
    """For each time in ``at`` (seconds), the frame nearest to it with up to ``radius`` frames of
    context on each side: (its time, the segment, the index of the chosen frame in it).

    Streams: keeps 2 * radius + 1 frames. Raises InputError for a time past the end of the clip.
    """
    wanted = sorted(set(float(t) for t in at))
    buf: deque[tuple[float, torch.Tensor]] = deque(maxlen=2 * radius + 2)
    found: dict[float, tuple[float, list[torch.Tensor], int]] = {}
    last_time = -math.inf
    best: dict[float, tuple[float, int]] = {}  # target -> (distance, absolute index of the best frame)
    index = -1
    for t, frame in frames:
        index += 1
        last_time = t
        buf.append((t, frame))
        for target in wanted:
            if target in found:
                continue
            d = abs(t - target)
            if target not in best or d < best[target][0]:
                best[target] = (d, index)
        # a target is settled once `radius` frames have arrived after its best frame and time has
        # moved past it (later frames can only be further away)
        for target in wanted:
            if target in found or target not in best:
                continue
            _, bi = best[target]
            if t >= target and index - bi >= radius:
                found[target] = _segment(buf, index, bi, radius)
        if len(found) == len(wanted):
            break
    for target in wanted:
        if target in found:
            continue
        if target > last_time + 0.5:
            raise InputError(f"{target:g} s is past the end of the clip ({max(last_time, 0):.2f} s)")
        _, bi = best[target]
        found[target] = _segment(buf, index, bi, radius)
    return [found[float(t)] for t in at]


def _segment(buf: deque, last_index: int, pick: int, radius: int) -> tuple[float, list[torch.Tensor], int]:
    first_index = last_index - len(buf) + 1
    lo = max(first_index, pick - radius)
    hi = min(last_index, pick + radius)
    items = list(buf)[lo - first_index:hi - first_index + 1]
    return items[pick - lo][0], [f for _, f in items], pick - lo


def _context(up: FrameUpscaler, radius: int) -> int:
    """Neighbours each side a method looks at: its window's radius for our generator (when it
    says), ``radius`` for unknown methods, 0 for plain resamplers."""
    if isinstance(up, InterpolationUpscaler) or type(up).__name__ in ("LanczosUpscaler", "RealESRGANUpscaler"):
        return 0
    window = getattr(getattr(getattr(up, "model", None), "config", None), "window", None)
    return min(radius, window // 2) if isinstance(window, int) else radius


def _crop(frame: torch.Tensor, region: tuple[int, int, int, int] | None, scale: int) -> torch.Tensor:
    if region is None:
        return frame
    x, y, w, h = (v * scale for v in region)
    return frame[:, y:y + h, x:x + w]


def check_region(region: tuple[int, int, int, int] | None, size: tuple[int, int]) -> None:
    """InputError unless ``region`` (x, y, w, h in input pixels) lies inside ``size`` (w, h)."""
    if region is None:
        return
    x, y, w, h = region
    if w < 1 or h < 1 or x < 0 or y < 0 or x + w > size[0] or y + h > size[1]:
        raise InputError(f"the region {x},{y},{w},{h} is not inside the {size[0]}x{size[1]} input")


def make_collage(input: str | os.PathLike[str], at: Sequence[float], output: str | os.PathLike[str],
                 methods: Mapping[str, FrameUpscaler | Callable[[], FrameUpscaler]],
                 region: tuple[int, int, int, int] | None = None, radius: int = 3) -> CollageResult:
    """Write a PNG collage: one row per time in ``at`` (seconds, in that order), one column per
    method (``methods``: {label: FrameUpscaler or factory}, left to right), each cell the frame
    nearest that time upscaled by the method (cropped to ``region`` = x, y, w, h in input pixels).

    Every method must have the same scale. Layout: :func:`collage_size`.
    """
    from PIL import Image, ImageDraw

    if not at:
        raise InputError("no times given (e.g. --at 3,4,5,6)")
    if not methods:
        raise InputError("no methods to compare")
    info = source_info(input)
    check_region(region, info.size)
    ups = {label: (m() if not hasattr(m, "process") else m) for label, m in methods.items()}
    scales = {int(u.scale) for u in ups.values()}
    if len(scales) != 1:
        raise InputError(f"the methods upscale by different factors: {sorted(scales)}")
    scale = scales.pop()
    segments = pick_segments(read_timed_frames(input), at, radius)
    cells: list[list[torch.Tensor]] = []
    for _, segment, k in segments:
        row = []
        for up in ups.values():
            r = _context(up, radius)  # single-frame methods need no neighbours
            lo = max(0, k - r)
            outs = list(up.process(iter(segment[lo:k + r + 1])))
            row.append(_crop(outs[k - lo], region, scale))
        cells.append(row)
    ch, cw = cells[0][0].shape[-2:]
    width, height = collage_size(len(cells), len(ups), (cw, ch))
    if width * height > BIG_COLLAGE:
        log.warning("the collage is %dx%d pixels; --region shows a part of each frame", width, height)
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    font = _font()
    for j, label in enumerate(ups):
        x = ROW_LABEL + GAP + j * (cw + GAP)
        draw.text((x + cw / 2, HEADER / 2), label, fill="black", font=font, anchor="mm")
    for i, ((t, _, _), row) in enumerate(zip(segments, cells)):
        y = HEADER + i * (ch + GAP)
        draw.text((ROW_LABEL / 2, y + ch / 2), f"{t:.2f} s", fill="black", font=font, anchor="mm")
        for j, cell in enumerate(row):
            x = ROW_LABEL + GAP + j * (cw + GAP)
            img.paste(Image.fromarray(tensor_to_rgb8(cell)), (x, y))
    out = Path(output)
    img.save(out, format="PNG")
    return CollageResult(out, (width, height), [t for t, _, _ in segments], list(ups))


def _label_tile(text: str) -> np.ndarray:
    from PIL import Image, ImageDraw

    font = _font(FONT_SIZE)
    box = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox((0, 0), text, font=font)
    tile = Image.new("RGB", (box[2] - box[0] + 12, box[3] - box[1] + 10), (0, 0, 0))
    ImageDraw.Draw(tile).text((6 - box[0], 5 - box[1]), text, fill="white", font=font)
    return np.asarray(tile)


def _paste(frame: torch.Tensor, tile: np.ndarray, x: int, y: int) -> None:
    """Draw ``tile`` ((h, w, 3) uint8) into ``frame`` at (x, y), clipped to the frame."""
    x, y = max(0, x), max(0, y)
    th, tw = tile.shape[:2]
    h, w = frame.shape[-2:]
    th, tw = min(th, h - y), min(tw, w - x)
    if th > 0 and tw > 0:
        frame[:, y:y + th, x:x + tw] = torch.from_numpy(tile[:th, :tw].transpose(2, 0, 1).astype(np.float32) / 255.0)


def split_screen(input: str | os.PathLike[str], output: str | os.PathLike[str],
                 left: tuple[str, FrameUpscaler], right: tuple[str, FrameUpscaler],
                 max_frames: int | None = None, progress: Callable[[int], None] | None = None) -> int:
    """Write a video whose left half is ``left``'s upscale and right half ``right``'s, with a
    divider and labels (``left``/``right``: (label, FrameUpscaler), same scale). Streams; both
    methods see every frame. Returns the number of frames written."""
    (lname, lup), (rname, rup) = left, right
    if int(lup.scale) != int(rup.scale):
        raise InputError(f"{lname} upscales x{lup.scale}, {rname} x{rup.scale}")
    info = source_info(input)
    s = int(rup.scale)
    w, h = info.size[0] * s, info.size[1] * s
    fps = info.fps or 25
    held: deque[torch.Tensor] = deque()

    def source() -> Iterator[torch.Tensor]:
        for f in read_frames(input, max_frames):
            held.append(f)
            yield f

    ltile, rtile = _label_tile(lname), _label_tile(rname)
    half = w // 2
    n = 0
    with RawVideoWriter(output, (w - w % 2, h - h % 2), fps) as writer:
        for out in rup.process(source()):
            frame = next(iter(lup.process([held.popleft()])))
            frame[:, :, half:] = out[:, :, half:]
            frame[:, :, max(0, half - 1):half + 1] = 1.0
            _paste(frame, ltile, 8, 8)
            _paste(frame, rtile, w - rtile.shape[1] - 8, 8)
            writer.write(frame[:, :h - h % 2, :w - w % 2])
            n += 1
            if progress:
                progress(n)
    return n


def default_columns(scale: int, model: str | None = None, others: bool = True, device: str = "auto",
                    precision: str = "auto") -> dict[str, Callable[[], FrameUpscaler]]:
    """bicubic | ours (``model`` or the shipped default for ``scale``) | installed peers."""
    from .protocol import _peers, build_method

    cols: dict[str, Callable[[], FrameUpscaler]] = {"bicubic": lambda: InterpolationUpscaler(scale, "bicubic")}
    if model is None:
        from ..model.registry import default_model
        model = default_model(scale)
    label = Path(model).stem if model.endswith((".pt", ".pth")) else model
    cols[label] = lambda: build_method(model, scale, device, precision)
    if others:
        for name, factory in _peers().items():
            if getattr(factory, "scale", None) == scale and name not in cols:
                cols[name] = factory
    return cols


__all__ = ["CollageResult", "check_region", "collage_size", "default_columns", "make_collage",
           "pick_segments", "split_screen"]
