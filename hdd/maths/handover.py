"""Handing one cascade stage's output to the next: upsampling and the start of the next chain.

Three rules, for an upsampled low-resolution sample u and fresh noise z ~ N(0, I):
  mix       x = gamma u + (1 - gamma) z, then the stage's full chain from t = T-1
            (the published hierarchical-diffusion rule, gamma = 0.3);
  truncate  x = sqrt(alpha_bar_t*) u + sqrt(1 - alpha_bar_t*) z, i.e. q(x_t* | x_0 = u),
            then only the reverse steps t*, ..., 0 (this is where sampling time is saved);
  noise     x = z and the full chain: only for a conditional stage, which sees u anyway.
The first two are compared at equal signal-to-noise ratio: a mix with gamma has
SNR = gamma^2 / (1 - gamma)^2, truncation at t* has SNR = alpha_bar_t* / (1 - alpha_bar_t*).

A conditional stage (`LowResInput`, Cascaded Diffusion Models) also gets u itself, noised,
as extra input channels at every step of its chain, whichever rule starts the chain.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from hdd.maths import diffusion
from hdd.maths.schedules import Schedule

HANDOVERS = ("mix", "truncate", "noise")
UPSAMPLING = ("nearest", "bilinear", "bicubic")


@dataclasses.dataclass(frozen=True)
class Handover:
  method: str = "mix"
  gamma: float = 0.3
  start_step: int = -1          # truncate: t*; -1 = the step whose SNR matches gamma
  upsample: str = "bilinear"

  @classmethod
  def from_config(cls, sample_config) -> "Handover":
    return cls(sample_config.handover, sample_config.gamma, sample_config.start_step,
               sample_config.upsample)

  def chain_start(self, alphas_cumprod: np.ndarray):
    """The step the next chain starts from: None (all T steps) for mix and noise, t* for
    truncate."""
    if self.method in ("mix", "noise"):
      return None
    if self.start_step >= 0:
      return self.start_step
    return start_step_for_gamma(alphas_cumprod, self.gamma)

  def __call__(self, schedule: Schedule, low_res, noise, start_step, gamma):
    """The next stage's initial x from low-res images in [-1, 1] (any size) and noise.
    `gamma` is the mix weight, an argument (not self.gamma) so that a compiled chain
    takes it as an input and a new value compiles nothing."""
    up = upsample(low_res, noise.shape[1], self.upsample)
    if self.method == "mix":
      return mix(up, noise, gamma)
    if self.method == "noise":
      return noise
    return truncate(schedule, up, noise, start_step)


def upsample(images, size: int, method: str):
  """[B, h, w, C] -> [B, size, size, C]; bilinear/bicubic are not antialiased (upsampling)."""
  if method not in UPSAMPLING:
    raise ValueError(f"unknown upsampling {method!r}; expected one of {UPSAMPLING}")
  shape = (images.shape[0], size, size, images.shape[3])
  return jax.image.resize(images, shape, method=method).astype(images.dtype)


def shrink(images, size: int):
  """[B, H, W, C] in [-1, 1] -> [B, size, size, C], antialiased and rounded to the 256
  levels of a uint8 image: a training image as the stage before would hand it over (that
  stage trains on the data resized the same way, and its samples are stored as uint8)."""
  shape = (images.shape[0], size, size, images.shape[3])
  low = jax.image.resize(images, shape, method="linear", antialias=True)
  return jnp.clip(jnp.round((low + 1.0) * 127.5), 0.0, 255.0) / 127.5 - 1.0


def mix(upsampled, noise, gamma):
  """x = gamma * up(x_low) + (1 - gamma) * z."""
  return gamma * upsampled + (1.0 - gamma) * noise


def truncate(schedule: Schedule, upsampled, noise, start_step: int):
  """x_t* ~ q(x_t* | x_0 = up(x_low)) (Ho et al. 2020, eq. 4)."""
  t = jnp.full((upsampled.shape[0],), start_step, jnp.int32)
  return diffusion.q_sample(schedule, upsampled, t, noise)


def gamma_for_start_step(alphas_cumprod: np.ndarray, start_step: int) -> float:
  """The mixing weight with the SNR of truncation at t*: gamma / (1 - gamma) =
  sqrt(alpha_bar / (1 - alpha_bar)), i.e. gamma = sqrt(ab) / (sqrt(ab) + sqrt(1 - ab))."""
  signal = np.sqrt(np.float64(alphas_cumprod[start_step]))
  return float(signal / (signal + np.sqrt(1.0 - np.float64(alphas_cumprod[start_step]))))


def start_step_for_gamma(alphas_cumprod: np.ndarray, gamma: float) -> int:
  """The last step t* whose SNR is still >= that of a gamma mix (gamma in (0, 1)): the
  noisiest point of the chain at which the handed-over image is at least as reliable."""
  if not 0.0 < gamma < 1.0:
    raise ValueError(f"gamma must lie in (0, 1) to choose a start step, got {gamma}")
  alphas_cumprod = np.asarray(alphas_cumprod, np.float64)
  snr = alphas_cumprod / (1.0 - alphas_cumprod)
  target = (gamma / (1.0 - gamma))**2
  return int(max(np.searchsorted(-snr, -target, side="right") - 1, 0))


@dataclasses.dataclass(frozen=True)
class LowResInput:
  """The extra input of a conditional stage (Ho et al. 2022, "Cascaded Diffusion Models",
  sec. 3 and 4.3): the upsampled low-resolution image, noised by the stage's own forward
  process to a step s, c = q(c_s | c_0 = up(x_low)), stacked on x_t as channels, with s as
  a second time input. Training draws s ~ U{0, ..., max_train_step} with x_low the training
  image shrunk to the earlier stage's size; sampling uses one fixed s on that stage's
  output. The noise ("conditioning augmentation") teaches the stage not to copy the
  defects of x_low; the model is told s, so it knows how far to trust c.
  """
  size: int                # the resolution of the stage before
  upsample: str
  max_train_step: int
  sample_step: int

  @classmethod
  def from_config(cls, config) -> Optional["LowResInput"]:
    """None unless model.low_res_size > 0; the noise fields are fractions of T - 1."""
    if not config.model.low_res_size:
      return None
    last = config.diffusion.num_steps - 1
    return cls(config.model.low_res_size, config.sample.upsample,
               round(config.train.low_res_noise_max * last),
               round(config.sample.low_res_noise * last))

  def condition(self, schedule: Schedule, low_res, size: int, step, noise) -> dict:
    """The network's extra inputs {low_res: c_s [B, size, size, C], low_res_step: s [B]}."""
    up = upsample(low_res, size, self.upsample)
    return {"low_res": diffusion.q_sample(schedule, up, step, noise), "low_res_step": step}

  def for_training(self, schedule: Schedule, x0, rng) -> dict:
    """The extra inputs for training images x0 [B, H, W, C]: shrunk, upsampled, noised."""
    step_rng, noise_rng = jax.random.split(rng)
    step = jax.random.randint(step_rng, x0.shape[:1], 0, self.max_train_step + 1)
    noise = jax.random.normal(noise_rng, x0.shape, x0.dtype)
    return self.condition(schedule, shrink(x0, self.size), x0.shape[1], step, noise)

  def for_sampling(self, schedule: Schedule, low_res, noise) -> dict:
    """The extra inputs for the stage before's output low_res [B, h, w, C] in [-1, 1]."""
    step = jnp.full(low_res.shape[:1], self.sample_step, jnp.int32)
    return self.condition(schedule, low_res, noise.shape[1], step, noise)
