"""The public API of ``mstgan_cli`` (DESIGN.md): what its docstring shows works, and importing it
is cheap (no torch until a name that needs it is used)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

import mstgan_cli


def test_import_is_cheap_and_lazy() -> None:
    code = ("import sys, mstgan_cli; assert 'torch' not in sys.modules, 'torch imported'; "
            "mstgan_cli.UpscaleOptions; mstgan_cli.Target; mstgan_cli.MstganError; "
            "assert 'torch' not in sys.modules, 'options imported torch'; print(mstgan_cli.__version__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == mstgan_cli.__version__


def test_every_exported_name_resolves() -> None:
    for name in mstgan_cli.__all__:
        assert getattr(mstgan_cli, name) is not None, name
    assert set(mstgan_cli.__all__) <= set(dir(mstgan_cli))
    assert mstgan_cli.__doc__ and "upscale_file" in mstgan_cli.__doc__ and "load_model" in mstgan_cli.__doc__


def test_the_docstring_examples(clip, tmp_path: Path) -> None:
    from mstgan_cli import Target, UpscaleOptions, load_model, upscale_file

    out = tmp_path / "out.mp4"
    result = upscale_file(clip("mp4"), UpscaleOptions(output=out, target=Target.parse("640x360"), model="bicubic"))
    assert result.output == out and out.is_file() and result.frames > 0

    up = load_model("mstgan-x4", device="cpu", backend="eager")
    frames = [torch.rand(3, 24, 32) for _ in range(3)]
    big = list(up.process(frames))
    assert len(big) == 3 and big[0].shape == (3, 96, 128)
    from mstgan_cli.runtime import ModelUpscaler

    assert isinstance(up, ModelUpscaler)
