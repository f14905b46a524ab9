"""The reverse chain, compiled as one `lax.scan`: DDPM, DDIM or DPM-Solver++(2M), optional
classifier-free guidance, optional trajectory recording. Every stage of a cascade uses
this sampler."""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from hdd.maths import diffusion
from hdd.maths.schedules import Schedule

SAMPLERS = ("ddpm", "ddim", "dpm_solver_2m")
# denoise_fn(x_t, t) -> eps estimate.
DenoiseFn = Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]


@dataclasses.dataclass(frozen=True)
class SamplerSettings:
  sampler: str = "ddpm"
  num_steps: int = 0              # DDIM / DPM-Solver sub-sequence length; 0 = T
  eta: float = 0.0
  ddpm_variance: str = "fixed_small"
  clip_x0: bool = True
  clipped_eps: bool = False       # DDIM: eps re-derived from the clipped x0 (GLIDE)

  @classmethod
  def from_config(cls, sample_config) -> "SamplerSettings":
    return cls(sample_config.sampler, sample_config.num_steps, sample_config.eta,
               sample_config.ddpm_variance, sample_config.clip_x0, sample_config.clipped_eps)


def reverse_timesteps(settings: SamplerSettings, num_train_steps: int,
                      start_step: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
  """(t, t_prev) pairs the chain visits, from the noisiest step down to t_prev = -1.

  DDPM visits every step start_step, ..., 0. DDIM visits the strided sub-sequence of
  `settings.num_steps` steps (Song et al. 2021, "uniform" skip), and so does
  DPM-Solver++(2M). `start_step` (default
  T-1) starts the chain part-way, at exactly that step, followed by the steps of the full
  sequence below it (a cascade stage handed over at t*).
  """
  if settings.sampler == "ddpm":
    steps = np.arange(num_train_steps)
  elif settings.sampler in ("ddim", "dpm_solver_2m"):
    steps = diffusion.ddim_timesteps(num_train_steps, settings.num_steps or num_train_steps)
  else:
    raise ValueError(f"unknown sampler {settings.sampler!r}; expected one of {SAMPLERS}")
  if start_step is not None:
    if not 0 <= start_step < num_train_steps:
      raise ValueError(f"start_step must lie in [0, {num_train_steps}), got {start_step}")
    steps = np.append(steps[steps < start_step], start_step)
  steps = steps[::-1].astype(np.int32)
  return steps, np.append(steps[1:], -1).astype(np.int32)


def run_chain(denoise_fn: DenoiseFn, schedule: Schedule, settings: SamplerSettings, x_init,
              rng, steps: np.ndarray, prev_steps: np.ndarray, trajectory_every: int = 0,
              trajectory_images: int = 8):
  """Runs the reverse chain from x_init at steps[0], visiting the (t, t_prev) pairs of
  `reverse_timesteps`.

  Returns (x0, trajectory): trajectory is [frames, n, H, W, C] holding x_init and the
  state after every `trajectory_every`-th step for the first n images, or None.
  Traceable: call it inside `jax.jit`.
  """
  batch = x_init.shape[0]
  record = trajectory_every > 0
  num_frames = 1 + len(steps) // trajectory_every if record else 0
  shown = min(trajectory_images, batch)
  frames = jnp.zeros((num_frames, shown) + x_init.shape[1:], x_init.dtype)
  if record:
    frames = frames.at[0].set(x_init[:shown])

  # A multistep solver carries the previous step's x0 estimate and lambda.
  multistep = (jnp.zeros_like(x_init), jnp.zeros((batch, 1, 1, 1), x_init.dtype))
  solver_state = multistep if settings.sampler == "dpm_solver_2m" else ()

  def step_fn(carry, inputs):
    x, frames, solver_state = carry
    index, t, t_prev = inputs
    t_batch = jnp.full((batch,), t, jnp.int32)
    prev_batch = jnp.full((batch,), t_prev, jnp.int32)
    eps = denoise_fn(x, t_batch)
    noise = jax.random.normal(jax.random.fold_in(rng, index), x.shape, x.dtype)
    if settings.sampler == "ddpm":
      x = diffusion.ddpm_step(schedule, x, t_batch, eps, noise, settings.clip_x0,
                              settings.ddpm_variance)
    elif settings.sampler == "ddim":
      x = diffusion.ddim_step(schedule, x, t_batch, prev_batch, eps, settings.eta, noise,
                              settings.clip_x0, settings.clipped_eps)
    else:
      x, *solver_state = diffusion.dpm_solver_2m_step(schedule, x, t_batch, prev_batch, eps,
                                                      *solver_state, index == 0,
                                                      settings.clip_x0)
      solver_state = tuple(solver_state)
    if record:
      frame = (index + 1) // trajectory_every
      keep = (index + 1) % trajectory_every == 0
      frames = frames.at[frame].set(jnp.where(keep, x[:shown], frames[frame]), mode="drop")
    return (x, frames, solver_state), None

  inputs = (jnp.arange(len(steps)), jnp.asarray(steps), jnp.asarray(prev_steps))
  (x, frames, _), _ = jax.lax.scan(step_fn, (x_init, frames, solver_state), inputs)
  return x, (frames if record else None)


def model_denoise_fn(apply_fn, params, schedule: Schedule, prediction: str,
                     labels=None, guidance_scale=None,
                     null_label: Optional[int] = None,
                     extra_inputs: Optional[dict] = None) -> DenoiseFn:
  """Wraps a network into denoise_fn(x_t, t) -> eps.

  With labels and a guidance weight w (a float or a traced scalar; None: unguided) this is
  classifier-free guidance (Ho & Salimans 2022, eq. 6): eps = (1 + w) eps(x, y) - w eps(x,
  null), one batched evaluation of both. Whether to guide is the caller's choice at trace
  time, as it doubles the rows the network sees; w itself may change between calls.
  Labels are class indices [B] or class weights [B, C + 1] (an interpolated embedding).
  `extra_inputs` are further per-image network inputs, the same at every step (a
  conditional cascade stage's low-resolution image, `hdd.maths.handover.LowResInput`).
  """
  extra_inputs = extra_inputs or {}

  def eps_of(x, t, label, extra):
    output = apply_fn({"params": params}, x, t, label, train=False, **extra)
    return diffusion.eps_from_model_output(schedule, x, t, output, prediction)

  def denoise(x, t):
    if labels is None or guidance_scale is None:
      return eps_of(x, t, labels, extra_inputs)
    null = jnp.full(labels.shape[:1], null_label, jnp.int32)
    if labels.ndim == 2:
      null = jax.nn.one_hot(null, labels.shape[1], dtype=labels.dtype)
    twice = lambda a: jnp.concatenate([a, a])
    both = eps_of(twice(x), twice(t), jnp.concatenate([labels, null]),
                  jax.tree_util.tree_map(twice, extra_inputs))
    conditional, unconditional = jnp.split(both, 2)
    return (1.0 + guidance_scale) * conditional - guidance_scale * unconditional

  return denoise
