"""Weights load without pickle: nothing in a checkpoint can run code (issue 19)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from mstgan_cli.errors import ModelError
from mstgan_cli.model.checkpoint import read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
# the training loop's resume of its own last.pt is the training code's to change (it loads
# with weights_only=True too, measured on the committed runs' last.pt files)
ALLOWED = {("mstgan_cli/train/loop.py", "last")}


class Payload:
    """Stands for any pickled object: loading it would run its class's code."""


def test_a_checkpoint_with_pickled_objects_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": "mstgan-generator/1", "config": {}, "state_dict": {}, "meta": Payload()}, path)
    with pytest.raises(ModelError, match="cannot read checkpoint"):
        read_checkpoint(path)


def test_every_product_load_is_weights_only() -> None:
    found = []
    for folder in ("mstgan_cli", "benchmarks", "tools"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for m in re.finditer(r"torch\.load\(([^)]*)\)", path.read_text()):
                rel = path.relative_to(ROOT).as_posix()
                if "weights_only=True" not in m.group(1) and (rel, m.group(1).split(",")[0].strip()) not in ALLOWED:
                    found.append(f"{rel}: torch.load({m.group(1)})")
    assert not found, "loads that may unpickle code:\n" + "\n".join(found)
