#!/usr/bin/env bash
# Set up a fresh machine: a virtual environment in .venv with urbangen and every extra needed locally.
# torch goes first so pip takes the CPU wheel instead of pulling a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv

pip_install() {  # quiet pip that keeps real errors and its exit status
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "$@" 2>&1 \
    | { grep -v "^WARNING: Location" || true; }
  return "${PIPESTATUS[0]}"
}
pip_install "torch==2.13.0"
pip_install -e ".[all,dev]"
.venv/bin/python -c "import torch, urbangen; print('urbangen', urbangen.__version__, 'torch', torch.__version__)"
