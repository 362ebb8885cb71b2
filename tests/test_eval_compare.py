"""mstgan compare: a labelled collage of the expected size, the chosen frames, a split-screen video."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from mstgan_cli import cli
from mstgan_cli.errors import InputError
from mstgan_cli.evaluate.compare import collage_size, make_collage, pick_segments
from mstgan_cli.model.checkpoint import export_generator
from mstgan_cli.model.generator import GeneratorConfig, MSTGANGenerator
from mstgan_cli.runtime.upscaler import InterpolationUpscaler

from conftest import video_stream


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    net = MSTGANGenerator(GeneratorConfig(scale=2, feat=8, trunk=8, enc_blocks=1, trunk_blocks=1,
                                          detail_blocks=1, flow_levels=3, flow_ch=8))
    path = tmp_path_factory.mktemp("ckpt") / "tiny-x2.pt"
    export_generator(net, path, {"kind": "test"}, half=False)
    return path


def test_collage_has_one_row_per_time_and_one_column_per_method(clip, tmp_path: Path) -> None:
    out = tmp_path / "c.png"
    r = make_collage(clip("mp4"), [0.2, 0.0, 0.45], out,
                     {"bicubic": InterpolationUpscaler(4), "bilinear": InterpolationUpscaler(4, "bilinear")})
    assert r.times == [0.2, 0.0, 0.44] and r.columns == ["bicubic", "bilinear"]
    assert r.size == collage_size(3, 2, (256, 192)) == Image.open(out).size
    region = make_collage(clip("mp4"), [0.1], tmp_path / "r.png", {"bicubic": InterpolationUpscaler(4)},
                          region=(8, 4, 20, 10))
    assert Image.open(region.path).size == collage_size(1, 1, (80, 40))
    with pytest.raises(InputError, match="not inside"):
        make_collage(clip("mp4"), [0.1], tmp_path / "x.png", {"b": InterpolationUpscaler(4)}, region=(60, 0, 10, 10))


def test_frames_are_picked_with_their_neighbours() -> None:
    frames = [(i / 10, torch.full((3, 2, 2), float(i))) for i in range(20)]
    (t0, seg0, k0), (t1, seg1, k1) = pick_segments(iter(frames), [0.0, 1.04], radius=3)
    assert t0 == 0.0 and k0 == 0 and [int(f[0, 0, 0]) for f in seg0] == [0, 1, 2, 3]
    assert t1 == 1.0 and [int(f[0, 0, 0]) for f in seg1] == [7, 8, 9, 10, 11, 12, 13] and k1 == 3
    (t, seg, k), = pick_segments(iter(frames), [1.9], radius=3)
    assert t == 1.9 and k == 3 and len(seg) == 4
    with pytest.raises(InputError, match="past the end"):
        pick_segments(iter(frames), [5.0], radius=3)


def test_compare_command_writes_collage_and_split_screen(clip, tiny_checkpoint: Path, tmp_path: Path) -> None:
    png, video = tmp_path / "grid.png", tmp_path / "split.mp4"
    result = CliRunner().invoke(cli.app, ["compare", str(clip("mp4")), "--at", "0,0.2", "--scale", "2",
                                          "--model", str(tiny_checkpoint), "--no-others", "-o", str(png),
                                          "--video", str(video), "--max-frames", "4", "--device", "cpu"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert Image.open(png).size == collage_size(2, 2, (128, 96))
    v = video_stream(video)
    assert (v["width"], v["height"]) == (128, 96) and int(v["nb_frames"]) == 4
    late = CliRunner().invoke(cli.app, ["compare", str(clip("mp4")), "--at", "9", "--scale", "2",
                                        "--model", str(tiny_checkpoint), "--no-others", "-o", str(png)])
    assert late.exit_code == 2 and "past the end" in late.stderr
