"""The generator passes torch.export with dynamic height and width (what torch-tensorrt compiles)."""
import torch
from torch.export import Dim, export

from mstgan_cli.model.generator import GeneratorConfig, MSTGANGenerator

TINY = dict(feat=8, trunk=8, enc_blocks=1, trunk_blocks=1, detail_blocks=1, flow_levels=3, flow_ch=8)


def test_export_dynamic_hw_matches_eager():
    torch.manual_seed(0)
    g = MSTGANGenerator(GeneratorConfig(scale=4, **TINY)).eval()
    m = g.config.size_multiple
    h, w = Dim("h", min=1, max=256), Dim("w", min=1, max=256)
    ep = export(g, (torch.rand(1, 5, 3, 4 * m, 6 * m),), dynamic_shapes={"frames": {3: m * h, 4: m * w}})
    for hh, ww in [(16, 24), (40, 64), (8, 8)]:
        y = torch.rand(1, 5, 3, hh, ww)
        with torch.no_grad():
            torch.testing.assert_close(ep.module()(y), g(y))
