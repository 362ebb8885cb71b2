"""Folders: mirrored outputs, a bad file in the middle, re-runs that only report, stale outputs,
exit codes, file selection and shards."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mstgan_cli import cli
from mstgan_cli.job.archive import FolderOptions, Shard, find_videos, shard_of

from conftest import frame_times, streams, video_stream

runner = CliRunner()
FAST = ["--model", "bicubic", "--scale", "2", "--preset", "ultrafast"]


def run(*args: str):
    return runner.invoke(cli.app, ["upscale", *args], catch_exceptions=False)


def report(out: Path, name: str = "mstgan-report.json") -> dict:
    return json.loads((out / name).read_text())


def statuses(data: dict) -> dict[str, str]:
    return {f["input"]: f["status"] for f in data["files"]}


@pytest.fixture
def archive(clip, tmp_path: Path) -> Path:
    """a/one.mp4, b/two.mp4 (not a video), c/d/three.mkv (subtitles, attachment), notes.txt."""
    root = tmp_path / "archive"
    for rel, src in (("a/one.mp4", clip("mp4")), ("c/d/three.mkv", clip("mkv_rich"))):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, root / rel)
    (root / "b").mkdir()
    (root / "b" / "two.mp4").write_text("this is not a video\n")
    (root / "notes.txt").write_text("not picked: no video extension\n")
    return root


def test_a_bad_file_in_the_middle_fails_alone_and_reruns_skip_the_rest(clip, archive, tmp_path) -> None:
    out = tmp_path / "up"
    first = run(str(archive), "-o", str(out), *FAST)
    assert first.exit_code == 1, first.output
    assert first.stdout == ""
    assert "failed" in first.stderr and "b/two.mp4" in first.stderr
    data = report(out)
    assert statuses(data) == {"a/one.mp4": "done", "b/two.mp4": "failed", "c/d/three.mkv": "done"}
    bad = next(f for f in data["files"] if f["status"] == "failed")
    assert "not a video" in bad["error"] and bad["exit_code"] == 2
    one = next(f for f in data["files"] if f["input"] == "a/one.mp4")
    assert one["frames"] == 12 and one["seconds"] > 0 and one["fps"] > 0
    assert one["integrity"]["ok"] and one["integrity"]["streams_found"] == ["audio"]
    assert data["exit_code"] == 1 and data["settings_hash"]
    assert video_stream(out / "a" / "one.mp4")["width"] == 128
    assert frame_times(out / "a" / "one.mp4") == frame_times(clip("mp4"))
    assert [s["codec_type"] for s in streams(out / "c" / "d" / "three.mkv")] == \
        ["video", "audio", "subtitle", "attachment"]
    assert not (out / "notes.txt").exists() and not (out / "b").exists()

    stamps = {p: p.stat().st_mtime_ns for p in (out / "a" / "one.mp4", out / "c" / "d" / "three.mkv")}
    again = run(str(archive), "-o", str(out), *FAST)
    assert again.exit_code == 1
    data = report(out)
    assert statuses(data) == {"a/one.mp4": "skipped", "b/two.mp4": "failed", "c/d/three.mkv": "skipped"}
    assert next(f for f in data["files"] if f["input"] == "a/one.mp4")["frames"] == 12
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps

    (archive / "b" / "two.mp4").unlink()
    clean = run(str(archive), "-o", str(out), *FAST)
    assert clean.exit_code == 0, clean.output
    assert set(statuses(report(out)).values()) == {"skipped"}


def test_outputs_of_other_settings_or_changed_since_are_stale(clip, tmp_path: Path) -> None:
    root, out = tmp_path / "in", tmp_path / "out"
    root.mkdir()
    shutil.copy(clip("mp4"), root / "x.mp4")
    assert run(str(root), "-o", str(out), *FAST).exit_code == 0
    other = run(str(root), "-o", str(out), *FAST, "--crf", "30")
    assert other.exit_code == 3  # every file failed for the same reason: its code
    assert "not a verified output" in report(out)["files"][0]["error"]
    redo = run(str(root), "-o", str(out), *FAST, "--crf", "30", "--overwrite")
    assert redo.exit_code == 0 and statuses(report(out)) == {"x.mp4": "done"}
    assert run(str(root), "-o", str(out), *FAST, "--crf", "30").exit_code == 0  # now complete
    with open(out / "x.mp4", "ab") as f:  # changed behind our back
        f.write(b"\0")
    assert run(str(root), "-o", str(out), *FAST, "--crf", "30").exit_code == 3


def test_when_every_file_fails_alike_the_exit_code_says_why(tmp_path: Path) -> None:
    root = tmp_path / "in"
    root.mkdir()
    for name in ("a.mp4", "b.mkv"):
        (root / name).write_text("no video here\n")
    result = run(str(root), "-o", str(tmp_path / "out"), *FAST)
    assert result.exit_code == 2
    (tmp_path / "empty").mkdir()
    empty = run(str(tmp_path / "empty"), "-o", str(tmp_path / "out2"), *FAST)
    assert empty.exit_code == 2 and "no video files" in empty.stderr


def test_folder_only_options_and_their_mistakes(clip, tmp_path: Path) -> None:
    assert run(str(clip("mp4")), "--shard", "1/2").exit_code == 64  # usage errors
    (tmp_path / "in").mkdir()
    assert run(str(tmp_path / "in"), "--shard", "3/2").exit_code == 64
    assert run(str(tmp_path / "in"), "-o", "-").exit_code == 64
    with pytest.raises(ValueError):
        Shard.parse("2")


def test_walk_mirrors_videos_and_leaves_out_hidden_things_and_the_output(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for rel in ("a.mp4", "B.MKV", "sub/c.mov", "sub/deep/d.webm", ".hidden/e.mp4", "sub/.f.mp4",
                "up/old.mp4", "notes.txt", "sub/g.y4m"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"")
    folder = FolderOptions(out=root / "up")
    assert find_videos(root, folder) == ["B.MKV", "a.mp4", "sub/c.mov", "sub/deep/d.webm", "sub/g.y4m"]
    by_name = FolderOptions(out=root / "up", globs=("*.mov", "*.txt"))
    assert find_videos(root, by_name) == ["notes.txt", "sub/c.mov"]
    by_path = FolderOptions(out=root / "up", globs=("sub/deep/*",))
    assert find_videos(root, by_path) == ["sub/deep/d.webm"]
    assert FolderOptions(out=root, shard=Shard(2, 4)).report_path == root / "mstgan-report-2-of-4.json"


def test_shards_cover_every_file_exactly_once() -> None:
    paths = [f"season{s}/episode {e:02d}.mkv" for s in range(1, 7) for e in range(1, 51)]
    for n in range(1, 9):
        shards = [[p for p in paths if Shard(k, n).takes(p)] for k in range(1, n + 1)]
        assert sorted(p for shard in shards for p in shard) == sorted(paths)
        assert all(shards), f"an empty shard with N={n}"
        assert all(len(s) < 2.5 * len(paths) / n for s in shards)  # roughly even
        assert all(shard_of(p, n) == k + 1 for k, shard in enumerate(shards) for p in shard)


def test_shard_runs_share_a_folder_without_overlap(clip, tmp_path: Path) -> None:
    root, out = tmp_path / "in", tmp_path / "out"
    names = [f"clip{i}.mp4" for i in range(4)]
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(clip("mp4"), root / name)
    done: list[str] = []
    for k in (1, 2, 3):
        result = run(str(root), "-o", str(out), *FAST, "--shard", f"{k}/3", "-q")
        assert result.exit_code == 0, result.output
        data = report(out, f"mstgan-report-{k}-of-3.json")
        assert data["shard"] == f"{k}/3"
        done += [f["input"] for f in data["files"] if f["status"] == "done"]
    assert sorted(done) == names
    assert all((out / name).is_file() for name in names)
