"""The `mstgan` command: help, version, models, exit codes, one-line errors, Ctrl-C."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mstgan_cli import __version__, cli
from mstgan_cli.errors import EXIT_USAGE

from conftest import ffmpeg, frame_times, leftovers, video_stream

runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(cli.app, list(args), env=env, catch_exceptions=False)


def test_version_and_help_teach_by_example() -> None:
    assert invoke("--version").stdout.strip() == f"mstgan {__version__}"
    top = invoke("--help")
    assert top.exit_code == 0 and "Examples" in top.stdout and "upscale" in top.stdout
    sub = invoke("upscale", "--help")
    assert sub.exit_code == 0
    for text in ("Examples", "--target", "--lossless", "Lanczos", "Exit codes"):
        assert text in sub.stdout
    assert "Examples" in invoke("models", "--help").stdout


def test_models_lists_baselines_as_table_and_json() -> None:
    table = invoke("models")
    assert table.exit_code == 0 and "bicubic" in table.stdout
    rows = json.loads(invoke("models", "--json").stdout)
    assert {"bicubic", "lanczos"} <= {r["name"] for r in rows}
    assert all({"name", "scale", "params", "flops_per_pixel", "precisions", "metrics", "path"} <= r.keys()
               for r in rows)
    shipped = {r["name"]: r["precisions"] for r in rows if r["name"].startswith("mstgan-")}
    assert shipped and all(p[-1] == "int8" for p in shipped.values())  # each ships its int8 calibration


def test_models_table_shows_each_models_test_split_numbers(tmp_path: Path) -> None:
    from mstgan_cli.cli import _metric_means
    from mstgan_cli.model.registry import test_metrics

    summary = {"split": "test", "inputs": {"bicubic": {"gain": 1.234, "lpips": 0.2, "tof": 0.5},
                                           "h264:23": {"gain": 0.456, "lpips": 0.3}}}
    (tmp_path / "m.test.json").write_text(json.dumps(summary))
    entry = {"name": "m", "metrics": test_metrics(tmp_path / "m.pt")}
    assert _metric_means(entry) == pytest.approx({"gain_clean": 1.234, "gain_h264": 0.456, "lpips": 0.2, "tof": 0.5})
    assert test_metrics(tmp_path / "other.pt") == {} and _metric_means({"name": "x", "metrics": {}}) == {}


def test_models_fits_80_columns_and_shows_the_path_only_when_verbose() -> None:
    plain = invoke("models", env={"COLUMNS": "80"})
    assert plain.exit_code == 0
    lines = plain.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, plain.stdout
    assert "mstgan-x4-pruned" in plain.stdout and "mstgan-x4-lossy *" in plain.stdout  # names whole
    header = next(line for line in lines if line.startswith("name"))
    assert header.split() == ["name", "x", "params", "FLOPs/px", "clean+dB", "h264+dB", "LPIPS", "tOF"]
    row = next(line for line in lines if line.startswith("mstgan-x4 "))
    assert len(row.split()) == 8 and "weights" not in plain.stdout  # one line per model, no path
    verbose = invoke("models", "--verbose", env={"COLUMNS": "80"})
    assert "mstgan-x4.pt" in verbose.stdout and max(len(line) for line in verbose.stdout.splitlines()
                                                     if line.startswith(("name", "mstgan-x4 "))) <= 80


def test_upscale_success_is_quiet_on_stdout(clip, tmp_path: Path) -> None:
    out = tmp_path / "o.mp4"
    result = invoke("upscale", str(clip("mp4")), "-o", str(out), "--model", "bicubic", "--scale", "2",
                    "--preset", "ultrafast")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "wrote" in result.stderr and video_stream(out)["width"] == 128


def test_already_at_target_exits_zero_with_a_message(clip, tmp_path: Path) -> None:
    result = invoke("upscale", str(clip("mp4")), "--target", "32x24", "-o", str(tmp_path / "x.mp4"))
    assert result.exit_code == 0 and "already" in result.stderr
    assert not (tmp_path / "x.mp4").exists()


@pytest.mark.parametrize("make_args, code, message", [
    (lambda c, t: [str(t / "missing.mp4")], 2, "input not found"),
    (lambda c, t: [str(c("text"))], 2, "not a video"),
    (lambda c, t: [str(c("audio_only"))], 2, "no video"),
    (lambda c, t: [str(c("undecodable")), "--scale", "2", "-o", str(t / "u.mkv")], 2, "no frames"),
    (lambda c, t: [str(c("mp4")), "-o", str(c("mp4")), "--overwrite"], 3, "overwrite the input"),
    (lambda c, t: [str(c("mp4")), "-o", str(t / "no" / "dir.mp4")], 3, "does not exist"),
    (lambda c, t: [str(c("mp4")), "-o", str(t / "x.mp4"), "--model", str(t / "nope.pt")], 5, ""),
    (lambda c, t: [str(c("mp4")), "-o", str(t / "x.mp4"), "--codec", "nosuch"], 3, "unknown video encoder"),
])
def test_bad_input_gets_one_line_and_an_exit_code(clip, tmp_path: Path, make_args, code, message) -> None:
    args = make_args(clip, tmp_path)
    result = invoke("upscale", *args, *([] if "--model" in args else ["--model", "bicubic"]))
    assert result.exit_code == code, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("error:") and message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert leftovers(tmp_path) == []


def test_a_retired_model_says_why_and_what_to_use_and_is_not_listed(clip, tmp_path: Path, monkeypatch) -> None:
    from mstgan_cli.errors import ModelError
    from mstgan_cli.model.registry import model_path

    with pytest.raises(ModelError, match="retired on 2026-12-07.*mstgan-x4-lossy.*mstgan-x4-clean"):
        model_path("mstgan-x4-gan")
    out = tmp_path / "x.mp4"
    result = invoke("upscale", str(clip("mp4")), "-o", str(out), "-m", "mstgan-x4-gan")
    assert result.exit_code == 5, result.output
    assert result.stderr.startswith("error:") and "Traceback" not in result.stderr
    err = " ".join(result.stderr.split())  # however the console wraps it
    assert "retired" in err and "LPIPS 0.244" in err and "mstgan-x4-lossy" in err and "mstgan-x4-clean" in err
    assert not out.exists()
    assert "mstgan-x4-gan" not in {r["name"] for r in json.loads(invoke("models", "--json").stdout)}
    # an old copy left in a weights folder is neither listed nor loaded
    weights = tmp_path / "weights"
    weights.mkdir()
    shipped = Path(__file__).resolve().parents[1] / "weights" / "mstgan-x4.pt"
    (weights / "mstgan-x4-gan.pt").write_bytes(shipped.read_bytes())
    (weights / "mstgan-x4.pt").write_bytes(shipped.read_bytes())
    monkeypatch.setenv("MSTGAN_WEIGHTS_DIR", str(weights))
    names = {r["name"] for r in json.loads(invoke("models", "--json").stdout)}
    assert "mstgan-x4" in names and "mstgan-x4-gan" not in names
    assert "mstgan-x4-gan" not in invoke("models").stdout
    with pytest.raises(ModelError, match="retired"):
        model_path("mstgan-x4-gan")


def test_existing_output_needs_overwrite(clip, tmp_path: Path) -> None:
    out = tmp_path / "x.mp4"
    out.write_bytes(b"keep me")
    result = invoke("upscale", str(clip("mp4")), "-o", str(out), "--model", "bicubic")
    assert result.exit_code == 3 and "--overwrite" in result.stderr and out.read_bytes() == b"keep me"


def test_missing_ffmpeg_is_exit_4(clip, tmp_path: Path) -> None:
    result = invoke("upscale", str(clip("mp4")), "-o", str(tmp_path / "x.mp4"),
                    env={"MSTGAN_FFMPEG": str(tmp_path / "no-ffmpeg")})
    assert result.exit_code == 4 and "install FFmpeg" in result.stderr


@pytest.mark.parametrize("args", [["--scale", "3"], ["--scale", "2", "--target", "1080p"],
                                  ["--target", "huge"], ["--window", "6"], ["--device", "tpu"]])
def test_usage_errors(clip, args: list[str]) -> None:
    """A command line that is wrong exits 64 (EX_USAGE), not 2, the code of bad input."""
    result = runner.invoke(cli.app, ["upscale", str(clip("mp4")), *args])
    assert result.exit_code == EXIT_USAGE == 64 and "Traceback" not in result.output


@pytest.mark.parametrize("args", [["upscale", "x.mp4", "--no-such-option"], ["upscale", "x.mp4", "--precision", "fp8"],
                                  ["bench", "--precision", "fp32,fp8"], ["bench", "--backend", "jit"],
                                  ["bench", "--scale", "3"], ["compare", "x.mp4", "--scale", "3"],
                                  ["compare", "x.mp4", "--precision", "fp8"], ["nonsense"]])
def test_usage_errors_of_every_command_are_64_and_bad_input_is_2(args: list[str], tmp_path: Path) -> None:
    assert runner.invoke(cli.app, args).exit_code == 64
    missing = runner.invoke(cli.app, ["upscale", str(tmp_path / "missing.mp4"), "--model", "bicubic"])
    assert missing.exit_code == 2


def test_exit_codes_are_documented_once_and_everywhere() -> None:
    from mstgan_cli.errors import EXIT_CODES

    assert {0, 1, 2, 3, 4, 5, 6, 7, 64, 130, 143} == set(EXIT_CODES)
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("Exit codes"):][:1500]
    assert all(f"**{code}**" in section for code in EXIT_CODES), "README's exit codes match errors.EXIT_CODES"
    for command in ("upscale", "bench", "compare"):
        text = runner.invoke(cli.app, [command, "--help"], env={"COLUMNS": "200"}).output
        assert "143" in text and "64" in text, command


def test_ctrl_c_in_library_exits_130(clip, tmp_path: Path, monkeypatch) -> None:
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "upscale_file", interrupted)
    result = invoke("upscale", str(clip("mp4")), "-o", str(tmp_path / "x.mp4"))
    assert result.exit_code == 130 and "interrupted" in result.stderr


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_real_signal_mid_run_leaves_nothing(clip, tmp_path: Path, sig, code) -> None:
    src = clip("big")  # 200 frames: several seconds of work
    cmd = [sys.executable, "-m", "mstgan_cli", "upscale", str(src), "-o", str(tmp_path / "out.mp4"),
           "--model", "bicubic", "--target", "1080p", "--preset", "ultrafast"]
    # (a shell without job control starts background jobs with SIGINT ignored, and Python keeps
    # an ignored SIGINT ignored: give the child the default, as a terminal would)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not any(p.stat().st_size > 0 for p in tmp_path.glob(".out.*.video.mp4")):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err.decode()
    assert "interrupted" in err.decode() and "Traceback" not in err.decode()
    assert list(tmp_path.iterdir()) == []


def test_output_to_stdout_is_only_video(clip, tmp_path: Path) -> None:
    src = clip("mp4")
    cmd = [sys.executable, "-m", "mstgan_cli", "upscale", str(src), "-o", "-", "--scale", "2",
           "--model", "bicubic", "--preset", "ultrafast"]
    proc = subprocess.run(cmd, capture_output=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout[:4] == b"\x1a\x45\xdf\xa3"  # an EBML (Matroska) header, nothing before it
    out = tmp_path / "piped.mkv"
    out.write_bytes(proc.stdout)
    assert video_stream(out)["width"] == 128
    # Matroska cannot hold the AAC priming's negative start, so FFmpeg shifts every stream alike
    got, want = frame_times(out), frame_times(src)
    assert [round(t - got[0], 3) for t in got] == [round(t - want[0], 3) for t in want]


def test_messages_say_what_is_wrong_and_count_in_the_singular(clip, tmp_path: Path) -> None:
    """A WxH target that is no frame size says so (not "unknown target ... use WxH"); one
    frame is "1 frame" (issue 20, defect 8)."""
    bad = runner.invoke(cli.app, ["upscale", str(clip("mp4")), "--target", "99999x1"])
    said = " ".join(bad.output.replace("│", " ").split())  # (rich wraps the error box)
    assert bad.exit_code == 64 and "at least 2 pixels" in said and "unknown" not in said
    one = tmp_path / "one.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-frames:v", "1", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", str(one))
    done = runner.invoke(cli.app, ["upscale", str(one), "-o", str(tmp_path / "out.mkv"), "--scale", "2",
                                   "--model", "bicubic", "--preset", "ultrafast"])
    assert done.exit_code == 0, done.output
    assert "1 frame," in done.stderr and "1 frames" not in done.stderr
