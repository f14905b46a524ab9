"""Kills a training run with SIGKILL, resumes it each time with the same command, and
checks the end result is bit for bit that of an uninterrupted run.

  python tests/kill_resume.py --kills=20 [--workdir=/tmp/kill_resume]
  python tests/kill_resume.py --kills=100 --in_saves --num_steps=120

By default each kill comes at a random moment once a first checkpoint exists. With
--in_saves each kill comes at a chosen point inside a checkpoint save (tests/save_faults.py:
among the array files, before the commit, around the rename, while deleting an old step),
the points taken in turn, and every restart must resume from the newest committed step.

Compared: every array of the final checkpoint (parameters, EMA, optimizer state, step,
RNG) and the samples written after training. tests/test_reliability.py runs a few kills.
"""
import argparse
import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np

import save_faults
from helpers import run_python


def command(data_path: str, workdir: str, num_steps: int, script: str = "main.py",
            checkpoint_every: int = 1):
  return [sys.executable, script, "--config=tests/tiny_configs.py",
          f"--config.data.path={data_path}", f"--workdir={workdir}",
          f"--config.train.num_steps={num_steps}",
          f"--config.train.checkpoint_every={checkpoint_every}", "--config.train.log_every=1"]


def run(data_path, workdir, num_steps, env, checkpoint_every=1):
  """The uninterrupted run (`checkpoint_every`: saving changes nothing of what it trains)."""
  return run_python(command(data_path, workdir, num_steps,
                            checkpoint_every=checkpoint_every)[1:], env, timeout=900)


def lock_owner(workdir: str) -> int | None:
  """The pid that the run holding the workdir (or the last one that held it) wrote into
  WORKDIR/.lock (hdd.guards.exclusive); None before a run wrote one."""
  try:
    with open(os.path.join(workdir, ".lock")) as f:
      text = f.read().strip()
  except FileNotFoundError:
    return None
  return int(text) if text.isdigit() else None


class Background:
  """`run_python(args, env)` on a thread of its own (forked, without a fresh interpreter's
  imports), so that the caller can SIGKILL the run meanwhile; `wait` gives its result."""

  def __init__(self, args: list, env: dict):
    self.result, self.error = None, None
    self.thread = threading.Thread(target=self._run, args=(args, env), daemon=True)
    self.thread.start()

  def _run(self, args, env):
    try:
      self.result = run_python(args, env, timeout=900)
    except BaseException as e:  # noqa: BLE001 (raised again by `wait`, in the caller)
      self.error = e

  def running(self) -> bool:
    return self.thread.is_alive()

  def wait(self) -> subprocess.CompletedProcess:
    self.thread.join()
    if self.error is not None:
      raise self.error
    return self.result


def run_with_kills(data_path, workdir, num_steps, kills, env, seed=0, finish=True):
  """Starts the run, SIGKILLs it (from this process, by the pid it wrote into the
  workdir's lock) `kills` times at random moments once the workdir holds a first checkpoint
  and the run holds the workdir (the first run: in training or saving; a restart: anywhere
  from restoring on), then lets it finish (or, without `finish`, leaves it killed).
  Returns the number of kills."""
  rng = random.Random(seed)
  killed = 0
  checkpoints = os.path.join(workdir, "checkpoints")
  while True:
    if killed >= kills and not finish:
      return killed
    previous = lock_owner(workdir)
    run = Background(command(data_path, workdir, num_steps)[1:], env)
    if killed < kills:
      start, owner = time.time(), None
      while run.running() and time.time() - start < 300:
        steps = [d for d in os.listdir(checkpoints) if d.isdigit()] if os.path.isdir(
            checkpoints) else []
        owner = lock_owner(workdir)
        if steps and owner not in (None, previous):
          break
        time.sleep(0.05)
      time.sleep(rng.uniform(0.0, 1.5))
      # Only the pid this run wrote (read twice, the same), only while the run is on.
      if run.running() and owner not in (None, previous) and lock_owner(workdir) == owner:
        with contextlib.suppress(ProcessLookupError):   # It ended just now.
          os.kill(owner, signal.SIGKILL)
    result = run.wait()
    if result.returncode == -signal.SIGKILL:
      killed += 1
      continue
    if result.returncode != 0:
      raise RuntimeError(f"resumed run failed:\n{result.stderr[-3000:]}")
    return killed


def committed_steps(workdir: str) -> list[int]:
  """The steps a restart may resume from: step folders holding orbax's commit marker."""
  directory = os.path.join(workdir, "checkpoints")
  names = os.listdir(directory) if os.path.isdir(directory) else []
  return sorted(int(n) for n in names if n.isdigit() and os.path.exists(
      os.path.join(directory, n, "commit_success.txt")))


def run_with_save_kills(data_path, workdir, num_steps, kills, env, seed=0):
  """Runs, SIGKILLed at the points of tests/save_faults.py in turn (in the first or second
  save of each run, chosen at random), until `kills` kills have landed, then lets it finish.
  Checks that every restart resumes from the newest committed step; returns the count of
  kills at each point."""
  rng = random.Random(seed)
  landed = {point: 0 for point in save_faults.POINTS}
  while True:
    newest = max(committed_steps(workdir), default=None)
    point = save_faults.POINTS[sum(landed.values()) % len(save_faults.POINTS)]
    planted = dict(env, HDD_SAVE_KILL=f"{point}:{rng.randint(1, 2)}")
    done = sum(landed.values()) >= kills
    result = run_python(command(data_path, workdir, num_steps,
                                "main.py" if done else "tests/save_faults.py")[1:],
                        env if done else planted, timeout=900)
    resumed = re.search(r"Resuming from the checkpoint at step (\d+)", result.stderr)
    if newest is not None and (resumed is None or int(resumed.group(1)) != newest):
      raise RuntimeError(f"after a kill, the newest committed step was {newest} but the "
                         f"restart said {resumed.group(0) if resumed else 'nothing'}:\n"
                         f"{result.stderr[-3000:]}")
    if result.returncode == -9:
      landed[point] += 1
      continue
    if result.returncode != 0:
      raise RuntimeError(f"a run failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    if done:
      return landed
    raise RuntimeError(f"training ended before {kills} kills landed ({landed}); give more "
                       "steps")


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
  parser.add_argument("--in_saves", action="store_true",
                      help="kill at the points of tests/save_faults.py inside saves")
  args = parser.parse_args()
  from helpers import save_stripes_npz
  os.makedirs(args.workdir, exist_ok=True)
  data = save_stripes_npz(os.path.join(args.workdir, "stripes.npz"))
  env = dict(os.environ)
  reference_dir = os.path.join(args.workdir, f"reference_{time.time_ns()}")
  resumed_dir = os.path.join(args.workdir, f"resumed_{time.time_ns()}")
  if run(data, reference_dir, args.num_steps, env).returncode != 0:
    sys.exit("the uninterrupted run failed")
  start = time.time()
  if args.in_saves:
    landed = run_with_save_kills(data, resumed_dir, args.num_steps, args.kills, env)
    killed = f"{sum(landed.values())} ({', '.join(f'{k} {v}' for k, v in landed.items())})"
  else:
    killed = run_with_kills(data, resumed_dir, args.num_steps, args.kills, env)
  differ = compare(final_arrays(reference_dir), final_arrays(resumed_dir))
  print(f"{killed} SIGKILLs, {time.time() - start:.0f} s; arrays that differ from the "
        f"uninterrupted run: {differ if differ else 'none (bitwise identical)'}")
  sys.exit(1 if differ else 0)


if __name__ == "__main__":
  main()
