"""Training: learning-rate and EMA formulas, learning on a tiny dataset, non-finite
steps, and checkpoint resume that continues bit for bit."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import stripes_batch, tiny_config
from hdd import checkpoints, train
from hdd.build import create_model, create_schedule
from hdd.errors import CheckpointError


def test_learning_rate_warmup_then_cosine():
  config = tiny_config()
  config.train.learning_rate, config.train.min_learning_rate = 1e-3, 1e-5
  config.train.warmup_steps, config.train.num_steps = 10, 110
  lr = train.learning_rate_fn(config.train)
  assert float(lr(0)) == 0.0
  assert math.isclose(float(lr(5)), 1e-3 * 5 / 10, rel_tol=1e-6)
  assert math.isclose(float(lr(10)), 1e-3, rel_tol=1e-6)
  assert math.isclose(float(lr(60)), 1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + math.cos(math.pi * 0.5)),
                      rel_tol=1e-5)
  assert math.isclose(float(lr(110)), 1e-5, rel_tol=1e-5)
  config.train.lr_schedule = "constant"
  assert math.isclose(float(train.learning_rate_fn(config.train)(80)), 1e-3, rel_tol=1e-6)


def test_ema_decay_warmup():
  assert math.isclose(float(train.ema_decay_at(0, 0.999, True)), 0.1, rel_tol=1e-6)
  assert math.isclose(float(train.ema_decay_at(90, 0.999, True)), 91 / 100, rel_tol=1e-6)
  assert math.isclose(float(train.ema_decay_at(10**6, 0.999, True)), 0.999, rel_tol=1e-6)
  assert math.isclose(float(train.ema_decay_at(0, 0.999, False)), 0.999, rel_tol=1e-6)


def _stripes_batch(batch_size, step, num_micro=1):
  return train.split_micro_batches(stripes_batch(batch_size, step), num_micro)


def _step_fn(config):
  return jax.jit(functools.partial(
      train.train_step, prediction=config.diffusion.prediction,
      num_classes=config.model.num_classes, label_dropout=config.train.label_dropout,
      ema_decay=config.train.ema_decay, ema_warmup=config.train.ema_warmup))


def test_loss_drops_and_ema_tracks_on_a_tiny_dataset():
  config = tiny_config()
  config.train.learning_rate, config.train.num_steps, config.train.grad_accum_steps = 3e-3, 80, 2
  state = train.create_train_state(config, create_model(config))
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


def test_non_finite_step_changes_nothing_but_the_step():
  config = tiny_config()
  state = train.create_train_state(config, create_model(config))
  batch = _stripes_batch(16, 0)
  batch["image"][0, 0, 0, 0, 0] = np.nan
  new_state, metrics = _step_fn(config)(state, batch, create_schedule(config.diffusion))
  assert not bool(metrics["finite"]) and int(new_state.step) == 1
  for new, old in zip(jax.tree_util.tree_leaves((new_state.params, new_state.ema_params,
                                                 new_state.opt_state)),
                      jax.tree_util.tree_leaves((state.params, state.ema_params,
                                                 state.opt_state))):
    np.testing.assert_array_equal(new, old)


def test_resume_continues_bit_for_bit(stripes_npz, tmp_path):
  straight = train.train_and_evaluate(tiny_config(stripes_npz), str(tmp_path / "straight"))
  first_half = tiny_config(stripes_npz)
  first_half.train.num_steps = 3
  interrupted = str(tmp_path / "interrupted")
  assert int(train.train_and_evaluate(first_half, interrupted).step) == 3
  resumed = train.train_and_evaluate(tiny_config(stripes_npz), interrupted)
  assert int(resumed.step) == int(straight.step) == 6
  for a, b in zip(jax.tree_util.tree_leaves((straight.params, straight.ema_params,
                                             straight.opt_state, straight.rng)),
                  jax.tree_util.tree_leaves((resumed.params, resumed.ema_params,
                                             resumed.opt_state, resumed.rng))):
    np.testing.assert_array_equal(a, b)
  # keep_checkpoints=3 kept the last three of steps 3 and 6 (both kept).
  manager = checkpoints.create_manager(str(tmp_path / "interrupted" / "checkpoints"))
  assert sorted(manager.all_steps()) == [3, 6]

  wider = tiny_config(stripes_npz)
  wider.model.base_channels = 16
  with pytest.raises(CheckpointError,
                     match=r"different model configuration \(.*checkpoint \(16,\) vs "
                     r"config \(32,\)"):
    train.restore_params(wider, interrupted)
