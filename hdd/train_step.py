"""The train state and the compiled data-parallel train step.

A batch arrives as [A, B/A, H, W, C] (A micro-batches, split over devices along B/A):
loss and gradients are averaged over the micro-batches, then one optimizer update and
one EMA update. The step's randomness is fold_in(rng, step), so resuming is exact.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax.training import train_state

from common import parallel
from hdd.maths import diffusion
from hdd.maths.handover import LowResInput
from hdd.optimizer import create_optimizer
from hdd.maths.schedules import Schedule
from hdd.maths.unet import UNet


class TrainState(train_state.TrainState):
  """Step, parameters and optimizer state (from flax), plus EMA parameters and the base
  RNG key. The key of step s is fold_in(rng, s), so the randomness of a resumed run
  is that of an uninterrupted one."""
  ema_params: Any = None
  rng: jax.Array = None


def create_train_state(config: ml_collections.ConfigDict, model: UNet) -> TrainState:
  """The state at step 0: parameters from `config.seed`, EMA equal to them, zero Adam
  moments. One compiled program (which the persistent compilation cache keeps): made op
  by op, the optimizer's zeros and the EMA's copies compiled a program for every leaf
  shape, seconds at each start."""
  tx = create_optimizer(config.train)

  def initial_state(seed_key):
    init_rng, rng = jax.random.split(seed_key)
    size, channels = config.data.image_size, config.data.channels
    image, step = jnp.zeros((1, size, size, channels)), jnp.zeros((1,), jnp.int32)
    low_res = {"low_res": image, "low_res_step": step} if model.low_res_input else {}
    params = model.init(init_rng, image, step, step if config.model.num_classes else None,
                        **low_res)["params"]
    return TrainState.create(apply_fn=model.apply, params=params, tx=tx,
                             ema_params=jax.tree_util.tree_map(jnp.copy, params), rng=rng)

  # The step as TrainState.create makes it outside jit: a Python int, as before.
  return jax.jit(initial_state)(jax.random.PRNGKey(config.seed)).replace(step=0)


def ema_decay_at(step, decay: float, warmup: bool):
  """The EMA decay at a step: min(decay, (1 + step) / (10 + step)) with warm-up."""
  if not warmup:
    return jnp.asarray(decay, jnp.float32)
  step = jnp.asarray(step, jnp.float32)
  return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def denoising_loss(apply_fn: Callable, params, schedule: Schedule, x0, labels, rng, *,
                   prediction: str, min_snr_gamma: float = 0.0,
                   low_res: Optional[LowResInput] = None, low_res_rng=None, dropout_rng=None):
  """(per-example loss [B], t [B]) of the network `apply_fn` with `params` on images x0
  [B, H, W, C]: the objective that training minimises and `hdd.evaluate` measures on
  held-out data, wired once so that the two cannot drift apart.

  t and the noise come from `rng` (`diffusion.denoising_loss`); a conditional cascade stage
  (`low_res`) also gets each image shrunk to the stage before's size, upsampled and noised
  with `low_res_rng`, as the input its samples will be conditioned on. With `dropout_rng`
  the network runs in training mode (dropout on), without it in evaluation mode.
  """
  extra = {} if low_res is None else low_res.for_training(schedule, x0, low_res_rng)
  train = dropout_rng is not None

  def model_fn(x_t, t):
    return apply_fn({"params": params}, x_t, t, labels, train=train,
                    rngs={"dropout": dropout_rng} if train else None, **extra)

  return diffusion.denoising_loss(model_fn, schedule, x0, rng, prediction, min_snr_gamma)


def train_step(state: TrainState, batch: dict, schedule: Schedule, *, prediction: str,
               min_snr_gamma: float, num_classes: int, label_dropout: float, ema_decay: float,
               ema_warmup: bool, low_res: Optional[LowResInput] = None):
  """One optimizer update from batch['image'] of shape [A, B/A, H, W, C] (A micro-batches),
  minimising `denoising_loss` (a conditional cascade stage: given its `low_res` input).

  The loss is weighted per example by Min-SNR-gamma when min_snr_gamma > 0
  (`diffusion.min_snr_weight`).

  A non-finite loss, gradient or updated parameter leaves parameters, optimizer and EMA
  unchanged (the step counter still advances) and reports finite=False.
  """
  step_rng = jax.random.fold_in(state.rng, state.step)

  def micro_batch_loss(params, micro_batch, rng):
    loss_rng, label_rng, dropout_rng = jax.random.split(rng, 3)
    labels = None
    if num_classes:
      drop = jax.random.bernoulli(label_rng, label_dropout, micro_batch["label"].shape)
      labels = jnp.where(drop, num_classes, micro_batch["label"])
    losses, _ = denoising_loss(state.apply_fn, params, schedule, micro_batch["image"], labels,
                               loss_rng, prediction=prediction, min_snr_gamma=min_snr_gamma,
                               low_res=low_res, low_res_rng=jax.random.fold_in(rng, 1),
                               dropout_rng=dropout_rng)
    return jnp.mean(losses)

  # A Python loop, unrolled at trace time: XLA:CPU runs gradients inside lax.scan ~25x
  # slower (its fast convolution kernels are not used inside while loops).
  num_micro = batch["image"].shape[0]
  grads, losses = None, []
  for index in range(num_micro):
    micro_batch = jax.tree_util.tree_map(lambda x: x[index], batch)
    loss, micro_grads = jax.value_and_grad(micro_batch_loss)(
        state.params, micro_batch, jax.random.fold_in(step_rng, index))
    grads = micro_grads if grads is None else jax.tree_util.tree_map(jnp.add, grads, micro_grads)
    losses.append(loss)
  grads = jax.tree_util.tree_map(lambda g: g / num_micro, grads)
  loss = jnp.mean(jnp.stack(losses))
  grad_norm = optax.global_norm(grads)
  updated = state.apply_gradients(grads=grads)
  # The update is checked too: finite gradients can still make non-finite parameters
  # (an overflowing learning rate or weight decay).
  finite = (jnp.isfinite(loss) & jnp.isfinite(grad_norm) &
            jnp.isfinite(optax.global_norm(updated.params)))

  decay = ema_decay_at(state.step, ema_decay, ema_warmup)
  ema_params = jax.tree_util.tree_map(lambda e, p: decay * e + (1.0 - decay) * p,
                                      state.ema_params, updated.params)
  updated = updated.replace(ema_params=ema_params)
  keep = lambda new, old: jax.tree_util.tree_map(lambda n, o: jnp.where(finite, n, o), new, old)
  new_state = updated.replace(params=keep(updated.params, state.params),
                              opt_state=keep(updated.opt_state, state.opt_state),
                              ema_params=keep(updated.ema_params, state.ema_params))
  return new_state, {"loss": loss, "grad_norm": grad_norm, "finite": finite}


def compile_train_step(config: ml_collections.ConfigDict, mesh) -> Callable:
  """train_step bound to the config and jitted over the mesh (state replicated, batch split)."""
  step_fn = functools.partial(
      train_step, prediction=config.diffusion.prediction,
      min_snr_gamma=config.train.min_snr_gamma, num_classes=config.model.num_classes,
      label_dropout=config.train.label_dropout, ema_decay=config.train.ema_decay,
      ema_warmup=config.train.ema_warmup, low_res=LowResInput.from_config(config))
  replicated = parallel.replicated(mesh)
  return jax.jit(step_fn, in_shardings=(replicated, parallel.batch_sharded(mesh, 1), replicated),
                 out_shardings=(replicated, replicated), donate_argnums=(0,))


def split_micro_batches(batch: dict, num_micro: int) -> dict:
  """[B, ...] -> [A, B/A, ...] for gradient accumulation over A micro-batches."""
  return {k: v.reshape((num_micro, v.shape[0] // num_micro) + v.shape[1:])
          for k, v in batch.items()}
