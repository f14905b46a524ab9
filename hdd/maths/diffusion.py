"""Diffusion math: forward noising, training targets and the DDPM/DDIM reverse steps.

Pure functions of a `Schedule` and arrays. Images are NHWC; `t` is an int array of
shape [batch] with 0-based steps (see `hdd.maths.schedules`).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from hdd.maths.schedules import Schedule

PREDICTIONS = ("eps", "x0", "v")
DDPM_VARIANCES = ("fixed_small", "fixed_large")


def _at(values: jnp.ndarray, t: jnp.ndarray, like: jnp.ndarray) -> jnp.ndarray:
  """values[t] reshaped to broadcast against a batch shaped like `like`."""
  return values[t].reshape((-1,) + (1,) * (like.ndim - 1)).astype(like.dtype)


def q_sample(schedule: Schedule, x0, t, noise):
  """Samples q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I) (Ho et al., eq. 4)."""
  return (_at(schedule.sqrt_alphas_cumprod, t, x0) * x0 +
          _at(schedule.sqrt_one_minus_alphas_cumprod, t, x0) * noise)


def x0_from_eps(schedule: Schedule, x_t, t, eps):
  """Inverts eq. 4: x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)."""
  return ((x_t - _at(schedule.sqrt_one_minus_alphas_cumprod, t, x_t) * eps) /
          _at(schedule.sqrt_alphas_cumprod, t, x_t))


def eps_from_x0(schedule: Schedule, x_t, t, x0):
  """Inverts eq. 4 for the noise: eps = (x_t - sqrt(alpha_bar_t) x_0) / sqrt(1 - alpha_bar_t)."""
  return ((x_t - _at(schedule.sqrt_alphas_cumprod, t, x_t) * x0) /
          _at(schedule.sqrt_one_minus_alphas_cumprod, t, x_t))


def training_target(schedule: Schedule, x0, t, noise, prediction: str):
  """What the network regresses: eps, x0, or v = sqrt(ab) eps - sqrt(1-ab) x0
  (Salimans & Ho 2022)."""
  if prediction == "eps":
    return noise
  if prediction == "x0":
    return x0
  if prediction == "v":
    return (_at(schedule.sqrt_alphas_cumprod, t, x0) * noise -
            _at(schedule.sqrt_one_minus_alphas_cumprod, t, x0) * x0)
  raise ValueError(f"unknown prediction {prediction!r}; expected one of {PREDICTIONS}")


def eps_from_model_output(schedule: Schedule, x_t, t, output, prediction: str):
  """Converts a network output of any parameterisation to the noise estimate eps."""
  if prediction == "eps":
    return output
  if prediction == "x0":
    return eps_from_x0(schedule, x_t, t, output)
  if prediction == "v":  # eps = sqrt(1-ab) x_t + sqrt(ab) v.
    return (_at(schedule.sqrt_one_minus_alphas_cumprod, t, x_t) * x_t +
            _at(schedule.sqrt_alphas_cumprod, t, x_t) * output)
  raise ValueError(f"unknown prediction {prediction!r}; expected one of {PREDICTIONS}")


def ddpm_step(schedule: Schedule, x_t, t, eps, noise, clip_x0: bool = True,
              variance: str = "fixed_small"):
  """One ancestral step x_t -> x_{t-1} of DDPM (Ho et al. 2020, Algorithm 2).

  The mean is that of q(x_{t-1} | x_t, x0_hat) with x0_hat from eps (optionally
  clipped to [-1, 1]); the variance is beta~_t ("fixed_small") or beta_t
  ("fixed_large"). At t = 0 no noise is added, so the step returns x0_hat.
  """
  x0 = x0_from_eps(schedule, x_t, t, eps)
  if clip_x0:
    x0 = jnp.clip(x0, -1.0, 1.0)
  mean = (_at(schedule.posterior_mean_coef_x0, t, x_t) * x0 +
          _at(schedule.posterior_mean_coef_xt, t, x_t) * x_t)
  if variance == "fixed_small":
    std = jnp.exp(0.5 * _at(schedule.posterior_log_variance_clipped, t, x_t))
  elif variance == "fixed_large":
    std = jnp.sqrt(_at(schedule.betas, t, x_t))
  else:
    raise ValueError(f"unknown DDPM variance {variance!r}; expected one of {DDPM_VARIANCES}")
  not_last = (t > 0).reshape((-1,) + (1,) * (x_t.ndim - 1)).astype(x_t.dtype)
  return mean + not_last * std * noise


def ddim_step(schedule: Schedule, x_t, t, t_prev, eps, eta: float = 0.0, noise=None,
              clip_x0: bool = False, clipped_eps: bool = False):
  """One DDIM step x_t -> x_{t_prev} (Song et al. 2021, eq. 12 and 16).

  x_prev = sqrt(ab_prev) x0_hat + sqrt(1 - ab_prev - sigma^2) eps + sigma z,
  sigma = eta sqrt((1 - ab_prev) / (1 - ab_t)) sqrt(1 - ab_t / ab_prev).
  `t_prev = -1` means alpha_bar_prev = 1: the final step returns x0_hat. When
  clip_x0 is set, x0_hat is clipped and eps kept, as diffusers' DDIM does by default;
  with clipped_eps, eps is re-derived from the clipped x0_hat, eps = (x_t - sqrt(ab_t)
  x0_hat) / sqrt(1 - ab_t), as GLIDE does: under classifier-free guidance the amplified
  eps would otherwise carry the chain away from the x0_hat it just clipped.
  """
  alpha_bar = _at(schedule.alphas_cumprod, t, x_t)
  t_prev = jnp.broadcast_to(jnp.asarray(t_prev), jnp.shape(t))
  alpha_bar_prev = jnp.where(t_prev >= 0, schedule.alphas_cumprod[jnp.maximum(t_prev, 0)], 1.0)
  alpha_bar_prev = alpha_bar_prev.reshape(alpha_bar.shape).astype(x_t.dtype)
  x0 = (x_t - jnp.sqrt(1.0 - alpha_bar) * eps) / jnp.sqrt(alpha_bar)
  if clip_x0:
    x0 = jnp.clip(x0, -1.0, 1.0)
    if clipped_eps:
      eps = (x_t - jnp.sqrt(alpha_bar) * x0) / jnp.sqrt(1.0 - alpha_bar)
  sigma = eta * jnp.sqrt((1.0 - alpha_bar_prev) / (1.0 - alpha_bar) *
                         (1.0 - alpha_bar / alpha_bar_prev))
  direction = jnp.sqrt(jnp.maximum(1.0 - alpha_bar_prev - sigma**2, 0.0)) * eps
  x_prev = jnp.sqrt(alpha_bar_prev) * x0 + direction
  if noise is not None:
    x_prev = x_prev + sigma * noise
  return x_prev


def dpm_solver_2m_step(schedule: Schedule, x_t, t, t_prev, eps, x0_before, lambda_before,
                       first: bool, clip_x0: bool = False):
  """One step of DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2), the
  second-order multistep solver of the probability-flow ODE in the data prediction x0.

  With alpha = sqrt(ab), sigma = sqrt(1 - ab), lambda = log(alpha / sigma) and
  h = lambda_prev - lambda_t:
    x_prev = (sigma_prev / sigma_t) x_t - alpha_prev (exp(-h) - 1) D,
    D = (1 + 1 / (2r)) x0_t - 1 / (2r) x0_before,  r = (lambda_t - lambda_before) / h,
  where x0_before and lambda_before belong to the step before. Three steps use D = x0_t,
  first order (the DDIM step): the first (`first`, nothing before it), the last (t_prev =
  -1, to alpha = 1, sigma = 0, which returns D), and the one onto t_prev = 0, DPM-Solver's
  "lower order final": on a discrete schedule lambda leaps there (from 1.1 to 4.6 between
  t = 100 and 0 of the linear 1000-step schedule), the ratio r of the steps is tiny, and the
  second-order extrapolation by 1 / (2r) is what goes wrong at 10-20 steps. Returns
  (x_prev, x0_t, lambda_t), the last two for the next step. `clip_x0` clips x0_t to [-1, 1].
  """
  alpha_bar = _at(schedule.alphas_cumprod, t, x_t)
  t_prev = jnp.broadcast_to(jnp.asarray(t_prev), jnp.shape(t))
  last = (t_prev < 0).reshape(alpha_bar.shape)
  alpha_bar_prev = jnp.where(t_prev >= 0, schedule.alphas_cumprod[jnp.maximum(t_prev, 0)], 0.5)
  alpha_bar_prev = alpha_bar_prev.reshape(alpha_bar.shape).astype(x_t.dtype)
  x0 = (x_t - jnp.sqrt(1.0 - alpha_bar) * eps) / jnp.sqrt(alpha_bar)
  if clip_x0:
    x0 = jnp.clip(x0, -1.0, 1.0)
  lambda_t = 0.5 * (jnp.log(alpha_bar) - jnp.log1p(-alpha_bar))
  lambda_prev = 0.5 * (jnp.log(alpha_bar_prev) - jnp.log1p(-alpha_bar_prev))
  h = lambda_prev - lambda_t
  r = (lambda_t - lambda_before) / h
  second_order = (1.0 + 0.5 / r) * x0 - (0.5 / r) * x0_before
  final = (t_prev <= 0).reshape(alpha_bar.shape)
  d = jnp.where(first | final, x0, second_order)
  x_prev = (jnp.sqrt((1.0 - alpha_bar_prev) / (1.0 - alpha_bar)) * x_t
            - jnp.sqrt(alpha_bar_prev) * jnp.expm1(-h) * d)
  return jnp.where(last, d, x_prev), x0, lambda_t


def ddim_timesteps(num_train_steps: int, num_sample_steps: int) -> np.ndarray:
  """The strided sub-sequence [0, k, 2k, ..., (S - 1) k] with k = T // S, as in the DDIM code
  (diffusers' 'leading' spacing). One step is [T - 1]: the chain's first step must start
  from noise, and leading's [0] would take pure noise for a clean image (diffusers'
  'trailing' and 'linspace' spacings give [T - 1] too)."""
  if not 1 <= num_sample_steps <= num_train_steps:
    raise ValueError(f"DDIM needs 1 <= steps <= T={num_train_steps}, got {num_sample_steps}")
  if num_sample_steps == 1:
    return np.array([num_train_steps - 1])
  return np.arange(num_sample_steps) * (num_train_steps // num_sample_steps)


def min_snr_weight(schedule: Schedule, t, prediction: str, gamma: float):
  """The Min-SNR-gamma loss weight of step t (Hang et al. 2023): with SNR_t = ab_t /
  (1 - ab_t), every parameterisation's loss becomes the x0 loss weighted by
  min(SNR_t, gamma), i.e. min(SNR_t, gamma) / SNR_t for eps and min(SNR_t, gamma) /
  (SNR_t + 1) for v. It caps the weight of the nearly clean steps, whose gradients
  conflict with the noisy ones'. gamma = 0: weight 1 (the simple loss)."""
  if gamma <= 0:
    return jnp.ones(t.shape, jnp.float32)
  # From the square roots, which the schedule computed in float64: 1 - ab in float32
  # loses digits at the clean end (ab = 0.9999).
  snr = jnp.square(schedule.sqrt_alphas_cumprod[t] / schedule.sqrt_one_minus_alphas_cumprod[t])
  clipped = jnp.minimum(snr, gamma)
  if prediction == "eps":
    return clipped / snr
  if prediction == "x0":
    return clipped
  if prediction == "v":
    return clipped / (snr + 1.0)
  raise ValueError(f"unknown prediction {prediction!r}; expected one of {PREDICTIONS}")


def denoising_loss(model_fn: Callable, schedule: Schedule, x0, rng, prediction: str,
                   min_snr_gamma: float = 0.0):
  """The DDPM objective for any parameterisation: t ~ U{0..T-1}, eps ~ N(0, I),
  loss = w(t) ||model(x_t, t) - target||^2 averaged per example, with w = 1 (the simple
  loss, Ho et al. 2020, eq. 14) or the Min-SNR-gamma weight (`min_snr_weight`).

  model_fn(x_t, t) -> network output. Returns (per-example loss [B], t [B]).
  """
  t_rng, noise_rng = jax.random.split(rng)
  t = jax.random.randint(t_rng, (x0.shape[0],), 0, schedule.num_steps)
  noise = jax.random.normal(noise_rng, x0.shape, x0.dtype)
  output = model_fn(q_sample(schedule, x0, t, noise), t)
  target = training_target(schedule, x0, t, noise, prediction)
  squared_error = jnp.mean(jnp.square(output - target), axis=tuple(range(1, x0.ndim)))
  return min_snr_weight(schedule, t, prediction, min_snr_gamma) * squared_error, t
