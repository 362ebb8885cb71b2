"""What the ``mstgan`` command says (issue 20, defect 8 and follow-ups): a fast ``--version``,
help text as written, plain error sentences, each command's own exit codes, the folder report,
the progress bar and the one line naming what runs."""
from __future__ import annotations

import subprocess
import sys

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
