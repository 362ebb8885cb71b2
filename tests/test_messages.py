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
                "heavy = sorted(m for m in ('torch', 'numpy', 'av', 'mstgan_cli.pipeline') if m in sys.modules)\n"
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
