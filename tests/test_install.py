"""The install gives the exact torch/torchao that stored artefacts depend on (constraints.txt),
and a calibration made with other versions is a clear error, not a silent re-calibration."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from mstgan_cli.compress import int8
from mstgan_cli.errors import BackendError

ROOT = Path(__file__).resolve().parents[1]


def _pins() -> dict[str, str]:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    return dict(line.split("==") for line in lines if line and not line.startswith("#"))


def test_constraints_pin_what_the_shipped_calibrations_were_made_with() -> None:
    pins = _pins()
    assert set(pins) == {"torch", "torchao"}
    for sidecar in sorted((ROOT / "weights").glob("*.int8.json")):
        assert json.loads(sidecar.read_text())["versions"] == pins, \
            f"{sidecar.name} and constraints.txt disagree: recalibrate, or pin what it was made with"


def test_this_install_has_the_pinned_versions() -> None:
    assert int8.versions() == _pins(), "install with bash scripts/setup.sh (pip install -c constraints.txt)"


def test_setup_installs_with_the_constraints_and_only_a_cpu_torch_without_a_gpu() -> None:
    script = (ROOT / "scripts" / "setup.sh").read_text()
    assert 'pip install -e ".[dev]" -c constraints.txt' in script
    assert '"torch==$want+cpu"' in script  # no CUDA build satisfies a +cpu pin
    assert "constraints.txt" in script.split("stamp=")[1].split("\n")[1]  # a new pin reinstalls


def _sidecar(tmp_path: Path, versions: dict) -> tuple[Path, str]:
    path = tmp_path / "m.int8.json"
    path.write_text(json.dumps({"format": int8.FORMAT, "model": "d1", "versions": versions, "stages": {}}))
    return path, "d1"


def test_a_shipped_calibration_of_other_versions_is_refused_with_a_message(tmp_path: Path) -> None:
    path, digest = _sidecar(tmp_path, {"torch": "2.99.0", "torchao": "0.1.0"})
    with pytest.raises(BackendError, match=r"calibrated with torch 2\.99\.0 and torchao 0\.1\.0.*constraints\.txt"):
        int8.stored_qparams(digest, path)
    ok, _ = _sidecar(tmp_path, int8.versions())
    assert int8.stored_qparams(digest, ok)["model"] == "d1"


def test_a_cached_calibration_of_other_versions_is_redone_with_a_warning(tmp_path: Path, monkeypatch, caplog) -> None:
    monkeypatch.setenv("MSTGAN_CACHE_DIR", str(tmp_path))
    cached = tmp_path / "int8" / "d1.json"
    cached.parent.mkdir()
    cached.write_text(json.dumps({"format": int8.FORMAT, "model": "d1", "stages": {},
                                  "versions": {"torch": "2.99.0", "torchao": "0.1.0"}}))
    with caplog.at_level(logging.WARNING, logger="mstgan_cli"):
        assert int8.stored_qparams("d1") is None
    assert "calibrating again" in caplog.text
