"""Hierarchical (cascaded) diffusion: a chain of stages at increasing resolution.

Stage 1 is an ordinary DDPM at low resolution, sampled from pure noise. Each later stage
is an ordinary DDPM at its own resolution with its own schedule, trained on the same
images resized to its size, and sampled from the previous stage's output handed over by
`hdd.maths.handover` (mix or truncate). A stage is therefore just a single-model config
(`hdd.stages.stage_config`), and everything single models have (training, resume,
checkpoints, EMA, DDPM/DDIM, guidance, timing) applies per stage, each under
WORKDIR/<stage name>/.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Callable, Optional

import ml_collections
import numpy as np

from common import files, images, parallel
from hdd import checkpoints, generate, pictures, stages, timing_report, train
from hdd.maths.handover import Handover
from hdd.plan import SamplingPlan

# critic(uint8 images [N, h, w, C]) -> score per image in [0, 1]; below threshold = re-drawn.
Critic = Callable[[np.ndarray], np.ndarray]


def train_cascade(config: ml_collections.ConfigDict, workdir: str,
                  stage_hooks: Optional[dict] = None) -> dict:
  """Trains (or resumes) the selected stages one after another; returns their EMA params.

  Each stage resumes independently from WORKDIR/<stage>/checkpoints, so stages can also
  be trained one per machine (--config.stage=k) into copies of one workdir.
  `stage_hooks` gives a stage's training loop its hooks ({stage: [hook, ...]}).
  """
  params = {}
  for name in stages.stages_to_train(config):
    logging.info("Cascade %s: %dx%d.", name, config.stages[name].image_size,
                 config.stages[name].image_size)
    state = train.train_and_evaluate(stages.stage_config(config, name),
                                     stages.stage_workdir(workdir, name),
                                     (stage_hooks or {}).get(name, ()))
    params[name] = state.ema_params
  return params


def restore_cascade(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """The EMA parameters of every stage's latest checkpoint."""
  return {name: checkpoints.restore_params(stages.stage_config(config, name),
                                           stages.stage_workdir(workdir, name))
          for name in stages.stage_names(config)}


def earlier_stages_output(config: ml_collections.ConfigDict, workdir: str,
                          name: str) -> Callable[[int], np.ndarray]:
  """fn(num_images) -> the uint8 output of the stages before `name`, sampled with their
  latest checkpoints: the input that `name` is handed over, for measuring FID through
  the cascade while `name` trains (`hooks.FidMonitor`)."""
  names = stages.stage_names(config)
  earlier = names[:names.index(name)]

  def sample(num_images: int) -> np.ndarray:
    plans = {n: plan for n, plan in stage_plans(config).items() if n in earlier}
    params = {n: checkpoints.restore_params(stages.stage_config(config, n),
                                            stages.stage_workdir(workdir, n)) for n in earlier}
    outputs, _, _ = sample_cascade(config, params, num_images, plans=plans)
    return outputs[earlier[-1]]

  return sample


def stage_plans(config: ml_collections.ConfigDict) -> dict:
  """{stage: SamplingPlan}: stage 1 from noise, every later stage by its hand-over rule."""
  plans = {}
  for index, name in enumerate(stages.stage_names(config)):
    single = stages.stage_config(config, name)
    plans[name] = SamplingPlan.create(single, Handover.from_config(single.sample) if index
                                      else None)
  return plans


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
  plans = plans or stage_plans(config)
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
  """The filter's critic (None when filter.enabled is off): the confidence of the
  classifier in filter.classifier_dir, by default WORKDIR/classifier_<stage-1 size>."""
  if not config.filter.enabled:
    return None
  from evaluation import classifier  # Only runs that filter need it.
  size = stages.image_sizes(config)[0]
  directory = config.filter.classifier_dir or os.path.join(workdir, f"classifier_{size}")
  return classifier.confidence_critic(directory, size)


def generate_and_save(config: ml_collections.ConfigDict, stage_params: dict, workdir: str,
                      critic: Optional[Critic] = None) -> dict:
  """Samples config.sample.num_samples images through the cascade and writes
  WORKDIR/samples/{samples.npz (final), stages.npz (every stage), grid.png, cascade.png,
  chain.png (with sample.trajectory_every), timing.json} and WORKDIR/timing.{json,md}."""
  outputs, report, trajectories = sample_cascade(config, stage_params,
                                                 config.sample.num_samples, critic=critic)
  final = list(outputs.values())[-1]
  labels = generate.class_labels(config, len(final))
  with files.atomic_directory(os.path.join(workdir, "samples")) as out_dir:  # All or none.
    images.save_samples_npz(os.path.join(out_dir, "samples.npz"), final, labels)
    images.save_npz(os.path.join(out_dir, "stages.npz"), outputs)
    size = final.shape[1]
    images.save_png(os.path.join(out_dir, "grid.png"),
                    pictures.for_display(pictures.sample_grid(final, labels), size))
    images.save_png(os.path.join(out_dir, "cascade.png"), pictures.cascade_picture(outputs))
    if all(t is not None for t in trajectories.values()):
      images.save_png(os.path.join(out_dir, "chain.png"),
                      pictures.for_display(pictures.cascade_chain(trajectories), size))
    files.write_json(os.path.join(out_dir, "timing.json"), report)
  timing_report.write_timing_table(config, workdir, report)
  return report
