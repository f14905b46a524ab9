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
def trained_ddpm(tmp_path_factory):
  """(data, workdir): the tiny DDPM of tests/tiny_configs.py trained once by main.py for the
  whole session (6 steps, checkpoints at 3 and 6, 8 samples). Tests that change a workdir
  work on their own copy (`copy_workdir`)."""
  from helpers import train_tiny
  return train_tiny(str(tmp_path_factory.mktemp("trained_ddpm")), "w")
