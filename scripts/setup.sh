#!/usr/bin/env bash
# Create .venv and install mstgan with its test tools. Safe to run again (a no-op when done).
# PyTorch: with an NVIDIA GPU, pip picks a CUDA build; without one we pin the CPU build that
# this platform provides, so a CPU-only machine never downloads a multi-GB CUDA stack.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip() { .venv/bin/python -m pip -q --disable-pip-version-check "$@"; }
stamp=.venv/.mstgan-installed
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then exit 0; fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then pip install "torch>=2.3"; else pip install "torch==2.13.0"; fi
fi
pip install -e ".[dev]"
touch "$stamp"
