#!/usr/bin/env bash
# The first thing to run on a machine with an NVIDIA GPU, from the checkout: a fresh virtual
# environment with the cuda12 extra, a check that JAX computes on the GPU, the README's main
# job (the quick Fashion-MNIST cascade), the benchmark table, and then what to compare them
# with. Without a GPU (nvidia-smi missing, failing or listing none) it says so in one line
# and exits 1, having created nothing.
#
#   bash scripts/gpu_check.sh
#
# HDD_GPU_CHECK_DIR  a new folder for what it writes (default runs/gpu_check): nvidia-smi.txt,
#                    the main job's workdir main/ and its log main.log, benchmark.md
# HDD_GPU_VENV       the new virtual environment (default $HDD_GPU_CHECK_DIR/venv)
# PYTHON             the Python, 3.10 or newer, that makes it (default python3)
# (Relative folders are taken from the checkout's root.)
set -euo pipefail
cd "$(dirname "$0")/.."
if ! gpus=$(nvidia-smi -L 2>/dev/null) || ! grep -q '^GPU ' <<<"$gpus"; then
  echo "error: no NVIDIA GPU here (nvidia-smi is missing, fails or lists none); run scripts/gpu_check.sh on a machine with an NVIDIA GPU and its driver" >&2
  exit 1
fi
CHECK_DIR="${HDD_GPU_CHECK_DIR:-runs/gpu_check}"
VENV="${HDD_GPU_VENV:-$CHECK_DIR/venv}"
PYTHON="${PYTHON:-python3}"
for path in "$CHECK_DIR" "$VENV"; do
  if [ -e "$path" ]; then
    echo "error: $path exists and the check starts fresh: remove it, or set HDD_GPU_CHECK_DIR and HDD_GPU_VENV to new folders" >&2
    exit 1
  fi
done
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "error: PYTHON=$PYTHON is not Python 3.10 or newer; set PYTHON to one that is" >&2
  exit 1
fi

mkdir -p "$CHECK_DIR"
tee "$CHECK_DIR/nvidia-smi.txt" <<<"$gpus"
echo "== 1/4 a fresh virtual environment in $VENV with the cuda12 extra (a few minutes)"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q -e ".[cuda12]"

echo "== 2/4 JAX on the GPU"
"$VENV/bin/python" -m common.accelerators --expect=gpu   # one error line, exit 1, if not

echo "== 3/4 the main job, into $CHECK_DIR/main"
data=()   # Debian's dataset-fashion-mnist if installed, else tfds downloads Fashion-MNIST.
[ -d /usr/share/datasets/fashion-mnist ] || data=(--config.data.source=tfds --config.data.name=fashion_mnist)
start=$SECONDS
"$VENV/bin/python" main.py --config=configs/hdd_fashion_mnist.py:quick --workdir="$CHECK_DIR/main" \
    ${data[@]+"${data[@]}"} 2>&1 | tee "$CHECK_DIR/main.log"
main_seconds=$((SECONDS - start))

echo "== 4/4 the benchmark table (the models of docs/speed.md's table), into $CHECK_DIR/benchmark.md"
inception=()   # The FID Inception's speed too, when its weights can be fetched.
if "$VENV/bin/python" -m evaluation.weights; then
  inception=(--inception_images=500)
else
  echo "warning: no FID weights, so no FID Inception speed in the table" >&2
fi
"$VENV/bin/python" benchmarks/benchmark.py --configs=hdd_mnist,ddpm_cifar10 --variants=quick,full \
    --steps=20 --chain_steps=20 ${inception[@]+"${inception[@]}"} | tee "$CHECK_DIR/benchmark.md"

speed_cells() {   # Cells $2, $3, ... (column numbers) of docs/speed.md's rows that start with
  local key=$1; shift   # $1 and have all of them (the other tables' rows have fewer columns).
  awk -F'|' -v key="$key" -v columns="$*" 'index($2, key) == 2 {
    n = split(columns, c, " "); line = "   "
    for (i = 1; i <= n; i++) {
      if ($(c[i] + 1) !~ /[^ ]/) next
      line = line (i > 1 ? "|" : "") $(c[i] + 1)
    }
    print line}' docs/speed.md
}
cat <<EOF

GPU check done: everything is in $CHECK_DIR. What to compare (docs/speed.md has the CPU side,
2 cores, and the commands):
- The main job took ${main_seconds} s here, compilation and data loading included; its parts
  are in $CHECK_DIR/main/timing.md. On the CPU:
$(speed_cells "the main job" 1 2)
  configs/hdd_fashion_mnist.py guesses "about a minute, mostly compilation" on a GPU; this
  run measures it.
- $CHECK_DIR/main/samples/grid.png: rough garment silhouettes, as on the CPU (150 steps per
  stage is a smoke test, not a quality run).
- $CHECK_DIR/benchmark.md: train_img_s of each model against "JAX train img/s" on the CPU
  (config | params | JAX train img/s; full = the published sizes):
$(speed_cells "hdd_mnist:" 1 2 6)
$(speed_cells "ddpm_cifar10:" 1 2 6)
  and the FID Inception's img/s against the CPU's:
$(speed_cells "FID Inception speed on CPU" 1 2)
Please add the GPU (nvidia-smi.txt) and these numbers to docs/speed.md beside the CPU ones.
EOF
