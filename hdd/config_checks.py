"""Start-up validation of a config, before any data is read or anything is compiled.

`check_config` raises ConfigError with one line per problem: the field, its value
and what is allowed. (Unknown keys are already refused by ml_collections' locked configs.)
"""
from __future__ import annotations

import jax
import ml_collections

from hdd.diffusion import DDPM_VARIANCES, PREDICTIONS
from hdd.errors import ConfigError
from hdd.sampling import SAMPLERS
from hdd.schedules import SCHEDULE_KINDS
from input_pipeline.sources import CROPS, SOURCES


def _problems(config: ml_collections.ConfigDict) -> list[str]:
  problems = []

  def need(ok: bool, field: str, allowed: str):
    if not ok:
      value = config
      for part in field.split("."):
        value = value[part]
      problems.append(f"{field}={value!r}: {allowed}")

  def one_of(field: str, choices):
    value = config
    for part in field.split("."):
      value = value[part]
    need(value in choices, field, f"must be one of {tuple(choices)}")

  d, m, f, t, s = config.data, config.model, config.diffusion, config.train, config.sample
  one_of("data.source", SOURCES)
  one_of("data.crop", CROPS)
  one_of("data.channels", (1, 3))
  need(d.source != "tfds" or bool(d.name), "data.name", "needs a tfds dataset name")
  need(d.source == "tfds" or bool(d.path), "data.path", f"needs a path for source={d.source}")
  need(isinstance(d.image_size, int) and d.image_size >= 4, "data.image_size", "must be >= 4")
  factor = 2**(len(m.channel_mult) - 1)
  need(len(m.channel_mult) >= 1 and all(c >= 1 for c in m.channel_mult), "model.channel_mult",
       "must be a non-empty tuple of positive ints")
  need(d.image_size % factor == 0, "data.image_size",
       f"must be divisible by {factor} (2**(len(model.channel_mult)-1)); change the size or "
       "use fewer levels")
  need(all(r < d.image_size for r in d.extra_resolutions), "data.extra_resolutions",
       "must be smaller than data.image_size")
  need(m.base_channels >= 1, "model.base_channels", "must be >= 1")
  need(m.num_res_blocks >= 1, "model.num_res_blocks", "must be >= 1")
  need(m.num_heads >= 1 and m.base_channels % m.num_heads == 0, "model.num_heads",
       "must be >= 1 and divide model.base_channels")
  need(0.0 <= m.dropout < 1.0, "model.dropout", "must lie in [0, 1)")
  need(m.norm_groups >= 1, "model.norm_groups", "must be >= 1")
  need(m.num_classes >= 0, "model.num_classes", "must be >= 0")
  one_of("diffusion.schedule", SCHEDULE_KINDS)
  one_of("diffusion.prediction", PREDICTIONS)
  need(f.num_steps >= 1, "diffusion.num_steps", "must be >= 1")
  need(0.0 < f.beta_start < f.beta_end < 1.0, "diffusion.beta_start",
       f"need 0 < beta_start < beta_end < 1 (beta_end={f.beta_end})")
  need(t.num_steps >= 1, "train.num_steps", "must be >= 1")
  need(t.batch_size >= 1, "train.batch_size", "must be >= 1")
  need(t.grad_accum_steps >= 1 and t.batch_size % t.grad_accum_steps == 0,
       "train.grad_accum_steps", f"must be >= 1 and divide train.batch_size={t.batch_size}")
  micro = t.batch_size // max(t.grad_accum_steps, 1)
  need(micro % jax.device_count() == 0, "train.batch_size",
       f"each micro-batch ({micro}) must be divisible by the {jax.device_count()} devices")
  one_of("train.optimizer", ("adam", "adamw"))
  one_of("train.lr_schedule", ("cosine", "constant"))
  need(t.learning_rate > 0, "train.learning_rate", "must be > 0")
  need(0 <= t.min_learning_rate <= t.learning_rate, "train.min_learning_rate",
       "must lie in [0, train.learning_rate]")
  need(t.warmup_steps >= 0, "train.warmup_steps", "must be >= 0")
  need(t.grad_clip >= 0, "train.grad_clip", "must be >= 0 (0 disables clipping)")
  need(0.0 <= t.ema_decay < 1.0, "train.ema_decay", "must lie in [0, 1)")
  need(0.0 <= t.label_dropout < 1.0, "train.label_dropout", "must lie in [0, 1)")
  one_of("train.nonfinite", ("stop", "skip"))
  for field in ("log_every", "checkpoint_every", "keep_checkpoints"):
    need(t[field] >= 1, f"train.{field}", "must be >= 1")
  need(t.sample_every >= 0, "train.sample_every", "must be >= 0 (0 = never)")
  one_of("sample.sampler", SAMPLERS)
  one_of("sample.ddpm_variance", DDPM_VARIANCES)
  need(0 <= s.num_steps <= f.num_steps, "sample.num_steps",
       f"must lie in [0, diffusion.num_steps={f.num_steps}] (0 = all)")
  need(s.eta >= 0, "sample.eta", "must be >= 0")
  need(s.num_samples >= 0, "sample.num_samples", "must be >= 0")
  need(s.batch_size >= 1, "sample.batch_size", "must be >= 1")
  need(s.trajectory_every >= 0, "sample.trajectory_every", "must be >= 0 (0 = off)")
  need(s.guidance_scale >= 0, "sample.guidance_scale", "must be >= 0")
  need(s.guidance_scale == 0 or m.num_classes > 0, "sample.guidance_scale",
       "needs a class-conditional model (model.num_classes > 0)")
  need(s.label < m.num_classes, "sample.label", f"must be < model.num_classes={m.num_classes}")
  need(config.eval.num_examples >= 1, "eval.num_examples", "must be >= 1")
  need(config.eval.batch_size >= 1, "eval.batch_size", "must be >= 1")
  return problems


def check_config(config: ml_collections.ConfigDict) -> None:
  problems = _problems(config)
  if problems:
    raise ConfigError("\n".join(f"invalid config: {problem}" for problem in problems))
