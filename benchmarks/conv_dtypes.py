"""Why bf16 gains little on this CPU: every convolution of the generator, timed in fp32, bf16 and
fp16, NCHW and channels-last, side by side, with the oneDNN kernel each one runs.

The generator is run once on a window of ``--size`` LR frames (the convolutions' real input
shapes are recorded with forward hooks); then each distinct convolution is timed alone, eager,
``--rounds`` calls after a warm-up call, in every dtype x layout, taken in turns so background
load hits all alike. The total weights each shape by how many times one window calls it.
oneDNN's implementation names come from a second pass with ``ONEDNN_VERBOSE=1`` in a subprocess.

    python benchmarks/conv_dtypes.py --out benchmarks/results

Writes ``--out``/conv_dtypes.md and conv_dtypes.json.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from mstgan_cli.model.checkpoint import load_generator

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
LAYOUTS = ("nchw", "channels_last")


def model_convs(model: torch.nn.Module, window: torch.Tensor) -> list[dict]:
    """Distinct convolutions of one window's forward pass, with their inputs and call counts."""
    seen: dict[tuple, dict] = {}

    def hook(m, inp, _out):
        x = inp[0]
        key = (m.in_channels, m.out_channels, m.kernel_size[0], m.groups, m.stride[0], tuple(x.shape[-2:]))
        if key not in seen:
            seen[key] = {"conv": m, "input": x.detach().float().clone(), "calls": 0,
                         "shape": "{}->{} k{} g{} s{} @{}x{}".format(*key[:5], *key[5])}
        seen[key]["calls"] += 1

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        model(window)
    for h in hooks:
        h.remove()
    return sorted(seen.values(), key=lambda e: -e["calls"] * e["input"].numel())


def variants(entry: dict) -> dict[str, tuple]:
    out = {}
    for dname, dt in DTYPES.items():
        for layout in LAYOUTS:
            m = copy.deepcopy(entry["conv"]).to(dt).eval()
            x = entry["input"].to(dt)
            if layout == "channels_last":
                m = m.to(memory_format=torch.channels_last)
                x = x.contiguous(memory_format=torch.channels_last)
            out[f"{dname}/{layout}"] = (m, x)
    return out


def time_all(entries: list[dict], rounds: int) -> None:
    for e in entries:
        vs = variants(e)
        samples: dict[str, list[float]] = {k: [] for k in vs}
        with torch.no_grad():
            for m, x in vs.values():
                m(x)  # warm-up: oneDNN primitive creation
            for _ in range(rounds):
                for k, (m, x) in vs.items():
                    t = time.perf_counter()
                    m(x)
                    samples[k].append(time.perf_counter() - t)
        e["ms"] = {k: 1e3 * sorted(v)[len(v) // 2] for k, v in samples.items()}


def onednn_kernels(args) -> dict[str, list[str]]:
    """Run the largest convolution once per variant under ONEDNN_VERBOSE; kernel names per variant."""
    code = (
        "import sys, torch\n"
        "sys.argv = sys.argv[:1] + %r\n"
        "import benchmarks.conv_dtypes as b\n"
        "a = b.parse()\n"
        "torch.set_num_threads(a.threads)\n"
        "e = b.model_convs(*b.load(a))[0]\n"
        "for k, (m, x) in b.variants(e).items():\n"
        "    print('VARIANT', k, flush=True)\n"
        "    with torch.no_grad(): m(x)\n"
    ) % (sys.argv[1:],)
    env = dict(os.environ, ONEDNN_VERBOSE="1", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    kernels: dict[str, list[str]] = {}
    cur = None
    for line in res.stdout.splitlines():
        if line.startswith("VARIANT"):
            cur = line.split()[1]
            kernels[cur] = []
        elif cur and ",exec," in line and ",convolution," in line:
            f = line.split(",")
            kernels[cur].append(f[f.index("convolution") + 1])
    return kernels


def load(a) -> tuple[torch.nn.Module, torch.Tensor]:
    model, _ = load_generator(a.model)
    model.eval()
    w, h = (int(v) for v in a.size.split("x"))
    g = torch.Generator().manual_seed(0)
    return model, torch.rand(1, model.config.window, 3, h, w, generator=g)


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="weights/mstgan-x4.pt")
    p.add_argument("--size", default="240x136", help="LR frame WxH")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="", help="folder for conv_dtypes.md/json (default: print only)")
    return p.parse_args(argv)


def main() -> None:
    a = parse()
    torch.set_num_threads(a.threads)
    entries = model_convs(*load(a))
    time_all(entries, a.rounds)
    keys = [f"{d}/{lay}" for d in DTYPES for lay in LAYOUTS]
    totals = {k: sum(e["ms"][k] * e["calls"] for e in entries) for k in keys}
    kernels = onednn_kernels(a)
    base = totals["fp32/channels_last"]
    lines = [f"Model {a.model}; LR window {a.size}; {a.threads} threads; median of {a.rounds} calls; "
             f"{platform.processor() or platform.machine()}; torch {torch.__version__}; "
             f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC.", "",
             "| convolution | calls | " + " | ".join(keys) + " |",
             "|---|---:|" + "---:|" * len(keys)]
    for e in entries:
        lines.append(f"| {e['shape']} | {e['calls']} | " + " | ".join(f"{e['ms'][k]:.2f}" for k in keys) + " |")
    lines.append("| **total per window (ms)** | | " + " | ".join(f"**{totals[k]:.1f}**" for k in keys) + " |")
    lines.append("| time vs fp32/channels_last | | " + " | ".join(f"{totals[k] / base:.2f}x" for k in keys) + " |")
    lines += ["", "oneDNN kernels of the largest convolution:", ""]
    lines += [f"- {k}: {', '.join(sorted(set(v))) or '(not oneDNN)'}" for k, v in kernels.items()]
    text = "\n".join(lines)
    print(text)
    if a.out:
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "conv_dtypes.md").write_text(text + "\n")
        (out / "conv_dtypes.json").write_text(json.dumps(
            {"model": a.model, "size": a.size, "threads": a.threads, "totals_ms": totals, "kernels": kernels,
             "convs": [{"shape": e["shape"], "calls": e["calls"], "ms": e["ms"]} for e in entries]}, indent=1))


if __name__ == "__main__":
    main()
