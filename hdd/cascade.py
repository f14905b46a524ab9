"""Hierarchical (cascaded) diffusion: a chain of stages at increasing resolution.

Stage 1 is an ordinary DDPM at low resolution, sampled from pure noise. Each later stage
is an ordinary DDPM at its own resolution with its own schedule, trained on the same
images resized to its size, and sampled from the previous stage's output handed over by
`hdd.handover` (mix or truncate). A stage is therefore just a single-model config
(`stage_config`), and everything single models have (training, resume, checkpoints, EMA,
DDPM/DDIM, guidance, timing) applies per stage, each under WORKDIR/<stage name>/.
"""
from __future__ import annotations

import copy
import json
import logging
import os
import time
from typing import Callable, Optional

import ml_collections
import numpy as np

from hdd import generate, images, parallel, train
from hdd.build import create_schedule
from hdd.handover import Handover, gamma_for_start_step

# critic(uint8 images [N, h, w, C]) -> score per image in [0, 1]; below threshold = re-drawn.
Critic = Callable[[np.ndarray], np.ndarray]


def is_cascade(config: ml_collections.ConfigDict) -> bool:
  return "stages" in config


def stage_names(config: ml_collections.ConfigDict) -> list[str]:
  """The stages in sampling order (stage1, stage2, ...)."""
  return sorted(config.stages.keys())


def stage_config(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  """The single-model config of one stage: the shared data/sample/eval sections with the
  stage's resolution, model, schedule, training and chain settings."""
  stage = config.stages[name]
  single = ml_collections.ConfigDict()
  single.seed = config.seed
  single.data = copy.deepcopy(config.data)
  single.data.image_size = stage.image_size
  single.data.extra_resolutions = ()
  single.model = copy.deepcopy(stage.model)
  single.diffusion = copy.deepcopy(stage.diffusion)
  single.train = copy.deepcopy(stage.train)
  single.sample = ml_collections.ConfigDict({**config.sample.to_dict(),
                                             **stage.sample.to_dict()})
  single.eval = copy.deepcopy(config.eval)
  return single


def stage_workdir(workdir: str, name: str) -> str:
  return os.path.join(workdir, name)


def stages_to_train(config: ml_collections.ConfigDict) -> list[str]:
  """All stages (config.stage = 0) or only stage k (config.stage = k, 1-based)."""
  names = stage_names(config)
  return names if config.stage == 0 else [names[config.stage - 1]]


def train_cascade(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains (or resumes) the selected stages one after another; returns their EMA params.

  Each stage resumes independently from WORKDIR/<stage>/checkpoints, so stages can also
  be trained one per machine (--config.stage=k) into copies of one workdir.
  """
  params = {}
  for name in stages_to_train(config):
    logging.info("Cascade %s: %dx%d.", name, config.stages[name].image_size,
                 config.stages[name].image_size)
    state = train.train_and_evaluate(stage_config(config, name), stage_workdir(workdir, name))
    params[name] = state.ema_params
  return params


def restore_cascade(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """The EMA parameters of every stage's latest checkpoint."""
  return {name: train.restore_params(stage_config(config, name), stage_workdir(workdir, name))
          for name in stage_names(config)}


def filter_low_res(config, stage_params, mesh, samples: np.ndarray, critic: Critic,
                   seed: int) -> tuple[np.ndarray, dict]:
  """Re-draws the stage-1 samples the critic scores below filter.threshold, for up to
  filter.max_rounds rounds (what is still rejected then is kept). Returns the samples
  and a report: initial rejections, re-draws, rejections left, seconds."""
  name = stage_names(config)[0]
  single = stage_config(config, name)
  start = time.perf_counter()
  scores = critic(samples)
  rejected = np.flatnonzero(scores < config.filter.threshold)
  report = {"threshold": config.filter.threshold, "initially_rejected": int(len(rejected)),
            "redrawn": 0, "rounds": 0}
  samples = samples.copy()
  batch = single.sample.batch_size
  for round_index in range(1, config.filter.max_rounds + 1):
    if not len(rejected):
      break
    # Whole batches, so the compiled sampler is reused; the best candidates fill the gaps.
    count = -(-len(rejected) // batch) * batch
    candidates, _ = generate.sample_images(single, stage_params[name], mesh, count, seed=seed,
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
                   seed: Optional[int] = None, critic: Optional[Critic] = None):
  """Runs the stages in order on `num_images` images. Returns ({stage: uint8 images},
  report) where the report has each stage's chain and timing (compile excluded)."""
  mesh = parallel.create_mesh()
  seed = config.sample.seed if seed is None else seed
  outputs, report = {}, {"num_images": num_images, "stages": []}
  previous = None
  for index, name in enumerate(stage_names(config)):
    single = stage_config(config, name)
    handover = Handover.from_config(single.sample) if index else None
    start_step = int(generate.chain_steps(single, handover)[0])
    samples, info = generate.sample_images(single, stage_params[name], mesh, num_images,
                                           seed=seed, stream=index, low_res=previous,
                                           handover=handover)
    stage_report = {
        "stage": name, "resolution": single.data.image_size,
        "sampler": single.sample.sampler, "num_train_steps": single.diffusion.num_steps,
        "handover": handover.method if handover else "noise",
        "start_step": start_step,
        "network_evaluations_per_image": generate.network_evaluations(single, handover),
        "compile_seconds": info["compile_seconds"], "sample_seconds": info["sample_seconds"]}
    if handover is not None:
      alphas_cumprod = np.asarray(create_schedule(single.diffusion).alphas_cumprod)
      stage_report["gamma"] = (handover.gamma if handover.method == "mix" else
                               gamma_for_start_step(alphas_cumprod, start_step))
    if index == 0 and critic is not None:
      samples, stage_report["filter"] = filter_low_res(config, stage_params, mesh, samples,
                                                       critic, seed)
      stage_report["sample_seconds"] += stage_report["filter"]["seconds"]
    logging.info("Cascade %s: %d images at %dx%d in %.1f s (+%.1f s compile), %d network "
                 "evaluations each.", name, num_images, single.data.image_size,
                 single.data.image_size, stage_report["sample_seconds"],
                 stage_report["compile_seconds"], stage_report["network_evaluations_per_image"])
    outputs[name] = samples
    report["stages"].append(stage_report)
    previous = samples
  report["sample_seconds"] = sum(s["sample_seconds"] for s in report["stages"])
  return outputs, report


def load_critic(config: ml_collections.ConfigDict, workdir: str) -> Optional[Critic]:
  """The filter's critic (None when filter.enabled is off): the confidence of the
  classifier in filter.classifier_dir, by default WORKDIR/classifier_<stage-1 size>."""
  if not config.filter.enabled:
    return None
  from evaluation import classifier  # Only runs that filter need it.
  size = config.stages[stage_names(config)[0]].image_size
  directory = config.filter.classifier_dir or os.path.join(workdir, f"classifier_{size}")
  return classifier.confidence_critic(directory, size)


def side_by_side(outputs: dict, count: int = 16, per_row: int = 4) -> np.ndarray:
  """A grid of `count` samples, `per_row` to a row, each shown as its stages side by side
  at the final resolution (nearest-neighbour, so the low-resolution pixels stay visible)."""
  final = list(outputs.values())[-1]
  size, shown = final.shape[1], min(count, len(final))
  columns = [np.repeat(np.repeat(x[:shown], size // x.shape[1], 1), size // x.shape[2], 2)
             if size % x.shape[1] == 0 else x[:shown] for x in outputs.values()]
  if any(c.shape[1] != size for c in columns):
    raise ValueError("stage resolutions must divide the final one to be shown side by side")
  tiles = np.stack(columns, axis=1).reshape((shown * len(columns),) + final.shape[1:])
  return images.make_grid(tiles, columns=len(columns) * min(per_row, shown))


def generate_and_save(config: ml_collections.ConfigDict, stage_params: dict, workdir: str,
                      critic: Optional[Critic] = None) -> dict:
  """Samples config.sample.num_samples images through the cascade and writes
  WORKDIR/samples/{samples.npz (final), stages.npz (every stage), grid.png, cascade.png,
  timing.json} and WORKDIR/timing.{json,md}."""
  outputs, report = sample_cascade(config, stage_params, config.sample.num_samples,
                                   critic=critic)
  out_dir = os.path.join(workdir, "samples")
  final = list(outputs.values())[-1]
  labels = generate.class_labels(stage_config(config, stage_names(config)[-1]), len(final))
  images.save_samples_npz(os.path.join(out_dir, "samples.npz"), final, labels)
  images.save_npz(os.path.join(out_dir, "stages.npz"), outputs)
  images.save_png(os.path.join(out_dir, "grid.png"), images.make_grid(final[:64]))
  images.save_png(os.path.join(out_dir, "cascade.png"), side_by_side(outputs))
  with open(os.path.join(out_dir, "timing.json"), "w") as f:
    json.dump(report, f, indent=2)
  write_timing_table(config, workdir, report)
  return report


def write_timing_table(config: ml_collections.ConfigDict, workdir: str,
                       sample_report: Optional[dict] = None) -> list[dict]:
  """WORKDIR/timing.json and timing.md: per stage, training time (all runs of the stage,
  resumes included) and sampling time, each without compilation, which is listed apart."""
  sampled = {s["stage"]: s for s in (sample_report or {}).get("stages", [])}
  rows = []
  for name in stage_names(config):
    single = stage_config(config, name)
    row = {"stage": name, "resolution": single.data.image_size,
           "T": single.diffusion.num_steps,
           "beta": f"{single.diffusion.schedule} {single.diffusion.beta_start:g}-"
                   f"{single.diffusion.beta_end:g}"}
    timing_path = os.path.join(stage_workdir(workdir, name), "train_timing.json")
    if os.path.exists(timing_path):
      with open(timing_path) as f:
        trained = json.load(f)
      row.update(train_steps=trained["end_step"], train_seconds=trained["total_train_seconds"],
                 train_compile_seconds=trained["compile_seconds"],
                 parameters=trained.get("parameters"))
    if name in sampled:
      s = sampled[name]
      row.update(handover=s["handover"], start_step=s["start_step"], gamma=s.get("gamma"),
                 sampler=s["sampler"], evaluations=s["network_evaluations_per_image"],
                 sample_seconds=s["sample_seconds"], sample_compile_seconds=s["compile_seconds"])
    rows.append(row)
  with open(os.path.join(workdir, "timing.json"), "w") as f:
    json.dump({"num_samples": (sample_report or {}).get("num_images"), "stages": rows}, f,
              indent=2)
  with open(os.path.join(workdir, "timing.md"), "w") as f:
    f.write(timing_markdown(rows, (sample_report or {}).get("num_images")))
  return rows


def timing_markdown(rows: list[dict], num_samples: Optional[int]) -> str:
  columns = [("stage", "stage"), ("resolution", "size"), ("parameters", "params"),
             ("T", "T"), ("beta", "beta"), ("train_steps", "train steps"),
             ("train_seconds", "train s"), ("handover", "hand-over"), ("gamma", "gamma"),
             ("start_step", "t*"), ("sampler", "sampler"), ("evaluations", "evals/img"),
             ("sample_seconds", f"sample s ({num_samples} img)")]

  def cell(value):
    if value is None:
      return "-"
    if isinstance(value, float):
      return f"{value:,.3f}" if value < 1 else f"{value:,.1f}"
    return f"{value:,}" if isinstance(value, int) else str(value)

  total = {"stage": "total", "train_seconds": sum(r.get("train_seconds") or 0.0 for r in rows),
           "sample_seconds": sum(r.get("sample_seconds") or 0.0 for r in rows)}
  lines = ["| " + " | ".join(title for _, title in columns) + " |",
           "|" + "---|" * len(columns)]
  for row in rows + [total]:
    lines.append("| " + " | ".join(cell(row.get(key)) for key, _ in columns) + " |")
  return "\n".join(lines) + "\n\nSeconds exclude compilation (listed in timing.json).\n"

