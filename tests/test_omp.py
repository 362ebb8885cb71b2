"""The mstgan command makes OpenMP threads sleep when they wait (mstgan_cli/job/omp.py), unless the user
chose how they wait. Checked in fresh interpreters, through what GNU OpenMP itself reports it
loaded (OMP_DISPLAY_ENV=verbose prints its settings at start-up)."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from mstgan_cli.job.omp import USER_CHOICES, prefer_passive_waits


def _openmp_settings(code: str, **env: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k not in USER_CHOICES}
    res = subprocess.run([sys.executable, "-c", code], env={**clean, **env, "OMP_DISPLAY_ENV": "verbose"},
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    found = dict(re.findall(r"^\s*(OMP_WAIT_POLICY|GOMP_SPINCOUNT) = '([^']*)'", res.stderr, re.M))
    if "GOMP_SPINCOUNT" not in found:
        pytest.skip("torch is not linked with GNU OpenMP here")
    return found


def test_plain_torch_spins_at_barriers_so_the_command_must_change_it():
    assert _openmp_settings("import torch")["GOMP_SPINCOUNT"] != "0"


# the command's entry point running a command that loads torch (importing the module changes nothing)
COMMAND = "import sys; from mstgan_cli.cli import main; sys.argv = ['mstgan', 'models', '--json']; main()"


def test_the_command_loads_openmp_with_passive_waits():
    s = _openmp_settings(COMMAND)
    assert s["GOMP_SPINCOUNT"] == "0"


def test_importing_the_cli_changes_no_environment():
    code = "import os, mstgan_cli.cli; print('OMP_WAIT_POLICY' in os.environ)"
    clean = {k: v for k, v in os.environ.items() if k not in USER_CHOICES}
    res = subprocess.run([sys.executable, "-c", code], env=clean, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "False", res.stderr[-2000:]


def test_a_wait_setting_of_the_user_is_kept():
    assert _openmp_settings(COMMAND, GOMP_SPINCOUNT="300000")["GOMP_SPINCOUNT"] == "300000"
    assert _openmp_settings(COMMAND, OMP_WAIT_POLICY="active")["OMP_WAIT_POLICY"] == "ACTIVE"


def test_nothing_is_set_once_torch_is_loaded():
    # this process has imported torch (via the package's tests): too late for OpenMP to see it
    import torch  # noqa: F401

    env: dict[str, str] = {}
    assert prefer_passive_waits(env) is False and env == {}
