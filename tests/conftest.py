"""Fixtures: the tests' compilation cache and a tiny dataset made by the tests."""
import jax
import pytest

from helpers import COMPILATION_CACHE, save_stripes_npz

jax.config.update("jax_compilation_cache_dir", COMPILATION_CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


@pytest.fixture
def stripes_npz(tmp_path):
  return save_stripes_npz(str(tmp_path / "stripes.npz"))
