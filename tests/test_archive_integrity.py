"""The integrity check: outputs are read back and compared with their input; a mismatch is a
typed error (exit code 7), leaves nothing behind, and is in the folder report."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mstgan_cli import cli
from mstgan_cli.errors import IntegrityError
from mstgan_cli.job.integrity import Expected, verify
from mstgan_cli.job.upscale import remux as real_remux
from mstgan_cli.media.probe import packet_index, probe
from mstgan_cli.job.upscale import upscale_file

from conftest import bicubic, leftovers, opts

runner = CliRunner()


def test_a_good_output_passes_with_its_details(clip, tmp_path: Path) -> None:
    result = upscale_file(clip("mkv_rich"), opts(tmp_path, "o.mkv", scale=2), bicubic)
    check = result.integrity
    assert check is not None and check.ok
    assert (check.frames_expected, check.frames_found) == (10, 10)
    assert check.streams_found == check.streams_expected == ["audio", "subtitle", "attachment"]
    assert check.max_error <= 0.001 and check.last_time - check.first_time == pytest.approx(0.36)
    assert check.to_dict()["ok"] is True


def test_mismatches_are_integrity_errors(clip, tmp_path: Path) -> None:
    src = clip("mp4")
    upscale_file(src, opts(tmp_path, "o.mp4", scale=2), bicubic)
    out = tmp_path / "o.mp4"
    info = probe(src)
    index = packet_index(src, info.video.index, info.video.time_base)
    assert index is not None
    good = Expected(index.pts, info.video.time_base, ("audio",))
    assert verify(out, good).ok
    cases = {
        "frames in the output": replace(good, pts=index.pts[:-1]),
        "its input frame at": replace(good, pts=[p + (5 if i == 7 else 0) * 512 for i, p in enumerate(index.pts)]),
        "streams after the video": replace(good, streams=("audio", "subtitle")),
        "starts": replace(good, pts=[p + 2 * 12800 for p in index.pts]),
    }
    for message, expected in cases.items():
        with pytest.raises(IntegrityError, match=message) as err:
            verify(out, expected)
        assert err.value.exit_code == 7 and not err.value.report.ok
    shifted = replace(good, pts=[p + 256 for p in index.pts])  # 20 ms: a container's shift
    assert verify(out, shifted).shift == pytest.approx(-0.02)
    assert verify(out, replace(good, time_base=Fraction(1, 12800))).ok


def _losing_audio(monkeypatch) -> None:
    """A mux that silently drops the audio (what the check is there to catch)."""
    real = real_remux

    def remux(video_file, info, dest, **kw):
        real(video_file, replace(info, streams=(next(s for s in info.streams if s.kind == "video"),)), dest, **kw)
        return ()
    monkeypatch.setattr("mstgan_cli.job.upscale.remux", remux)


def test_a_lost_stream_fails_the_job_with_exit_7_and_nothing_written(clip, tmp_path: Path, monkeypatch) -> None:
    _losing_audio(monkeypatch)
    out = tmp_path / "x.mp4"
    result = runner.invoke(cli.app, ["upscale", str(clip("mp4")), "-o", str(out), "--scale", "2",
                                     "--model", "bicubic", "--preset", "ultrafast"])
    assert result.exit_code == 7, result.output
    assert "integrity" in result.stderr and "expected audio" in result.stderr
    assert not out.exists() and leftovers(tmp_path) == []


def test_the_folder_report_holds_the_failed_check(clip, tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "in"
    root.mkdir()
    shutil.copy(clip("mp4"), root / "a.mp4")
    _losing_audio(monkeypatch)
    result = runner.invoke(cli.app, ["upscale", str(root), "-o", str(tmp_path / "out"), "--scale", "2",
                                     "--model", "bicubic", "--preset", "ultrafast"])
    assert result.exit_code == 7
    entry = json.loads((tmp_path / "out" / "mstgan-report.json").read_text())["files"][0]
    assert entry["status"] == "failed" and entry["exit_code"] == 7
    assert entry["integrity"]["ok"] is False and entry["integrity"]["streams_found"] == []
    assert not (tmp_path / "out" / "a.mp4").exists()
