"""The train step: the EMA decay formula, learning on a tiny dataset with micro-batches,
and a non-finite step that changes nothing but the step counter."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from helpers import stripes_batch, tiny_config
from hdd import train_step
from hdd.build import create_model, create_schedule


def test_ema_decay_warmup():
  assert math.isclose(float(train_step.ema_decay_at(0, 0.999, True)), 0.1, rel_tol=1e-6)
  assert math.isclose(float(train_step.ema_decay_at(90, 0.999, True)), 91 / 100, rel_tol=1e-6)
  assert math.isclose(float(train_step.ema_decay_at(10**6, 0.999, True)), 0.999, rel_tol=1e-6)
  assert math.isclose(float(train_step.ema_decay_at(0, 0.999, False)), 0.999, rel_tol=1e-6)


def _stripes_batch(batch_size, step, num_micro=1):
  return train_step.split_micro_batches(stripes_batch(batch_size, step), num_micro)


def _step_fn(config):
  return jax.jit(functools.partial(
      train_step.train_step, prediction=config.diffusion.prediction,
      min_snr_gamma=config.train.min_snr_gamma, num_classes=config.model.num_classes,
      label_dropout=config.train.label_dropout, ema_decay=config.train.ema_decay,
      ema_warmup=config.train.ema_warmup))


def test_loss_drops_and_ema_tracks_on_a_tiny_dataset():
  config = tiny_config()
  config.train.learning_rate, config.train.num_steps, config.train.grad_accum_steps = 3e-3, 80, 2
  state = train_step.create_train_state(config, create_model(config))
  schedule = create_schedule(config.diffusion)
  step_fn = _step_fn(config)
  losses = []
  for step in range(80):
    state, metrics = step_fn(state, _stripes_batch(32, step, 2), schedule)
    assert bool(metrics["finite"])
    losses.append(float(metrics["loss"]))
  assert int(state.step) == 80
  assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:10]), losses
  ema_gap = jax.tree_util.tree_leaves(jax.tree_util.tree_map(
      lambda e, p: float(jnp.max(jnp.abs(e - p))), state.ema_params, state.params))
  assert 0 < max(ema_gap)


def test_min_snr_gamma_reaches_the_loss():
  """The same state, batch and randomness: per-example errors are equal, and Min-SNR
  weights are <= 1, far below it for every step whose SNR exceeds a small gamma."""
  config = tiny_config()
  state = train_step.create_train_state(config, create_model(config))
  schedule, batch = create_schedule(config.diffusion), _stripes_batch(16, 0)
  _, plain = _step_fn(config)(state, batch, schedule)
  config.train.min_snr_gamma = 0.01
  _, weighted = _step_fn(config)(state, batch, schedule)
  assert 0 < float(weighted["loss"]) < 0.5 * float(plain["loss"])


def test_non_finite_step_changes_nothing_but_the_step():
  config = tiny_config()
  state = train_step.create_train_state(config, create_model(config))
  batch = _stripes_batch(16, 0)
  batch["image"][0, 0, 0, 0, 0] = np.nan
  new_state, metrics = _step_fn(config)(state, batch, create_schedule(config.diffusion))
  assert not bool(metrics["finite"]) and int(new_state.step) == 1
  for new, old in zip(jax.tree_util.tree_leaves((new_state.params, new_state.ema_params,
                                                 new_state.opt_state)),
                      jax.tree_util.tree_leaves((state.params, state.ema_params,
                                                 state.opt_state))):
    np.testing.assert_array_equal(new, old)
