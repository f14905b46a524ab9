"""Building from a config (hdd.build): the U-Net gets the config's fields (and bfloat16
under mixed precision), the schedule's constants match float64 closed forms."""
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import tiny_config
from hdd.build import create_model, create_schedule


def test_create_model_takes_the_config_fields():
  config = tiny_config()
  config.data.channels = 3
  config.model.update(num_classes=4, num_heads=2, dropout=0.1)
  model = create_model(config)
  assert model.out_channels == 3 and model.base_channels == 8
  assert model.channel_mult == (1, 2) and model.num_res_blocks == 1
  assert model.attention_resolutions == (4,) and model.num_heads == 2
  assert model.dropout == 0.1 and model.norm_groups == 4 and model.num_classes == 4
  assert model.dtype == jnp.float32
  config.train.mixed_precision = True
  assert create_model(config).dtype == jnp.bfloat16


@pytest.mark.parametrize("kind", ["linear", "quadratic"])
def test_create_schedule_matches_float64(kind):
  config = tiny_config()
  config.diffusion.update(schedule=kind, num_steps=30, beta_start=2e-4, beta_end=0.05)
  schedule = create_schedule(config.diffusion)
  if kind == "linear":
    betas = np.array([2e-4 + (0.05 - 2e-4) * t / 29 for t in range(30)])
  else:
    betas = np.array([(2e-4**0.5 + (0.05**0.5 - 2e-4**0.5) * t / 29)**2 for t in range(30)])
  assert schedule.num_steps == 30
  np.testing.assert_allclose(schedule.betas, betas, rtol=1e-6)
  np.testing.assert_allclose(schedule.alphas_cumprod, np.cumprod(1.0 - betas), rtol=1e-6)
