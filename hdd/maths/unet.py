"""The denoising U-Net (Ho et al. 2020, appendix B; Dhariwal & Nichol 2021 for the options).

Input: a noisy image x_t [B, H, W, C], its step t [B] and optionally a class label [B]
(or class weights [B, C + 1]); a conditional cascade stage also takes the noised, upsampled
low-resolution image [B, H, W, C] and its noise step [B] (`hdd.maths.handover.LowResInput`).
Output: the same shape as x_t (the eps, x0 or v prediction, by config).
Each level of `channel_mult` halves the resolution once, except the last one, so an
image side must be divisible by 2**(len(channel_mult) - 1).
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Dtype = Any


def timestep_embedding(t: jnp.ndarray, dim: int, max_period: float = 10_000.0) -> jnp.ndarray:
  """Sinusoidal embedding of the step t (Vaswani et al. 2017), [B] -> [B, dim]."""
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  args = t.astype(jnp.float32)[:, None] * freqs[None, :]
  embedding = jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)
  if dim % 2:
    embedding = jnp.pad(embedding, ((0, 0), (0, 1)))
  return embedding


def _dot(a, b, a_axis: int, b_axis: int):
  """a contracted with b over one axis each, at HIGHEST precision (no bfloat16 or TF32
  rounding of the operands). lax.dot_general rather than jnp.einsum: einsum is a jitted
  function, and each call traced into a nested program that slowed every trace of the
  U-Net (GroupNorm was half of it); the product and its result are the same."""
  return jax.lax.dot_general(a, b, (((a_axis,), (b_axis,)), ((), ())),
                             precision=jax.lax.Precision.HIGHEST)


def _groups(channels: int, max_groups: int) -> int:
  """The largest group count <= max_groups that divides `channels`."""
  return math.gcd(channels, max_groups)


class GroupNorm(nn.Module):
  """Group normalisation (Wu & He 2018, eq. 1) of [B, ..., C] over pixels and the channels
  of each group: y = (x - mean) / sqrt(var + epsilon) * scale + bias.

  The parameters (float32 `scale` and `bias`), epsilon and the float32 arithmetic
  (var = E[x^2] - E[x]^2, then (x - mean) * scale / sigma + bias) are those of
  flax.linen.GroupNorm, so checkpoints load in either; `dtype` is the output's (flax
  infers it from the input when not given). The group means are matrix products (pixels
  with a weights vector, channels with a [C, G] membership matrix) rather than reductions:
  on XLA:CPU that made the train step 1.03-1.11x faster (medians of alternating rounds,
  docs/speed.md); it is not measured on GPUs or TPUs. HIGHEST precision keeps them from
  rounding the operands to bfloat16 or TF32.
  """
  num_groups: int
  epsilon: float = 1e-6
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    channels = x.shape[-1]
    if channels % self.num_groups:
      raise ValueError(f"{channels} channels cannot form {self.num_groups} equal groups")
    scale = self.param("scale", nn.initializers.ones, (channels,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (channels,), jnp.float32)
    flat = x.reshape(x.shape[0], -1, channels).astype(jnp.float32)          # [B, P, C]
    count = flat.shape[1] * (channels // self.num_groups)
    weights = np.full((flat.shape[1],), 1.0 / count, np.float32)        # mean over a group
    membership = np.repeat(np.eye(self.num_groups, dtype=np.float32),
                           channels // self.num_groups, axis=0)                 # [C, G]
    group_mean = lambda values: _dot(_dot(values, weights, 1, 0), membership, 1, 0)
    mean, mean_of_squares = group_mean(flat), group_mean(flat * flat)
    variance = jnp.maximum(mean_of_squares - mean * mean, 0.0)
    per_channel = lambda per_group: _dot(per_group, membership, 1, 1)[:, None, :]
    multiplier = per_channel(jax.lax.rsqrt(variance + self.epsilon)) * scale
    y = (flat - per_channel(mean)) * multiplier + bias
    return y.reshape(x.shape).astype(self.dtype)


class ResBlock(nn.Module):
  """GroupNorm-SiLU-Conv twice, with the time embedding added in between and dropout."""
  out_channels: int
  dropout: float
  norm_groups: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, temb, train: bool):
    h = GroupNorm(_groups(x.shape[-1], self.norm_groups), dtype=self.dtype)(x)
    h = nn.Conv(self.out_channels, (3, 3), dtype=self.dtype)(nn.silu(h))
    h = h + nn.Dense(self.out_channels, dtype=self.dtype)(nn.silu(temb))[:, None, None, :]
    h = GroupNorm(_groups(self.out_channels, self.norm_groups), dtype=self.dtype)(h)
    h = nn.Dropout(self.dropout, deterministic=not train)(nn.silu(h))
    h = nn.Conv(self.out_channels, (3, 3), dtype=self.dtype,
                kernel_init=nn.initializers.zeros)(h)
    if x.shape[-1] != self.out_channels:
      x = nn.Conv(self.out_channels, (1, 1), dtype=self.dtype)(x)
    return x + h


class AttentionBlock(nn.Module):
  """Multi-head self-attention over all pixels, with a residual connection."""
  num_heads: int
  norm_groups: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    batch, height, width, channels = x.shape
    h = GroupNorm(_groups(channels, self.norm_groups), dtype=self.dtype)(x)
    h = h.reshape(batch, height * width, channels)
    h = nn.MultiHeadDotProductAttention(
        num_heads=self.num_heads, dtype=self.dtype, out_kernel_init=nn.initializers.zeros)(h)
    return x + h.reshape(batch, height, width, channels)


class Downsample(nn.Module):
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    return nn.Conv(x.shape[-1], (3, 3), strides=(2, 2), dtype=self.dtype)(x)


class Upsample(nn.Module):
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    batch, height, width, channels = x.shape
    x = jax.image.resize(x, (batch, 2 * height, 2 * width, channels), "nearest")
    return nn.Conv(channels, (3, 3), dtype=self.dtype)(x)


class UNet(nn.Module):
  """DDPM U-Net with configurable widths, depth, attention resolutions and class labels.

  Attributes:
    base_channels: width of the first level; level i has base_channels * channel_mult[i].
    channel_mult: one multiplier per resolution level.
    num_res_blocks: ResBlocks per level on the way down (one more on the way up).
    attention_resolutions: image sides (e.g. (16,)) at which self-attention is used.
    num_classes: > 0 adds a label embedding; label == num_classes is the "no label" token
      that classifier-free guidance uses. A label may also be a [B, C + 1] row of class
      weights, which mixes the embeddings (class interpolation).
    low_res_input: the model also takes `low_res`, stacked on x as channels, and its noise
      step `low_res_step`, embedded like t and added to the time embedding (Cascaded
      Diffusion Models, Ho et al. 2022).
    dtype: computation dtype (bfloat16 for mixed precision); parameters stay float32.
  """
  out_channels: int
  base_channels: int = 64
  channel_mult: Sequence[int] = (1, 2, 2)
  num_res_blocks: int = 2
  attention_resolutions: Sequence[int] = ()
  num_heads: int = 1
  dropout: float = 0.0
  norm_groups: int = 32
  num_classes: int = 0
  low_res_input: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, t, label: Optional[jnp.ndarray] = None, train: bool = False,
               low_res: Optional[jnp.ndarray] = None,
               low_res_step: Optional[jnp.ndarray] = None):
    levels = len(self.channel_mult)
    factor = 2**(levels - 1)
    if x.shape[1] % factor or x.shape[2] % factor:
      raise ValueError(f"image size {x.shape[1]}x{x.shape[2]} is not divisible by {factor}, "
                       f"which channel_mult={tuple(self.channel_mult)} needs")
    temb_dim = 4 * self.base_channels
    temb = timestep_embedding(t, self.base_channels)
    temb = nn.Dense(temb_dim, dtype=self.dtype)(temb)
    temb = nn.Dense(temb_dim, dtype=self.dtype)(nn.silu(temb))
    if self.low_res_input:
      if low_res is None or low_res_step is None:
        raise ValueError("this U-Net is conditioned on a low-resolution image: pass low_res "
                         "and low_res_step")
      x = jnp.concatenate([x, low_res.astype(x.dtype)], axis=-1)
      step_embedding = timestep_embedding(low_res_step, self.base_channels)
      step_embedding = nn.Dense(temb_dim, dtype=self.dtype)(step_embedding)
      temb = temb + nn.Dense(temb_dim, dtype=self.dtype)(nn.silu(step_embedding))
    if self.num_classes > 0:
      if label is None:
        label = jnp.full(t.shape, self.num_classes, jnp.int32)
      embed = nn.Embed(self.num_classes + 1, temb_dim, dtype=self.dtype)
      if label.ndim == 2:  # Class weights [B, C + 1]: a mixture of the class embeddings.
        temb = temb + jnp.dot(label.astype(self.dtype), embed.embedding.astype(self.dtype))
      else:
        temb = temb + embed(label)

    block = dict(dropout=self.dropout, norm_groups=self.norm_groups, dtype=self.dtype)
    attention = dict(num_heads=self.num_heads, norm_groups=self.norm_groups, dtype=self.dtype)
    h = nn.Conv(self.base_channels, (3, 3), dtype=self.dtype)(x.astype(self.dtype))
    skips = [h]
    for level, mult in enumerate(self.channel_mult):
      for _ in range(self.num_res_blocks):
        h = ResBlock(self.base_channels * mult, **block)(h, temb, train)
        if h.shape[1] in self.attention_resolutions:
          h = AttentionBlock(**attention)(h)
        skips.append(h)
      if level != levels - 1:
        h = Downsample(dtype=self.dtype)(h)
        skips.append(h)

    h = ResBlock(h.shape[-1], **block)(h, temb, train)
    h = AttentionBlock(**attention)(h)
    h = ResBlock(h.shape[-1], **block)(h, temb, train)

    for level, mult in reversed(list(enumerate(self.channel_mult))):
      for _ in range(self.num_res_blocks + 1):
        h = jnp.concatenate([h, skips.pop()], axis=-1)
        h = ResBlock(self.base_channels * mult, **block)(h, temb, train)
        if h.shape[1] in self.attention_resolutions:
          h = AttentionBlock(**attention)(h)
      if level != 0:
        h = Upsample(dtype=self.dtype)(h)

    h = nn.silu(GroupNorm(_groups(h.shape[-1], self.norm_groups), dtype=self.dtype)(h))
    h = nn.Conv(self.out_channels, (3, 3), dtype=self.dtype, kernel_init=nn.initializers.zeros)(h)
    return h.astype(jnp.float32)


def count_params(params) -> int:
  return sum(x.size for x in jax.tree_util.tree_leaves(params))
