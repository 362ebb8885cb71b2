"""The settings of a training run (stored in every checkpoint and in the run's config.json), and
which of them a resumed run may change."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class TrainConfig:
    data: str = "data/train"
    val: str = "data/val"
    out: str = "runs/x4"
    cache: str = ".data/cache"
    scale: int = 4
    window: int = 5
    generator: dict = field(default_factory=dict)  # overrides of GeneratorConfig
    stage: int = 1
    steps: int = 60_000          # length of the learning-rate schedule
    batch: int = 16
    patch: int = 32              # low-resolution patch side
    lr: float = 3e-4
    warmup: int = 300
    seed: int = 0
    val_every: int = 500
    val_frames: int = 8          # validation windows per clip
    ckpt_minutes: float = 5.0
    w_warp: float = 0.05         # photometric loss of the flows
    w_smooth: float = 0.005      # flow smoothness (optical-flow regularisation)
    w_flow: float = 0.0          # supervision of the flow network by the virtual camera's known motion
    true_flow: float = 0.0       # stage 1: share of photo windows aligned with the true motion instead
                                 # of the predicted flow (teacher-forced alignment)
    w_perceptual: float = 0.0
    vgg_layers: str = "relu1_2,relu2_2,relu3_3"  # VGG16 feature maps of the perceptual loss
    perceptual_crop: int = 0     # the perceptual loss sees one random window this size (HR pixels) of
                                 # every output patch (0: the whole patch)
    perceptual_on: str = "all"   # stage 1: "all" windows, or only "compressed" ones (known strength
                                 # above 0), so clean input keeps its fidelity while compressed
                                 # input is pushed towards texture
    psnr_slack: float = 0.05     # stage 1 with a perceptual loss: checkpoints are chosen on LPIPS among
                                 # those whose val PSNR-Y is at most this far below the starting weights'
    w_gate: float = 0.0          # stage 1: supervision of the generator's compression gate (its
                                 # estimate of each window's compression against the known one)
    gate_lr_scale: float = 20.0  # stage 1: lr of the compression gate relative to the rest (0: frozen,
                                 # e.g. to keep a calibration while the rest fine-tunes)
    w_steady: float = 0.0        # stage 1: each sample gives two consecutive outputs (windows one
                                 # frame apart), whose change must match the ground truth's: the
                                 # flicker tOF/tLP measure, penalised without a discriminator
    w_adv: float = 0.005         # stage 2: adversarial (hinge) weight
    w_temporal: float = 0.5      # stage 2: consecutive-frame change must match the ground truth
    w_pingpong: float = 0.5      # stage 2: the reversed window must give the same frame
    w_ftemporal: float = 0.0     # stage 2: the same as w_temporal, on VGG features (tLP's space)
    w_tflow: float = 0.0         # stage 2: motion between consecutive outputs must match the ground
                                 # truth's (a frozen copy of the starting flow network measures both)
    ema: float = 0.0             # stage 2: decay of an exponential moving average of the weights,
                                 # which is what is validated and released (0: off)
    noise: float = 0.1           # stage 2: instance noise std on D's inputs at the start...
    noise_steps: int = 5000      # ...annealed linearly to zero over this many steps
    init: str = ""               # start from these generator weights (e.g. stage 2 from stage 1)
    degrade: str = "bicubic"     # LR of the training windows: "bicubic" (the protocol's) or
                                 # "realworld" (train.degrade: real encoders, blur, noise, kernels)
    degrade_config: dict = field(default_factory=dict)  # overrides of DegradeConfig ("realworld")
    val_degrade: str = "bicubic"  # validation sets, comma-separated: bicubic, h264:CRF
    test: str = ""               # a test split's videos/, measured (same sets) at every validation and
                                 # logged beside it, never used to choose anything (empty: none)
    max_speed: float = 6.0       # virtual camera: fastest motion, HR pixels per frame
    fast_motion: float = 0.3     # virtual camera: share of fast windows
    threads: int = 0             # CPU threads (0: torch default)
    max_minutes: float = 0.0     # stop (after saving) when this much wall time has passed
    until: int = 0               # stop (after saving) at this step (0: at `steps`)


# settings a resumed run may change (each (re)start records them in log.jsonl): where and how long it
# runs, how often it is validated, and the length of the schedule (to extend a run); not what it learns from
RESUMABLE_CHANGES = frozenset({"out", "data", "val", "cache", "threads", "max_minutes", "until", "ckpt_minutes",
                               "steps", "val_every", "test"})


def changed_settings(saved: dict, now: dict) -> dict:
    """Settings of `now` that differ from the run's `saved` ones and would change what it learns:
    {name: (saved, now)}. Settings added to TrainConfig since the run was saved count as unchanged
    when they hold their default."""
    defaults = asdict(TrainConfig())
    out = {}
    for k, v in now.items():
        if k in RESUMABLE_CHANGES:
            continue
        old = saved.get(k, defaults.get(k))
        if old != v:
            out[k] = (old, v)
    return out
