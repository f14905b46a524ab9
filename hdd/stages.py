"""Views of a hierarchical (cascaded) config: its stages, each as a single-model config.

A cascade config has `stages.stage1..N` (see `configs.default.make_cascade`); a single
model has none, and is treated as a cascade of one wherever that keeps code simple.
"""
from __future__ import annotations

import copy
import os

import ml_collections


def is_cascade(config: ml_collections.ConfigDict) -> bool:
  return "stages" in config


def stage_names(config: ml_collections.ConfigDict) -> list[str]:
  """The stages in sampling order (stage1, stage2, ..., stage10): by number, not as strings."""
  return sorted(config.stages.keys(), key=lambda name: (len(name), name))


def stage_config(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  """The single-model config of one stage: the shared data/sample/eval sections with the
  stage's resolution, model, schedule, training and chain settings; under a cascade budget
  (config.time_budget_minutes) the stage trains for its budget_fraction of it."""
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


def class_count(config: ml_collections.ConfigDict) -> int:
  """The classes a model, or the conditional stages of a cascade, are conditioned on (0:
  none). Every conditional stage is sampled with the same labels."""
  if not is_cascade(config):
    return config.model.num_classes
  return max(config.stages[name].model.num_classes for name in stage_names(config))


def stage_workdir(workdir: str, name: str) -> str:
  return os.path.join(workdir, name)


def stages_to_train(config: ml_collections.ConfigDict) -> list[str]:
  """All stages (config.stage = 0) or only stage k (config.stage = k, 1-based)."""
  names = stage_names(config)
  return names if config.stage == 0 else [names[config.stage - 1]]


def image_sizes(config: ml_collections.ConfigDict) -> list[int]:
  """The resolution of every stage, or the one of a single model."""
  if is_cascade(config):
    return [config.stages[name].image_size for name in stage_names(config)]
  return [config.data.image_size]
