#!/usr/bin/env bash
# Create .venv and install mstgan with its test tools. Safe to run again (a no-op when done).
# torch and torchao come at the exact versions in constraints.txt (the shipped INT8 calibrations
# and the compiled packages are keyed to them), on every machine. PyTorch: with an NVIDIA GPU
# (nvidia-smi), PyPI's build (CUDA); without one the CPU build only (torch==X+cpu: a local
# wheel, or PyTorch's CPU index), so a CPU-only machine never downloads a multi-GB CUDA stack.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip() { .venv/bin/python -m pip -q --disable-pip-version-check "$@"; }
stamp=.venv/.mstgan-installed
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && [ "$stamp" -nt constraints.txt ]; then exit 0; fi
want=$(sed -n 's/^torch==//p' constraints.txt)
have=$(.venv/bin/python -c "import torch; print(torch.__version__.split('+')[0])" 2>/dev/null || true)
if [ "$have" != "$want" ]; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    pip install "torch==$want"
    .venv/bin/python -c "import sys, torch; sys.exit(torch.version.cuda is None)" ||
      echo "setup.sh: warning: a CPU build of torch was installed on a machine with an NVIDIA GPU" \
        "(a local wheel came first); for CUDA: .venv/bin/python -m pip install --force-reinstall" \
        "torch==$want --index-url https://download.pytorch.org/whl/cu128" >&2
  else
    # "+cpu": no CUDA build can satisfy it, wherever pip looks
    pip install "torch==$want+cpu" 2>/dev/null ||
      pip install "torch==$want+cpu" --extra-index-url https://download.pytorch.org/whl/cpu
  fi
fi
# torch is already there at the pinned version, so this never swaps in another build of it
pip install -e ".[dev]" -c constraints.txt
touch "$stamp"
