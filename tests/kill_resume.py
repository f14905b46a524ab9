"""Kills a training run with SIGKILL at random moments, resumes it each time with the same
command, and checks the end result is bit for bit that of an uninterrupted run.

  python tests/kill_resume.py --kills=20 [--workdir=/tmp/kill_resume]

Compared: every array of the final checkpoint (parameters, EMA, optimizer state, step,
RNG) and the samples written after training. tests/test_reliability.py runs a few kills.
"""
import argparse
import os
import random
import subprocess
import sys
import time

import numpy as np

from helpers import ROOT


def command(data_path: str, workdir: str, num_steps: int):
  return [sys.executable, "main.py", "--config=tests/tiny_configs.py",
          f"--config.data.path={data_path}", f"--workdir={workdir}",
          f"--config.train.num_steps={num_steps}", "--config.train.checkpoint_every=1",
          "--config.train.log_every=1"]


def run(data_path, workdir, num_steps, env):
  return subprocess.run(command(data_path, workdir, num_steps), cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=900)


def run_with_kills(data_path, workdir, num_steps, kills, env, seed=0):
  """Starts the run, SIGKILLs it `kills` times at random moments (after it has written a
  first checkpoint, so each kill lands in training or saving), then lets it finish."""
  rng = random.Random(seed)
  killed = 0
  while True:
    process = subprocess.Popen(command(data_path, workdir, num_steps), cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if killed < kills:
      checkpoints = os.path.join(workdir, "checkpoints")
      start = time.time()
      while process.poll() is None and time.time() - start < 300:
        steps = [d for d in os.listdir(checkpoints) if d.isdigit()] if os.path.isdir(
            checkpoints) else []
        if steps:
          break
        time.sleep(0.05)
      time.sleep(rng.uniform(0.0, 1.5))
      if process.poll() is None:
        process.kill()
        process.wait()
        killed += 1
        continue
    _, stderr = process.communicate(timeout=900)
    if process.returncode != 0:
      raise RuntimeError(f"resumed run failed:\n{stderr[-3000:]}")
    return killed


def final_arrays(workdir: str) -> dict:
  """{path: array} of the newest checkpoint, plus the samples."""
  from hdd import checkpoints
  _, arrays = checkpoints.latest_arrays(os.path.join(workdir, "checkpoints"))
  with np.load(os.path.join(workdir, "samples", "samples.npz")) as data:
    arrays["samples"] = data["images"]
  return arrays


def compare(reference: dict, resumed: dict) -> list[str]:
  """Names of the arrays that differ (any bit)."""
  differ = sorted(set(reference) ^ set(resumed))
  differ += [k for k in reference if k in resumed and not np.array_equal(reference[k],
                                                                          resumed[k])]
  return differ


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--kills", type=int, default=20)
  parser.add_argument("--num_steps", type=int, default=30)
  parser.add_argument("--workdir", default="/tmp/hdd_kill_resume")
  args = parser.parse_args()
  from helpers import make_stripes
  os.makedirs(args.workdir, exist_ok=True)
  images, labels = make_stripes()
  data = os.path.join(args.workdir, "stripes.npz")
  np.savez(data, x_train=images, y_train=labels, x_test=images[:16], y_test=labels[:16])
  env = dict(os.environ)
  reference_dir = os.path.join(args.workdir, f"reference_{time.time_ns()}")
  resumed_dir = os.path.join(args.workdir, f"resumed_{time.time_ns()}")
  if run(data, reference_dir, args.num_steps, env).returncode != 0:
    sys.exit("the uninterrupted run failed")
  start = time.time()
  killed = run_with_kills(data, resumed_dir, args.num_steps, args.kills, env)
  differ = compare(final_arrays(reference_dir), final_arrays(resumed_dir))
  print(f"{killed} SIGKILLs, {time.time() - start:.0f} s; arrays that differ from the "
        f"uninterrupted run: {differ if differ else 'none (bitwise identical)'}")
  sys.exit(1 if differ else 0)


if __name__ == "__main__":
  main()
