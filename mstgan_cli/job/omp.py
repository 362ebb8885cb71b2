"""OpenMP threads that wait sleep instead of spinning, for the ``mstgan`` command.

PyTorch's CPU kernels run on an OpenMP thread pool. By default GNU OpenMP (what the PyTorch
wheels link) keeps a thread that reaches a barrier spinning for ~300,000 iterations before it
sleeps. That is the right choice when the model has the cores to itself, and the wrong one in
``mstgan upscale``, where the video encoder and the decoder run beside the model on the same
cores: whenever the encoder preempts one model thread, the other spins at the next barrier,
burning the core that the encoder could have used. With passive waiting the waiting thread
sleeps at once and the encoder runs there.

Measured on a 2-core CPU (``benchmarks/e2e_precision.py --spin-waits-too``: x4 of 480x272
frames, 60- and 160-frame jobs, two rounds in turns): each further int8 frame 0.462 -> 0.406 s;
fp32 eager, whose kernels are fewer and longer, unchanged (0.764 -> 0.759 s).

OpenMP reads its settings once, when the runtime is loaded (with ``import torch``): this must
run before that, and does nothing when torch is already imported or the user chose a policy.
"""
from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

# settings by which a user (or a benchmark) already chose how OpenMP threads wait
USER_CHOICES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


def prefer_passive_waits(environ: MutableMapping[str, str] | None = None) -> bool:
    """Set ``OMP_WAIT_POLICY=passive`` unless a wait setting is already chosen or torch (and so
    OpenMP) is already loaded. Returns whether it was set."""
    env = os.environ if environ is None else environ
    if "torch" in sys.modules or any(k in env for k in USER_CHOICES):
        return False
    env["OMP_WAIT_POLICY"] = "passive"
    return True
