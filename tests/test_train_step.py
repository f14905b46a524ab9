"""The train step: the EMA decay formula, learning on a tiny dataset with micro-batches,
the Min-SNR weight against its float64 closed form, a non-finite step that changes nothing
but the step counter, micro-batches against one batch as large as them all, and bfloat16
compute with float32 state. The Min-SNR, non-finite and micro-batch tests run the step
around a 33-parameter network (`PixelDenoiser`): the same arithmetic, compiled in seconds."""
import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from helpers import stripes_batch, tiny_config
from hdd import train_step
from hdd.build import create_model, create_schedule
from hdd.optimizer import create_optimizer


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


class PixelDenoiser(nn.Module):
  """A network of 33 parameters with the U-Net's call signature, eps of each pixel from
  its value and t: the train step's own arithmetic compiles in seconds around it."""

  @nn.compact
  def __call__(self, x, t, labels=None, train=False):
    step = jnp.broadcast_to((t / 50.0)[:, None, None, None], x.shape[:3] + (1,))
    hidden = jnp.tanh(nn.Dense(8)(jnp.concatenate([x, step], axis=-1)))
    return nn.Dense(x.shape[-1])(hidden)


def _pixel_denoiser_state(tx):
  """A fresh train state of PixelDenoiser on 8x8 grayscale images, updated by `tx`."""
  model = PixelDenoiser()
  params = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)),
                               jnp.zeros((1,)))["params"]
  return train_step.TrainState.create(apply_fn=model.apply, params=params, tx=tx,
                                      ema_params=params, rng=jax.random.PRNGKey(1))


def _micro_batch_losses(state, params, schedule, images, index, prediction):
  """(plain per-example loss, t) of micro-batch `index` of the step from `state` on
  `images`, with the timestep and noise the step documents: from
  fold_in(fold_in(rng, step), index), split into loss, label and dropout keys."""
  step_rng = jax.random.fold_in(state.rng, state.step)
  loss_rng, _, dropout_rng = jax.random.split(jax.random.fold_in(step_rng, index), 3)
  return train_step.denoising_loss(state.apply_fn, params, schedule, images, None, loss_rng,
                                   prediction=prediction, dropout_rng=dropout_rng)


def test_min_snr_gamma_reaches_the_loss():
  """The same state, batch and randomness with and without Min-SNR-gamma: the step's loss
  is the mean of the plain per-example errors weighted by min(SNR_t, gamma) / SNR_t
  (eps prediction; SNR_t in float64 from the linear schedule's closed form), far below
  the plain loss for a gamma below every step's SNR."""
  config, gamma = tiny_config(), 0.01
  state = _pixel_denoiser_state(optax.sgd(1.0))
  schedule, batch = create_schedule(config.diffusion), _stripes_batch(16, 0)
  _, plain = _step_fn(config)(state, batch, schedule)
  config.train.min_snr_gamma = gamma
  _, weighted = _step_fn(config)(state, batch, schedule)
  assert 0 < float(weighted["loss"]) < 0.5 * float(plain["loss"])
  errors, t = jax.jit(lambda params: _micro_batch_losses(
      state, params, schedule, batch["image"][0], 0, config.diffusion.prediction))(state.params)
  errors, t = np.asarray(errors, np.float64), np.asarray(t)
  diffusion = config.diffusion
  assert diffusion.schedule == "linear" and diffusion.prediction == "eps"
  alphas_cumprod = np.cumprod(1.0 - np.linspace(diffusion.beta_start, diffusion.beta_end,
                                                diffusion.num_steps))
  snr = (alphas_cumprod / (1.0 - alphas_cumprod))[t]
  assert math.isclose(float(plain["loss"]), np.mean(errors), rel_tol=1e-5)
  assert math.isclose(float(weighted["loss"]), np.mean(np.minimum(snr, gamma) / snr * errors),
                      rel_tol=1e-5)


def test_non_finite_step_changes_nothing_but_the_step():
  """Parameters, EMA and the optimizer's moments (the run's Adam) stay as they were."""
  config = tiny_config()
  state = _pixel_denoiser_state(create_optimizer(config.train))
  batch = _stripes_batch(16, 0)
  batch["image"][0, 0, 0, 0, 0] = np.nan
  new_state, metrics = _step_fn(config)(state, batch, create_schedule(config.diffusion))
  assert not bool(metrics["finite"]) and int(new_state.step) == 1
  for new, old in zip(jax.tree_util.tree_leaves((new_state.params, new_state.ema_params,
                                                 new_state.opt_state)),
                      jax.tree_util.tree_leaves((state.params, state.ema_params,
                                                 state.opt_state))):
    np.testing.assert_array_equal(new, old)


def test_micro_batches_update_as_one_batch_k_times_as_large():
  """k micro-batches of B make the update of one batch of kB: the train step's gradient
  (read off a plain SGD update at rate 1) and its loss are those of the mean loss over
  all kB examples, each with the timestep and noise its micro-batch i drew from
  fold_in(fold_in(rng, step), i), as the step documents; the reported gradient norm is
  that gradient's."""
  config, k = tiny_config(), 3
  state = _pixel_denoiser_state(optax.sgd(1.0))
  schedule, batch = create_schedule(config.diffusion), _stripes_batch(4 * k, 0, k)
  new_state, metrics = _step_fn(config)(state, batch, schedule)

  def one_batch_loss(params):
    return jnp.mean(jnp.concatenate([
        _micro_batch_losses(state, params, schedule, batch["image"][index], index,
                            config.diffusion.prediction)[0] for index in range(k)]))

  loss, grads = jax.jit(jax.value_and_grad(one_batch_loss))(state.params)
  assert math.isclose(float(metrics["loss"]), float(loss), rel_tol=1e-6)
  flat = lambda tree: np.concatenate([np.ravel(np.float64(x))
                                      for x in jax.tree_util.tree_leaves(tree)])
  before, after, expected = flat(state.params), flat(new_state.params), flat(grads)
  np.testing.assert_allclose(before - after, expected,
                             atol=1e-6 * np.max(np.abs(before)) + 1e-5 * np.max(np.abs(expected)))
  assert math.isclose(float(metrics["grad_norm"]), np.linalg.norm(expected), rel_tol=1e-5)


def test_bfloat16_step_keeps_float32_state_and_lowers_the_loss():
  """Mixed precision: the network's convolutions compute in bfloat16, the parameters,
  Adam's moments and the EMA stay float32, and a few steps lower the loss of fixed images,
  timesteps and noise (the tiny U-Net on one level, the quickest to compile)."""
  config = tiny_config()
  config.model.update(channel_mult=(1,), attention_resolutions=())
  config.train.update(mixed_precision=True, learning_rate=3e-3, lr_schedule="constant")
  state = train_step.create_train_state(config, create_model(config))
  network = jax.make_jaxpr(state.apply_fn)({"params": state.params}, jnp.zeros((2, 8, 8, 1)),
                                           jnp.zeros(2, int))
  convolutions = [e for e in network.eqns if e.primitive.name == "conv_general_dilated"]
  assert convolutions and {v.aval.dtype for e in convolutions for v in e.invars} == {
      jnp.dtype(jnp.bfloat16)}
  schedule, step_fn = create_schedule(config.diffusion), _step_fn(config)
  # A step at step 0 on this batch reports the loss of the same timesteps and noise.
  fixed = _stripes_batch(16, 100)
  _, metrics = step_fn(state, fixed, schedule)
  first = float(metrics["loss"])
  for step in range(20):
    state, metrics = step_fn(state, _stripes_batch(16, step), schedule)
    assert bool(metrics["finite"])
  dtypes = {x.dtype for x in jax.tree_util.tree_leaves((state.params, state.ema_params,
                                                         state.opt_state))
            if jnp.issubdtype(x.dtype, jnp.floating)}
  assert dtypes == {jnp.dtype(jnp.float32)}
  _, metrics = step_fn(state.replace(step=0), fixed, schedule)
  assert float(metrics["loss"]) < 0.7 * first
