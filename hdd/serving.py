"""Sampling on request from a trained workdir, for the web app (`hdd.app`) and any other
front end: the EMA parameters are restored once, the sampling chains of the last few
settings are compiled once and kept, and every request is checked before anything runs.

A request sets what a person varies between samples: the sampler and its steps per
stage, a cascade's hand-over into each later stage, the guidance weight and class of a
conditional model, the seed and the number of images. Everything else (the networks,
schedules and the rest of the chain settings) is the workdir's own config.
"""
from __future__ import annotations

import collections
import copy
import dataclasses
import io
import json
import math
import os
from typing import Callable, Optional

import ml_collections
import numpy as np
from PIL import Image

from common import images
from common.errors import UserError
from hdd import cascade, checkpoints, config_checks, generate, pictures, run, stages
from hdd.maths.handover import HANDOVERS
from hdd.plan import SamplingPlan
from hdd.maths.sampling import SAMPLERS

MAX_IMAGES = 64             # per request: a page shows them, a CPU samples them in seconds
ANIMATION_FRAMES = 12       # recorded states of the chain per stage in the animation
# Compiled chains kept, the most recently used (one per stage, setting and batch size; the
# seed, class, guidance weight and mix gamma are inputs, see generate.program_key): each
# holds a compiled program in memory.
MAX_CHAINS = 6
Progress = Callable[[float, str], None]


class RequestError(UserError):
  pass


class LeastRecentlyUsed(collections.OrderedDict):
  """A dict that keeps at most `size` entries: adding one more forgets the entry read or
  written longest ago."""

  def __init__(self, size: int):
    super().__init__()
    self.size = size

  def __getitem__(self, key):
    value = super().__getitem__(key)
    self.move_to_end(key)
    return value

  def __setitem__(self, key, value):
    super().__setitem__(key, value)
    self.move_to_end(key)
    while len(self) > self.size:
      self.popitem(last=False)


@dataclasses.dataclass(frozen=True)
class Request:
  sampler: str = "ddim"                 # every stage: ddpm (all T steps) | ddim
  steps: tuple[int, ...] = ()           # DDIM steps per stage (0 = T); () = the config's
  handover: str = ""                    # later stages: mix | truncate; "" = the config's
  gamma: float = 0.3                    # mix weight, or truncate's SNR-matched t*
  start_step: int = -1                  # truncate: t*; -1 = the step with gamma's SNR
  guidance: float = 0.0                 # classifier-free guidance weight w (every stage)
  label: int = -1                       # class of every image; -1 = all classes in turn
  seed: int = 0
  num_images: int = 16


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a workdir was trained with (its config.json, lists read back as tuples,
  fields added since it was written at the values that mean what their absence did)."""
  path = os.path.join(workdir, "config.json")
  if not os.path.isdir(workdir):
    raise RequestError(f"no directory {workdir}; give the --workdir of a trained model")
  if not os.path.exists(path):
    raise RequestError(f"{workdir} holds no config.json: it is not a trained model's workdir "
                       "(or one trained before config.json was kept: pass its --config)")
  try:
    with open(path) as f:
      tree = json.load(f)
  except (OSError, ValueError) as e:
    raise RequestError(f"cannot read {path} ({e}); restore it or pass --config") from None

  def tuples(value):
    if isinstance(value, dict):
      return {key: tuples(v) for key, v in value.items()}
    return tuple(tuples(v) for v in value) if isinstance(value, list) else value

  if "diffusion" not in tree and "stages" not in tree:
    raise RequestError(f"{path} is not the config of a diffusion model or cascade")
  for model in tree["stages"].values() if "stages" in tree else [tree]:
    for field, value in checkpoints.ADDED_FIELDS.items():
      section, key = field.split(".")
      model.get(section, {}).setdefault(key, value)
  return ml_collections.ConfigDict(tuples(tree))


@dataclasses.dataclass
class Generated:
  outputs: dict                 # {stage: uint8 [N, h, w, C]}; a single model: {"model": ...}
  labels: Optional[np.ndarray]
  animation: list               # uint8 frames [H, W, C] of the first image's chains
  report: dict                  # per stage: sampler, evaluations, compile and sample seconds

  @property
  def images(self) -> np.ndarray:
    return list(self.outputs.values())[-1]


class Served:
  """A trained model or cascade, ready to sample."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str, params=None):
    """`params`: the EMA parameters ({stage: parameters} of a cascade); None restores
    them from `workdir`."""
    config_checks.check_config(config)
    self.config, self.workdir = config, workdir
    self.params = run.restore(config, workdir) if params is None else params
    self.compiled = LeastRecentlyUsed(MAX_CHAINS)   # generate.sample_images' chains.

  @classmethod
  def load(cls, workdir: str, config: Optional[ml_collections.ConfigDict] = None) -> "Served":
    return cls(config if config is not None else load_config(workdir), workdir)

  @property
  def is_cascade(self) -> bool:
    return stages.is_cascade(self.config)

  @property
  def stage_names(self) -> list[str]:
    return stages.stage_names(self.config) if self.is_cascade else ["model"]

  @property
  def num_classes(self) -> int:
    return stages.class_count(self.config)

  def chain(self, name: str) -> ml_collections.ConfigDict:
    """The single-model config of a stage (or of the model)."""
    return stages.stage_config(self.config, name) if self.is_cascade else self.config

  @property
  def conditional_stages(self) -> list[str]:
    """The stages that see the class: guidance and class apply to these only."""
    return [name for name in self.stage_names if self.chain(name).model.num_classes]

  def describe(self) -> str:
    """One line: what is served, for the page."""
    parts = [f"{name} {self.chain(name).data.image_size}px T={self.chain(name).diffusion.num_steps}"
             for name in self.stage_names]
    kind = f"cascade of {len(parts)} stages" if self.is_cascade else "single model"
    classes = f", {self.num_classes} classes" if self.num_classes else ", unconditional"
    return f"{self.workdir}: {kind} ({'; '.join(parts)}){classes}"

  def defaults(self) -> Request:
    """The request that samples as the config does."""
    chains = [self.chain(name).sample for name in self.stage_names]
    later = chains[1] if len(chains) > 1 else None
    return Request(sampler=chains[0].sampler, steps=tuple(c.num_steps for c in chains),
                   handover=later.handover if later else "",
                   gamma=later.gamma if later else 0.3,
                   start_step=later.start_step if later else -1,
                   guidance=(self.chain(self.conditional_stages[-1]).sample.guidance_scale
                             if self.num_classes else 0.0),
                   label=self.config.sample.label, seed=self.config.sample.seed)

  def config_for(self, request: Request) -> ml_collections.ConfigDict:
    """The workdir's config with the request's settings; RequestError when one is out of
    range (the message names the control, its value and what it may be)."""
    if request.sampler not in SAMPLERS:
      raise RequestError(f"sampler {request.sampler!r}: must be one of {', '.join(SAMPLERS)}")
    if not 1 <= request.num_images <= MAX_IMAGES:
      raise RequestError(f"number of images {request.num_images}: must lie in [1, {MAX_IMAGES}]")
    if request.seed < 0:
      raise RequestError(f"seed {request.seed}: must be >= 0")
    if request.steps and len(request.steps) != len(self.stage_names):
      raise RequestError(f"{len(request.steps)} step counts for {len(self.stage_names)} stages")
    if request.handover and request.handover not in HANDOVERS:
      raise RequestError(f"hand-over {request.handover!r}: must be one of {', '.join(HANDOVERS)}")
    if not self.num_classes and (request.guidance or request.label != -1):
      raise RequestError("guidance and class need a class-conditional model; this one is "
                         "unconditional")
    if not -1 <= request.label < max(self.num_classes, 1):
      raise RequestError(f"class {request.label}: must lie in [-1, {self.num_classes - 1}] "
                         "(-1 = every class in turn)")
    for name, value in (("guidance weight", request.guidance), ("gamma", request.gamma)):
      if not math.isfinite(value):
        raise RequestError(f"{name} {value}: must be a finite number")
    if request.guidance < 0:
      raise RequestError(f"guidance weight {request.guidance}: must be >= 0")
    config = copy.deepcopy(self.config)
    config.unlock()
    config.sample.update(seed=request.seed, label=request.label, num_samples=request.num_images,
                         batch_size=min(request.num_images, 16), trajectory_images=1)
    chains = ([config.stages[name].sample for name in self.stage_names] if self.is_cascade
              else [config.sample])
    conditional = self.conditional_stages
    for index, (name, chain) in enumerate(zip(self.stage_names, chains)):
      num_train_steps = self.chain(name).diffusion.num_steps
      steps = request.steps[index] if request.steps else chain.num_steps
      if not 0 <= steps <= num_train_steps:
        raise RequestError(f"{name} steps {steps}: must lie in [0, {num_train_steps}] (0 = all "
                           f"T = {num_train_steps})")
      chain.update(sampler=request.sampler, num_steps=steps)
      if name in conditional:
        chain.guidance_scale = request.guidance
      elif self.is_cascade:
        chain.label = -1   # The class of the cascade's conditional stages is not this one's.
      if index:
        self.set_handover(chain, request, name, num_train_steps)
    visited = max(self.chain(name).diffusion.num_steps for name in self.stage_names)
    if request.sampler == "ddim":
      visited = max(s or visited for s in (request.steps or [c.num_steps for c in chains]))
    config.sample.trajectory_every = max(1, visited // ANIMATION_FRAMES)
    try:
      config_checks.check_config(config)
    except UserError as e:
      raise RequestError(str(e)) from None
    return config

  @staticmethod
  def set_handover(chain, request: Request, name: str, num_train_steps: int) -> None:
    if request.handover:
      chain.handover = request.handover
    if chain.handover == "mix" and not 0.0 <= request.gamma <= 1.0:
      raise RequestError(f"gamma {request.gamma}: must lie in [0, 1]")
    if chain.handover == "truncate" and not (0.0 < request.gamma < 1.0 or
                                              request.start_step >= 0):
      raise RequestError(f"gamma {request.gamma}: truncate needs gamma in (0, 1) or a t*")
    if not -1 <= request.start_step < num_train_steps:
      raise RequestError(f"{name} t* {request.start_step}: must lie in [-1, "
                         f"{num_train_steps - 1}] (-1 = the step with gamma's SNR)")
    chain.update(gamma=request.gamma, start_step=request.start_step)

  def generate(self, request: Request, progress: Optional[Progress] = None) -> Generated:
    """Samples the request's images (compiling its chains the first time only)."""
    config = self.config_for(request)
    plans = (cascade.stage_plans(config) if self.is_cascade
             else {"model": SamplingPlan.create(config)})
    params = self.params if self.is_cascade else {"model": self.params}
    outputs, report, trajectories = cascade.sample_cascade(
        config, params, request.num_images, plans=plans, compiled=self.compiled,
        progress=progress)
    labels = generate.class_labels(config, request.num_images)
    return Generated(outputs, labels, animation_frames(trajectories), report)


def animation_frames(trajectories: dict) -> list:
  """The first image's chain through every stage, each frame at the final resolution
  magnified for display."""
  final_size = list(trajectories.values())[-1].shape[2]
  frames = []
  for trajectory in trajectories.values():
    for frame in pictures.enlarge(trajectory[:, 0], final_size):
      frames.append(pictures.for_display(frame, final_size))
  return frames


def gif_bytes(frames: list, frame_ms: int = 120, hold_last: int = 8) -> bytes:
  """An endlessly looping GIF of uint8 frames [H, W, 1|3], the last one shown
  `hold_last` times as long."""
  pictures = [Image.fromarray(images.without_gray_axis(f)) for f in frames]
  buffer = io.BytesIO()
  pictures[0].save(buffer, format="GIF", save_all=True, append_images=pictures[1:],
                   duration=[frame_ms] * (len(frames) - 1) + [frame_ms * hold_last], loop=0)
  return buffer.getvalue()


def draw(generated: Generated) -> dict:
  """{'grid': the final images (a row per class), 'stages': each image's stages side by
  side with labelled columns (a single model: the grid)}, drawn for people."""
  final = generated.images
  grid = pictures.for_display(pictures.sample_grid(final, generated.labels), final.shape[1])
  if len(generated.outputs) == 1:
    return {"grid": grid, "stages": grid}
  return {"grid": grid, "stages": pictures.cascade_picture(generated.outputs)}


def save_outputs(generated: Generated, drawn: dict, directory: str) -> dict:
  """Writes a request's files for download: grid.png (`drawn` by `draw`),
  samples.npz (the final images and labels, and every stage's), chain.gif; returns
  {name: path}."""
  os.makedirs(directory, exist_ok=True)
  final = generated.images
  paths = {name: os.path.join(directory, name) for name in ("grid.png", "samples.npz",
                                                            "chain.gif")}
  images.save_png(paths["grid.png"], drawn["grid"])
  arrays = {"images": final, **{f"stage_{k}": v for k, v in generated.outputs.items()}}
  if generated.labels is not None:
    arrays["labels"] = generated.labels
  images.save_npz(paths["samples.npz"], arrays)
  with open(paths["chain.gif"], "wb") as f:
    f.write(gif_bytes(generated.animation))
  return paths


def timing_markdown(report: dict) -> str:
  """The per-stage timing of a request as a markdown table."""
  lines = ["| stage | size | sampler | evals / image | sample s | compile s |",
           "|---|---|---|---|---|---|"]
  for stage in report["stages"]:
    lines.append(f"| {stage['stage']} | {stage['resolution']} | {stage['sampler']} | "
                 f"{stage['network_evaluations_per_image']} | {stage['sample_seconds']:.2f} | "
                 f"{stage['compile_seconds']:.2f} |")
  lines.append(f"| total | | | | {report['sample_seconds']:.2f} | "
               f"{sum(s['compile_seconds'] for s in report['stages']):.2f} |")
  return "\n".join(lines)
