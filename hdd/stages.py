"""The models of a config, in sampling order: one view for a single model and a cascade.

A cascade config has `stages.stage1..N` (see `configs.default.make_cascade`); each stage is
an ordinary single-model config (`stage_config`) with a workdir of its own under the run's.
A single model is a cascade of one: one stage, named SINGLE, whose config is the run's
config and whose workdir is the run's own. Everything that trains, restores, plans or
samples takes the list of `models`, so only this module tells the two kinds apart.
"""
from __future__ import annotations

import copy
import dataclasses

import ml_collections

from hdd import layout

SINGLE = "model"   # the name of a single model's one stage


@dataclasses.dataclass(frozen=True)
class Stage:
  """One model of a run."""
  name: str                           # stage1, stage2, ...; a single model: SINGLE
  config: ml_collections.ConfigDict   # its single-model config
  workdir: str                        # where its checkpoints and training timing live
  index: int                          # its place in sampling order (0: sampled from noise)
  field_prefix: str                   # its own fields in the run's config: '' or 'stages.<name>.'


def names(config: ml_collections.ConfigDict) -> list[str]:
  """The models in sampling order: a cascade's stages by number, not as strings (stage1,
  stage2, ..., stage10), or [SINGLE]. The one place that tells the two kinds apart."""
  if "stages" in config:
    return sorted(config.stages.keys(), key=lambda name: (len(name), name))
  return [SINGLE]


def sections(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  """The part of the run's config that holds model `name`'s own sections (model,
  diffusion, train, and its chain's sample fields), to read or edit in place."""
  return config if name == SINGLE else config.stages[name]


def all_sections(config: ml_collections.ConfigDict) -> list[ml_collections.ConfigDict]:
  """`sections` of every model, in sampling order."""
  return [sections(config, name) for name in names(config)]


def stage_config(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  """The single-model config of model `name`: a single model's is the config itself; a
  cascade stage's has the shared data/sample/eval sections with the stage's resolution,
  model, schedule, training and chain settings, and under a cascade budget
  (config.time_budget_minutes) the stage trains for its budget_fraction of it."""
  if name == SINGLE:
    return config
  stage = config.stages[name]
  single = ml_collections.ConfigDict()
  single.seed = config.seed
  single.data = copy.deepcopy(config.data)
  single.data.image_size = stage.image_size
  single.model = copy.deepcopy(stage.model)
  single.diffusion = copy.deepcopy(stage.diffusion)
  single.train = copy.deepcopy(stage.train)
  if config.get("time_budget_minutes", 0.0) > 0:
    single.train.time_budget_minutes = config.time_budget_minutes * stage.budget_fraction
  single.sample = ml_collections.ConfigDict({**config.sample.to_dict(),
                                             **stage.sample.to_dict()})
  single.eval = copy.deepcopy(config.eval)
  single.pictures = copy.deepcopy(config.pictures)
  return single


def models(config: ml_collections.ConfigDict, workdir: str = "") -> list[Stage]:
  """Every model of the config in sampling order, with its config and workdir."""
  return [Stage(name, stage_config(config, name),
                workdir if name == SINGLE else layout.stage_dir(workdir, name), index,
                "" if name == SINGLE else f"stages.{name}.")
          for index, name in enumerate(names(config))]


def to_train(config: ml_collections.ConfigDict, workdir: str = "") -> list[Stage]:
  """Every model, or only stage k of a cascade (config.stage = k, 1-based)."""
  every = models(config, workdir)
  chosen = config.get("stage", 0)
  return every if not chosen else [every[chosen - 1]]


def class_count(config: ml_collections.ConfigDict) -> int:
  """The classes the model, or the conditional stages of a cascade, are conditioned on
  (0: none). Every conditional stage is sampled with the same labels."""
  return max(section.model.num_classes for section in all_sections(config))


def image_sizes(config: ml_collections.ConfigDict) -> list[int]:
  """The resolution of every model, in sampling order."""
  return [stage.config.data.image_size for stage in models(config)]
