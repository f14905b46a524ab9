"""The learning-rate schedule against its closed form: linear warm-up, then cosine
annealing to min_learning_rate, or flat."""
import math

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
