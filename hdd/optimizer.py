"""The optimizer: Adam or AdamW with global-norm clipping, and the learning-rate schedule
(linear warm-up, then cosine annealing or flat), as pure functions of the train config.

A run with a step count anneals over its steps (`learning_rate_fn`, computed inside the
compiled step). A run with a wall-clock budget (train.time_budget_minutes) anneals over the
budget's elapsed fraction (`budget_learning_rate`): the loop computes each step's rate on
the host and sets it in the optimizer state (`with_learning_rate`), so a run stopped by its
budget has finished its decay like a complete run.

optax.warmup_cosine_decay_schedule computes the same curve in another order of float32
operations and differs in the last bits (up to 0.7% relative near the end of a 100k-step
run), so this one is kept: resumed and restructured runs stay bit-exact.
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax


def learning_rate_fn(train_config: ml_collections.ConfigDict) -> Callable:
  """Linear warm-up lr * s / warmup, then cosine annealing
  lr_min + (lr - lr_min)(1 + cos(pi * progress)) / 2 over the remaining steps, or flat."""
  lr, lr_min = train_config.learning_rate, train_config.min_learning_rate
  warmup, total = train_config.warmup_steps, train_config.num_steps

  def schedule(step):
    step = jnp.asarray(step, jnp.float32)
    warm = lr * step / max(warmup, 1)
    if train_config.lr_schedule == "cosine":
      progress = jnp.clip((step - warmup) / max(total - warmup, 1), 0.0, 1.0)
      after = lr_min + 0.5 * (lr - lr_min) * (1.0 + jnp.cos(jnp.pi * progress))
    else:
      after = jnp.full_like(step, lr)
    return jnp.where(step < warmup, warm, after)

  return schedule


def budget_learning_rate(train_config: ml_collections.ConfigDict, step: int,
                         budget_fraction: float) -> float:
  """The rate of a budgeted run at `step`, with `budget_fraction` of its training time spent:
  lr_min + (lr - lr_min)(1 + cos(pi f)) / 2 (cosine) or lr (constant), and during the
  warm-up steps no more than the linear ramp lr * s / warmup."""
  lr, lr_min = train_config.learning_rate, train_config.min_learning_rate
  fraction = min(max(budget_fraction, 0.0), 1.0)
  after = lr
  if train_config.lr_schedule == "cosine":
    after = lr_min + 0.5 * (lr - lr_min) * (1.0 + math.cos(math.pi * fraction))
  if step < train_config.warmup_steps:
    return min(after, lr * step / train_config.warmup_steps)
  return after


def with_learning_rate(state, learning_rate: jax.Array):
  """The train state of a budgeted run with the rate of its next step set (a scalar array
  placed like the state's)."""
  opt_state = state.opt_state
  hyperparams = {**opt_state.hyperparams, "learning_rate": learning_rate}
  return state.replace(opt_state=opt_state._replace(hyperparams=hyperparams))


def create_optimizer(train_config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """The run's optimizer; a budgeted run's takes its rate from its state (see above)."""
  if train_config.time_budget_minutes > 0:
    return optax.inject_hyperparams(functools.partial(_optimizer, train_config))(
        learning_rate=train_config.learning_rate)
  return _optimizer(train_config, learning_rate_fn(train_config))


def _optimizer(train_config: ml_collections.ConfigDict,
               learning_rate) -> optax.GradientTransformation:
  if train_config.optimizer == "adamw":
    optimizer = optax.adamw(learning_rate, weight_decay=train_config.weight_decay)
  else:
    optimizer = optax.adam(learning_rate)
  if train_config.grad_clip > 0:
    optimizer = optax.chain(optax.clip_by_global_norm(train_config.grad_clip), optimizer)
  return optimizer
