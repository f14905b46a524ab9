"""Where a run keeps what: every file and folder of a workdir, named once, for every reader
and writer of one (training, sampling, evaluation, the app, the studies, the console).

  WORKDIR/
    config.json           the config the run was made with (the app serves it)
    config.before-step-N.json  the config before a resume at step N changed it
    checkpoints/<step>/   orbax checkpoints of a model
    train_timing.json     training seconds and images/s, resumes included
    fid_curve.json        FID during training (train.fid_every)
    samples/              samples.npz, grid.png, timing.json; a cascade adds stages.npz,
                          cascade.png and chain.png, a single model trajectory.png
    timing.json, .md      the per-stage timing table
    eval.json             held-out denoising loss (--mode=eval)
    quality.json          FID, KID and the classifier distance of the samples
    classifier_<size>/    the feature classifier at one resolution
    interpolation/        --mode=interpolate
    forward_process.png   --mode=forward_process
    stage1/, stage2/ ...  a cascade: each stage a model workdir of its own (hdd.stages)
"""
from __future__ import annotations

import os

CONFIG = "config.json"
CHECKPOINTS = "checkpoints"
TRAIN_TIMING = "train_timing.json"
FID_CURVE = "fid_curve.json"
SAMPLES = "samples"
SAMPLES_NPZ = "samples.npz"       # the final images (key images) and labels
STAGES_NPZ = "stages.npz"         # every stage's images, keyed by stage
GRID = "grid.png"
CASCADE_PICTURE = "cascade.png"   # each sample's stages side by side
CHAIN = "chain.png"               # the reverse chain through every stage
TRAJECTORY = "trajectory.png"     # the reverse chain of a single model
SAMPLE_TIMING = "timing.json"     # inside samples/: the sampling report
TIMING_JSON = "timing.json"
TIMING_MD = "timing.md"
EVAL = "eval.json"
QUALITY = "quality.json"
INTERPOLATION = "interpolation"
FORWARD_PROCESS = "forward_process.png"


def config_path(workdir: str) -> str:
  return os.path.join(workdir, CONFIG)


def config_before_path(workdir: str, step: int) -> str:
  """The config a run had before a resume at `step` changed it (train.allow_config_change)."""
  return os.path.join(workdir, f"config.before-step-{step}.json")


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(workdir, CHECKPOINTS)


def train_timing_path(workdir: str) -> str:
  return os.path.join(workdir, TRAIN_TIMING)


def fid_curve_path(workdir: str) -> str:
  return os.path.join(workdir, FID_CURVE)


def samples_dir(workdir: str) -> str:
  return os.path.join(workdir, SAMPLES)


def samples_path(workdir: str) -> str:
  """WORKDIR/samples/samples.npz: what evaluation and the studies score."""
  return os.path.join(workdir, SAMPLES, SAMPLES_NPZ)


def timing_paths(workdir: str) -> tuple[str, str]:
  """(timing.json, timing.md) of the run."""
  return os.path.join(workdir, TIMING_JSON), os.path.join(workdir, TIMING_MD)


def eval_path(workdir: str) -> str:
  return os.path.join(workdir, EVAL)


def quality_path(workdir: str) -> str:
  return os.path.join(workdir, QUALITY)


def classifier_dir(workdir: str, image_size: int) -> str:
  """The feature classifier of `image_size`-pixel images that a run trains for itself."""
  return os.path.join(workdir, f"classifier_{image_size}")


def interpolation_dir(workdir: str) -> str:
  return os.path.join(workdir, INTERPOLATION)


def forward_process_path(workdir: str) -> str:
  return os.path.join(workdir, FORWARD_PROCESS)


def stage_dir(workdir: str, name: str) -> str:
  """A cascade stage's own workdir (`hdd.stages.models` decides which models have one)."""
  return os.path.join(workdir, name)
