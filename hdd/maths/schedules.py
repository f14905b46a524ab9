"""Noise schedules as pure functions of numbers, and the constants derived from them.

Time indices are 0-based: step t in [0, T) has noise level beta[t] and
alpha_bar[t] = prod_{s <= t} (1 - beta[s]). All constants are computed in float64
numpy and stored as float32 arrays, so a `Schedule` can be passed into `jax.jit`.
"""
from __future__ import annotations

import flax
import jax.numpy as jnp
import numpy as np

SCHEDULE_KINDS = ("linear", "cosine", "quadratic")
COSINE_OFFSET = 0.008  # s in Nichol & Dhariwal (2021), eq. 17.
MAX_BETA = 0.999  # beta cap for the cosine schedule (Nichol & Dhariwal 2021, sec. 3.2).


def get_betas(kind: str, num_steps: int, beta_start: float = 1e-4,
              beta_end: float = 0.02) -> np.ndarray:
  """Returns the float64 array beta[0..T-1] of a named schedule.

  linear:    beta evenly spaced from beta_start to beta_end (Ho et al. 2020).
  quadratic: sqrt(beta) evenly spaced, as in the DDPM reference code.
  cosine:    alpha_bar(t) = cos^2(((t/T + s)/(1 + s)) * pi/2), beta_t = 1 -
             alpha_bar(t+1)/alpha_bar(t), capped at 0.999 (Nichol & Dhariwal 2021,
             eq. 17); beta_start and beta_end are ignored.
  """
  if num_steps < 1:
    raise ValueError(f"num_steps must be >= 1, got {num_steps}")
  if kind == "linear":
    return np.linspace(beta_start, beta_end, num_steps, dtype=np.float64)
  if kind == "quadratic":
    return np.linspace(beta_start**0.5, beta_end**0.5, num_steps, dtype=np.float64)**2
  if kind == "cosine":
    steps = np.arange(num_steps + 1, dtype=np.float64) / num_steps
    alpha_bar = np.cos((steps + COSINE_OFFSET) / (1 + COSINE_OFFSET) * np.pi / 2)**2
    return np.minimum(1.0 - alpha_bar[1:] / alpha_bar[:-1], MAX_BETA)
  raise ValueError(f"unknown schedule kind {kind!r}; expected one of {SCHEDULE_KINDS}")


@flax.struct.dataclass
class Schedule:
  """Per-step constants of a discrete diffusion process (all float32 arrays of shape [T]).

  posterior_* are the coefficients of q(x_{t-1} | x_t, x_0) (Ho et al. 2020, eq. 6-7):
    mean = posterior_mean_coef_x0[t] * x_0 + posterior_mean_coef_xt[t] * x_t,
    variance = posterior_variance[t] = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t),
  with alpha_bar_{-1} = 1.
  """
  betas: jnp.ndarray
  alphas_cumprod: jnp.ndarray
  alphas_cumprod_prev: jnp.ndarray
  sqrt_alphas_cumprod: jnp.ndarray
  sqrt_one_minus_alphas_cumprod: jnp.ndarray
  posterior_variance: jnp.ndarray
  posterior_log_variance_clipped: jnp.ndarray
  posterior_mean_coef_x0: jnp.ndarray
  posterior_mean_coef_xt: jnp.ndarray

  @property
  def num_steps(self) -> int:
    return self.betas.shape[0]

  @classmethod
  def from_betas(cls, betas) -> "Schedule":
    betas = np.asarray(betas, dtype=np.float64)
    if betas.ndim != 1 or betas.size == 0:
      raise ValueError(f"betas must be a non-empty 1-D array, got shape {betas.shape}")
    if not np.all((betas > 0) & (betas < 1)):
      raise ValueError("every beta must lie in (0, 1)")
    alphas_cumprod = np.cumprod(1.0 - betas)
    alphas_cumprod_prev = np.concatenate([[1.0], alphas_cumprod[:-1]])
    posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
    # The variance at t=0 is 0; its log is clipped to the value at t=1 as in the DDPM code.
    clipped_variance = posterior_variance.copy()
    clipped_variance[0] = posterior_variance[1] if betas.size > 1 else betas[0]
    constants = dict(
        betas=betas,
        alphas_cumprod=alphas_cumprod,
        alphas_cumprod_prev=alphas_cumprod_prev,
        sqrt_alphas_cumprod=np.sqrt(alphas_cumprod),
        sqrt_one_minus_alphas_cumprod=np.sqrt(1.0 - alphas_cumprod),
        posterior_variance=posterior_variance,
        posterior_log_variance_clipped=np.log(clipped_variance),
        posterior_mean_coef_x0=betas * np.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod),
        posterior_mean_coef_xt=(1.0 - alphas_cumprod_prev) * np.sqrt(1.0 - betas) /
        (1.0 - alphas_cumprod),
    )
    return cls(**{k: jnp.asarray(v, dtype=jnp.float32) for k, v in constants.items()})

  @classmethod
  def create(cls, kind: str, num_steps: int, beta_start: float = 1e-4,
             beta_end: float = 0.02) -> "Schedule":
    return cls.from_betas(get_betas(kind, num_steps, beta_start, beta_end))
