"""Flow warping: the gather form that compiled CPU graphs use matches ``grid_sample``."""
import pytest
import torch
from torch.export import Dim, export

from mstgan_cli.model.blocks import flow_warp, gather_warp, warps_as_gathers


def _case(dtype=torch.float32, channels_last=True, c=32, b=2, h=24, w=40):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(b, c, h, w, generator=g).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    flow = torch.randn(b, 2, h, w, generator=g) * 3
    flow[:, :, :4, :4] = 50.0     # far outside the frame: border padding
    flow[:, :, -4:, -4:] = -50.0
    flow[:, :, 8:12, 8:12] = torch.round(flow[:, :, 8:12, 8:12])  # whole-pixel shifts, incl. the last column
    return x, flow


class _Warp(torch.nn.Module):
    def forward(self, x, flow):
        return flow_warp(x, flow)


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("c", [32, 3, 2])
def test_gather_warp_matches_grid_sample(channels_last, c):
    x, flow = _case(channels_last=channels_last, c=c)
    out = gather_warp(x, flow)
    torch.testing.assert_close(out, flow_warp(x, flow), rtol=0, atol=1e-5)
    assert out.shape == x.shape and out.dtype == x.dtype


def test_gather_warp_keeps_bf16_features_in_bf16():
    x, flow = _case(dtype=torch.bfloat16)
    out = gather_warp(x, flow)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), flow_warp(x.float(), flow), rtol=0, atol=8e-3)


def test_graphs_traced_for_the_cpu_compiler_warp_by_gathers():
    """AOTInductor and INT8 trace inside warps_as_gathers(); a plain export (what TensorRT
    compiles) keeps grid_sample."""
    def ops(ep):
        return {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}

    x, flow = _case()
    h, w = Dim("h", min=4, max=512), Dim("w", min=4, max=512)
    dyn = ({2: h, 3: w}, {2: h, 3: w})
    with warps_as_gathers():
        ep = export(_Warp(), (x, flow), dynamic_shapes=dyn)
    assert not any("grid_sampler" in op for op in ops(ep)) and any("index" in op for op in ops(ep)), ops(ep)
    x2, flow2 = _case(h=16, w=56)
    torch.testing.assert_close(ep.module()(x2, flow2), flow_warp(x2, flow2), rtol=0, atol=1e-5)
    assert any("grid_sampler" in op for op in ops(export(_Warp(), (x, flow), dynamic_shapes=dyn)))


def test_gather_warps_can_be_turned_off_and_the_package_key_says_which():
    from mstgan_cli.runtime.backends import aot

    x, flow = _case()
    key = aot.package_key("abc", "fp32")
    with warps_as_gathers(False):
        ep = export(_Warp(), (x, flow))
    assert any("grid_sampler" in str(n.target) for n in ep.graph.nodes)
    assert aot.package_key("abc", "fp32", gather_warps=False) != key
    assert aot.package_key("abc", "fp32", gather_warps=True) == key
