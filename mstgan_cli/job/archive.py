"""Folders: every video under a tree, upscaled into a mirror of it, resumable and shardable.

``upscale_folder(ARCHIVE, options, FolderOptions(out=OUT))`` walks ``ARCHIVE`` (hidden files and
folders, and ``OUT`` itself when it lies inside, are left out), keeps the files with a video
extension (:data:`VIDEO_EXTENSIONS`) or matching ``globs``, and writes ``OUT/<relative path>``
for each. A file that fails is recorded and the walk goes on; Ctrl-C stops it.

**Complete** means: a record ``OUT/.mstgan/<relative path>.json``, written when the output passed
its integrity check, names the same settings (:func:`~mstgan_cli.job.identity.settings_hash`), the
same input (:func:`~mstgan_cli.job.identity.source_fingerprint`), and the output's current size and
modification time. Complete files are skipped, so a re-run only reports. An output without such
a record (other settings, another input, changed since) is stale: it is replaced with
``overwrite``, and is a failure (exit code 3) without it.

**Shards**: ``Shard(k, n)`` takes the files whose relative path hashes (SHA-1) to ``k - 1`` mod
``n``, so ``n`` processes (GPUs, Slurm array tasks, Kubernetes indexed Jobs, GNU parallel) can
share one tree with no coordination: every file is in exactly one shard, and a file keeps its
shard when others are added. Each shard writes its own report.

**Report** (JSON, rewritten after every file): the settings, then per file: input, output,
status (``done``, ``skipped``, ``not needed``, ``failed``, ``interrupted``), error and its exit
code, frames, seconds, fps, segments (resumed), and the integrity check.
"""
from __future__ import annotations

import datetime as _dt
import fnmatch
import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import InputError, MstganError, OutputError
from .identity import settings, settings_hash, source_fingerprint
from ..media.encode import READ_ONLY_SUFFIXES
from ..options import UpscaleOptions
from .upscale import ProgressCallback, UpscaleResult, upscale_file
from .plan import UpscalerFactory, folder_problem, upscaler_factory
from ..runtime.upscaler import FrameUpscaler

log = logging.getLogger("mstgan_cli")

VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mkv", ".mov", ".webm", ".avi", ".wmv", ".asf", ".flv", ".mpg", ".mpeg",
    ".m2v", ".ts", ".m2ts", ".mts", ".vob", ".3gp", ".3g2", ".ogv", ".mxf", ".dv", ".nut",
    ".y4m", ".divx", ".rm", ".rmvb", ".f4v"})
STATE_DIR = ".mstgan"
# Containers that cannot hold an encoded video: their outputs become Matroska.
_RAW_ONLY = READ_ONLY_SUFFIXES


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (1-based: ``1/4`` .. ``4/4``)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 1 <= self.index <= self.count:
            raise ValueError(f"shard {self.index}/{self.count}: use K/N with 1 <= K <= N")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``K/N``, e.g. ``3/8``."""
        k, sep, n = text.strip().partition("/")
        if not sep or not k.strip().isdigit() or not n.strip().isdigit():
            raise ValueError(f"shard {text!r}: use K/N, e.g. 1/4")
        return cls(int(k), int(n))

    def takes(self, relative: str) -> bool:
        digest = hashlib.sha1(relative.encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index - 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True)
class FolderOptions:
    """Where a folder goes and which of its files: ``globs`` (matched against the relative
    path, or the file name for patterns without ``/``) replace the extension filter."""

    out: Path
    globs: tuple[str, ...] = ()
    extensions: frozenset[str] = VIDEO_EXTENSIONS
    shard: Shard | None = None
    report: Path | None = None

    @property
    def report_path(self) -> Path:
        if self.report is not None:
            return self.report
        name = "mstgan-report" + (f"-{self.shard.index}-of-{self.shard.count}" if self.shard else "")
        return self.out / f"{name}.json"


@dataclass
class FileRecord:
    """One file's line in the report."""

    input: str
    output: str
    status: str = "pending"
    error: str | None = None
    exit_code: int = 0
    frames: int = 0
    seconds: float = 0.0
    fps: float = 0.0
    segments: int = 0
    resumed: int = 0
    integrity: dict[str, Any] | None = None
    model: str | None = None  # the model that ran ("mstgan-x4-lossy"; the settings hold what was asked)
    missing_frames: int = 0  # frames an incomplete input's container promised beyond its end


@dataclass
class FolderResult:
    records: list[FileRecord] = field(default_factory=list)
    report: Path | None = None

    def count(self, status: str) -> int:
        return sum(1 for r in self.records if r.status == status)

    @property
    def exit_code(self) -> int:
        """0 when no file failed; the failures' exit code when every file failed for the same
        kind of reason; 1 otherwise."""
        failed = [r for r in self.records if r.status in ("failed", "interrupted")]
        if not failed:
            return 0
        codes = {r.exit_code for r in failed}
        return codes.pop() if len(failed) == len(self.records) and len(codes) == 1 else 1


def find_videos(root: Path, folder: FolderOptions) -> list[str]:
    """Relative POSIX paths of the videos under ``root``, sorted."""
    out = folder.out.resolve()
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and (here / d).resolve() != out)
        for name in filenames:
            if name.startswith("."):
                continue
            rel = (here / name).relative_to(root).as_posix()
            if folder.globs:
                if any(fnmatch.fnmatch(rel if "/" in g else name, g) for g in folder.globs):
                    found.append(rel)
            elif Path(name).suffix.lower() in folder.extensions:
                found.append(rel)
    return sorted(found)


def output_for(rel: str, folder: FolderOptions, options: UpscaleOptions) -> Path:
    """``OUT/<rel>``; Matroska where the input's container cannot hold the encoded video."""
    dst = folder.out / rel
    suffix = dst.suffix.lower()
    enc = options.encode
    if suffix in _RAW_ONLY or not suffix or (enc.lossless and enc.codec is None
                                             and suffix not in (".mkv", ".nut")):
        dst = dst.with_name(dst.name + ".mkv") if not suffix else dst.with_suffix(".mkv")
    return dst


def _state_file(folder: FolderOptions, rel: str) -> Path:
    return folder.out / STATE_DIR / f"{rel}.json"


def is_complete(src: Path, dst: Path, state: Path, wanted: str) -> dict[str, Any] | None:
    """The record that makes ``dst`` a verified output of ``src`` for the settings hash
    ``wanted``, or None when it is not one."""
    try:
        rec = json.loads(state.read_text())
        st = dst.stat()
        ok = (isinstance(rec, dict) and rec.get("settings") == wanted
              and rec.get("size") == st.st_size and rec.get("mtime_ns") == st.st_mtime_ns
              and rec.get("source") == source_fingerprint(src))
    except (OSError, ValueError):
        return None
    return rec if ok else None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def _cached(factory: UpscalerFactory) -> UpscalerFactory:
    """Build each factor's model once for the whole folder."""
    built: dict[int, FrameUpscaler] = {}

    def get(scale: int) -> FrameUpscaler:
        if scale not in built:
            built[scale] = factory(scale)
        return built[scale]
    return get


def upscale_folder(root: str | os.PathLike[str], options: UpscaleOptions, folder: FolderOptions,
                   factory: UpscalerFactory | None = None,
                   progress: ProgressCallback | None = None,
                   on_file: Callable[[FileRecord, int, int], None] | None = None) -> FolderResult:
    """Upscale every selected video under ``root`` into ``folder.out`` (see the module docstring).

    ``on_file(record, i, n)`` is called before file ``i`` of ``n`` starts (status "running") and
    when it ends; ``progress`` receives each file's :class:`~mstgan_cli.job.upscale.Progress`.
    Raises InputError when ``root`` holds no videos at all, OutputError when ``folder.out``
    cannot be created; a file's own errors go into its record. KeyboardInterrupt propagates
    after the report is written."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"not a folder: {root}")
    everything = find_videos(root, folder)
    if not everything:
        what = ", ".join(folder.globs) if folder.globs else "video extensions"
        raise InputError(f"no video files ({what}) under {root}")
    if folder.out.resolve() == root.resolve():
        raise OutputError(f"the output folder is the input folder: {root}")
    chosen = [r for r in everything if folder.shard is None or folder.shard.takes(r)]
    try:
        folder.out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:  # a file where a folder should be
        raise OutputError(folder_problem(folder.out)) from exc
    except OSError as exc:
        raise OutputError(f"cannot create {folder.out}: {exc.strerror or exc}") from exc
    if folder.shard is not None:
        log.info("shard %s: %d of %d files", folder.shard, len(chosen), len(everything))
    wanted = settings_hash(options)
    build = _cached(factory or upscaler_factory(options))
    result = FolderResult([FileRecord(rel, output_for(rel, folder, options).relative_to(folder.out)
                                      .as_posix()) for rel in chosen], folder.report_path)
    started = _now()
    header = {"mstgan": __version__, "input": str(root), "output": str(folder.out),
              "shard": str(folder.shard) if folder.shard else None, "settings": settings(options),
              "settings_hash": wanted, "started": started}

    def save() -> None:
        _write_json(folder.report_path, {
            **header, "finished": _now(), "exit_code": result.exit_code,
            "counts": {s: result.count(s) for s in ("done", "skipped", "not needed", "failed",
                                                     "interrupted", "pending")},
            "files": [asdict(r) for r in result.records]})

    for i, rec in enumerate(result.records):
        src, dst = root / rec.input, folder.out / rec.output
        state = _state_file(folder, rec.input)
        previous = is_complete(src, dst, state, wanted)
        if previous is not None:
            rec.status, rec.frames = "skipped", int(previous.get("frames") or 0)
            rec.integrity = previous.get("integrity")
            rec.model, rec.missing_frames = previous.get("model"), int(previous.get("missing_frames") or 0)
            if on_file:
                on_file(rec, i, len(result.records))
            continue
        rec.status = "running"
        if on_file:
            on_file(rec, i, len(result.records))
        try:
            if dst.exists() and not options.overwrite:
                raise OutputError(f"{dst} exists but is not a verified output of these settings "
                                  "(use --overwrite to redo it)")
            dst.parent.mkdir(parents=True, exist_ok=True)
            res = upscale_file(src, replace(options, output=dst, overwrite=True), build, progress)
            _record(rec, res)
            if res.output is not None:
                st = dst.stat()
                _write_json(state, {"settings": wanted, "source": source_fingerprint(src),
                                    "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                                    "frames": res.frames, "integrity": rec.integrity,
                                    "model": res.model, "missing_frames": res.missing_frames})
        except KeyboardInterrupt:
            rec.status, rec.error, rec.exit_code = "interrupted", "interrupted", 130
            _prune(dst.parent, folder.out)
            save()
            raise
        except MstganError as exc:
            rec.status, rec.error, rec.exit_code = "failed", str(exc), exc.exit_code
            report = getattr(exc, "report", None)
            if report is not None and hasattr(report, "to_dict"):
                rec.integrity = report.to_dict()
            log.warning("%s: %s", rec.input, exc)
        except Exception as exc:  # noqa: BLE001 - one file's bug must not stop the archive
            rec.status, rec.error, rec.exit_code = "failed", f"internal error: {exc!r}", 1
            log.debug("%s failed", rec.input, exc_info=True)
            log.warning("%s: internal error: %r", rec.input, exc)
        if rec.status != "done":
            _prune(dst.parent, folder.out)
        if on_file:
            on_file(rec, i, len(result.records))
        save()
    save()
    return result


def _prune(folder: Path, top: Path) -> None:
    """Remove the empty folders made for an output that did not come."""
    while folder != top and top in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def _record(rec: FileRecord, res: UpscaleResult) -> None:
    if res.skipped:
        rec.status, rec.error = "not needed", res.skipped
        return
    rec.status = "done"
    rec.frames, rec.seconds = res.frames, round(res.seconds, 3)
    rec.fps = round(res.frames / res.seconds, 2) if res.seconds > 0 else 0.0
    rec.segments, rec.resumed = res.segments, res.resumed
    rec.integrity = res.integrity.to_dict() if res.integrity else None
    rec.model, rec.missing_frames = res.model, res.missing_frames


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def shard_of(relative: str, count: int) -> int:
    """The 1-based shard of ``count`` that takes ``relative`` (for scripts and tests)."""
    return next(k for k in range(1, count + 1) if Shard(k, count).takes(relative))


__all__ = ["FileRecord", "FolderOptions", "FolderResult", "Shard", "VIDEO_EXTENSIONS",
           "find_videos", "is_complete", "output_for", "shard_of", "upscale_folder"]
