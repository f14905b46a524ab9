"""Hierarchical (cascaded) diffusion: a chain of stages at increasing resolution, and any
model of HDD as a cascade of one.

Stage 1 is an ordinary DDPM at low resolution, sampled from pure noise. Each later stage
is an ordinary DDPM at its own resolution with its own schedule, trained on the same
images resized to its size, and sampled from the previous stage's output handed over by
`hdd.maths.handover` (mix or truncate). A stage is therefore just a single-model config
(`hdd.stages.models`), and everything single models have (training, resume, checkpoints,
EMA, DDPM/DDIM, guidance, timing) applies per stage, each in its own workdir. A single
model is the one stage of its run: every function here takes any config.
"""
from __future__ import annotations

import logging
import time
from typing import Callable, Optional

import ml_collections
import numpy as np

from common import files, images, parallel
from hdd import checkpoints, generate, hooks, layout, pictures, stages, timing_report
from hdd.train import train_and_evaluate
from hdd.maths.handover import Handover
from hdd.plan import SamplingPlan

# critic(uint8 images [N, h, w, C]) -> score per image in [0, 1]; below threshold = re-drawn.
Critic = Callable[[np.ndarray], np.ndarray]


def training_hooks(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """{stage: [hook, ...]}: the optional hooks each trained stage's train section asks for.
  A later stage's FID is that of the cascade up to it: its hooks get the earlier stages'
  output."""
  return {stage.name: hooks.from_config(
      stage.config, stage.workdir,
      earlier_stages_output(config, workdir, stage.name) if stage.index else None)
          for stage in stages.to_train(config, workdir)}


def keep_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """WORKDIR/config.json: the config that `hdd.app` serves the workdir with. A model that
  lives in WORKDIR itself (a single model) keeps its own there: its training writes it and
  a resumed run is checked against it, so it is left alone here."""
  if any(stage.workdir == workdir for stage in stages.models(config, workdir)):
    return
  with files.atomic_write(layout.config_path(workdir)) as f:
    f.write(config.to_json_best_effort(indent=2))


def train(config: ml_collections.ConfigDict, workdir: str,
          stage_hooks: Optional[dict] = None) -> dict:
  """Keeps the run's config (`keep_config`), then trains (or resumes) the selected stages one
  after another; returns {stage: EMA params}.

  Each stage resumes independently from its own checkpoints, so stages can also be trained
  one per machine (--config.stage=k) into copies of one workdir. `stage_hooks` gives a
  stage's training loop its hooks ({stage: [hook, ...]}; default `training_hooks`).
  """
  keep_config(config, workdir)
  stage_hooks = training_hooks(config, workdir) if stage_hooks is None else stage_hooks
  params = {}
  for stage in stages.to_train(config, workdir):
    size = stage.config.data.image_size
    logging.info("Training %s: %dx%d.", stage.name, size, size)
    state = train_and_evaluate(stage.config, stage.workdir,
                                     stage_hooks.get(stage.name, ()))
    params[stage.name] = state.ema_params
  return params


def restore(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """{stage: the EMA parameters of its latest good checkpoint}."""
  return {stage.name: checkpoints.restore_params(stage.config, stage.workdir)
          for stage in stages.models(config, workdir)}


def earlier_stages_output(config: ml_collections.ConfigDict, workdir: str,
                          name: str) -> Callable[[int], np.ndarray]:
  """fn(num_images) -> the uint8 output of the stages before `name`, sampled with their
  latest checkpoints: the input that `name` is handed over, for measuring FID through
  the cascade while `name` trains (`hooks.FidMonitor`)."""
  every = stages.models(config, workdir)
  earlier = every[:[stage.name for stage in every].index(name)]

  def sample(num_images: int) -> np.ndarray:
    plans = {n: plan for n, plan in sampling_plans(config).items()
             if n in {stage.name for stage in earlier}}
    params = {stage.name: checkpoints.restore_params(stage.config, stage.workdir)
              for stage in earlier}
    outputs, _, _ = sample_cascade(config, params, num_images, plans=plans)
    return outputs[earlier[-1].name]

  return sample


def sampling_plans(config: ml_collections.ConfigDict) -> dict:
  """{stage: SamplingPlan}: the first stage from noise, every later one by its hand-over."""
  return {stage.name: SamplingPlan.create(
      stage.config, Handover.from_config(stage.config.sample) if stage.index else None)
          for stage in stages.models(config)}


def filter_low_res(config, plan: SamplingPlan, params, mesh, samples: np.ndarray,
                   critic: Critic, seed: int) -> tuple[np.ndarray, dict]:
  """Re-draws the stage-1 samples the critic scores below filter.threshold, for up to
  filter.max_rounds rounds (what is still rejected then is kept). Returns the samples
  and a report: initial rejections, re-draws, rejections left, seconds."""
  start = time.perf_counter()
  scores = critic(samples)
  rejected = np.flatnonzero(scores < config.filter.threshold)
  report = {"threshold": config.filter.threshold, "initially_rejected": int(len(rejected)),
            "redrawn": 0, "rounds": 0}
  samples = samples.copy()
  batch = plan.config.sample.batch_size
  for round_index in range(1, config.filter.max_rounds + 1):
    if not len(rejected):
      break
    # Whole batches, so the compiled sampler is reused; the best candidates fill the gaps.
    count = -(-len(rejected) // batch) * batch
    candidates, _ = generate.sample_images(plan, params, mesh, count, seed=seed,
                                           stream=1000 + round_index)
    candidate_scores = critic(candidates)
    best = np.argsort(-candidate_scores)[:len(rejected)]
    accepted = candidate_scores[best] >= config.filter.threshold
    samples[rejected[accepted]] = candidates[best[accepted]]
    report["redrawn"] += count
    report["rounds"] = round_index
    rejected = rejected[~accepted]
  report["still_rejected"] = int(len(rejected))
  report["seconds"] = time.perf_counter() - start
  return samples, report


def sample_cascade(config: ml_collections.ConfigDict, stage_params: dict, num_images: int,
                   seed: Optional[int] = None, critic: Optional[Critic] = None,
                   plans: Optional[dict] = None, compiled: Optional[dict] = None,
                   progress: Optional[Callable[[float, str], None]] = None):
  """Runs the stages in order on `num_images` images. Returns ({stage: uint8 images},
  report, {stage: trajectory}): the report has each stage's plan and timing (compile
  excluded); a trajectory is the recorded chain of the first batch (uint8 [frames, n, h,
  w, C], frame 0 the stage's start: noise, or the hand-over), or None.
  `compiled` and `progress(fraction of all stages, stage name)` are passed to
  `generate.sample_images` (a server's cache of compiled chains, and its progress bar)."""
  mesh = parallel.create_mesh()
  plans = plans or sampling_plans(config)
  seed = config.sample.seed if seed is None else seed
  outputs, trajectories, report = {}, {}, {"num_images": num_images, "stages": []}
  previous = None
  for index, (name, plan) in enumerate(plans.items()):
    stage_progress = None if progress is None else (
        lambda fraction, index=index, name=name: progress((index + fraction) / len(plans), name))
    samples, info = generate.sample_images(plan, stage_params[name], mesh, num_images,
                                           seed=seed, with_trajectory=True, stream=index,
                                           low_res=previous, compiled=compiled,
                                           progress=stage_progress)
    trajectories[name] = info["trajectory"]
    stage_report = {"stage": name, **plan.describe(),
                    "compile_seconds": info["compile_seconds"],
                    "sample_seconds": info["sample_seconds"]}
    if index == 0 and critic is not None:
      samples, stage_report["filter"] = filter_low_res(config, plan, stage_params[name], mesh,
                                                       samples, critic, seed)
      stage_report["sample_seconds"] += stage_report["filter"]["seconds"]
    logging.info("Cascade %s: %d images at %dx%d in %.1f s (+%.1f s compile), %d network "
                 "evaluations each.", name, num_images, plan.config.data.image_size,
                 plan.config.data.image_size, stage_report["sample_seconds"],
                 stage_report["compile_seconds"], plan.network_evaluations)
    outputs[name] = samples
    report["stages"].append(stage_report)
    previous = samples
  report["sample_seconds"] = sum(s["sample_seconds"] for s in report["stages"])
  return outputs, report, trajectories


def load_critic(config: ml_collections.ConfigDict, workdir: str) -> Optional[Critic]:
  """The filter's critic (None unless the config has a filter section with enabled on):
  the confidence of the classifier in filter.classifier_dir, by default the run's
  classifier at the first stage's resolution."""
  if not config.get("filter", {}).get("enabled", False):
    return None
  from evaluation import classifier  # Only runs that filter need it.
  size = stages.image_sizes(config)[0]
  directory = config.filter.classifier_dir or layout.classifier_dir(workdir, size)
  return classifier.confidence_critic(directory, size)


def sample_and_save(config: ml_collections.ConfigDict, stage_params: dict, workdir: str,
                    critic: Optional[Critic] = None) -> dict:
  """Samples config.sample.num_samples images through the stages and writes, all or none,
  WORKDIR/samples/: samples.npz (the final images), grid.png, timing.json (the sampling
  report) and the chain of the first images (sample.trajectory_every); with more than one
  stage, stages.npz (every stage), cascade.png (the stages side by side) and the chain as
  chain.png through every stage, else as trajectory.png. Then WORKDIR/timing.{json,md}.
  Returns the sampling report."""
  plans = sampling_plans(config)
  outputs, report, trajectories = sample_cascade(config, stage_params,
                                                 config.sample.num_samples, critic=critic,
                                                 plans=plans)
  final = list(outputs.values())[-1]
  labels = generate.class_labels(config, len(final))
  size = final.shape[1]
  recorded = all(t is not None for t in trajectories.values())
  with files.atomic_directory(layout.samples_dir(workdir)) as out_dir:  # All or none.
    images.save_samples_npz(f"{out_dir}/{layout.SAMPLES_NPZ}", final, labels)
    images.save_png(f"{out_dir}/{layout.GRID}",
                    pictures.for_display(pictures.sample_grid(final, labels), size))
    if len(outputs) > 1:
      images.save_npz(f"{out_dir}/{layout.STAGES_NPZ}", outputs)
      images.save_png(f"{out_dir}/{layout.CASCADE_PICTURE}", pictures.cascade_picture(outputs))
    if recorded:
      chain_name = layout.CHAIN if len(outputs) > 1 else layout.TRAJECTORY
      images.save_png(f"{out_dir}/{chain_name}", pictures.chain_picture(trajectories, plans))
    files.write_json(f"{out_dir}/{layout.SAMPLE_TIMING}", report)
  timing_report.write_timing_table(config, workdir, report)
  logging.info("Sampled %d images in %.1f s; wrote %s.", len(final), report["sample_seconds"],
               layout.samples_dir(workdir))
  return report
