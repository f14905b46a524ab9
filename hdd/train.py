"""Training: the TrainState, the optimizer and learning-rate schedule, the compiled
data-parallel train step and the loop that checkpoints, logs and resumes.

A batch goes: input_pipeline.pipeline (numpy, [B, H, W, C] in [-1, 1]) ->
`split_micro_batches` ([A, B/A, ...]) -> `parallel.shard_batch` (split over devices)
-> `train_step` (loss, gradients averaged over the A micro-batches, one optimizer update,
EMA update).
"""
from __future__ import annotations

import functools
import json
import logging
import os
import signal
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from clu import metric_writers, periodic_actions
from flax.training import train_state

from hdd import checkpoints, diffusion, generate, images, parallel
from hdd import workdir as workdir_guard
from hdd.build import create_model, create_schedule
from hdd.errors import CheckpointError, UserError
from hdd.schedules import Schedule
from hdd.unet import UNet, count_params
from input_pipeline.pipeline import create_train_iterator


class TrainState(train_state.TrainState):
  """Step, parameters and optimizer state (from flax), plus EMA parameters and the base
  RNG key. The key of step s is fold_in(rng, s), so the randomness of a resumed run
  is that of an uninterrupted one."""
  ema_params: Any = None
  rng: jax.Array = None


class NonFiniteError(UserError):
  pass


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


def create_optimizer(train_config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  lr = learning_rate_fn(train_config)
  if train_config.optimizer == "adamw":
    optimizer = optax.adamw(lr, weight_decay=train_config.weight_decay)
  else:
    optimizer = optax.adam(lr)
  if train_config.grad_clip > 0:
    optimizer = optax.chain(optax.clip_by_global_norm(train_config.grad_clip), optimizer)
  return optimizer


def create_train_state(config: ml_collections.ConfigDict, model: UNet) -> TrainState:
  init_rng, rng = jax.random.split(jax.random.PRNGKey(config.seed))
  size, channels = config.data.image_size, config.data.channels
  variables = jax.jit(model.init)(
      init_rng, jnp.zeros((1, size, size, channels)), jnp.zeros((1,), jnp.int32),
      jnp.zeros((1,), jnp.int32) if config.model.num_classes else None)
  params = variables["params"]
  return TrainState.create(apply_fn=model.apply, params=params, tx=create_optimizer(config.train),
                           ema_params=jax.tree_util.tree_map(jnp.copy, params), rng=rng)


def ema_decay_at(step, decay: float, warmup: bool):
  """The EMA decay at a step: min(decay, (1 + step) / (10 + step)) with warm-up."""
  if not warmup:
    return jnp.asarray(decay, jnp.float32)
  step = jnp.asarray(step, jnp.float32)
  return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def train_step(state: TrainState, batch: dict, schedule: Schedule, *, prediction: str,
               num_classes: int, label_dropout: float, ema_decay: float, ema_warmup: bool):
  """One optimizer update from batch['image'] of shape [A, B/A, H, W, C] (A micro-batches).

  A non-finite loss or gradient leaves parameters, optimizer and EMA unchanged (the
  step counter still advances) and reports finite=False.
  """
  step_rng = jax.random.fold_in(state.rng, state.step)

  def micro_batch_loss(params, micro_batch, rng):
    loss_rng, label_rng, dropout_rng = jax.random.split(rng, 3)
    labels = None
    if num_classes:
      drop = jax.random.bernoulli(label_rng, label_dropout, micro_batch["label"].shape)
      labels = jnp.where(drop, num_classes, micro_batch["label"])

    def model_fn(x_t, t):
      return state.apply_fn({"params": params}, x_t, t, labels, train=True,
                            rngs={"dropout": dropout_rng})

    losses, _ = diffusion.denoising_loss(model_fn, schedule, micro_batch["image"], loss_rng,
                                         prediction)
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
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)

  updated = state.apply_gradients(grads=grads)
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
      train_step, prediction=config.diffusion.prediction, num_classes=config.model.num_classes,
      label_dropout=config.train.label_dropout, ema_decay=config.train.ema_decay,
      ema_warmup=config.train.ema_warmup)
  replicated = parallel.replicated(mesh)
  return jax.jit(step_fn, in_shardings=(replicated, parallel.batch_sharded(mesh, 1), replicated),
                 out_shardings=(replicated, replicated), donate_argnums=(0,))


def split_micro_batches(batch: dict, num_micro: int) -> dict:
  """[B, ...] -> [A, B/A, ...] for gradient accumulation over A micro-batches."""
  return {k: v.reshape((num_micro, v.shape[0] // num_micro) + v.shape[1:])
          for k, v in batch.items()}


class PreemptionHandler:
  """SIGTERM/SIGINT: finish the current step, save, exit 0. A second signal exits at once."""

  def __init__(self):
    self.requested = False
    self._previous = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    if self.requested:
      os._exit(128 + signum)
    self.requested = True
    logging.warning("Signal %d: saving a checkpoint at the next step boundary "
                    "(send it again to exit immediately).", signum)

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
  """Trains (or resumes) the model of `config` in `workdir`; returns the final state."""
  os.makedirs(workdir, exist_ok=True)
  mesh = parallel.create_mesh()
  tc = config.train
  model = create_model(config)
  schedule = create_schedule(config.diffusion)
  state = jax.device_put(create_train_state(config, model), parallel.replicated(mesh))
  logging.info("U-Net: %s parameters; %d device(s): %s", f"{count_params(state.params):,}",
               mesh.size, jax.devices()[0].platform)

  # Parameters, EMA and two Adam moments in float32, for each kept checkpoint and one more.
  workdir_guard.check_free_space(workdir, 16 * count_params(state.params) *
                                 (tc.keep_checkpoints + 1) + 2**20)
  manager = checkpoints.create_manager(os.path.join(workdir, "checkpoints"), tc.keep_checkpoints)
  restored_step, state = checkpoints.restore_latest(manager, state)
  start_step = int(state.step)
  if restored_step is not None:
    logging.info("Resuming from the checkpoint at step %d in %s.", start_step, manager.directory)
  if start_step >= tc.num_steps:
    logging.info("Training already finished (step %d of %d).", start_step, tc.num_steps)
    return state
  with open(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=2))

  batches = create_train_iterator(config.data, tc.batch_size, config.seed, start_step,
                                  config.model.num_classes)
  step_fn = compile_train_step(config, mesh)
  schedule = jax.device_put(schedule, parallel.replicated(mesh))
  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  writer.write_hparams(flatten_config(config))
  progress = periodic_actions.ReportProgress(num_train_steps=tc.num_steps, writer=writer,
                                             every_steps=tc.log_every)
  learning_rate = learning_rate_fn(tc)

  def next_batch():
    return parallel.shard_batch(split_micro_batches(next(batches), tc.grad_accum_steps), mesh, 1)

  batch = next_batch()
  compile_start = time.perf_counter()
  step_fn = step_fn.lower(state, batch, schedule).compile()
  compile_seconds = time.perf_counter() - compile_start
  logging.info("Compiled the train step in %.1f s.", compile_seconds)

  history, skipped, fid_monitor = [], 0, None
  train_start = time.perf_counter()
  step = start_step
  with PreemptionHandler() as preemption:
    while step < tc.num_steps:
      state, metrics = step_fn(state, batch, schedule)
      step += 1
      history.append(metrics)
      if step < tc.num_steps:
        batch = next_batch()
      progress(step)
      if step % tc.log_every == 0 or step == tc.num_steps:
        summary = jax.device_get(history)
        history = []
        finite = np.array([m["finite"] for m in summary])
        if not finite.all():
          bad_step = step - len(summary) + int(np.argmin(finite)) + 1
          if tc.nonfinite == "stop":
            raise NonFiniteError(f"non-finite loss or gradient at step {bad_step}; the last "
                                 "good checkpoint is kept. Lower train.learning_rate or set "
                                 "train.nonfinite=skip")
          skipped += int((~finite).sum())
        writer.write_scalars(step, {
            "train_loss": float(np.mean([m["loss"] for m in summary if m["finite"]] or [np.nan])),
            "train_grad_norm": float(np.mean([m["grad_norm"] for m in summary])),
            "train_learning_rate": float(learning_rate(step - 1)),
            "train_skipped_steps": skipped})
      if tc.fid_every and step % tc.fid_every == 0:
        fid_monitor = fid_monitor or make_fid_monitor(config, mesh)
        writer.write_scalars(step, {f"fid_{tc.fid_samples}samples": fid_monitor(
            state.ema_params)})
      if tc.sample_every and step % tc.sample_every == 0:
        samples, _ = generate.sample_images(config, state.ema_params, mesh, num_images=16)
        writer.write_images(step, {"samples": images.make_grid(samples)[None]})
      if step % tc.checkpoint_every == 0 or step == tc.num_steps or preemption.requested:
        checkpoints.save(manager, step, state)
      if preemption.requested:
        break
  manager.wait_until_finished()
  train_seconds = time.perf_counter() - train_start
  close_start = time.perf_counter()
  batches.close()
  logging.info("Closed the input pipeline in %.1f s.", time.perf_counter() - close_start)
  writer.flush()
  steps_done = step - start_step
  timing_path = os.path.join(workdir, "train_timing.json")
  earlier = 0.0
  if start_step > 0 and os.path.exists(timing_path):
    with open(timing_path) as f:
      previous = json.load(f)
    if previous.get("end_step") == start_step:
      earlier = previous.get("total_train_seconds", 0.0)
  timing = {"start_step": start_step, "end_step": step, "compile_seconds": compile_seconds,
            "train_seconds": train_seconds, "total_train_seconds": earlier + train_seconds,
            "parameters": count_params(state.params),
            "images_per_second": steps_done * tc.batch_size / max(train_seconds, 1e-9),
            "skipped_steps": skipped, "preempted": preemption.requested}
  with open(timing_path, "w") as f:
    json.dump(timing, f, indent=2)
  logging.info("Trained steps %d-%d in %.1f s (%.1f img/s).", start_step, step, train_seconds,
               timing["images_per_second"])
  if preemption.requested:
    logging.warning("Stopped by a signal at step %d; re-run the same command to resume.", step)
  return state


def make_fid_monitor(config: ml_collections.ConfigDict, mesh) -> Callable:
  """fn(params) -> FID of train.fid_samples samples against the evaluation split (a
  small-N estimate for monitoring; biased upwards against the final, large-N FID). The
  Inception weights and the reference statistics are loaded once, here."""
  from evaluation import inception, statistics, weights
  weights_path = config.eval.inception_weights or weights.default_path()
  variables = inception.load_fid_inception(weights_path)
  reference = statistics.reference_statistics(
      config.data, config.data.eval_split, config.data.image_size,
      config.eval.reference_examples, variables, weights_path, config.eval.stats_dir)

  def monitor(params) -> float:
    samples, _ = generate.sample_images(config, params, mesh, config.train.fid_samples)
    return statistics.fid_and_kid(samples, reference, variables)["fid"]

  return monitor


def flatten_config(config: ml_collections.ConfigDict, prefix: str = "") -> dict:
  """{'train.batch_size': 128, ...}, with tuples as strings, for hyper-parameter logs."""
  flat = {}
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      flat.update(flatten_config(value, f"{prefix}{key}."))
    else:
      flat[prefix + key] = value if isinstance(value, (int, float, str, bool)) else str(value)
  return flat


def restore_params(config: ml_collections.ConfigDict, workdir: str, ema: bool = True):
  """The (EMA) parameters of the latest checkpoint in workdir, for sampling and evaluation."""
  state = create_train_state(config, create_model(config))
  manager = checkpoints.create_manager(os.path.join(workdir, "checkpoints"))
  step, state = checkpoints.restore_latest(manager, state)
  if step is None:
    raise CheckpointError(f"no checkpoint in {manager.directory}; train first with "
                          f"--mode=train --workdir={workdir}")
  logging.info("Restored the %s parameters of step %d from %s.", "EMA" if ema else "raw", step,
               manager.directory)
  return state.ema_params if ema else state.params
