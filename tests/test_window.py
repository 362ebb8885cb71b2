"""The streaming runtime gives exactly what the full-window model gives, with caching and tiling."""
import pytest
import torch

from mstgan_cli.model.generator import GeneratorConfig, MSTGANGenerator
from mstgan_cli.runtime.engine import ModelUpscaler
from mstgan_cli.runtime.window import WindowStream

TINY = dict(feat=8, trunk=8, enc_blocks=1, trunk_blocks=1, detail_blocks=1, flow_levels=3, flow_ch=8)


def _model(window=5, scale=2, gate=0):
    torch.manual_seed(0)
    model = MSTGANGenerator(GeneratorConfig(scale=scale, window=window, gate=gate, **TINY)).eval()
    if gate:  # a trained gate: its FiLM starts as the identity, which would hide a wrong wiring
        torch.nn.init.normal_(model.gate.film[-1].weight, std=0.5)
    return model


def _mirror(i, n):
    if i < 0:
        i = -i
    if i > n - 1:
        i = 2 * (n - 1) - i
    return i


def _reference(model, frames):
    """Full recomputation per window, mirrored at the ends."""
    n, r = len(frames), model.config.window // 2
    out = []
    with torch.no_grad():
        for c in range(n):
            win = torch.stack([frames[_mirror(c + d, n)] for d in range(-r, r + 1)])[None]
            out.append(model(win)[0].clamp(0, 1))
    return out


@pytest.mark.parametrize("window,batch,gate", [(5, 1, 0), (5, 3, 0), (7, 2, 0), (5, 2, 4)])
def test_stream_matches_full_windows(window, batch, gate):
    model = _model(window, gate=gate)
    frames = [torch.rand(3, 16, 24) for _ in range(9)]
    got = list(ModelUpscaler(model, device="cpu", precision="fp32", batch=batch).process(iter(frames)))
    ref = _reference(model, frames)
    assert len(got) == len(frames)
    for g, r in zip(got, ref):
        assert g.shape == (3, 32, 48)
        torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-4)


def test_short_clips_and_odd_sizes():
    model = _model(5)
    for n in (1, 2, 3):
        frames = [torch.rand(3, 13, 21) for _ in range(n)]
        got = list(ModelUpscaler(model, device="cpu", precision="fp32").process(frames))
        assert len(got) == n and got[0].shape == (3, 26, 42)


def test_cache_is_bounded():
    model = _model(5)
    stream = WindowStream(model, batch=2)
    emitted = 0
    with torch.no_grad():
        for _ in range(20):
            emitted += len(stream.push(torch.rand(2, 3, 16, 16)))
            # at most the window's reach behind the next centre plus the look-ahead is kept
            assert len(stream.frames) <= 5 + 2 + 1
        emitted += len(stream.finish())
    assert emitted == 40


@pytest.mark.parametrize("gate", [0, 4])
def test_tiles_match_whole_frame_far_from_seams(gate):
    model = _model(5, gate=gate)
    frames = [torch.rand(3, 48, 64) for _ in range(4)]
    whole = list(ModelUpscaler(model, device="cpu", precision="fp32").process(frames))
    tiled = list(ModelUpscaler(model, device="cpu", precision="fp32", tile=24).process(frames))
    for a, b in zip(whole, tiled):
        assert a.shape == b.shape
        # with 16 px of context the tiny model's receptive field is covered: near-identical
        assert (a - b).abs().mean() < 2e-3
