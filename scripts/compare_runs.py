"""Compares two workdirs bit for bit: every array of every run's newest checkpoint
(parameters, EMA, optimizer state, step, RNG; each cascade stage) and every array of every
samples/*.npz. Exit 0 when all are identical. Made to check that a restructuring changed
no behaviour:

  python main.py --config=configs/hdd_fashion_mnist.py:quick --workdir=/tmp/before   # old code
  python main.py --config=configs/hdd_fashion_mnist.py:quick --workdir=/tmp/after    # new code
  python scripts/compare_runs.py /tmp/before /tmp/after
"""
import argparse
import glob
import os
import sys

import numpy as np

from hdd import checkpoints


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
  return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def compare(before: str, after: str) -> int:
  """Prints one line per checkpoint and sample archive; returns how many arrays differ."""
  differ = 0
  runs = sorted(os.path.dirname(os.path.relpath(path, before)) for path in glob.glob(
      os.path.join(before, "**", "checkpoints"), recursive=True))
  for run in runs:
    step_a, a = checkpoints.latest_arrays(os.path.join(before, run, "checkpoints"))
    step_b, b = checkpoints.latest_arrays(os.path.join(after, run, "checkpoints"))
    bad = sorted(set(a) ^ set(b)) + [k for k in a if k in b and not same_bits(a[k], b[k])]
    differ += len(bad) + (step_a != step_b)
    print(f"{run or '.'}: checkpoint steps {step_a} / {step_b}, {len(a)} arrays "
          f"({sum(v.size for v in a.values()):,} values), {len(bad)} differ {bad[:3]}")
  for path in sorted(glob.glob(os.path.join(before, "**", "samples", "*.npz"), recursive=True)):
    relative = os.path.relpath(path, before)
    with np.load(path) as x, np.load(os.path.join(after, relative)) as y:
      bad = sorted(set(x.files) ^ set(y.files)) + [
          k for k in x.files if k in y.files and not same_bits(x[k], y[k])]
      differ += len(bad)
      print(f"{relative}: {', '.join(f'{k} {x[k].shape}' for k in x.files)}, {len(bad)} differ")
  return differ


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("before")
  parser.add_argument("after")
  args = parser.parse_args()
  differ = compare(args.before, args.after)
  print("identical" if not differ else f"{differ} arrays differ")
  sys.exit(1 if differ else 0)


if __name__ == "__main__":
  main()
