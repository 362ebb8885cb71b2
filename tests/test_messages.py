"""What the ``mstgan`` command says (issue 20, defect 8 and follow-ups): a fast ``--version``,
help text as written, plain error sentences, each command's own exit codes, the folder report,
the progress bar and the one line naming what runs."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from mstgan_cli import __version__, cli

runner = CliRunner()


def test_version_and_help_import_no_torch() -> None:
    """``mstgan --version`` (and the top-level --help) load neither torch nor the pipeline: torch
    alone takes seconds to import."""
    for args in (["--version"], ["--help"]):
        code = ("import sys\n"
                f"sys.argv = ['mstgan', *{args!r}]\n"
                "from mstgan_cli import cli\n"
                "try:\n    cli.main()\nexcept SystemExit as exc:\n    assert exc.code in (0, None), exc.code\n"
                "heavy = sorted(m for m in ('torch', 'numpy', 'av', 'mstgan_cli.job.upscale') if m in sys.modules)\n"
                "assert not heavy, heavy\n")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        if args == ["--version"]:
            assert done.stdout.strip() == f"mstgan {__version__}"


def _said(result) -> str:
    """What a command printed, with rich's boxes and wrapping taken out."""
    return " ".join(result.output.replace("│", " ").replace("╭", " ").replace("╰", " ").split())


def test_help_keeps_literal_brackets() -> None:
    """rich markup must not eat '[tensorrt]' (the extra's name) from bench's help."""
    text = " ".join(runner.invoke(cli.app, ["bench", "--help"], env={"COLUMNS": "200"}).output.split())
    assert "the [tensorrt] extra" in text and "(CUDA, the extra)" not in text
    upscale = " ".join(runner.invoke(cli.app, ["upscale", "--help"], env={"COLUMNS": "200"}).output.split())
    assert "mstgan[tensorrt]" in upscale


def test_bad_option_values_are_plain_sentences() -> None:
    """Typer's pydantic wording ('Value error, ...', 'Input should be ...') is not shown."""
    cases = {("--batch", "0"): "'--batch': must be at least 1",
             ("--crf", "99"): "'--crf': must be at most 63",
             ("--crf", "abc"): "'--crf': must be a whole number",
             ("--segment-seconds", "x"): "'--segment-seconds': must be a number",
             ("--precision", "fp8"): "'fp8' is not one of"}
    for (option, value), expected in cases.items():
        result = runner.invoke(cli.app, ["upscale", "x.mp4", option, value], env={"COLUMNS": "200"})
        said = _said(result)
        assert result.exit_code == 64, said
        assert expected in said and "Input should" not in said and "Value error" not in said, said


def test_an_output_folder_through_a_file_says_so(clip, tmp_path: Path) -> None:
    """'-o afile/x.mp4': the folder cannot exist because a file is in the way; say that, for a
    file output, a folder output and compare's PNG."""
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    for out, where in ((afile / "x.mp4", "afile"), (afile / "sub" / "x.mp4", "afile")):
        result = runner.invoke(cli.app, ["upscale", str(clip("mp4")), "-o", str(out), "--model", "bicubic"])
        assert result.exit_code == 3, result.output
        assert f"{afile} is a file, not a folder" in result.stderr, result.stderr
        assert "does not exist" not in result.stderr
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(clip("mp4").read_bytes())
    result = runner.invoke(cli.app, ["upscale", str(folder), "-o", str(afile / "up"), "--model", "bicubic"])
    assert result.exit_code == 3 and f"{afile} is a file, not a folder" in result.stderr, result.output
    result = runner.invoke(cli.app, ["compare", str(clip("mp4")), "-o", str(afile / "c.png"), "--no-others"])
    assert result.exit_code == 3 and f"{afile} is a file, not a folder" in result.stderr, result.output
    missing = runner.invoke(cli.app, ["upscale", str(clip("mp4")), "-o", str(tmp_path / "no" / "x.mp4"),
                                      "--model", "bicubic"])
    assert missing.exit_code == 3 and "does not exist" in missing.stderr


def test_each_command_lists_its_own_exit_codes() -> None:
    """bench and compare show the codes they exit with, not eval's (or upscale's) whole table."""
    def epilog(command: str) -> str:
        text = " ".join(runner.invoke(cli.app, [command, "--help"], env={"COLUMNS": "200"}).output.split())
        return text[text.index("Exit codes:"):]
    bench, compare, upscale = epilog("bench"), epilog("compare"), epilog("upscale")
    assert len({bench, compare, upscale}) == 3
    assert "some configurations failed" in bench and "integrity check" not in bench
    assert "collage" in compare and "integrity check" not in compare and "files of a folder" not in compare
    assert "integrity check" in upscale
    for text in (bench, compare):
        assert "64 usage error" in text and "130 interrupted" in text and "143 terminated" in text


def test_compare_takes_int8() -> None:
    """compare --precision accepts every precision upscale does (int8 included: issue 19)."""
    from mstgan_cli.commands.compare import compare_cmd
    from mstgan_cli.options import Precision

    assert compare_cmd.__annotations__["precision"].startswith("Annotated[Precision")
    assert "int8" in [p.value for p in Precision]
    text = " ".join(runner.invoke(cli.app, ["compare", "--help"], env={"COLUMNS": "200"}).output.split())
    assert "int8" in text


def _tiny(path: Path, frames: int = 3, audio: bool = False, **extra: str) -> Path:
    """A small generated clip (64x48 testsrc2 at 24 fps, optionally with AAC)."""
    from conftest import ffmpeg

    args = ["-f", "lavfi", "-i", "testsrc2=size=64x48:rate=24"]
    if audio:
        args += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", f"{frames / 24:.3f}",
                 "-c:a", "aac"]
    ffmpeg(*args, "-frames:v", str(frames), "-c:v", "libx264", "-pix_fmt", "yuv420p",
           *[x for kv in extra.items() for x in kv], str(path))
    return path


def test_folder_report_names_the_model_that_ran_and_missing_frames(tmp_path: Path) -> None:
    """mstgan-report.json: each file's record holds the model that ran (the shipped x4 model's own
    name, not the alias "mstgan" asked for) and how many frames an incomplete input lacked; the
    numbers survive a re-run that skips the finished files."""
    import json

    from mstgan_cli.model.registry import default_model

    folder = tmp_path / "in"
    folder.mkdir()
    _tiny(folder / "a.mp4")
    whole = _tiny(tmp_path / "whole.mp4", frames=24, audio=True, **{"-movflags": "+faststart"})
    data = whole.read_bytes()
    (folder / "cut.mp4").write_bytes(data[:len(data) * 6 // 10])
    out = tmp_path / "out"
    args = ["upscale", str(folder), "-o", str(out), "--scale", "4", "--backend", "eager",
            "--precision", "fp32", "--device", "cpu", "--preset", "ultrafast"]
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "mstgan-report.json").read_text())
    files = {f["input"]: f for f in report["files"]}
    assert report["settings"]["model"] == "mstgan"  # what was asked (the settings hash)
    for f in files.values():
        assert f["status"] == "done" and f["model"] == default_model(4) != "mstgan", f
    assert files["a.mp4"]["missing_frames"] == 0
    cut = files["cut.mp4"]
    assert 0 < cut["frames"] < 24 and cut["missing_frames"] == 24 - cut["frames"], cut
    again = runner.invoke(cli.app, args)
    assert again.exit_code == 0, again.output
    files = {f["input"]: f for f in json.loads((out / "mstgan-report.json").read_text())["files"]}
    assert files["cut.mp4"]["status"] == "skipped" and files["cut.mp4"]["missing_frames"] == cut["missing_frames"]
    assert files["cut.mp4"]["model"] == default_model(4)


def test_default_verbosity_names_model_and_size_and_the_bar_ends_done(tmp_path: Path) -> None:
    """One line on stderr says what runs (input, output size, model) without -v, none with -q;
    the last progress report is "done", not "muxing"."""
    from mstgan_cli.job.upscale import upscale_file

    src = _tiny(tmp_path / "in.mp4")
    base = ["upscale", str(src), "--scale", "2", "--model", "bicubic", "--preset", "ultrafast", "-y"]
    said = runner.invoke(cli.app, [*base, "-o", str(tmp_path / "a.mp4")])
    assert said.exit_code == 0, said.output
    lines = [line for line in said.stderr.splitlines() if "64x48 -> 128x96" in line]
    assert len(lines) == 1 and "in.mp4" in lines[0] and "bicubic" in lines[0], said.stderr
    quiet = runner.invoke(cli.app, [*base, "-o", str(tmp_path / "b.mp4"), "-q"])
    assert quiet.exit_code == 0 and quiet.stderr == "", quiet.stderr

    from conftest import bicubic, opts

    reports = []
    upscale_file(src, opts(tmp_path, "c.mp4", scale=2), bicubic, reports.append)
    stages = [r.stage for r in reports]
    assert stages[-1] == "done" and "muxing" in stages and reports[-1].frames == 3, stages


def test_stream_to_mp4_takes_audio_it_cannot_hold_as_stored(tmp_path: Path) -> None:
    """`-o - --format mp4` with WMA (which no MP4 holds) next to Opus, from a file and from stdin:
    the WMA track is re-encoded to AAC with a warning, Opus copied, exit 0 (the one attempt a pipe
    gets used to fail with exit code 4, "Could not write header"; issue 20, defect 4)."""
    import av

    from conftest import ffmpeg, packets_md5

    src = tmp_path / "wma.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-f", "lavfi",
           "-i", "sine=frequency=440:sample_rate=48000", "-f", "lavfi", "-i", "sine=frequency=300",
           "-map", "0", "-map", "1", "-map", "2", "-frames:v", "6", "-t", "0.24", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", "-c:a:0", "wmav2", "-c:a:1", "libopus", str(src))
    for from_stdin in (False, True):
        args = [sys.executable, "-m", "mstgan_cli", "upscale", "-" if from_stdin else str(src), "-o", "-",
                "--format", "mp4", "--scale", "2", "--model", "bicubic", "--preset", "ultrafast"]
        with open(src, "rb") as stdin:
            proc = subprocess.run(args, stdin=stdin if from_stdin else subprocess.DEVNULL,
                                  capture_output=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr.decode()
        assert "re-encoded to aac" in proc.stderr.decode()
        out = tmp_path / f"piped{int(from_stdin)}.mp4"
        out.write_bytes(proc.stdout)
        with av.open(str(out)) as c:
            assert [(s.type, s.codec_context.name) for s in c.streams] == [
                ("video", "h264"), ("audio", "aac"), ("audio", "opus")]
        assert packets_md5(out, "a:1") == packets_md5(src, "a:1")  # Opus copied bit for bit
    assert sorted(p.name for p in tmp_path.iterdir()) == ["piped0.mp4", "piped1.mp4", "wma.mkv"]
