"""Weights & Biases beside CLU's writers (train.wandb_project): a metric writer that sends
what the training loop logs (scalars, sample grids, the config) to a W&B run, one run per
model or cascade stage. Process 0 only; WANDB_MODE=offline keeps the run on disk. And the
config flattened for hyper-parameter logs (W&B and CLU's)."""
from __future__ import annotations

from typing import Any, Mapping

import jax
import ml_collections
import numpy as np

from hdd import writers


class WandbWriter(writers.IgnoringWriter):
  """Logs to the W&B run `name` of `project`, its files under `directory`."""

  def __init__(self, project: str, name: str, config: Mapping[str, Any], directory: str):
    import wandb
    self.wandb = wandb
    self.run = wandb.init(project=project, name=name, config=dict(config), dir=directory,
                          reinit="finish_previous")

  def write_scalars(self, step: int, scalars: Mapping[str, float]):
    self.run.log({k: float(v) for k, v in scalars.items()}, step=step)

  def write_images(self, step: int, images: Mapping[str, np.ndarray]):
    self.run.log({k: [self.wandb.Image(np.asarray(i)) for i in v] for k, v in images.items()},
                 step=step)

  def write_hparams(self, hparams: Mapping[str, Any]):
    self.run.config.update(dict(hparams), allow_val_change=True)

  def write_texts(self, step: int, texts: Mapping[str, str]):
    self.run.log(dict(texts), step=step)

  def close(self):
    self.run.finish()


def writers(config, workdir: str, name: str) -> list:
  """The tracking writers a train section asks for (none, or W&B on process 0)."""
  if not config.train.wandb_project or jax.process_index() != 0:
    return []
  return [WandbWriter(config.train.wandb_project, name, flatten_config(config), workdir)]


def flatten_config(config: ml_collections.ConfigDict, prefix: str = "") -> dict:
  """{'train.batch_size': 128, ...}, with tuples as strings, for hyper-parameter logs."""
  flat = {}
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      flat.update(flatten_config(value, f"{prefix}{key}."))
    else:
      flat[prefix + key] = value if isinstance(value, (int, float, str, bool)) else str(value)
  return flat
