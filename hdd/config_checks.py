"""Start-up validation of a config, before any data is read or anything is compiled.

`check_config` raises ConfigError with one line per problem: the field, its value
and what is allowed. (Unknown keys are already refused by ml_collections' locked configs.)
"""
from __future__ import annotations

import math
from typing import Optional

import jax
import ml_collections

from common.errors import ConfigError
from evaluation import classifier_recipe
from hdd import stages
from hdd.maths.diffusion import DDPM_VARIANCES, PREDICTIONS
from hdd.maths.handover import HANDOVERS, UPSAMPLING
from hdd.maths.sampling import SAMPLERS
from hdd.maths.schedules import SCHEDULE_KINDS
from input_pipeline.sources import CROPS, SOURCES

# A wall-clock budget beyond this is a typo; 1e308 minutes overflowed the first log line.
MAX_BUDGET_MINUTES = 365 * 24 * 60
MAX_STEPS = 2**31 - 1   # The train state's step counter is int32.


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
  for field, value in _leaves(config):
    if isinstance(value, float) and not math.isfinite(value):
      problems.append(f"{field}={value!r}: must be a finite number")
  for field in ("model.channel_mult", "model.attention_resolutions"):
    section, key = field.split(".")
    value = config[section][key]
    need(isinstance(value, (tuple, list)) and all(isinstance(v, int) for v in value), field,
         "must be a tuple of ints, e.g. (1, 2, 2)")
  if problems:  # The checks below assume finite numbers and these types.
    return problems
  need(0 <= config.seed < 2**32, "seed", "must lie in [0, 2**32)")
  need(0 <= s.seed < 2**32, "sample.seed", "must lie in [0, 2**32)")
  one_of("data.source", SOURCES)
  one_of("data.crop", CROPS)
  one_of("data.bad_images", ("error", "skip"))
  one_of("data.channels", (1, 3))
  need(d.source != "tfds" or bool(d.name), "data.name", "needs a tfds dataset name")
  need(d.source == "tfds" or bool(d.path), "data.path", f"needs a path for source={d.source}")
  need(isinstance(d.eval_path, str) and (d.source != "tfds" or not d.eval_path),
       "data.eval_path", "must be a file or folder of the eval split, and only with "
       "data.source=npz|idx|folder (tfds reads data.eval_split itself)")
  need(isinstance(d.image_size, int) and d.image_size >= 4, "data.image_size", "must be >= 4")
  factor = 2**(len(m.channel_mult) - 1)
  need(len(m.channel_mult) >= 1 and all(c >= 1 for c in m.channel_mult), "model.channel_mult",
       "must be a non-empty tuple of positive ints")
  need(d.image_size % factor == 0, "data.image_size",
       f"must be divisible by {factor} (2**(len(model.channel_mult)-1)); change the size or "
       "use fewer levels")
  # Upper bounds on sizes that become Python loops or host arrays: a typo such as
  # num_res_blocks=536870913 must be refused here, not hang the model's construction.
  need(1 <= m.base_channels <= 4096, "model.base_channels", "must lie in [1, 4096]")
  need(1 <= m.num_res_blocks <= 64, "model.num_res_blocks", "must lie in [1, 64]")
  need(len(m.channel_mult) <= 8 and all(c <= 64 for c in m.channel_mult), "model.channel_mult",
       "must have at most 8 levels, each multiplier at most 64")
  need(m.num_heads >= 1 and m.base_channels % m.num_heads == 0, "model.num_heads",
       "must be >= 1 and divide model.base_channels")
  need(0.0 <= m.dropout < 1.0, "model.dropout", "must lie in [0, 1)")
  need(m.norm_groups >= 1, "model.norm_groups", "must be >= 1")
  need(0 <= m.num_classes <= 100_000, "model.num_classes", "must lie in [0, 100000]")
  one_of("diffusion.schedule", SCHEDULE_KINDS)
  one_of("diffusion.prediction", PREDICTIONS)
  need(1 <= f.num_steps <= 100_000, "diffusion.num_steps", "must lie in [1, 100000]")
  need(0.0 < f.beta_start < f.beta_end < 1.0, "diffusion.beta_start",
       f"need 0 < beta_start < beta_end < 1 (beta_end={f.beta_end})")
  need(1 <= t.num_steps <= MAX_STEPS, "train.num_steps",
       f"must lie in [1, {MAX_STEPS}] (the step counter is int32)")
  need(t.time_budget_minutes >= 0, "train.time_budget_minutes", "must be >= 0 (0 = no budget)")
  need(t.time_budget_minutes <= MAX_BUDGET_MINUTES, "train.time_budget_minutes",
       f"must be a finite number of minutes, at most {MAX_BUDGET_MINUTES} (a year)")
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
  need(0 <= t.warmup_steps <= MAX_STEPS, "train.warmup_steps",
       f"must lie in [0, {MAX_STEPS}] (the step counter is int32)")
  need(t.weight_decay >= 0, "train.weight_decay", "must be >= 0")
  need(t.min_snr_gamma >= 0, "train.min_snr_gamma", "must be >= 0 (0 = the simple loss)")
  need(t.grad_clip >= 0, "train.grad_clip", "must be >= 0 (0 disables clipping)")
  need(0.0 <= t.ema_decay < 1.0, "train.ema_decay", "must lie in [0, 1)")
  need(0.0 <= t.label_dropout < 1.0, "train.label_dropout", "must lie in [0, 1)")
  need(0.0 <= t.low_res_noise_max <= 1.0, "train.low_res_noise_max",
       "must lie in [0, 1] (a fraction of the schedule's T - 1)")
  one_of("train.nonfinite", ("stop", "skip"))
  for field in ("log_every", "checkpoint_every", "keep_checkpoints"):
    need(t[field] >= 1, f"train.{field}", "must be >= 1")
  need(t.sample_every >= 0, "train.sample_every", "must be >= 0 (0 = never)")
  if t.wandb_project:
    import importlib.util
    need(importlib.util.find_spec("wandb") is not None, "train.wandb_project",
         "needs the wandb package: pip install -e \".[tracking]\" (or set it to '')")
  need(t.fid_every >= 0, "train.fid_every", "must be >= 0 (0 = never)")
  need(t.fid_samples >= 2, "train.fid_samples", "must be >= 2")
  one_of("sample.sampler", SAMPLERS)
  one_of("sample.ddpm_variance", DDPM_VARIANCES)
  need(0 <= s.num_steps <= f.num_steps, "sample.num_steps",
       f"must lie in [0, diffusion.num_steps={f.num_steps}] (0 = all)")
  need(s.eta >= 0, "sample.eta", "must be >= 0")
  need(s.num_samples >= 0, "sample.num_samples", "must be >= 0")
  need(s.batch_size >= 1, "sample.batch_size", "must be >= 1")
  need(s.trajectory_every >= 0, "sample.trajectory_every", "must be >= 0 (0 = off)")
  need(s.trajectory_images >= 1, "sample.trajectory_images", "must be >= 1")
  need(s.guidance_scale >= 0, "sample.guidance_scale", "must be >= 0")
  need(s.guidance_scale == 0 or m.num_classes > 0, "sample.guidance_scale",
       "needs a class-conditional model (model.num_classes > 0)")
  need(-1 <= s.label < max(m.num_classes, 0), "sample.label",
       f"must lie in [0, model.num_classes={m.num_classes}) or be -1 (every class)")
  pictures = config.pictures
  need(1 <= pictures.interpolation_pairs <= 64, "pictures.interpolation_pairs",
       "must lie in [1, 64]")
  need(2 <= pictures.interpolation_frames <= 64, "pictures.interpolation_frames",
       "must lie in [2, 64]")
  need(1 <= pictures.forward_images <= 64, "pictures.forward_images", "must lie in [1, 64]")
  need(isinstance(pictures.forward_steps, (tuple, list)) and len(pictures.forward_steps) <= 64
       and all(isinstance(t, int) and 0 <= t < f.num_steps for t in pictures.forward_steps),
       "pictures.forward_steps",
       f"must be at most 64 steps in [0, diffusion.num_steps={f.num_steps}), or () for 8")
  need(config.eval.num_examples >= 1, "eval.num_examples", "must be >= 1")
  need(config.eval.batch_size >= 1, "eval.batch_size", "must be >= 1")
  need(config.eval.classifier_classes >= 2, "eval.classifier_classes", "must be >= 2")
  need(config.eval.classifier_steps >= 1, "eval.classifier_steps", "must be >= 1")
  one_of("eval.classifier_recipe", ("", *classifier_recipe.RECIPES))
  need(config.eval.reference_examples >= 0, "eval.reference_examples", "must be >= 0 (0 = all)")
  return problems


def _stage_problems(config: ml_collections.ConfigDict, stage: stages.Stage,
                    previous: Optional[stages.Stage], final_size) -> list[str]:
  """A model's problems as a single model (a cascade stage's fields renamed to
  stages.<name>.*), plus those of its place in the chain: what it is handed over, what it
  conditions on, its resolution against the stages around it."""
  prefix, section = stage.field_prefix, stages.sections(config, stage.name)
  problems = []
  for problem in _problems(stage.config):
    field = problem.split("=", 1)[0]
    if field == "train.time_budget_minutes" and config.get("time_budget_minutes", 0) > 0:
      continue  # A share of the cascade's budget, which is checked with the run.
    part, _, key = field.partition(".")
    if prefix and (part in ("model", "diffusion", "train") or (part == "sample" and
                                                               key in section.sample)):
      problem = prefix + problem
    elif prefix and field == "data.image_size":
      problem = prefix + "image_size" + problem[len(field):]
    problems.append(problem)
  previous_size = previous.config.data.image_size if previous else 0
  low_res_size = section.model.low_res_size
  if low_res_size not in (0, previous_size):
    allowed = (f" or the previous stage's image_size ({previous_size}), to condition on "
               "its output" if previous else "; the first stage has no stage before it to "
               "condition on")
    problems.append(f"{prefix}model.low_res_size={low_res_size!r}: must be 0 "
                    f"(unconditional){allowed}")
  if "handover" in section.sample:   # The chain fields a cascade's stages have.
    problems += _handover_problems(section, prefix, previous_size)
  size = stage.config.data.image_size
  if previous and size <= previous_size:
    problems.append(f"{prefix}image_size={size!r}: stage resolutions must increase (previous "
                    f"stage: {previous_size})")
  if (isinstance(size, int) and isinstance(final_size, int) and size >= 1 and final_size >= 1
      and final_size % size):
    # Pictures show every stage at the final size by repeating pixels (pictures.enlarge).
    problems.append(f"{prefix}image_size={size!r}: must divide the last stage's image_size "
                    f"({final_size}){_divisors_below(final_size)}")
  return problems


def _handover_problems(section: ml_collections.ConfigDict, prefix: str,
                       previous_size: int) -> list[str]:
  """A cascade stage's hand-over fields (those of stage 1 are checked but unused)."""
  s, f, problems = section.sample, section.diffusion, []
  if s.handover not in HANDOVERS:
    problems.append(f"{prefix}sample.handover={s.handover!r}: must be one of {HANDOVERS}")
  if s.upsample not in UPSAMPLING:
    problems.append(f"{prefix}sample.upsample={s.upsample!r}: must be one of {UPSAMPLING}")
  if not 0.0 <= s.gamma <= 1.0:
    problems.append(f"{prefix}sample.gamma={s.gamma!r}: must lie in [0, 1]")
  if not -1 <= s.start_step < f.num_steps:
    problems.append(f"{prefix}sample.start_step={s.start_step!r}: must lie in [0, "
                    f"diffusion.num_steps={f.num_steps}) or be -1 (the step matching gamma)")
  if (previous_size and s.handover == "truncate" and s.start_step == -1 and
      not 0.0 < s.gamma < 1.0):
    problems.append(f"{prefix}sample.gamma={s.gamma!r}: truncate with start_step=-1 picks "
                    "t* from gamma, which must then lie in (0, 1)")
  if previous_size and s.handover == "noise" and not section.model.low_res_size:
    problems.append(f"{prefix}sample.handover='noise': an unconditional stage would ignore "
                    f"the stage before; set {prefix}model.low_res_size={previous_size} or "
                    "use mix or truncate")
  if not 0.0 <= s.low_res_noise <= 1.0:
    problems.append(f"{prefix}sample.low_res_noise={s.low_res_noise!r}: must lie in [0, 1] "
                    "(a fraction of the schedule's T - 1)")
  return problems


def _run_problems(config: ml_collections.ConfigDict, every: list) -> list[str]:
  """What belongs to the run as a whole: one set of classes, the final size, and the
  fields a cascade adds (its budget and its split, the stage to train, the filter)."""
  problems = []
  classes = {stages.sections(config, stage.name).model.num_classes for stage in every} - {0}
  if len(classes) > 1:
    problems.append(f"stages.*.model.num_classes={sorted(classes)}: the conditional stages of "
                    "a cascade must share one set of classes (or be 0, unconditional)")
  final_size = every[-1].config.data.image_size if every else None
  if every and config.data.image_size != final_size:
    problems.append(f"data.image_size={config.data.image_size!r}: must equal the last stage's "
                    f"image_size ({final_size})")
  budget = config.get("time_budget_minutes", 0.0)
  if budget < 0:
    problems.append(f"time_budget_minutes={budget!r}: must be >= 0 (0 = no budget, or the "
                    "stages' own train.time_budget_minutes)")
  if not budget <= MAX_BUDGET_MINUTES:
    problems.append(f"time_budget_minutes={budget!r}: must be a finite number of minutes, at "
                    f"most {MAX_BUDGET_MINUTES} (a year)")
  if budget > 0:
    fractions = [stages.sections(config, stage.name).budget_fraction for stage in every]
    if not all(0.0 < f <= 1.0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
      problems.append(f"stages.*.budget_fraction={fractions}: each must lie in (0, 1] and "
                      "together they must sum to 1")
    for stage in every:
      own = stages.sections(config, stage.name).train.time_budget_minutes
      if own:
        problems.append(f"{stage.field_prefix}train.time_budget_minutes={own!r}: set either "
                        "the cascade's time_budget_minutes or the stages' own budgets, not "
                        "both")
  if not 0 <= config.get("stage", 0) <= len(every):
    problems.append(f"stage={config.stage!r}: must lie in [0, {len(every)}] (0 = all stages)")
  if "filter" in config:
    if not 0.0 <= config.filter.threshold <= 1.0:
      problems.append(f"filter.threshold={config.filter.threshold!r}: must lie in [0, 1]")
    if config.filter.max_rounds < 0:
      problems.append(f"filter.max_rounds={config.filter.max_rounds!r}: must be >= 0")
  return problems


def _divisors_below(size: int) -> str:
  """': one of 4, 8, 16': the sizes an earlier stage may have, >= 4 (as data.image_size must
  be), below `size` and dividing it; '' for sizes too large to list quickly."""
  if size > 2**24:
    return ""
  small = [d for d in range(1, math.isqrt(size) + 1) if size % d == 0]
  sizes = sorted(d for d in set(small + [size // d for d in small]) if 4 <= d < size)
  if not sizes:
    return "; no smaller size >= 4 does, so use one stage or change the sizes"
  return ": one of " + ", ".join(map(str, sizes))


def _leaves(config: ml_collections.ConfigDict, prefix: str = ""):
  """(dotted field name, value) of every leaf of a config."""
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      yield from _leaves(value, f"{prefix}{key}.")
    else:
      yield prefix + key, value


def check_config(config: ml_collections.ConfigDict, mode: str = "train") -> None:
  """Raises ConfigError listing every problem, one per line, of running `mode` (a mode of
  main.py) with this config: every model's, in sampling order, then the run's."""
  every = stages.models(config)
  problems = [] if every else ["stages: a cascade needs at least one stage"]
  final_size = every[-1].config.data.image_size if every else None
  for previous, stage in zip([None] + every[:-1], every):
    problems += _stage_problems(config, stage, previous, final_size)
  problems += _run_problems(config, every)
  # 0 means "no sampling after training", which --mode=sample cannot honour (< 0 is refused
  # for every mode).
  if mode == "sample" and config.sample.num_samples == 0:
    problems.append(f"sample.num_samples={config.sample.num_samples!r}: must be >= 1 for "
                    "--mode=sample")
  if problems:
    raise ConfigError("\n".join(f"invalid config: {problem}"
                                for problem in dict.fromkeys(problems)))
