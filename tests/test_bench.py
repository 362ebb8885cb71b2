"""mstgan bench: a row per stage and configuration, GFLOP/s for the model, errors kept apart."""
from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from mstgan_cli import cli
from mstgan_cli.errors import BackendError
from mstgan_cli.evaluate.bench import STAGES, bench_markdown, configs, run_bench
from mstgan_cli.model.generator import GeneratorConfig, MSTGANGenerator
from mstgan_cli.runtime.engine import ModelUpscaler


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(config) -> ModelUpscaler:
    torch.manual_seed(0)
    net = MSTGANGenerator(GeneratorConfig(feat=8, trunk=8, enc_blocks=1, trunk_blocks=1, detail_blocks=1,
                                          flow_levels=3, flow_ch=8))
    return ModelUpscaler(net, device=config.device, precision=config.precision, batch=config.batch)


def test_every_stage_for_every_configuration() -> None:
    seen = []
    r = run_bench(size=(64, 48), frames=4, precisions=["fp32", "bf16"], batches=[2], device="cpu",
                  upscaler_factory=tiny, progress=seen.append)
    assert r["generated"] and r["size"] == [64, 48] and r["frames"] == 4 and r["scale"] == 4
    assert r["errors"] == {}
    stages = [row["stage"] for row in r["rows"]]
    assert set(stages) == set(STAGES)
    assert stages.count("model") == 2 and stages.count("end-to-end") == 2
    for row in r["rows"]:
        assert row["frames"] == 4 and row["seconds"] > 0 and row["fps"] > 0 and row["rss_peak_mb"] > 10
        assert row["cuda_peak_mb"] is None
    models = [row for row in r["rows"] if row["stage"] == "model"]
    assert [(m["precision"], m["batch"]) for m in models] == [("fp32", 2), ("bf16", 2)]
    assert r["flops_per_pixel"] > 1000 and all(m["gflops"] > 0 for m in models)
    assert [p.index for p in seen] == list(range(1, len(seen) + 1)) and seen[-1].index == seen[-1].total
    table = bench_markdown(r)
    assert "| end-to-end | eager | bf16 | 2 |" in table and "GFLOP/s" in table


def test_unknown_backend_is_a_clear_error() -> None:
    with pytest.raises(BackendError, match="tensorrt.*available: eager"):
        configs(["eager", "tensorrt"], ["fp32"], [1], "cpu")


def test_bench_command_json(clip) -> None:
    result = CliRunner().invoke(cli.app, ["bench", str(clip("mp4")), "--model", "bicubic", "--frames", "3",
                                          "--batch", "1", "--no-end-to-end", "--device", "cpu", "--json"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert not data["generated"] and data["frames"] == 3 and data["flops_per_pixel"] is None
    assert [row["stage"] for row in data["rows"]] == ["decode", "preprocess", "model", "postprocess", "encode"]
    assert "| decode |" in result.stderr
    bad = CliRunner().invoke(cli.app, ["bench", "--backend", "tensorrt", "--model", "bicubic", "--frames", "2"])
    assert bad.exit_code == 6 and "not available" in bad.stderr
