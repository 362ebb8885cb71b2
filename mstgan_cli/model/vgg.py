"""VGG16 feature extractor: a perceptual-loss backbone and the trunk of LPIPS-VGG.

The weights are the ImageNet VGG16 convolutions (torchvision's ``vgg16`` ``features``), shipped in
``weights/lpips_vgg.pth`` together with the LPIPS v0.1 linear heads (see
``tools/convert_lpips_weights.py``). State-dict keys follow torchvision: ``features.{i}.weight``.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelError

# torchvision's vgg16().features, layer by layer: an int is a 3x3 conv (+ReLU), "M" a 2x2 max-pool.
_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
_RELU_NAMES = (
    "relu1_1", "relu1_2",
    "relu2_1", "relu2_2",
    "relu3_1", "relu3_2", "relu3_3",
    "relu4_1", "relu4_2", "relu4_3",
    "relu5_1", "relu5_2", "relu5_3",
)
#: Cheap default for a training loss: ~3.0 GMAC per 128x128 patch (relu4_3 would be ~4.6).
DEFAULT_LAYERS: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_3")
#: The five taps LPIPS-VGG compares.
LPIPS_LAYERS: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

WEIGHTS_ENV = "MSTGAN_WEIGHTS_DIR"
VGG_WEIGHTS_FILE = "lpips_vgg.pth"


def shipped_weights_dir() -> Path:
    """Folder of the shipped weight files: ``$MSTGAN_WEIGHTS_DIR`` if set, else the repo's ``weights/``."""
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2] / "weights"


def load_weight_file(path: Path) -> dict:
    """Load a self-describing weight file (``{"format", "config", "state_dict", "meta"}``) on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(
            f"weight file not found: {path} (set ${WEIGHTS_ENV} to the folder holding it, "
            "or regenerate it with tools/convert_lpips_weights.py)"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, git-lfs pointer, wrong format
        raise ModelError(f"cannot load weight file {path}: {exc}") from exc
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ModelError(f"{path} is not an mstgan weight file (no 'state_dict')")
    return ckpt


def _layer_index(name: str) -> int:
    """Index in ``features`` of the ReLU called ``name``."""
    if name not in _RELU_NAMES:
        raise ValueError(f"unknown VGG16 layer {name!r}; choose from {', '.join(_RELU_NAMES)}")
    k = _RELU_NAMES.index(name)
    idx, convs = 0, 0
    for v in _CFG:
        if v == "M":
            idx += 1
            continue
        if convs == k:
            return idx + 1  # the ReLU right after this conv
        idx += 2
        convs += 1
    raise AssertionError("unreachable")


class VGGFeatures(nn.Module):
    """ImageNet VGG16 trunk that returns the ReLU maps named in ``layers``.

    Only the layers up to the deepest requested one are built, so ``layers=("relu2_2",)`` costs a
    fraction of the full network. Parameters are frozen (``requires_grad=False``); gradients still
    flow to the *input*, which is what a perceptual loss needs.

    Input: (B, 3, H, W) float RGB in [0, 1] (ImageNet mean/std applied inside) or, with
    ``normalize_input=False``, an already normalised tensor. Output: list of (B, C_l, H_l, W_l)
    float maps in the order of ``layers``.
    """

    def __init__(self, layers: Sequence[str] = DEFAULT_LAYERS, normalize_input: bool = True) -> None:
        super().__init__()
        assert len(layers) > 0, "ask for at least one layer"
        self.layers = tuple(layers)
        self.taps = [_layer_index(n) for n in self.layers]
        assert self.taps == sorted(self.taps), f"layers must be in network order, got {self.layers}"
        last = self.taps[-1]

        mods: list[nn.Module] = []
        in_ch = 3
        for v in _CFG:
            if len(mods) > last:
                break
            if v == "M":
                mods.append(nn.MaxPool2d(2, 2))
            else:
                mods += [nn.Conv2d(in_ch, int(v), 3, padding=1), nn.ReLU(inplace=False)]
                in_ch = int(v)
        self.features = nn.Sequential(*mods[: last + 1])
        self.normalize_input = normalize_input
        self.requires_grad_(False)

    @property
    def channels(self) -> list[int]:
        """Channel count of each returned map."""
        return [self.features[i - 1].out_channels for i in self.taps]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        assert x.dim() == 4 and x.shape[1] == 3, f"expected (B, 3, H, W), got {tuple(x.shape)}"
        if self.normalize_input:
            x = (x - x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
        out: list[torch.Tensor] = []
        want = set(self.taps)
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in want:
                out.append(x)
        return out


def load_vgg_features(
    path: str | Path | None = None,
    layers: Sequence[str] = DEFAULT_LAYERS,
    normalize_input: bool = True,
) -> VGGFeatures:
    """Build a :class:`VGGFeatures` with the shipped ImageNet weights, in eval mode, on the CPU (fp32).

    ``path`` defaults to ``weights/lpips_vgg.pth`` (see :func:`shipped_weights_dir`). Move it with
    ``.to(device, dtype)`` as usual. Raises :class:`ModelError` if the file is missing or does not fit.
    """
    path = Path(path) if path is not None else shipped_weights_dir() / VGG_WEIGHTS_FILE
    ckpt = load_weight_file(path)
    backbone = ckpt["state_dict"].get("backbone")
    if backbone is None:
        raise ModelError(f"{path} has no VGG backbone weights")
    with torch.device("meta"):  # no random init of weights that are overwritten anyway
        net = VGGFeatures(layers, normalize_input=normalize_input)
    own = net.state_dict()
    missing = [k for k in own if k not in backbone]
    if missing:
        raise ModelError(f"{path} lacks {len(missing)} tensors for {layers[-1]} (e.g. {missing[0]})")
    net.load_state_dict({k: backbone[k].float() for k in own}, assign=True)
    return net.eval()
