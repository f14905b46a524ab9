"""Sampling on request from a trained workdir, for the web page (`hdd.app.page`) and any
other front end: the EMA parameters are restored once, the sampling chains of the last few
settings are compiled once and kept, and every request is checked before anything runs.

A request sets what a person varies between samples: the sampler and its steps per
stage, the hand-over into each later stage, the guidance weight and class of a
conditional model, the seed and the number of images. Everything else (the networks,
schedules and the rest of the chain settings) is the workdir's own config. A single
model is served as a cascade of one stage (`hdd.stages.models`).
"""
from __future__ import annotations

import collections
import copy
import dataclasses
import io
import json
import os
import re
from typing import Callable, Optional

import ml_collections
import numpy as np
from PIL import Image

from common import images
from common.errors import UserError
from hdd import cascade, checkpoints, config_checks, generate, layout, pictures, stages

MAX_IMAGES = 64             # per request: a page shows them, a CPU samples them in seconds
# The first image's chain is recorded at every step; shown per stage are these many of its
# states, evenly spread from its start to its end (pictures.spread).
CHAIN_COLUMNS = 9           # in the chain picture
ANIMATION_FRAMES = 12       # in the animation
# Compiled chains kept, the most recently used (one per stage, setting and batch size; the
# seed, class, guidance weight and mix gamma are inputs, see generate.program_key): each
# holds a compiled program in memory.
MAX_CHAINS = 6
Progress = Callable[[float, str], None]
# The page's name of each sample field a request sets ({stage}: the stage's name).
CONTROLS = {"sampler": "sampler", "num_steps": "{stage} steps", "handover": "hand-over",
            "gamma": "gamma", "start_step": "{stage} t*", "guidance_scale": "guidance weight",
            "label": "class", "seed": "seed", "num_samples": "number of images"}
SAMPLE_FIELD = re.compile(r"(?:stages\.(\w+)\.)?sample\.(\w+)")


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
  sampler: str = "ddim"                 # every stage: ddpm (all T steps) | ddim | ...
  steps: tuple[int, ...] = ()           # steps per stage (0 = T); () = the config's
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
  path = layout.config_path(workdir)
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

  config = ml_collections.ConfigDict(tuples(tree)) if isinstance(tree, dict) else None
  sections = model_sections(config)
  if not sections:
    raise RequestError(f"{path} is not the config of a diffusion model or cascade")
  for section in sections:
    for field, value in checkpoints.ADDED_FIELDS.items():
      part, key = field.split(".")
      if key not in section[part]:
        section[part][key] = value
  return config


def model_sections(config: Optional[ml_collections.ConfigDict]) -> list:
  """`stages.all_sections` of a config read from a file, or [] when it is not one of a
  model or cascade (some model without its model and diffusion sections)."""
  try:
    sections = stages.all_sections(config)
  except (AttributeError, KeyError, TypeError):
    return []
  whole = all(isinstance(section.get(part), ml_collections.ConfigDict)
              for section in sections for part in ("model", "diffusion"))
  return sections if sections and whole else []


def in_control_terms(config: ml_collections.ConfigDict, problem: str) -> str:
  """A problem of `config_checks` ('stages.stage2.sample.gamma=1.5: must lie in [0, 1]')
  said with the name of the page's control that set the field ('gamma 1.5: must lie in
  [0, 1]'); any other problem as it is."""
  field = problem.split("=", 1)[0]
  match = SAMPLE_FIELD.fullmatch(field)
  if not match or match.group(2) not in CONTROLS:
    return problem
  value = config
  for part in field.split("."):
    value = value[part]
  said = f"{field}={value!r}: "
  if not problem.startswith(said):
    return problem
  control = CONTROLS[match.group(2)].format(stage=match.group(1) or stages.SINGLE)
  return f"{control} {value!r}: {problem[len(said):]}"


@dataclasses.dataclass
class Generated:
  outputs: dict                 # {stage: uint8 [N, h, w, C]}; a single model: {"model": ...}
  labels: Optional[np.ndarray]
  trajectories: dict            # {stage: uint8 [frames, 1, h, w, C]}: the first image's chain
  plans: dict                   # {stage: SamplingPlan}: the steps each chain visited
  report: dict                  # per stage: sampler, evaluations, compile and sample seconds

  @property
  def images(self) -> np.ndarray:
    return list(self.outputs.values())[-1]

  @property
  def animation(self) -> list:
    return animation_frames(self.trajectories, ANIMATION_FRAMES)


class Served:
  """A trained model or cascade, ready to sample."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str, params=None):
    """`params`: the EMA parameters by stage (`cascade.restore`); None restores them from
    `workdir`."""
    config_checks.check_config(config)
    self.config, self.workdir = config, workdir
    self.models = stages.models(config, workdir)
    self.params = cascade.restore(config, workdir) if params is None else params
    self.compiled = LeastRecentlyUsed(MAX_CHAINS)   # generate.sample_images' chains.

  @classmethod
  def load(cls, workdir: str, config: Optional[ml_collections.ConfigDict] = None) -> "Served":
    return cls(config if config is not None else load_config(workdir), workdir)

  @property
  def num_classes(self) -> int:
    return stages.class_count(self.config)

  @property
  def conditional_stages(self) -> list[stages.Stage]:
    """The stages that see the class: guidance and class apply to these only."""
    return [stage for stage in self.models if stage.config.model.num_classes]

  def summary(self) -> str:
    """One line: what is served, for the page."""
    parts = [f"{stage.name} {stage.config.data.image_size}px "
             f"T={stage.config.diffusion.num_steps}" for stage in self.models]
    kind = (f"cascade of {len(parts)} stages" if len(self.models) > 1 else "single model")
    classes = f", {self.num_classes} classes" if self.num_classes else ", unconditional"
    return f"{self.workdir}: {kind} ({'; '.join(parts)}){classes}"

  def defaults(self) -> Request:
    """The request that samples as the config does."""
    settings = [stage.config.sample for stage in self.models]
    later = settings[1] if len(settings) > 1 else None
    conditional = self.conditional_stages
    return Request(sampler=settings[0].sampler, steps=tuple(c.num_steps for c in settings),
                   handover=later.handover if later else "",
                   gamma=later.gamma if later else 0.3,
                   start_step=later.start_step if later else -1,
                   guidance=conditional[-1].config.sample.guidance_scale if conditional
                   else 0.0,
                   label=self.config.sample.label, seed=self.config.sample.seed)

  def check_request(self, request: Request) -> None:
    """RequestError for what only a request can get wrong; every field it sets is checked
    with the config (`config_for`)."""
    if not 1 <= request.num_images <= MAX_IMAGES:
      raise RequestError(f"number of images {request.num_images}: must lie in [1, {MAX_IMAGES}]")
    if request.steps and len(request.steps) != len(self.models):
      raise RequestError(f"{len(request.steps)} step counts for {len(self.models)} stages")
    if not self.num_classes and (request.guidance or request.label != -1):
      raise RequestError("guidance and class need a class-conditional model; this one is "
                         "unconditional")

  def config_for(self, request: Request) -> ml_collections.ConfigDict:
    """The workdir's config with the request's settings; RequestError when one is out of
    range (the message names the control, its value and what it may be)."""
    self.check_request(request)
    config = copy.deepcopy(self.config)
    config.unlock()
    config.sample.update(seed=request.seed, label=request.label, num_samples=request.num_images,
                         batch_size=min(request.num_images, 16), trajectory_images=1,
                         trajectory_every=1)
    settings = [section.sample for section in stages.all_sections(config)]
    for stage, sampling in zip(self.models, settings):
      sampling.update(sampler=request.sampler,
                      num_steps=request.steps[stage.index] if request.steps else
                      sampling.num_steps)
      if stage.config.model.num_classes:
        sampling.guidance_scale = request.guidance
      else:
        sampling.label = -1   # Unconditional: the class is that of the conditional stages.
      if stage.index:
        sampling.update(handover=request.handover or sampling.handover, gamma=request.gamma,
                        start_step=request.start_step)
    try:
      config_checks.check_config(config)
    except UserError as e:
      first = str(e).splitlines()[0].removeprefix("invalid config: ")
      raise RequestError(in_control_terms(config, first)) from None
    return config

  def generate(self, request: Request, progress: Optional[Progress] = None) -> Generated:
    """Samples the request's images (compiling its chains the first time only)."""
    config = self.config_for(request)
    plans = cascade.sampling_plans(config)
    outputs, report, trajectories = cascade.sample_cascade(
        config, self.params, request.num_images, plans=plans, compiled=self.compiled,
        progress=progress)
    labels = generate.class_labels(config, request.num_images)
    return Generated(outputs, labels, trajectories, plans, report)


def animation_frames(trajectories: dict, per_stage: int) -> list:
  """The first image's chain through every stage, `per_stage` states of each evenly spread
  from its start to its end, each frame at the final resolution magnified for display."""
  final_size = list(trajectories.values())[-1].shape[2]
  frames = []
  for trajectory in trajectories.values():
    shown = trajectory[pictures.spread(len(trajectory), per_stage), 0]
    for frame in pictures.enlarge(shown, final_size):
      frames.append(pictures.for_display(frame, final_size))
  return frames


def gif_bytes(frames: list, frame_ms: int = 120, hold_last: int = 8) -> bytes:
  """An endlessly looping GIF of uint8 frames [H, W, 1|3], the last one shown
  `hold_last` times as long."""
  drawn = [Image.fromarray(images.without_gray_axis(f)) for f in frames]
  buffer = io.BytesIO()
  drawn[0].save(buffer, format="GIF", save_all=True, append_images=drawn[1:],
                duration=[frame_ms] * (len(frames) - 1) + [frame_ms * hold_last], loop=0)
  return buffer.getvalue()


def draw(generated: Generated) -> dict:
  """{'grid': the final images (a row per class), 'stages': each image's stages side by
  side with labelled columns (one stage: the grid), 'chain': the first image's chain, a
  labelled block per stage}, drawn for people."""
  final = generated.images
  grid = pictures.for_display(pictures.sample_grid(final, generated.labels), final.shape[1])
  chain = pictures.chain_picture(generated.trajectories, generated.plans, CHAIN_COLUMNS)
  if len(generated.outputs) == 1:
    return {"grid": grid, "stages": grid, "chain": chain}
  return {"grid": grid, "stages": pictures.cascade_picture(generated.outputs), "chain": chain}


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
