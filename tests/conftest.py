"""Shared fixtures: tiny configs and tiny datasets made by the tests themselves."""
import os
import sys

import jax
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tiny_config import get_config as tiny_config  # noqa: E402,F401

# XLA:CPU spends ~20 s compiling even a tiny U-Net's train step; tests that build the same
# computation share the compiled program through JAX's persistent cache.
COMPILATION_CACHE = os.environ.get("HDD_TEST_COMPILATION_CACHE", "/tmp/hdd-test-jax-cache")
jax.config.update("jax_compilation_cache_dir", COMPILATION_CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def make_stripes(num: int = 64, size: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """uint8 images [num, size, size]: class 0 has horizontal stripes, class 1 vertical."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 2, num).astype(np.uint8)
  images = np.zeros((num, size, size), np.uint8)
  phase = rng.integers(0, 2, num)
  for i in range(num):
    stripes = ((np.arange(size) + phase[i]) % 2 * 255).astype(np.uint8)
    images[i] = stripes[:, None] if labels[i] == 0 else stripes[None, :]
  return images, labels


def stripes_batch(num: int, seed: int) -> dict:
  """A training batch of stripes in the model's range: {'image': [num, 8, 8, 1] in [-1, 1]}."""
  images, labels = make_stripes(num, seed=seed)
  return {"image": images[..., None].astype(np.float32) / 127.5 - 1, "label": labels}


@pytest.fixture
def stripes_npz(tmp_path):
  images, labels = make_stripes()
  path = str(tmp_path / "stripes.npz")
  np.savez(path, x_train=images, y_train=labels, x_test=images[:16], y_test=labels[:16])
  return path


