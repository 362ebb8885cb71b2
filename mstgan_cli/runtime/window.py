"""Sliding-window inference with per-frame caching.

A window of T frames (T odd, radius r = T // 2) around frame i holds frames i-r .. i+r, mirrored
at the clip's ends (frame -1 is frame 1, frame N is frame N-2), so the first and last frames get
full windows. What windows share is computed once:

- per frame: the feature pyramid (``encode``),
- per pair of neighbours (i, i+1): the flows in both directions (``pair_flows``).

Flows from each window's centre to its other frames are chained from the cached pair flows.
Only the last ~2r+batch frames are kept, so memory is bounded by the window, not the video.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from ..model.generator import MSTGANGenerator
from .parts import pack_window

if TYPE_CHECKING:
    from .backends import Parts


@dataclass
class _FrameState:
    lr: torch.Tensor                        # (1, 3, h, w) padded, on device, model dtype
    feats: tuple[torch.Tensor, ...]         # pyramid, each (1, C, h', w')
    fwd: torch.Tensor | None = None         # flow i -> i+1 (1, 2, h, w)
    bwd: torch.Tensor | None = None         # flow i+1 -> i (1, 2, h, w)


@dataclass
class WindowStream:
    """Streams frames of one spatial region through the generator with caching.

    push(frames) takes padded LR frames (n, 3, h, w) on the model's device and dtype and returns the
    SR frames that became computable; finish() returns the rest. Outputs are (n, 3, s*h, s*w).
    ``parts`` runs the three pieces of the network (a backend's compiled ones); default: the
    model's own methods, eagerly.
    """

    model: MSTGANGenerator
    batch: int = 1
    parts: Parts | None = None
    frames: dict[int, _FrameState] = field(default_factory=dict)
    received: int = 0
    emitted: int = 0

    @property
    def radius(self) -> int:
        return self.model.config.window // 2

    def __post_init__(self) -> None:
        if self.parts is None:
            from .backends import eager_parts
            self.parts = eager_parts(self.model)

    def push(self, lr: torch.Tensor) -> list[torch.Tensor]:
        feats = self.parts.encode(lr)
        start = self.received
        for k in range(lr.shape[0]):
            self.frames[start + k] = _FrameState(lr[k:k + 1], tuple(f[k:k + 1] for f in feats))
        self.received += lr.shape[0]
        # flows for the new neighbour pairs, batched
        pairs = [i for i in range(max(0, start - 1), self.received - 1)]
        if pairs:
            a = torch.cat([self.frames[i].lr for i in pairs])
            b = torch.cat([self.frames[i + 1].lr for i in pairs])
            f_ab, f_ba = self.parts.flows(a, b)
            for k, i in enumerate(pairs):
                self.frames[i].fwd, self.frames[i].bwd = f_ab[k:k + 1], f_ba[k:k + 1]
        ready = self.received - 1 - self.radius  # last centre whose window is complete
        return self._emit(ready, total=None)

    def finish(self) -> list[torch.Tensor]:
        return self._emit(self.received - 1, total=self.received)

    # ------------------------------------------------------------------------------------------
    def _index(self, i: int, total: int | None) -> int:
        if i < 0:
            i = -i
        if total is not None and i > total - 1:
            i = 2 * (total - 1) - i
        return min(max(i, 0), self.received - 1)  # clips shorter than the window repeat frames

    def _flow(self, a: int, b: int) -> torch.Tensor:
        """Cached flow from frame a to its neighbour b (or zero when a == b in very short clips)."""
        if b == a + 1:
            return self.frames[a].fwd
        if b == a - 1:
            return self.frames[b].bwd
        return torch.zeros_like(self.frames[a].lr[:, :2], dtype=torch.float32)

    def _emit(self, last_centre: int, total: int | None) -> list[torch.Tensor]:
        out: list[torch.Tensor] = []
        while self.emitted <= last_centre:
            centres = list(range(self.emitted, min(last_centre, self.emitted + self.batch - 1) + 1))
            out.extend(self._run(centres, total))
            self.emitted = centres[-1] + 1
            self._evict()
        return out

    def _run(self, centres: list[int], total: int | None) -> list[torch.Tensor]:
        r, t = self.radius, self.model.config.window
        idx = [[self._index(c + d, total) for d in range(-r, r + 1)] for c in centres]
        feats = [tuple(torch.cat([self.frames[row[p]].feats[lvl] for row in idx]) for lvl in range(len(self.frames[idx[0][0]].feats)))
                 for p in range(t)]
        fwd = [torch.cat([self._flow(row[p], row[p + 1]) for row in idx]) for p in range(t - 1)]
        bwd = [torch.cat([self._flow(row[p + 1], row[p]) for row in idx]) for p in range(t - 1)]
        centre_lr = torch.cat([self.frames[row[r]].lr for row in idx])
        sr = self.parts.window(*pack_window(centre_lr, feats, fwd, bwd))
        return list(sr.split(1))

    def _evict(self) -> None:
        keep_from = self.emitted - self.radius - 1
        for i in [i for i in self.frames if i < keep_from]:
            del self.frames[i]


def pad_frames(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Replicate-pad (n, 3, h, w) on the bottom/right to multiples of `multiple`."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if (ph or pw) else x


def iter_chunks(frames: Iterable[torch.Tensor], n: int) -> Iterator[list[torch.Tensor]]:
    chunk: list[torch.Tensor] = []
    for f in frames:
        chunk.append(f)
        if len(chunk) == n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
