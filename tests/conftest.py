"""Fixtures: the tests' compilation cache, a tiny dataset made by the tests, and tiny models
trained once for the whole run (shared by pytest-xdist's workers)."""
import fcntl
import json
import os
import shutil
import subprocess

import jax
import pytest

from common import xla_flags
from helpers import COMPILATION_CACHE, save_stripes_npz

# The tests' models are tiny and their runs short, so compiling, not computing, is most of
# the suite's time; XLA:CPU without its LLVM optimisations compiles about twice as fast
# (tests/test_cascade.py's three-stage run: 136 s -> 76 s, empty cache, 2026-12-03). XLA
# reads XLA_FLAGS when jax makes its first backend, after this; every main.py the tests
# start inherits it. XLA:CPU's legacy IR emitters in place of its fusion emitters cut
# compiling further: the tiny train step 5.5-7.1 s -> 4.6-4.7 s, a quick t_sweep study
# 58 -> 42 s of CPU (empty caches, 2026-12-04). Users' runs and the benchmarks keep XLA's
# defaults; a flag the user set wins.
xla_flags.apply_defaults(os.environ, {"--xla_backend_optimization_level": "0",
                                      "--xla_cpu_use_fusion_emitters": "false"})
jax.config.update("jax_compilation_cache_dir", COMPILATION_CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


# The files that take longest run first: pytest-xdist hands each worker one file at a time
# in the collection's order (--no-loadscope-reorder in pyproject.toml), so a long file
# started last would run on alone while the other worker idles. (Seconds of one worker,
# 2026-12-03, two workers: reliability 338, experiments 336, faults 257, distributed 215,
# datasets 179, cascade 175, notebooks 92, app 89, main 72, budget 59, multi_device 52.)
LONGEST_FILES = ("test_experiments.py", "test_reliability.py", "test_distributed.py",
                 "test_faults.py", "test_datasets.py", "test_cascade.py", "test_notebooks.py",
                 "test_multi_device.py", "test_main.py", "test_budget.py", "test_app.py")


def pytest_collection_modifyitems(items):
  def rank(item):
    name = os.path.basename(str(item.path))
    return LONGEST_FILES.index(name) if name in LONGEST_FILES else len(LONGEST_FILES)
  items.sort(key=rank)   # Stable: each file's tests keep their order.


@pytest.fixture
def stripes_npz(tmp_path):
  return save_stripes_npz(str(tmp_path / "stripes.npz"))


def built_once(tmp_path_factory, name: str, build):
  """`build(directory)`'s result (JSON data) for the whole test run: built by the first
  test that asks, under a lock in the run's shared temporary folder, so that pytest-xdist's
  workers train each shared model once between them, not once each."""
  root = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    root = root.parent   # The folder that every worker's base folder is in.
  result = root / f"{name}.json"
  with open(root / f"{name}.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not result.exists():
      directory = root / name
      shutil.rmtree(directory, ignore_errors=True)   # A build that failed before.
      directory.mkdir()
      result.write_text(json.dumps(build(str(directory))))
  return json.loads(result.read_text())


@pytest.fixture(scope="session")
def trained_ddpm_run(tmp_path_factory):
  """(data, workdir, main.py's run): the tiny DDPM of tests/tiny_configs.py trained once by
  main.py, in a process of its own, for the whole session (6 steps, checkpoints at 3 and 6,
  8 samples). Nothing changes its workdir: tests that change a workdir work on their own
  copy (`copy_workdir`)."""
  from helpers import train_tiny_run

  def build(directory):
    data, workdir, run = train_tiny_run(directory, "w", fresh=True)
    return data, workdir, [run.args, run.returncode, run.stdout, run.stderr]

  data, workdir, run = built_once(tmp_path_factory, "trained_ddpm", build)
  return data, workdir, subprocess.CompletedProcess(*run)


@pytest.fixture(scope="session")
def trained_ddpm(trained_ddpm_run):
  """(data, workdir) of `trained_ddpm_run`."""
  return trained_ddpm_run[:2]


@pytest.fixture(scope="session")
def trained_cascade(tmp_path_factory):
  """(data, workdir): the tiny conditional cascade of tests/tiny_configs.py:cascade_cond
  (4x4 -> 8x8, 2 classes, guided) trained by main.py once for the whole session (4 steps
  per stage, checkpoints at 2 and 4, 8 samples). Tests that change it work on a copy."""
  from helpers import train_tiny
  return tuple(built_once(tmp_path_factory, "trained_cascade", lambda directory: train_tiny(
      directory, "w", config="tests/tiny_configs.py:cascade_cond")))
