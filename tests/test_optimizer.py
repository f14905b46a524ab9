"""The optimizer against closed forms: the learning-rate schedule (linear warm-up, then
cosine annealing to min_learning_rate, or flat) and global-norm gradient clipping."""
import math

import numpy as np
import optax
import pytest

from helpers import tiny_config
from hdd import optimizer


def test_learning_rate_warmup_then_cosine():
  config = tiny_config()
  config.train.learning_rate, config.train.min_learning_rate = 1e-3, 1e-5
  config.train.warmup_steps, config.train.num_steps = 10, 110
  lr = optimizer.learning_rate_fn(config.train)
  assert float(lr(0)) == 0.0
  assert math.isclose(float(lr(5)), 1e-3 * 5 / 10, rel_tol=1e-6)
  assert math.isclose(float(lr(10)), 1e-3, rel_tol=1e-6)
  assert math.isclose(float(lr(60)), 1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + math.cos(math.pi * 0.5)),
                      rel_tol=1e-5)
  assert math.isclose(float(lr(110)), 1e-5, rel_tol=1e-5)
  config.train.lr_schedule = "constant"
  assert math.isclose(float(optimizer.learning_rate_fn(config.train)(80)), 1e-3, rel_tol=1e-6)


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_gradient_clipping_against_its_closed_form(name):
  """Clipping at global norm c scales the gradient g by min(1, c / ||g||) before Adam sees
  it: after one update Adam's moments are (1 - b1) g' and (1 - b2) g'^2 of the clipped g'
  (float64 numpy reference), for a gradient above c and one below it; grad_clip = 0 clips
  nothing."""
  config = tiny_config().train
  config.optimizer = name
  shapes = {"conv": (3, 3, 2, 4), "bias": (4,), "dense": (5, 2)}
  rng = np.random.default_rng(0)
  base = {key: rng.normal(size=shape) for key, shape in shapes.items()}
  for clip, size, above in ((1.0, 1.0, True), (1.0, 0.02, False), (0.0, 1.0, False)):
    grads = {key: (size * g).astype(np.float32) for key, g in base.items()}
    norm = np.sqrt(sum(np.sum(np.float64(g)**2) for g in grads.values()))
    assert (norm > clip > 0) == above
    config.grad_clip = clip
    tx = optimizer.create_optimizer(config)
    params = {key: np.zeros(shape, np.float32) for key, shape in shapes.items()}
    _, state = tx.update(grads, tx.init(params), params)
    mu, nu = (optax.tree_utils.tree_get(state, moment) for moment in ("mu", "nu"))
    clipped = {key: min(1.0, clip / norm) * np.float64(g) if clip else np.float64(g)
               for key, g in grads.items()}
    for key, g in clipped.items():
      np.testing.assert_allclose(mu[key], (1 - 0.9) * g, rtol=1e-6)
      np.testing.assert_allclose(nu[key], (1 - 0.999) * g**2, rtol=1e-5)
