"""LPIPS v0.1 (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual
Metric"): AlexNet (default, the one VSR papers report) or VGG16 trunk, unit-normalised features,
squared difference, learned 1x1 heads, spatial mean, summed over five layers.

Weights: ``weights/lpips_alex.pth`` / ``weights/lpips_vgg.pth`` (made by
``tools/convert_lpips_weights.py``), looked up in ``$MSTGAN_WEIGHTS_DIR`` or the repo's ``weights/``.
"""
from __future__ import annotations

import threading
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelError
from ..model.vgg import LPIPS_LAYERS, VGGFeatures, load_weight_file, shipped_weights_dir
from .image import as_image_tensor

NETS = ("alex", "vgg")
WEIGHT_FILES = {"alex": "lpips_alex.pth", "vgg": "lpips_vgg.pth"}
# LPIPS' ScalingLayer for inputs in [-1, 1]; equal to ImageNet mean/std for inputs in [0, 1].
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


class AlexNetFeatures(nn.Module):
    """torchvision AlexNet ``features`` (5 convs); returns the 5 ReLU maps LPIPS compares.

    Input: (B, 3, H, W) already normalised. Output: maps with 64, 192, 384, 256, 256 channels at
    strides 4, 8, 16, 16, 16 (roughly; the first conv has stride 4 and padding 2).
    """

    channels = (64, 192, 384, 256, 256)
    taps = (1, 4, 7, 9, 11)

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x)
        return out


def _unit_normalize(f: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


class LPIPS(nn.Module):
    """LPIPS v0.1 distance. Built with random weights: use :func:`load_lpips` for the real ones.

    ``forward(a, b)``: (B, 3, H, W) float RGB in [0, 1] each (scaled to [-1, 1] inside) -> (B,)
    distances (0 for identical images; typical 0.05-0.6). Parameters are frozen, but gradients flow
    to the inputs, so it can serve as a training loss. For video, :meth:`features` +
    :meth:`distance` let a caller compute each frame's features once and compare them many times.
    """

    def __init__(self, net: str = "alex") -> None:
        super().__init__()
        if net not in NETS:
            raise ValueError(f"LPIPS net must be one of {NETS}, got {net!r}")
        self.net_name = net
        self.net: nn.Module
        if net == "alex":
            self.net = AlexNetFeatures()
            channels = list(AlexNetFeatures.channels)
        else:
            vgg = VGGFeatures(LPIPS_LAYERS, normalize_input=False)
            self.net, channels = vgg, vgg.channels
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in channels)
        self.requires_grad_(False)

    @staticmethod
    def scale_input(x: torch.Tensor) -> torch.Tensor:
        """RGB [0, 1] -> [-1, 1] -> LPIPS' ScalingLayer (equal to ImageNet mean/std normalisation)."""
        shift = x.new_tensor(_SHIFT).view(1, 3, 1, 1)
        scale = x.new_tensor(_SCALE).view(1, 3, 1, 1)
        return (x * 2.0 - 1.0 - shift) / scale

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) RGB [0, 1] -> list of 5 channel-normalised feature maps."""
        assert x.dim() == 4 and x.shape[1] == 3, f"expected (B, 3, H, W), got {tuple(x.shape)}"
        x = self.scale_input(x)
        return [_unit_normalize(f) for f in self.net(x)]

    def distance(self, fa: list[torch.Tensor], fb: list[torch.Tensor]) -> torch.Tensor:
        """LPIPS between two outputs of :meth:`features` -> (B,)."""
        total = 0.0
        for lin, a, b in zip(self.lins, fa, fb):
            total = total + lin((a - b).pow(2)).mean(dim=(1, 2, 3))
        return total  # type: ignore[return-value]

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        assert a.shape == b.shape, f"image shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}"
        return self.distance(self.features(a), self.features(b))


def load_lpips(net: str = "alex", path: str | Path | None = None) -> LPIPS:
    """An :class:`LPIPS` with the shipped weights, fp32, eval mode, on the CPU (move it with ``.to``).

    Raises :class:`ModelError` when the weight file is missing or does not fit.
    """
    if net not in NETS:
        raise ValueError(f"LPIPS net must be one of {NETS}, got {net!r}")
    path = Path(path) if path is not None else shipped_weights_dir() / WEIGHT_FILES[net]
    ckpt = load_weight_file(path)
    if ckpt.get("config", {}).get("net") != net:
        raise ModelError(f"{path} holds LPIPS weights for {ckpt.get('config', {}).get('net')!r}, not {net!r}")
    with torch.device("meta"):  # no random init of weights that are overwritten anyway
        model = LPIPS(net)
    sd = ckpt["state_dict"]
    want = model.state_dict()
    merged = {}
    for key in want:
        part, _, rest = key.partition(".")
        src = sd["backbone"] if part == "net" else sd["lin"]
        if rest not in src:
            raise ModelError(f"{path} lacks tensor {rest!r}")
        merged[key] = src[rest].float()
    model.load_state_dict(merged, assign=True)
    return model.eval()


_CACHE: dict[tuple[str, str], LPIPS] = {}
_CACHE_LOCK = threading.Lock()


def cached_lpips(net: str = "alex", device: torch.device | str = "cpu") -> LPIPS:
    """One shared, loaded :class:`LPIPS` per (net, device), for the functional API."""
    key = (net, str(torch.device(device)))
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = load_lpips(net).to(device)
        return _CACHE[key]


def lpips(a, b, net: str = "alex") -> torch.Tensor:
    """LPIPS v0.1 between RGB images in [0, 1]: (3, H, W) -> () or (B, 3, H, W) -> (B,).

    Also takes what :func:`~mstgan_cli.metrics.image.as_image_tensor` takes. Runs without autograd
    on the device of ``a`` with a cached model; for a differentiable loss use :func:`load_lpips`.
    """
    ta, tb = as_image_tensor(a), as_image_tensor(b)
    single = ta.dim() == 3
    if single:
        ta, tb = ta[None], tb[None]
    model = cached_lpips(net, ta.device)
    with torch.no_grad():
        d = model(ta.float(), tb.to(ta.device).float())
    return d[0] if single else d
