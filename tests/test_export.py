"""The generator passes torch.export with dynamic height and width (what torch-tensorrt compiles)."""
import pytest
import torch
from torch.export import Dim, export

from mstgan_cli.model.generator import GeneratorConfig, MSTGANGenerator

TINY = dict(feat=8, trunk=8, enc_blocks=1, trunk_blocks=1, detail_blocks=1, flow_levels=3, flow_ch=8)


@pytest.mark.parametrize("gate", [0, 4])
def test_export_dynamic_hw_matches_eager(gate):
    torch.manual_seed(0)
    g = MSTGANGenerator(GeneratorConfig(scale=4, gate=gate, **TINY)).eval()
    if gate:
        torch.nn.init.normal_(g.gate.film[-1].weight, std=0.5)
    m = g.config.size_multiple
    h, w = Dim("h", min=1, max=256), Dim("w", min=1, max=256)
    ep = export(g, (torch.rand(1, 5, 3, 4 * m, 6 * m),), dynamic_shapes={"frames": {3: m * h, 4: m * w}})
    for hh, ww in [(16, 24), (40, 64), (8, 8)]:
        y = torch.rand(1, 5, 3, hh, ww)
        with torch.no_grad():
            torch.testing.assert_close(ep.module()(y), g(y))


def test_pixel_shuffle_gives_the_same_values_as_planar_frames():
    """model.blocks.pixel_shuffle: F.pixel_shuffle's values, but planar (contiguous NCHW) output
    from channels-last input too, as the encoder's hand-off reads it; also compiled."""
    import torch.nn.functional as F

    from mstgan_cli.model.blocks import pixel_shuffle

    x = torch.randn(2, 3 * 16, 5, 7)
    for s, fmt in [(4, torch.channels_last), (4, torch.contiguous_format), (2, torch.channels_last)]:
        y = x[:, :3 * s * s].contiguous(memory_format=fmt)
        got = pixel_shuffle(y, s)
        assert torch.equal(got, F.pixel_shuffle(y, s)) and got.is_contiguous()
        assert F.pixel_shuffle(y, s).is_contiguous() == (fmt == torch.contiguous_format)  # why it exists
    compiled = torch.compile(pixel_shuffle, dynamic=True)
    y = x.contiguous(memory_format=torch.channels_last)
    got = compiled(y, 4)
    assert torch.equal(got, F.pixel_shuffle(y, 4)) and got.is_contiguous()
