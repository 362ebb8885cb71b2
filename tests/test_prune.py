"""Structured pruning: what is removed, that the function survives where it must, the CLI end to end."""
import json

import pytest
import torch
from typer.testing import CliRunner

from mstgan_cli.cli import app
from mstgan_cli.compress.prune import kept_width, parse_keep, prune_generator
from mstgan_cli.model.checkpoint import export_generator, load_generator
from mstgan_cli.model.generator import GeneratorConfig, MSTGANGenerator, count_params
from mstgan_cli.model.registry import flops_per_pixel
from mstgan_cli.runtime.engine import ModelUpscaler

from test_train import data  # noqa: F401  (the tiny dataset fixture)

SMALL = dict(feat=16, trunk=16, enc_blocks=1, trunk_blocks=2, detail_blocks=1, flow_levels=3, flow_ch=8)


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    return MSTGANGenerator(GeneratorConfig(scale=2, window=3, **{**SMALL, **kw})).eval()


def test_kept_width_and_keep_spec():
    assert [kept_width(48, k) for k in (0.5, 0.67, 1.0, 0.01)] == [24, 32, 48, 8]
    assert parse_keep("trunk=0.5, enc=0.75") == {"trunk": 0.5, "enc": 0.75}
    assert parse_keep("0.5") == {"enc": 0.5, "trunk": 0.5, "detail": 0.5}
    for bad in ("trunk=2", "flow=0.5", "trunk:0.5"):
        with pytest.raises(ValueError):
            parse_keep(bad)


def test_dead_channels_go_first_and_the_function_survives():
    """Channels whose filters are zero contribute nothing: pruning exactly them changes nothing
    (in the detail block only thanks to the folded bias of the depthwise layer)."""
    m = _model()
    dead = [1, 4, 6, 9, 10, 12, 13, 15]
    with torch.no_grad():
        for blk in [*m.trunk, *m.enc_body]:
            blk.conv1.weight[dead] = 0
            blk.conv1.bias[dead] = -1.0  # LeakyReLU(-1) != 0: the second conv must also not read them
            blk.conv2.weight[:, dead] = 0
        d = m.detail[0]
        d.body[0].pw.weight[dead] = 0
        d.body[0].pw.bias[dead] = 0
        d.body[2].dw.bias[dead] = 0.3  # a constant that must be folded, not lost
    res = prune_generator(m, {"enc": 0.5, "trunk": 0.5, "detail": 0.5})
    assert res.widths == {"enc": [8], "trunk": [8, 8], "detail": [8]}
    live = [i for i in range(16) if i not in dead]
    torch.testing.assert_close(res.model.trunk[0].conv1.weight, m.trunk[0].conv1.weight[live])
    x = torch.rand(2, 3, 3, 16, 24)
    with torch.no_grad():
        torch.testing.assert_close(res.model(x), m(x), rtol=1e-5, atol=1e-5)
    assert res.params_after < res.params_before == count_params(m)


def test_keep_all_is_the_identity_and_pruning_cuts_cost():
    m = _model(1)
    same = prune_generator(m, {"trunk": 1.0})
    x = torch.rand(1, 3, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(same.model(x), m(x))
    res = prune_generator(m, {"trunk": 0.5, "enc": 0.5})
    f0, f1 = flops_per_pixel(m.config)["streaming"], flops_per_pixel(res.model.config)["streaming"]
    assert res.params_saved > 0.2 and f1 < 0.85 * f0


def test_default_keep_on_the_shipped_x4_meets_the_cost_targets():
    parent, _ = load_generator("weights/mstgan-x4.pt")
    res = prune_generator(parent, parse_keep("trunk=0.5,enc=0.75,detail=0.5"))
    f0, f1 = flops_per_pixel(parent.config)["streaming"], flops_per_pixel(res.model.config)["streaming"]
    assert res.params_saved >= 0.25 and 1 - f1 / f0 >= 0.20
    assert res.model.config.trunk_mid == (24, 24, 24)


def test_pruned_checkpoint_round_trips(tmp_path):
    res = prune_generator(_model(2), {"trunk": 0.5})
    export_generator(res.model, tmp_path / "p.pt", {"kind": "fidelity"}, half=False)
    back, _ = load_generator(tmp_path / "p.pt")
    assert back.config == res.model.config and back.config.trunk_mid == (8, 8)
    x = torch.rand(1, 3, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(back(x), res.model(x))


def test_prune_cli_end_to_end(data, tmp_path):  # noqa: F811
    parent = tmp_path / "parent.pt"
    export_generator(_model(3), parent, {"kind": "fidelity"})
    out = tmp_path / "run"
    args = ["prune", str(parent), "--out", str(out), "--keep", "trunk=0.5", "--steps", "2", "--batch", "2",
            "--val-every", "2", "--data", str(data / "train"), "--val", str(data / "val"), "--threads", "1", "--json"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "step 2: validation PSNR-Y" in r.output  # progress of the fine-tuning on stderr
    summary = json.loads((out / "prune.json").read_text())
    assert summary["widths"] == {"trunk": [8, 8]} and summary["finetune_steps"] == 2
    assert summary["params"] < summary["parent_params"] and "psnr_y" in summary["val"]
    model, meta = load_generator(out / "pruned.pt")
    assert model.config.trunk_mid == (8, 8) and meta["pruned_from"] == str(parent)
    frames = [torch.rand(3, 12, 20) for _ in range(3)]
    assert len(list(ModelUpscaler(model, device="cpu", precision="fp32").process(frames))) == 3
    # a second run resumes (nothing left to do) and reports the same
    r2 = CliRunner().invoke(app, args)
    assert r2.exit_code == 0 and json.loads((out / "prune.json").read_text())["best_step"] == summary["best_step"]
    bad = CliRunner().invoke(app, ["prune", str(parent), "--keep", "flow=0.5", "--data", str(data / "train"),
                                   "--val", str(data / "val")])
    assert bad.exit_code == 64 and "unknown pruning groups" in bad.output  # a usage error
