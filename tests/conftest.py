"""Fixtures: the tests' compilation cache and a tiny dataset made by the tests."""
import jax
import pytest

from helpers import COMPILATION_CACHE, save_stripes_npz

jax.config.update("jax_compilation_cache_dir", COMPILATION_CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


@pytest.fixture
def stripes_npz(tmp_path):
  return save_stripes_npz(str(tmp_path / "stripes.npz"))


@pytest.fixture(scope="session")
def trained_ddpm_run(tmp_path_factory):
  """(data, workdir, main.py's run): the tiny DDPM of tests/tiny_configs.py trained once by
  main.py, in a process of its own, for the whole session (6 steps, checkpoints at 3 and 6,
  8 samples). Nothing changes its workdir: tests that change a workdir work on their own
  copy (`copy_workdir`)."""
  from helpers import train_tiny_run
  return train_tiny_run(str(tmp_path_factory.mktemp("trained_ddpm")), "w", fresh=True)


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
  return train_tiny(str(tmp_path_factory.mktemp("trained_cascade")), "w",
                    config="tests/tiny_configs.py:cascade_cond")
