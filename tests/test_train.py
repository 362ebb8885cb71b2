"""Training: data windows, a few real steps of both stages, exact resume, release and reload."""
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from mstgan_cli.model.checkpoint import load_generator
from mstgan_cli.model.registry import list_models
from mstgan_cli.runtime.engine import ModelUpscaler
from mstgan_cli.model.blocks import flow_warp
from mstgan_cli.train.data import Sources, WindowSampler, downscale
from mstgan_cli.train.degrade import Degrader, DegradeConfig, compress_jpeg, compress_video
from mstgan_cli.train.loop import TrainConfig, train
from mstgan_cli.train.release import release, ship

TINY = dict(feat=8, trunk=8, enc_blocks=1, trunk_blocks=1, detail_blocks=1, flow_levels=3, flow_ch=8)


def _write_clip(path, n=9, size=(96, 80), seed=0):
    import av
    rng = np.random.default_rng(seed)
    base = (rng.random((size[1] + 40, size[0] + 40, 3)) * 255).astype(np.uint8)
    base = np.asarray(Image.fromarray(base).resize((size[0] + 40, size[1] + 40), Image.BILINEAR))
    with av.open(str(path), "w") as c:
        s = c.add_stream("ffv1", rate=10)
        s.width, s.height, s.pix_fmt = size[0], size[1], "yuv444p"
        for i in range(n):  # a pan, two pixels a frame
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(base[5:5 + size[1], 2 * i:2 * i + size[0]]), format="rgb24")
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    for split in ("train", "val"):
        (root / split / "videos").mkdir(parents=True)
        (root / split / "photos").mkdir()
        _write_clip(root / split / "videos" / "pan.mkv", seed=1 if split == "val" else 0)
    rng = np.random.default_rng(3)
    img = (rng.random((60, 60, 3)) * 255).astype(np.uint8)
    Image.fromarray(img).resize((240, 200), Image.BICUBIC).save(root / "train" / "photos" / "p.png")
    return root


def _cfg(data, out, **kw):
    base = dict(data=str(data / "train"), val=str(data / "val"), out=str(out), cache=str(out.parent / "cache"),
                scale=2, window=3, generator=TINY, steps=6, batch=2, patch=16, val_every=3,
                val_frames=2, threads=1)
    base.update(kw)
    return TrainConfig(**base)


def test_sampler_windows(data):
    src = Sources.load(data / "train")
    s = WindowSampler(src, scale=2, window=5, patch=16, seed=0)
    lr, hr, flow, weight, strength = s.batch(6)
    assert lr.shape == (6, 5, 3, 16, 16) and hr.shape == (6, 5, 3, 32, 32)
    assert flow.shape == (6, 5, 2, 16, 16) and weight.shape == (6, 5, 1, 16, 16)
    assert 0 <= float(lr.min()) and float(lr.max()) <= 1
    torch.testing.assert_close(lr, downscale(hr, 2))
    assert strength.tolist() == [0.0] * 6  # clean bicubic
    # consecutive frames differ (there is motion) but are not unrelated
    d = (hr[:, 1:] - hr[:, :-1]).abs().mean()
    assert 0.001 < float(d) < 0.3


def _photo(seed=3, size=(240, 200)):
    rng = np.random.default_rng(seed)
    img = (rng.random((size[1] // 4, size[0] // 4, 3)) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(img).resize(size, Image.BICUBIC))


def test_clips_smaller_than_the_patch_are_used_whole():
    vid = np.broadcast_to(np.arange(40, dtype=np.uint8)[None, None, :, None] * 6, (8, 30, 40, 3))
    s = WindowSampler(Sources([vid], [], ["small"]), scale=4, window=5, patch=12, seed=0)
    hr = s.batch(3).hr
    assert hr.shape == (3, 5, 3, 48, 48)
    # every column of the clip is there (the patch is the clip, mirrored out, maybe flipped)
    assert len(torch.unique(hr[0, 0, 0, 0])) == 40


def test_photo_windows_come_with_their_true_motion():
    """Each neighbour warped by the returned flow matches the centre frame far better than unwarped,
    including windows with an object that moves on its own; the centre has no weight."""
    src = Sources([], [_photo(3, (400, 360)), _photo(4, (400, 360))], ["a", "b"])
    s = WindowSampler(src, scale=4, window=5, patch=16, seed=0, max_speed=16.0, fast_motion=0.5)
    err = base = 0.0
    for _ in range(12):
        hr, flow, weight = s._photo_window()
        lr = downscale(hr, 4)
        assert weight[2].sum() == 0 and weight.mean() > 0.05
        for k in (0, 1, 3, 4):
            w = weight[k:k + 1]
            err += float(((flow_warp(lr[k:k + 1], flow[k:k + 1]) - lr[2:3]).abs() * w).sum() / w.sum().clamp(min=1))
            base += float(((lr[k:k + 1] - lr[2:3]).abs() * w).sum() / w.sum().clamp(min=1))
    assert err < 0.5 * base, (err, base)  # a wrong sign or scale makes it worse than no warp


def test_degradations_are_real_and_of_every_kind():
    hr = torch.from_numpy(_photo(5, (128, 128)).copy()).permute(2, 0, 1).float().div(255)[None].repeat(5, 1, 1, 1)
    lr = downscale(hr, 4)
    # real encoders: H.264 and MPEG-2 change the picture, more at a coarser quantiser, frames stay frames
    d23 = (compress_video(lr, "h264", 23) - lr).abs().mean()
    d40 = (compress_video(lr, "h264", 40) - lr).abs().mean()
    assert 0.002 < d23 < d40 < 0.2
    y = compress_video(lr[:, :, :30, :30], "mpeg2", 8)
    assert y.shape == (5, 3, 30, 30) and 0.001 < (y - lr[:, :, :30, :30]).abs().mean() < 0.2
    for _ in range(20):  # the same frames come back the same (frame-threaded decoding did not)
        torch.testing.assert_close(compress_video(lr, "h264", 30), compress_video(lr, "h264", 30), rtol=0, atol=0)
    assert 0.001 < (compress_jpeg(lr, 40) - lr).abs().mean() < 0.2
    d = Degrader(4, DegradeConfig())
    rng = np.random.default_rng(0)
    kinds = set()
    for _ in range(30):
        out, info = d(hr, rng)
        assert out.shape == lr.shape and 0 <= float(out.min()) and float(out.max()) <= 1
        if info["kind"] == "clean":
            torch.testing.assert_close(out, lr)
        kinds.add(info["kind"])
    assert kinds == {"clean", "h264", "mixed"}
    # the same generator state degrades the same way (a resumed sampler repeats itself)
    a, _ = d(hr, np.random.default_rng(7))
    b, _ = d(hr, np.random.default_rng(7))
    torch.testing.assert_close(a, b)


def test_validation_measures_what_the_neighbours_add():
    from mstgan_cli.model.generator import GeneratorConfig, MSTGANGenerator
    from mstgan_cli.train.loop import validate

    torch.manual_seed(0)
    model = MSTGANGenerator(GeneratorConfig(scale=2, window=3, **TINY))
    hr_still = torch.from_numpy(_photo(4, (64, 48)).copy()).permute(2, 0, 1).float().div(255)
    hr_pan = torch.stack([hr_still.roll(2 * i, -1) for i in range(6)])
    clips = [("still", downscale(hr_still[None].repeat(6, 1, 1, 1), 2), hr_still[None].repeat(6, 1, 1, 1)),
             ("pan", downscale(hr_pan, 2), hr_pan)]
    v = validate(model, clips, 3, torch.device("cpu"))
    # a window of one repeated picture is its own centre-only window: nothing to add
    assert v["tgain_still"] == 0.0
    # a moving window is not (whatever the untrained model makes of it)
    assert abs(v["tgain_pan"]) > 1e-4
    assert v["temporal_gain"] == pytest.approx((v["tgain_still"] + v["tgain_pan"]) / 2)


def test_validation_pans_over_the_photos_of_the_split(data, tmp_path):
    from mstgan_cli.train.data import PAN_STEPS, VAL_PAN_FRAMES, load_val_clips, photo_pan

    val = tmp_path / "val"
    shutil.copytree(data / "val", val)
    Image.fromarray(_photo(6, (640, 400))).save(val / "photos" / "q.png")
    assert [n for n, _, _ in load_val_clips(val, 2)] == ["pan.mkv"]  # without pans: videos only
    clips = load_val_clips(val, 2, pans=True, cache=tmp_path / "cache")
    assert [n for n, _, _ in clips] == ["pan.mkv", "pan_q"]
    _, lr, hr = clips[1]
    assert hr.shape[0] == VAL_PAN_FRAMES and hr.shape[-2:] == (272, 480) and lr.shape[-2:] == (136, 240)
    # the view moves by the first pan step (2.3, 0.9) HR pixels a frame: frame k+1 is frame k moved
    # by it, so shifting back by the whole pixels leaves less than the sub-pixel rest
    a, b = hr[3], hr[4]
    err = lambda dx, dy: float((a[:, 8 + dy:-8, 8 + dx:-8] - b[:, 8:-8 - dy, 8:-8 - dx]).abs().mean())
    assert err(2, 1) < 0.5 * err(0, 0) and err(2, 1) < err(3, 1) and err(2, 1) < err(2, 0)
    # the pan is the one the test protocol writes (benchmarks/quality.py), at the validation size
    img = np.asarray(Image.open(val / "photos" / "q.png"))
    assert np.array_equal(photo_pan(img, PAN_STEPS[0], VAL_PAN_FRAMES, (480, 272))[5],
                          (hr[5].permute(1, 2, 0) * 255).round().byte().numpy())


def test_a_changed_validation_set_re_measures_the_best(data, tmp_path):
    from mstgan_cli.model.generator import GeneratorConfig, MSTGANGenerator
    from mstgan_cli.train.data import load_val_clips
    from mstgan_cli.train.loop import validate

    val = tmp_path / "val"
    shutil.copytree(data / "val", val)
    out = tmp_path / "run"
    train(_cfg(data, out, val=str(val), until=3))
    first = torch.load(out / "best.pt", weights_only=True)
    Image.fromarray(_photo(6, (640, 400))).save(val / "photos" / "q.png")  # the split grows
    train(_cfg(data, out, val=str(val)))
    start = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if '"start"' in line][-1]
    judge = MSTGANGenerator(GeneratorConfig(**first["config"]))
    judge.load_state_dict(first["state_dict"])
    clips = load_val_clips(val, 2, cache=tmp_path / "cache", pans=True)
    assert start["rescored_best"]["best_step"] == 3
    assert start["rescored_best"]["from"] == pytest.approx(first["val"]["psnr_y"])
    assert start["rescored_best"]["to"] == pytest.approx(validate(judge, clips, 2, torch.device("cpu"))["psnr_y"])
    assert "pan_q" in torch.load(out / "last.pt", weights_only=False)["val_names"]
    train(_cfg(data, out, val=str(val), steps=9))  # the same set again: nothing re-measured
    start = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if '"start"' in line][-1]
    assert "rescored_best" not in start


def test_stage0_trains_the_flow_alone_on_known_motion(data, tmp_path):
    from mstgan_cli.model.generator import GeneratorConfig, MSTGANGenerator
    from mstgan_cli.train.data import Sources, WindowSampler
    from mstgan_cli.train.flow import validate_flow

    val = tmp_path / "val"
    shutil.copytree(data / "val", val)
    Image.fromarray(_photo(6, (320, 240))).save(val / "photos" / "q.png")
    start = train(_cfg(data, tmp_path / "s1", steps=2, val_every=2))
    run = train(_cfg(data, tmp_path / "s0", val=str(val), stage=0, steps=6, val_every=3, lr=1e-3,
                     init=str(start / "best.pt"), generator={**TINY, "flow_kernel": 5}))
    before = torch.load(start / "best.pt", weights_only=True)["state_dict"]
    after = torch.load(run / "last.pt", weights_only=False)["model"]
    for k, v in after.items():
        if k.startswith("flownet."):
            # 5x5 kernels: fresh; the biases fit and come from the init: all trained since
            assert k not in before or v.shape != before[k].shape or not torch.equal(v, before[k])
        else:
            torch.testing.assert_close(v, before[k], rtol=0, atol=0)  # frozen
    recs = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    vals = [r["val"] for r in recs if "val" in r]
    assert len(vals) == 2 and all(v["flow_epe_zero"] > 0.05 and v["flow_epe"] > 0 for v in vals)
    assert GeneratorConfig(**torch.load(run / "best.pt", weights_only=True)["config"]).flow_kernel == 5
    # the command line's reporter says what stage 0 measures (it once expected a PSNR)
    from mstgan_cli.commands.common import training_reporter
    training_reporter(6)(next(r for r in recs if "val" in r))
    # the yardstick: a flow network that says "no motion" scores exactly the no-motion error
    still = MSTGANGenerator(GeneratorConfig(scale=2, window=3, **TINY))
    for p in still.flownet.parameters():
        torch.nn.init.zeros_(p)
    w = WindowSampler(Sources.load(val), 2, 3, 16, 0, video_fraction=0.0).batch(4)
    v = validate_flow(still, w)
    assert v["flow_epe"] == pytest.approx(v["flow_epe_zero"]) and v["flow_epe_ratio"] == pytest.approx(1.0)


def test_true_flow_aligns_the_photo_windows_with_the_known_motion(data):
    from mstgan_cli.model.generator import GeneratorConfig, MSTGANGenerator
    from mstgan_cli.train.fidelity import FidelityPhase

    torch.manual_seed(0)
    model = MSTGANGenerator(GeneratorConfig(scale=2, window=3, **TINY)).eval()
    src = Sources.load(data / "train")
    lr, hr, flow, weight, _ = WindowSampler(src, 2, 3, 16, seed=0, video_fraction=0.0).batch(3)
    vlr, vhr, vflow, vweight, _ = WindowSampler(src, 2, 3, 16, seed=0, video_fraction=1.0).batch(2)
    centre = lambda x: x[:, 1]

    def sr_with(true_flow, *b):
        phase = FidelityPhase(model, TrainConfig(true_flow=true_flow, w_flow=0.02), torch.device("cpu"))
        with torch.no_grad():
            return phase.generator_losses(b[0], centre(b[1]), b[2], b[3])[2]
    with torch.no_grad():
        own = model(lr)
        feats = [tuple(q.reshape(3, 3, *q.shape[1:])[:, i] for q in model.encode(lr.flatten(0, 1))) for i in range(3)]
        true = model.reconstruct(lr[:, 1], feats, [flow[:, 0], None, flow[:, 2]])
    assert (own - true).abs().max() > 1e-4  # the two alignments differ
    torch.testing.assert_close(sr_with(0.0, lr, hr, flow, weight), own)
    torch.testing.assert_close(sr_with(1.0, lr, hr, flow, weight), true)
    # windows of real clips (motion unknown) keep their predicted flows
    with torch.no_grad():
        torch.testing.assert_close(sr_with(1.0, vlr, vhr, vflow, vweight), model(vlr))


def test_degrade_mixture_from_the_command_line(data, tmp_path):
    from typer.testing import CliRunner

    from mstgan_cli.cli import app

    out = tmp_path / "mix"
    args = ["train", "--out", str(out), "--data", str(data / "train"), "--val", str(data / "val"),
            "--scale", "2", "--window", "3", "--generator", json.dumps(TINY), "--steps", "1", "--batch", "2",
            "--patch", "16", "--val-every", "1", "--threads", "1", "-q"]
    for bad, why in (('{"p_clean": 0.8, "p_h264": 0.4}', "at most 1"), ('{"p_jpeg": 0.1}', "p_jpeg"),
                     ('[0.5]', "JSON object"), ('{"p_clean": 0.5', "--degrade-config")):
        r = CliRunner().invoke(app, args + ["--degrade", "realworld", "--degrade-config", bad])
        assert r.exit_code == 2 and why in r.output, (bad, r.output)
    r = CliRunner().invoke(app, args + ["--degrade", "bicubic", "--degrade-config", '{"p_clean": 0.5}'])
    assert r.exit_code == 2 and "only --degrade realworld" in r.output
    assert not out.exists()
    r = CliRunner().invoke(app, args + ["--degrade", "realworld", "--degrade-config", '{"p_clean": 1.0, "p_h264": 0}'])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "config.json").read_text())["degrade_config"] == {"p_clean": 1.0, "p_h264": 0}
    d = Degrader(2, DegradeConfig.from_dict({"p_clean": 1.0, "p_h264": 0}))
    assert {d.kind(np.random.default_rng(i)) for i in range(20)} == {"clean"}


def test_resume_with_other_settings_is_refused(data, tmp_path):
    train(_cfg(data, tmp_path / "r", until=2))
    with pytest.raises(ValueError, match="other settings.*lr 0.0003 -> 0.001"):
        train(_cfg(data, tmp_path / "r", lr=1e-3))
    train(_cfg(data, tmp_path / "r", until=3, threads=2))  # how long and on how many threads may change


def test_realworld_training_with_flow_supervision_and_h264_validation(data, tmp_path):
    run = train(_cfg(data, tmp_path / "rw", steps=2, val_every=2, degrade="realworld", w_flow=0.02,
                     val_degrade="bicubic,h264:23", test=str(data / "val")))
    recs = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    last = [r for r in recs if "val" in r][-1]
    assert {"gain_pan.mkv", "gain_pan.mkv@h264:23", "tgain_pan.mkv", "temporal_gain"} <= set(last["val"])
    # the test split is logged beside validation (here the same clips: the same numbers)
    assert last["test"]["gain_pan.mkv@h264:23"] == pytest.approx(last["val"]["gain_pan.mkv@h264:23"])


def test_resume_gives_the_same_weights(data, tmp_path):
    a = train(_cfg(data, tmp_path / "a"))
    train(_cfg(data, tmp_path / "b", until=4))
    b = train(_cfg(data, tmp_path / "b"))
    wa = torch.load(a / "last.pt", weights_only=False)
    wb = torch.load(b / "last.pt", weights_only=False)
    assert wa["step"] == wb["step"] == 6
    for k in wa["model"]:
        torch.testing.assert_close(wa["model"][k], wb["model"][k], rtol=1e-5, atol=1e-6)
    records = [json.loads(line) for line in (a / "log.jsonl").read_text().splitlines()]
    vals = [r for r in records if "val" in r]
    assert [r["step"] for r in vals] == [3, 6] and "psnr_y" in vals[-1]["val"]
    assert (a / "best.pt").exists()


def test_stage2_steps_and_release(data, tmp_path, monkeypatch):
    run = train(_cfg(data, tmp_path / "s1", steps=2, val_every=2))
    run2 = train(_cfg(data, tmp_path / "s2", stage=2, steps=2, val_every=2, init=str(run / "best.pt"),
                      w_perceptual=0.05))
    recs = [json.loads(line) for line in (run2 / "log.jsonl").read_text().splitlines()]
    assert "lpips" in recs[-1]["val"]
    # stage 2 measures its starting weights first, and validates temporal stability too
    assert (recs[0]["step"], recs[0]["start"]) == (0, "init") and recs[0]["sources"] == {"clips": 1, "photos": 1}
    assert recs[1]["step"] == 0 and {"lpips", "tof", "tlp100"} <= set(recs[1]["reference"])
    assert recs[-1]["val"]["tof"] >= 0 and recs[-1]["val"]["tlp100"] >= 0
    wdir = tmp_path / "weights"
    meta = release(run2 / "best.pt", wdir / "mstgan-test-x2.pt", "gan", "test", runs=[run, run2])
    assert meta["params"] > 0 and meta["flops_per_pixel"]["streaming"] < meta["flops_per_pixel"]["window"]
    model, meta2 = load_generator(wdir / "mstgan-test-x2.pt")
    assert meta2["kind"] == "gan" and model.config.scale == 2
    # re-measuring shipped weights keeps their history and step, and their weights bit for bit
    meta3 = release(wdir / "mstgan-test-x2.pt", tmp_path / "again.pt", "gan", "test", metrics={"x": 1})
    assert meta3["training"] == meta["training"] and meta3["checkpoint_step"] == meta["checkpoint_step"] == 2
    again, _ = load_generator(tmp_path / "again.pt")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    monkeypatch.setenv("MSTGAN_WEIGHTS_DIR", str(wdir))
    [entry] = list_models()
    assert entry["name"] == "mstgan-test-x2" and entry["scale"] == 2
    frames = [torch.rand(3, 12, 20) for _ in range(4)]
    out = list(ModelUpscaler(model, device="cpu", precision="fp32").process(frames))
    assert len(out) == 4 and out[0].shape == (3, 24, 40)


def test_ship_measures_and_writes_a_card(data, tmp_path):
    run = train(_cfg(data, tmp_path / "s1", steps=2, val_every=2))
    wdir = tmp_path / "weights"
    meta = ship(run / "best.pt", "mstgan-t-x2", "fidelity", "tiny test model", runs=[run],
                clips=[data / "val" / "videos" / "pan.mkv"], weights=wdir, methods=["bicubic"])
    mean = meta["metrics"]["protocol"]["mean"]
    assert set(mean) == {"mstgan-t-x2", "bicubic"}
    assert mean["bicubic"]["psnr_y"] > 15 and 0 <= mean["mstgan-t-x2"]["lpips"] <= 1
    card = (wdir / "mstgan-t-x2.md").read_text()
    assert "FLOPs per input pixel" in card and "| pan.mkv" in card.replace("|  pan", "| pan")
    assert json.loads((wdir / "mstgan-t-x2.protocol.json").read_text())["scale"] == 2


def test_stage2_ema_is_what_is_validated_kept_and_resumed(data, tmp_path):
    run = train(_cfg(data, tmp_path / "s1", steps=2, val_every=2))
    cfg = _cfg(data, tmp_path / "ema", stage=2, steps=2, val_every=2, init=str(run / "best.pt"),
               w_perceptual=0.05, w_ftemporal=1.0, vgg_layers="relu1_2", ema=0.5, seed=1, w_tflow=0.1)
    run2 = train(cfg)
    last = torch.load(run2 / "last.pt", weights_only=False)
    best = torch.load(run2 / "best.pt", weights_only=False)
    assert last["ema"] is not None
    # the average starts at the --init weights: after two steps at decay 0.5 it is
    # 0.25 init + 0.25 step 1 + 0.5 step 2, nowhere near a random initialisation
    init = torch.load(run / "best.pt", weights_only=False)["state_dict"]
    recs = [json.loads(line) for line in (run2 / "log.jsonl").read_text().splitlines()]
    ref = torch.load(run / "best.pt", weights_only=False)["val"]
    assert abs(recs[1]["reference"]["psnr_y"] - ref["psnr_y"]) < 0.1  # (other frames: room for a pair)
    assert max((last["ema"][k] - init[k]).abs().max() for k in init) < 0.05
    # the motion loss's flow network is the starting one, frozen, and kept for a resume
    assert all(torch.equal(v, init["flownet." + k].float()) for k, v in last["motion"].items())
    # the average lags the trained weights, and the average is what best.pt holds
    assert any(not torch.equal(last["ema"][k], last["model"][k]) for k in last["model"])
    assert all(torch.equal(best["state_dict"][k], last["ema"][k]) for k in last["ema"])
    # resume: the average carries over instead of restarting from the trained weights
    cfg.steps = 3
    cfg.val_every = 3
    train(cfg)
    last2 = torch.load(run2 / "last.pt", weights_only=False)
    assert last2["step"] == 3
    k = next(iter(last["model"]))
    expect = last["ema"][k].lerp(last2["model"][k], 0.5)
    torch.testing.assert_close(last2["ema"][k], expect)


def test_feature_temporal_loss_punishes_flicker_not_a_steady_error():
    from mstgan_cli.train.adversarial import feature_losses
    from mstgan_cli.train.loop import PerceptualLoss

    vgg = PerceptualLoss(torch.device("cpu"), ["relu1_2", "relu2_2"])
    g = torch.Generator().manual_seed(0)
    base = torch.rand(1, 1, 3, 48, 48, generator=g)
    hr3 = base.expand(1, 3, 3, 48, 48)          # a still shot: like tLP, the loss is not motion-compensated
    zero_per, zero_ft = feature_losses(vgg, hr3, hr3)
    assert zero_per == 0 and zero_ft == 0
    steady = (hr3 + 0.05 * torch.randn(1, 1, 3, 48, 48, generator=g)).clamp(0, 1)  # same error each frame
    flicker = (hr3 + 0.05 * torch.randn(1, 3, 3, 48, 48, generator=g)).clamp(0, 1)
    per_s, ft_s = feature_losses(vgg, steady, hr3)
    per_f, ft_f = feature_losses(vgg, flicker, hr3)
    assert per_s > 0.01 and per_f > 0.01 and abs(per_s / per_f - 1) < 0.2
    assert ft_s < 1e-6 < 0.01 < ft_f


def test_run_summary_counts_a_run_begun_from_a_copied_checkpoint_from_there(data, tmp_path):
    import shutil

    from mstgan_cli.train.release import run_summary

    a = train(_cfg(data, tmp_path / "a", until=4))
    b = tmp_path / "b"
    b.mkdir()
    shutil.copy(a / "last.pt", b / "last.pt")  # e.g. a learning-rate anneal in a run of its own
    train(_cfg(data, b))
    recs = [json.loads(line) for line in (b / "log.jsonl").read_text().splitlines()]
    assert (recs[0]["step"], recs[0]["start"]) == (4, "resume")
    assert run_summary(b)["steps"] == 2 and run_summary(a)["steps"] == 4
    train(_cfg(data, a))  # resumed in place: the marker is not the first record, all 6 steps count
    assert run_summary(a)["steps"] == 6 and run_summary(a, 4)["steps"] == 4


def test_train_cli_stops_at_until_and_resumes_to_the_end(data, tmp_path):
    from typer.testing import CliRunner

    from mstgan_cli.cli import app

    out = tmp_path / "run"
    args = ["train", "--out", str(out), "--data", str(data / "train"), "--val", str(data / "val"),
            "--scale", "2", "--window", "3", "--generator", json.dumps(TINY), "--steps", "4", "--batch", "2",
            "--patch", "16", "--val-every", "2", "--threads", "1", "-q"]
    r = CliRunner().invoke(app, args + ["--until", "2"])
    assert r.exit_code == 0, r.output
    assert torch.load(out / "last.pt", weights_only=False)["step"] == 2
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert torch.load(out / "last.pt", weights_only=False)["step"] == 4
    starts = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if '"start"' in line]
    assert [(r["step"], r["start"]) for r in starts] == [(0, "fresh"), (2, "resume")]


def test_motion_loss_sees_motion_that_does_not_match():
    from mstgan_cli.model.generator import FlowNet
    from mstgan_cli.train.adversarial import motion_loss

    torch.manual_seed(0)
    net = FlowNet(3, 8).eval().requires_grad_(False)
    base = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 72, 72), 3, 1)[..., :64, :64]
    hr3 = torch.stack([base.roll(i, -1) for i in range(3)], 1)      # moves 1 px a frame
    still = base[:, None].expand_as(hr3)                              # does not move
    assert motion_loss(net, hr3, hr3) == 0
    assert motion_loss(net, still, hr3) > 0
    sr = hr3.clone().requires_grad_(True)
    motion_loss(net, sr + 0.01 * torch.randn_like(sr), hr3).backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0


def test_a_runs_best_checkpoint_loads_as_a_model_and_junk_does_not(data, tmp_path):
    from mstgan_cli.errors import ModelError

    run = train(_cfg(data, tmp_path / "s1", steps=2, val_every=2))
    model, meta = load_generator(run / "best.pt")
    ck = torch.load(run / "best.pt", weights_only=False)
    assert meta == {"kind": "training checkpoint", "checkpoint_step": 2}
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ck["state_dict"].values()))
    torch.save({"config": "x4", "weights": [1, 2]}, tmp_path / "junk.pt")
    with pytest.raises(ModelError, match="not an mstgan generator checkpoint"):
        load_generator(tmp_path / "junk.pt")


def test_model_card_names_the_degradations_a_run_trained_on():
    """A card must not claim blur and noise for a run that only saw clean and H.264 windows."""
    from mstgan_cli.train.release import trained_on

    def deg(tc):
        return trained_on([{"train_config": tc}]).split("degradation: ")[1]

    assert deg({"degrade": "bicubic"}) == "antialiased bicubic downscaling"
    assert "blur, noise" in deg({"degrade": "realworld"})  # the default mixture has mixed windows
    assert "blur, noise" in deg({"degrade": "realworld", "degrade_config": {"p_clean": 0.4, "p_h264": 0.4}})
    only = deg({"degrade": "realworld", "degrade_config": {"p_clean": 0.5, "p_h264": 0.5, "h264_crf": [18, 30]}})
    assert only == "antialiased bicubic downscaling (50% of the windows), then H.264 (x264) at CRF 18-30 (the rest)"


def test_a_deeper_trunk_grown_from_a_run_starts_where_it_left_off(data, tmp_path):
    from mstgan_cli.model.generator import GeneratorConfig, MSTGANGenerator, load_matching
    src = train(_cfg(data, tmp_path / "shallow", steps=2, val_every=2))
    ck = torch.load(src / "best.pt", weights_only=True)
    shallow = MSTGANGenerator(GeneratorConfig(**ck["config"])).eval()
    shallow.load_state_dict(ck["state_dict"])
    deep = MSTGANGenerator(GeneratorConfig(**{**ck["config"], "trunk_blocks": 3})).eval()
    fits, grown = load_matching(deep, ck["state_dict"])
    assert grown == ["trunk.1", "trunk.2"] and len(fits) == len(ck["state_dict"])
    x = torch.rand(2, 3, 3, 16, 24)
    with torch.no_grad():
        torch.testing.assert_close(deep(x), shallow(x))
    # through the trainer: at an lr too small to move anything, the grown run validates as its source
    run = train(_cfg(data, tmp_path / "deep", steps=1, val_every=1, lr=1e-12, init=str(src / "best.pt"),
                     generator={**TINY, "trunk_blocks": 3}))
    rec = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if '"val"' in line][-1]
    assert rec["val"]["psnr_y"] == pytest.approx(ck["val"]["psnr_y"], abs=1e-3)
    assert torch.load(run / "best.pt", weights_only=True)["config"]["trunk_blocks"] == 3


def test_held_fidelity_ranks_by_lpips_only_among_checkpoints_that_keep_psnr_and_stability():
    from mstgan_cli.train.fidelity import held_fidelity_score
    ref = {"psnr_y": 30.0, "lpips": 0.30, "tof": 0.2, "tlp100": 1.0, "gain_a": 1.0, "gain_b": -0.05}
    ok = {**ref, "psnr_y": 29.97, "lpips": 0.25}                 # 0.03 dB lost, within the slack
    sharper_but_lossy = {**ref, "psnr_y": 29.90, "lpips": 0.10}  # 0.10 dB lost
    clip_falls = {**ref, "psnr_y": 30.1, "lpips": 0.20, "gain_b": -0.2}  # 0.15 below bicubic's, reference -0.05
    flickers = {**ref, "lpips": 0.20, "tof": 0.25}
    s = {n: held_fidelity_score(v, ref, 0.05) for n, v in dict(
        ref=ref, ok=ok, lossy=sharper_but_lossy, clip=clip_falls, flickers=flickers).items()}
    assert s["ok"] > s["ref"] > s["flickers"] > s["clip"] and s["flickers"] > s["lossy"]
    assert s["ok"] == pytest.approx(-0.25)
    # with more slack the 0.1 dB one is allowed and wins on LPIPS
    assert held_fidelity_score(sharper_but_lossy, ref, 0.15) > held_fidelity_score(ok, ref, 0.15)


def test_stage1_with_a_perceptual_loss_measures_its_start_and_chooses_on_held_fidelity(data, tmp_path):
    from mstgan_cli.train.fidelity import held_fidelity_score
    src = train(_cfg(data, tmp_path / "s1", steps=2, val_every=2))
    run = train(_cfg(data, tmp_path / "per", steps=4, val_every=2, init=str(src / "best.pt"),
                     w_perceptual=0.05, vgg_layers="relu1_2", psnr_slack=0.5))
    recs = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    ref = next(r["reference"] for r in recs if "reference" in r)
    vals = [r for r in recs if "val" in r]
    assert [r["step"] for r in vals] == [2, 4] and all("lpips" in r["val"] and "tof" in r["val"] for r in vals)
    scores = [held_fidelity_score(r["val"], ref, 0.5) for r in vals]
    assert [r["score"] for r in vals] == pytest.approx(scores)  # logged, so a log says what was chosen and why
    best = torch.load(run / "best.pt", weights_only=True)
    assert best["step"] == vals[int(np.argmax(scores))]["step"]
    # the reference survives a resume (it is not measured again)
    train(_cfg(data, tmp_path / "per", steps=6, val_every=2, init=str(src / "best.pt"),
               w_perceptual=0.05, vgg_layers="relu1_2", psnr_slack=0.5))
    recs = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert sum("reference" in r for r in recs) == 1


def test_compression_strength_is_one_scale_for_every_codec():
    from mstgan_cli.train.degrade import compression_strength as cs

    assert cs({"kind": "clean"}) == 0.0 and cs({"kind": "mixed", "blur": 1.0}) == 0.0
    h264 = [cs({"kind": "h264", "crf": c}) for c in (16, 23, 28, 34)]
    assert 0.1 < h264[0] < h264[1] < h264[2] < h264[3] <= 1.0
    assert cs({"kind": "mixed", "codec": "h264", "crf": 23}) == h264[1]
    mpeg2 = [cs({"codec": "mpeg2", "q": q}) for q in (2, 6, 11)]
    jpeg = [cs({"codec": "jpeg", "q": q}) for q in (95, 60, 30)]
    assert 0 < mpeg2[0] < mpeg2[1] < mpeg2[2] <= 1 and 0 < jpeg[0] < jpeg[1] < jpeg[2] <= 1
    # transparent settings of each codec sit near one another, the worst ones too
    assert max(h264[0], mpeg2[0], jpeg[0]) < 0.2 and min(h264[3], mpeg2[2], jpeg[2]) > 0.85
    # the sampler hands the strength of each window with the batch
    src = Sources([], [_photo(3, (160, 160))], ["a"])
    only = lambda mix: WindowSampler(src, 2, 3, 16, seed=0, degrader=Degrader(2, DegradeConfig.from_dict(mix))).batch(4)
    assert only({"p_clean": 1.0, "p_h264": 0.0}).strength.tolist() == [0.0] * 4
    hard = only({"p_clean": 0.0, "p_h264": 1.0, "h264_crf": [30, 34]}).strength
    assert bool(((hard >= 0.75) & (hard <= 0.95)).all()), hard


def test_the_compression_gate_learns_to_see_compression():
    """Supervised with the known strength, a gate on a tiny model tells clean windows from heavily
    compressed ones it never trained on, from their pixels alone."""
    from mstgan_cli.model.generator import GeneratorConfig, MSTGANGenerator
    from mstgan_cli.train.fidelity import FidelityPhase

    torch.manual_seed(0)
    model = MSTGANGenerator(GeneratorConfig(scale=2, window=3, gate=4, **TINY))
    src = Sources([], [_photo(3, (256, 256)), _photo(4, (256, 256))], ["a", "b"])
    mix = DegradeConfig.from_dict({"p_clean": 0.5, "p_h264": 0.5, "h264_crf": [30, 40]})
    held = WindowSampler(src, 2, 3, 16, seed=1, degrader=Degrader(2, mix)).batch(32)
    clean = held.strength == 0
    assert 5 < int(clean.sum()) < 27

    def seen():
        with torch.no_grad():
            q = torch.sigmoid(model.gate.logits(held.lr[:, 1])).mean((1, 2, 3))
        return float(q[clean].mean()), float(q[~clean].mean())
    before = seen()
    assert abs(before[0] - before[1]) < 0.05  # an untrained gate sees nothing
    sampler = WindowSampler(src, 2, 3, 16, seed=0, degrader=Degrader(2, mix))
    # (the gate trains at gate_lr_scale (20) x the lr: 3e-3)
    phase = FidelityPhase(model, TrainConfig(w_gate=1.0, lr=1.5e-4), torch.device("cpu"))
    parts = [phase.step(*sampler.batch(8)) for _ in range(120)]
    assert "gate" in parts[0]
    q_clean, q_compressed = seen()
    assert q_compressed - q_clean > 0.4, (before, (q_clean, q_compressed))


def test_a_compression_gate_added_to_trained_weights_starts_where_they_left_off(data, tmp_path):
    src = train(_cfg(data, tmp_path / "plain", steps=2, val_every=2))
    ck = torch.load(src / "best.pt", weights_only=True)
    with pytest.raises(ValueError, match="has none"):
        train(_cfg(data, tmp_path / "nogate", steps=1, w_gate=0.1, init=str(src / "best.pt")))
    # at an lr too small to move anything, the gated run validates as its source: the gate's FiLM
    # starts as the identity; it is supervised (the "gate" loss) and diagnosed per clip
    run = train(_cfg(data, tmp_path / "gated", steps=1, val_every=1, lr=1e-12, init=str(src / "best.pt"),
                     generator={**TINY, "gate": 4}, w_gate=0.1, degrade="realworld"))
    recs = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    v = [r for r in recs if "val" in r][-1]["val"]
    assert v["psnr_y"] == pytest.approx(ck["val"]["psnr_y"], abs=1e-3)
    assert 0.0 < v["gate_pan.mkv"] < 1.0
    kept = torch.load(run / "best.pt", weights_only=True)
    assert kept["config"]["gate"] == 4 and "gate.film.2.weight" in kept["state_dict"]
    assert load_generator(run / "best.pt")[0].gate is not None


def test_420_windows_keep_their_luma_and_decode_as_the_product_does():
    from mstgan_cli.train.degrade import chroma_420, compression_strength

    hr = torch.from_numpy(_photo(5, (128, 128)).copy()).permute(2, 0, 1).float().div(255)[None].repeat(3, 1, 1, 1)
    lr = downscale(hr, 4)
    sub = chroma_420(lr[..., :31, :31])  # odd sizes too
    assert sub.shape == (3, 3, 31, 31)
    luma = lambda x: 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    chroma = lambda x: x[:, 2] - luma(x)
    # swscale's 8-bit conversions move luma by about a level; chroma loses half its resolution
    assert (luma(sub) - luma(lr[..., :31, :31])).abs().mean() < 2 / 255
    assert (chroma(sub) - chroma(lr[..., :31, :31])).abs().mean() > 3 * (luma(sub) - luma(lr[..., :31, :31])).abs().mean()
    # chroma comes back interpolated, as `mstgan upscale` decodes files (media.decode), not each
    # sample repeated over a pixel pair (PyAV's to_ndarray): steps inside pairs as large as across them
    for y in (sub, compress_video(lr, "h264", 23)):
        c = chroma(y)
        inside = (c[..., 0:-1:2] - c[..., 1::2]).abs().mean()
        across = (c[..., 1:-1:2] - c[..., 2::2]).abs().mean()
        assert inside > 0.5 * across > 0, (float(inside), float(across))
    d = Degrader(4, DegradeConfig.from_dict({"p_clean": 1.0, "p_h264": 0.0, "p_clean_420": 1.0}))
    out, info = d(hr, np.random.default_rng(0))
    assert info == {"kind": "clean", "chroma": "420"} and compression_strength(info) == 0.0
    torch.testing.assert_close(out, chroma_420(lr))


def test_steadiness_pairs_two_windows_one_frame_apart_with_their_own_targets(data):
    """--steady: a run of T+1 frames gives windows [0, T) and [1, T+1); each output is compared with
    its own centre's ground truth, and the change between them with the ground truth's change. A
    stand-in generator that returns the bicubic of its centre frame pins the pairing: on a pan, one
    frame off gives different numbers."""
    import torch.nn.functional as F
    from mstgan_cli.model.generator import GeneratorConfig, MSTGANGenerator
    from mstgan_cli.train.fidelity import FidelityPhase
    from mstgan_cli.train.losses import charbonnier

    model = MSTGANGenerator(GeneratorConfig(scale=2, window=3, **TINY))
    up = lambda x: F.interpolate(x, scale_factor=2.0, mode="bicubic", align_corners=False)
    def stand_in(w, align=None):  # the centre frame's bicubic, and zero flows to its neighbours
        c = w.shape[1] // 2
        return up(w[:, c]), [None if i == c else w.new_zeros(w.shape[0], 2, *w.shape[-2:]) for i in range(w.shape[1])]
    model.forward_with_flows = stand_in
    phase = FidelityPhase(model, TrainConfig(w_steady=1.0, w_warp=0.0, w_smooth=0.0), torch.device("cpu"))
    assert phase.extra_frames == 1 and FidelityPhase(model, TrainConfig(), torch.device("cpu")).extra_frames == 0
    src = Sources.load(data / "train")
    b = WindowSampler(src, scale=2, window=4, patch=16, seed=3).batch(4)
    loss, parts = phase._steady_losses(b.lr, b.hr, b.flow, b.flow_weight, b.strength)
    a, z = up(b.lr[:, 1]), up(b.lr[:, 2])  # centres of [0, 3) and [1, 4)
    want_pix = charbonnier(torch.cat([a, z]), torch.cat([b.hr[:, 1], b.hr[:, 2]]))
    want_steady = ((z - a) - (b.hr[:, 2] - b.hr[:, 1])).abs().mean()
    assert parts["pix"] == pytest.approx(float(want_pix), rel=1e-5)
    assert parts["steady"] == pytest.approx(float(want_steady), rel=1e-5)
    assert float(loss) == pytest.approx(float(want_pix + want_steady), rel=1e-5)
    off = charbonnier(torch.cat([a, z]), torch.cat([b.hr[:, 2], b.hr[:, 3]]))
    assert abs(float(off) - float(want_pix)) > 0.1 * float(want_pix)


def test_a_steady_run_draws_one_more_frame_and_validates_flicker(data, tmp_path):
    run = train(_cfg(data, tmp_path / "steady", steps=2, val_every=2, w_steady=0.5))
    # (a sampler still drawing T frames would hand the model windows of T-1: the run would fail)
    recs = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    v = [r for r in recs if "val" in r][-1]["val"]
    assert v["tof"] >= 0 and v["tlp100"] >= 0 and "lpips" in v


def test_perceptual_on_compressed_windows_only_and_a_frozen_gate():
    """--perceptual-on compressed: the VGG loss sees only the windows whose LR went through an
    encoder (clean input keeps pure fidelity); --gate-lr-scale 0 leaves a (calibrated) gate as it is
    while the rest of the generator trains."""
    from mstgan_cli.model.generator import GeneratorConfig, MSTGANGenerator
    from mstgan_cli.train.fidelity import FidelityPhase

    torch.manual_seed(0)
    model = MSTGANGenerator(GeneratorConfig(scale=2, window=3, gate=4, **TINY))
    gate0 = {k: v.clone() for k, v in model.gate.state_dict().items()}
    rest0 = next(p for n, p in model.named_parameters() if not n.startswith("gate.")).clone()
    cfg = TrainConfig(w_perceptual=0.1, perceptual_on="compressed", gate_lr_scale=0.0, lr=1e-3)
    phase = FidelityPhase(model, cfg, torch.device("cpu"))
    seen = []
    real = phase.perceptual

    def spy(x, y):
        seen.append(x.shape[0])
        return real(x, y)
    phase.perceptual = spy
    src = Sources([], [_photo(3, (160, 160))], ["a"])
    mix = DegradeConfig.from_dict({"p_clean": 0.5, "p_h264": 0.5, "h264_crf": [30, 34]})
    sampler = WindowSampler(src, 2, 3, 16, seed=0, degrader=Degrader(2, mix))
    batches = [sampler.batch(8) for _ in range(3)]
    parts = [phase.step(*b) for b in batches]
    assert seen == [int((b.strength > 0).sum()) for b in batches if bool((b.strength > 0).any())]
    assert 0 < sum(seen) < 24 and all("perceptual" in p for p, b in zip(parts, batches) if bool((b.strength > 0).any()))
    # a batch of clean windows only: no perceptual term at all
    clean = WindowSampler(src, 2, 3, 16, seed=0, degrader=Degrader(2, DegradeConfig.from_dict({"p_clean": 1.0, "p_h264": 0.0}))).batch(4)
    assert "perceptual" not in phase.step(*clean)
    for k, v in model.gate.state_dict().items():
        assert torch.equal(v, gate0[k]), k
    moved = next(p for n, p in model.named_parameters() if not n.startswith("gate."))
    assert not torch.equal(moved, rest0)


def _tool(name: str):
    """A script of tools/ (not a package) loaded as a module."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_calibrated_gate_is_released_with_its_calibration(data, tmp_path):
    """tools/calibrate_gate.py moves the gate's logit bias of a run checkpoint and records why;
    the release keeps the moved bias and says so on the card. A second calibration is refused."""
    from mstgan_cli.train.release import model_card

    tool = _tool("calibrate_gate")
    run = train(_cfg(data, tmp_path / "gated", steps=1, val_every=1, generator={**TINY, "gate": 4},
                     w_gate=0.1, degrade="realworld"))
    src = torch.load(run / "best.pt", weights_only=True)
    cal = tmp_path / "cal" / "best.pt"
    tool.calibrate(run / "best.pt", -2.0, cal, why="val: lower tOF")
    with pytest.raises(SystemExit, match="already calibrated"):
        tool.calibrate(cal, -1.0, tmp_path / "twice.pt", why="x")
    meta = release(cal, tmp_path / "w.pt", "fidelity", "gated", runs=[run])
    model, _ = load_generator(tmp_path / "w.pt")
    moved = model.gate.to_logit.bias.float() - src["state_dict"]["gate.to_logit.bias"].float()
    assert torch.allclose(moved, torch.full_like(moved, -2.0), atol=1e-2)  # shipped as fp16
    assert meta["calibration"]["gate.to_logit.bias"] == -2.0 and meta["checkpoint_step"] == src["step"]
    card = model_card("w", meta, None)
    assert "calibrated after training" in card and "`gate.to_logit.bias` -2" in card and "val: lower tOF" in card


def test_lpips_perceptual_loss_is_the_vgg_lpips_distance_and_trains_the_input():
    """--vgg-layers lpips: the loss is LPIPS-VGG (not AlexNet, which eval reports), and its gradient
    reaches the generator's output."""
    from mstgan_cli.metrics.lpips import lpips as lpips_metric
    from mstgan_cli.train.losses import PerceptualLoss

    g = torch.Generator().manual_seed(0)
    hr = torch.rand(2, 3, 64, 64, generator=g)
    sr = (hr + 0.1 * torch.randn(2, 3, 64, 64, generator=g)).clamp(0, 1).requires_grad_(True)
    loss = PerceptualLoss(torch.device("cpu"), ["lpips"])
    value = loss(sr, hr)
    want = lpips_metric(sr.detach(), hr, net="vgg").mean()
    assert value.item() == pytest.approx(want.item(), rel=1e-5)
    assert abs(value.item() - lpips_metric(sr.detach(), hr, net="alex").mean().item()) > 1e-3
    value.backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0
    assert loss(hr, hr).item() == pytest.approx(0.0, abs=1e-6)


def test_interpolated_weights_are_the_blend_and_are_released_with_it(data, tmp_path):
    """tools/interpolate_weights.py: every float tensor is (1 - a) A + a B; a gate calibration on top
    keeps the record; the release and the card say both. Blends of changed weights, of different
    generators or with alpha outside [0, 1] are refused."""
    from mstgan_cli.train.release import model_card

    blend, cal_tool = _tool("interpolate_weights"), _tool("calibrate_gate")
    gen = {**TINY, "gate": 4}
    a = train(_cfg(data, tmp_path / "a", steps=1, val_every=1, generator=gen, w_gate=0.1, degrade="realworld"))
    b = train(_cfg(data, tmp_path / "b", steps=2, val_every=2, generator=gen, w_gate=0.1, degrade="realworld",
                   init=str(a / "best.pt"), lr=1e-2))
    sa = torch.load(a / "best.pt", weights_only=True)["state_dict"]
    sb = torch.load(b / "best.pt", weights_only=True)["state_dict"]
    out = tmp_path / "mix" / "best.pt"
    blend.interpolate(a / "best.pt", b / "best.pt", 0.25, out, why="val: rule X")
    mixed = torch.load(out, weights_only=True)
    moved = [k for k in sa if sa[k].is_floating_point() and not torch.equal(sa[k], sb[k])]
    assert moved
    for k in moved:
        assert torch.allclose(mixed["state_dict"][k], 0.75 * sa[k] + 0.25 * sb[k], atol=1e-6), k
    cal = tmp_path / "cal" / "best.pt"
    cal_tool.calibrate(out, -1.0, cal, why="val: lower tOF")
    with pytest.raises(SystemExit, match="already changed"):
        blend.interpolate(cal, b / "best.pt", 0.5, tmp_path / "x.pt", why="x")
    with pytest.raises(SystemExit, match="between 0 and 1"):
        blend.interpolate(a / "best.pt", b / "best.pt", 1.5, tmp_path / "x.pt", why="x")
    other = train(_cfg(data, tmp_path / "o", steps=1, val_every=1))
    with pytest.raises(SystemExit, match="different generators"):
        blend.interpolate(a / "best.pt", other / "best.pt", 0.5, tmp_path / "x.pt", why="x")
    meta = release(cal, tmp_path / "w.pt", "fidelity", "blended", runs=[a, b])
    assert meta["interpolation"]["alpha"] == 0.25 and meta["calibration"]["gate.to_logit.bias"] == -1.0
    card = model_card("w", meta, None)
    assert "interpolated after training" in card and "0.75 x" in card and "val: rule X" in card


def test_stage2_without_pingpong_skips_the_reversed_pass():
    """--pingpong 0: the generator runs once per step (the three windows as one batch), not twice,
    and the logged Ping-Pong term is zero; with a weight it runs the reversed window too."""
    from mstgan_cli.model.generator import GeneratorConfig, MSTGANGenerator
    from mstgan_cli.train.adversarial import AdversarialPhase

    torch.manual_seed(0)
    lr = torch.rand(1, 5, 3, 16, 16)
    hr = torch.rand(1, 5, 3, 32, 32)
    calls = {}
    for w in (0.0, 0.5):
        g = MSTGANGenerator(GeneratorConfig(scale=2, window=3, **TINY))
        n = [0]
        orig = g.forward_with_flows  # forward() goes through it too
        g.forward_with_flows = lambda *a, **k: (n.__setitem__(0, n[0] + 1), orig(*a, **k))[1]
        phase = AdversarialPhase(g, TrainConfig(data="", val="", out="", stage=2, w_pingpong=w), torch.device("cpu"))
        phase.begin()
        parts = phase.step(lr, hr)
        calls[w] = (n[0], parts["pingpong"])
    assert calls[0.0] == (1, 0.0)
    assert calls[0.5][0] == 2 and calls[0.5][1] > 0
