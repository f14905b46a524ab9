"""Builds the U-Net and the noise schedule that a config describes."""
from __future__ import annotations

import jax.numpy as jnp
import ml_collections

from hdd.maths.schedules import Schedule
from hdd.maths.unet import UNet


def create_model(config: ml_collections.ConfigDict) -> UNet:
  m = config.model
  return UNet(out_channels=config.data.channels, base_channels=m.base_channels,
              channel_mult=tuple(m.channel_mult), num_res_blocks=m.num_res_blocks,
              attention_resolutions=tuple(m.attention_resolutions), num_heads=m.num_heads,
              dropout=m.dropout, norm_groups=m.norm_groups, num_classes=m.num_classes,
              low_res_input=m.low_res_size > 0,
              dtype=jnp.bfloat16 if config.train.mixed_precision else jnp.float32)


def create_schedule(diffusion_config: ml_collections.ConfigDict) -> Schedule:
  d = diffusion_config
  return Schedule.create(d.schedule, d.num_steps, d.beta_start, d.beta_end)
