"""Quality per CPU-minute: the cascade and the full-resolution DDPM trained under the same
wall-clock budget, in one run, sampled and scored the same way.

  python experiments/budget.py --dataset=mnist --data_path=../shared/data/mnist.npz \
      --minutes=30 --num_samples=2000 --workdir=runs/budget_mnist
  python experiments/budget.py --dataset=fashion_mnist --minutes=30 --workdir=runs/budget_fmnist
  python experiments/budget.py --dataset=cifar10 \
      --data_path=../shared/data/cifar10_train_part1.npz \
      --test_data_path=../shared/data/cifar10_test.npz \
      --minutes=30 --num_samples=2000 --workdir=runs/budget_cifar10

Models: `configs/hdd_<dataset>.py:budget` (W/hdd/: the cascade, its stage 2 conditional) and
`configs/ddpm_<dataset>.py:budget` (W/ddpm/); on CIFAR-10, --models=hdd,ddpm,seed adds
`configs/ddpm_cifar10.py:seed_budget` (W/seed/: seed 002's recipe at the quick width).
Each is trained for --minutes of training time (`train.time_budget_minutes`: the cosine
learning rate runs over the budget; compilation and measuring are not counted).
--curve_minutes=10,20 also trains the cascade under those budgets (W/hdd_<m>min/), for the
curve of quality against budget. --cascade_set=FIELD=VALUE (repeatable) changes the
cascades' configs: one lever of an ablation, in a workdir of its own (e.g.
stages.stage2.model.low_res_size=0: the published, unconditional stage 2); --ddpm_set the
DDPMs' (e.g. sample.num_steps=50).
--cascade_variant=three_stage_budget (CIFAR-10) trains the three-stage cascade 8 -> 16 -> 32 in
place of the two-stage one, as W/hdd: a structural lever, in a workdir of its own.
--sample_set=stages.<stage>.sample.FIELD=VALUE (repeatable) samples and scores the cascade
already trained in W/hdd with those sampling settings, without training it again: a sampling
lever, as the row `sampled/<settings>` (samples in W/sampled/<settings>/);
--ddpm_sample_set=sample.FIELD=VALUE (a chain field: sampler, num_steps, eta, ...) does the
same for the DDPM trained in W/ddpm, as the row `ddpm_sampled/<settings>`, so that a
sampling lever is measured on both models.

For each model: num_samples images in W/<model>/samples/samples.npz (key `images`, uint8
NHWC) and a grid W/<model>/samples/grid.png (every image >= 64 px); FID and KID against
the whole test split (reference statistics cached), the classifier distance (FCD, KID in
the features of evaluation.classifier), training seconds and sampling seconds (the chains
without compilation, and the wall-clock with it). For the cascade also the scores of its
last stage handed real training images shrunk to the size before it, in place of the
earlier stages' samples (`given_real_low_res`; --noreal_low_res skips it): the gap to the
cascade's own scores is what better earlier stages could gain. W/results.json (keys
`hdd`, `ddpm`, `seed`, `hdd_<m>min`) and W/results.md; a finished model is reused when the
command is run again.
"""
import os
import time
from typing import NamedTuple

from absl import flags

from common.errors import UserError
from configs import default
from experiments import study
from hdd import layout, stages

study.define_common_flags(num_samples=2000)
study.define_quality_flags()
flags.DEFINE_float("minutes", 30.0, "Training budget of each model, in minutes.")
flags.DEFINE_list("curve_minutes", [], "Further budgets (minutes) to train the cascade under.")
MODELS = ("hdd", "ddpm", "seed")
flags.DEFINE_list("models", ["hdd", "ddpm"], "Which of hdd (the cascade), ddpm and seed (CIFAR-10 "
                  "only: seed 002's DDPM recipe at the quick width) to run.")
flags.DEFINE_bool("real_low_res", True, "Also score the cascade's last stage fed real images "
                  "shrunk to the size before it, in place of the earlier stages' samples.")
flags.DEFINE_multi_string("cascade_set", [], "FIELD=VALUE for the cascades' configs (hdd and "
                          "the curve), e.g. stages.stage2.model.low_res_size=0: one lever of an "
                          "ablation, changed alone.")
flags.DEFINE_string("cascade_variant", "budget", "The cascade's config variant "
                    "(configs/hdd_<dataset>.py:VARIANT), e.g. three_stage_budget on CIFAR-10 "
                    "(8x8 -> 16x16 -> 32x32): a structural lever of an ablation.")
flags.DEFINE_multi_string("sample_set", [], "FIELD=VALUE of a cascade stage's sampling "
                          "(stages.<stage>.sample.<field>): the workdir's trained cascade sampled "
                          "and scored so, as a row of its own, without training it again: a "
                          "sampling lever of an ablation.")
flags.DEFINE_multi_string("ddpm_sample_set", [], "sample.FIELD=VALUE of the DDPM's chain "
                          "(sampler, num_steps, eta, ...): the workdir's trained DDPM sampled and "
                          "scored so, as --sample_set for the cascade.")
flags.DEFINE_multi_string("ddpm_set", [], "FIELD=VALUE for the DDPMs' configs (ddpm and seed), "
                          "e.g. sample.num_steps=50, as --cascade_set for the cascade.")
FLAGS = flags.FLAGS


# The settings flag of each model; what it changes, and an example, for its error message.
SETTINGS_FLAGS = {"hdd": "cascade_set", "ddpm": "ddpm_set", "seed": "ddpm_set"}
SETTINGS_EXAMPLES = {"cascade_set": ("cascade", "stages.stage2.model.attention_resolutions=(7,)"),
                     "sample_set": ("cascade", study.CASCADE_SAMPLING_EXAMPLE),
                     "ddpm_sample_set": ("DDPM", "sample.eta=0.5"),
                     "ddpm_set": ("DDPM", "sample.num_steps=50")}


class SamplingLever(NamedTuple):
  """A flag that samples a trained model another way: the pattern of its settings, what
  their fields are (for the error message), and the results key (and directory) of its rows."""
  flag: str
  pattern: str
  fields: str
  row_prefix: str


SAMPLING_LEVERS = {
    "hdd": SamplingLever("sample_set", study.CASCADE_SAMPLING_SETTING,
                         study.CASCADE_SAMPLING_FIELDS, "sampled"),
    "ddpm": SamplingLever("ddpm_sample_set",
                          rf"sample\.({'|'.join(default.CHAIN_FIELDS)})=.*",
                          "a field of the DDPM's chain", "ddpm_sampled")}


class Run(NamedTuple):
  """One model trained under one budget (or, with sample_set, the trained model sampled
  another way)."""
  key: str           # its results key: hdd, ddpm, hdd_<m>min, sampled/<set>, ddpm_sampled/<set>
  model: str         # one of MODELS
  config: object     # its config (`budget_configs`)
  minutes: float     # its training budget
  sample_set: tuple = ()   # --sample_set or --ddpm_sample_set: sampled from W/<model>


def settings_of(model: str) -> tuple[str, list[str]]:
  """(flag name, FIELD=VALUE settings) that change the config of `model`: --cascade_set
  for the cascade, --ddpm_set for the DDPM."""
  flag = SETTINGS_FLAGS[model]
  return flag, list(getattr(FLAGS, flag))


def apply_settings(config, flag: str, settings: list[str]) -> None:
  """Sets the FIELD=VALUE settings of --`flag` on a config (`study.apply_settings`)."""
  study.apply_settings(config, flag, settings, *SETTINGS_EXAMPLES[flag])


def budget_configs(minutes: float) -> dict:
  """{'hdd': the budget cascade, 'ddpm': the budget DDPM, and on CIFAR-10 'seed': seed
  002's DDPM recipe at the quick width}, each trained for `minutes`."""
  configs = study.model_configs(FLAGS.dataset, FLAGS.data_path, "budget",
                                FLAGS.test_data_path, FLAGS.cascade_variant)
  if FLAGS.dataset == "cifar10":
    from configs import ddpm_cifar10
    configs["seed"] = ddpm_cifar10.get_config("seed_budget")
    study.data_source(configs["seed"].data, FLAGS.data_path, FLAGS.test_data_path)
  configs["hdd"].time_budget_minutes = minutes
  for name in ("ddpm", "seed"):
    if name in configs:
      configs[name].train.time_budget_minutes = minutes
  for model, config in configs.items():
    apply_settings(config, *settings_of(model))
    config.sample.num_samples = FLAGS.num_samples
    config.sample.batch_size = 500
    config.eval.reference_examples = FLAGS.fid_reference_examples
    if FLAGS.quick:
      study.quick_model(config)
      for section in stages.all_sections(config):
        section.train.update(checkpoint_every=20, log_every=5)
  return configs


def measure(run: Run, workdir: str, quality, model_dir: str = "") -> dict:
  """Trains (or resumes) one model in `workdir`, samples it and scores the samples. With
  `model_dir`, the model trained there is sampled as it is, and `workdir` gets only the
  samples (a sampling lever: `--sample_set`, `--ddpm_sample_set`)."""
  import numpy as np
  from common import images
  from hdd import cascade, config_checks, pictures
  config = run.config
  config_checks.check_config(config)
  if model_dir:
    params, train_seconds = cascade.restore(config, model_dir), study.trained_seconds(
        config, model_dir)
  else:
    params, train_seconds = study.train_model(config, workdir)
  start = time.perf_counter()
  samples, cost = study.sample_model(config, params, FLAGS.num_samples, run.key)
  wall = time.perf_counter() - start
  images.save_samples_npz(layout.samples_path(workdir), samples)
  shown = samples[:100]
  grid = images.make_grid(shown, columns=10)
  images.save_png(os.path.join(layout.samples_dir(workdir), layout.GRID),
                  pictures.for_display(grid, samples.shape[1]))
  flag, settings = settings_of(run.model)
  result = {"train_seconds": float(sum(train_seconds)),
            "train_seconds_per_stage": [float(s) for s in train_seconds],
            "budget_minutes": run.minutes,
            flag: settings,
            **({"cascade_variant": FLAGS.cascade_variant} if run.model == "hdd" else {}),
            **({"sample_set": list(run.sample_set)} if run.sample_set else {}),
            "sample_seconds": float(sum(np.atleast_1d(cost["sample_seconds"]))),
            "sample_wall_seconds": wall,
            "evaluations_per_image": cost["evaluations"],
            "num_samples": int(len(samples)),
            "image_sizes": stages.image_sizes(config),
            "fid": None, "kid": None, **quality(samples)}
  if result.get("inception_kid_x1e3") is not None:
    result["kid"] = result["inception_kid_x1e3"] / 1e3
  result["trained_images"] = trained_images(config, model_dir or workdir)
  if FLAGS.real_low_res and len(stages.names(config)) > 1:
    result["given_real_low_res"] = score_given_real_low_res(config, params, quality)
  print(f"{run.key}: {result}")
  return result


def score_given_real_low_res(config, params, quality) -> dict:
  """The scores of the cascade's last stage handed real training images, shrunk to the
  previous stage's size as that stage trains on them, in place of its samples: the
  cascade with perfect earlier stages. Its gap to the cascade's own scores is the part
  that better earlier stages could remove; the rest is the last stage's."""
  from common import parallel
  from hdd import cascade, generate
  from input_pipeline.pipeline import real_images
  *_, before, last = stages.models(config)
  size = before.config.data.image_size
  low_res, _ = real_images(config.data, "train", size, limit=FLAGS.num_samples)
  # The same seed and noise stream as the last stage has in `cascade.sample_cascade`.
  samples, _ = generate.sample_images(
      cascade.sampling_plans(config)[last.name], params[last.name], parallel.create_mesh(),
      len(low_res), seed=config.sample.seed, stream=last.index, low_res=low_res,
      progress=study.images_progress(f"Sampling {last.name} from real {size}x{size} images",
                                     len(low_res)))
  scores = quality(samples)
  print(f"{last.name} given real {size}x{size} images: {scores}")
  return scores


def trained_images(config, workdir: str) -> list[int]:
  """Images seen in training, per stage (end step x batch)."""
  import json
  seen = []
  for stage in stages.models(config, workdir):
    with open(layout.train_timing_path(stage.workdir)) as f:
      seen.append(json.load(f)["end_step"] * stage.config.train.batch_size)
  return seen


def model_label(key: str, row: dict) -> str:
  """'HDD cascade 16->32', 'DDPM 32x32' or 'DDPM 32x32, seed 002's recipe': the model of a
  results row, by its resolutions (rows of older runs, without them, were 14 -> 28)."""
  sizes = row.get("image_sizes", [14, 28] if len(row["evaluations_per_image"]) > 1 else [28])
  name = study.model_name(sizes).replace("HDD", "HDD cascade")
  return name + (", seed 002's recipe" if key == "seed" else "")


def markdown(results: dict) -> str:
  rows = [(key, model_label(key, results[key])) for key in MODELS if key in results] + [
      (key, f"{model_label(key, results[key])}, {key.split('_')[1]} budget")
      for key in sorted(results) if key.startswith("hdd_") and key.endswith("min")] + [
      (key, f"{model_label(key, results[key])}, sampled with "
            f"{', '.join(results[key]['sample_set'])}")
      for key in sorted(results) if key.split("/")[0] in
      {lever.row_prefix for lever in SAMPLING_LEVERS.values()}]
  lines = ["| model | budget (min) | trained (s) | images seen | FID | KID x1e3 | FCD | "
           "sampling (s) | evaluations/image |", "|---|---|---|---|---|---|---|---|---|"]
  for key, label in rows:
    if key not in results:
      continue
    r = results[key]
    lines.append(f"| {label} | {r['budget_minutes']:g} | {r['train_seconds']:.0f} | "
                 f"{sum(r['trained_images']):,} | {study.number(r.get('fid'), 1)} | "
                 f"{study.number(r.get('inception_kid_x1e3'), 1)} | "
                 f"{study.number(r.get('fcd'), 2)} | {r['sample_seconds']:.1f} | "
                 f"{' + '.join(str(e) for e in r['evaluations_per_image'])} |")
  for key, label in rows:
    given = results.get(key, {}).get("given_real_low_res")
    if given:
      lines.append(f"| {label}, last stage given real low-resolution images | | | | "
                   f"{study.number(given.get('fid'), 1)} | "
                   f"{study.number(given.get('inception_kid_x1e3'), 1)} | "
                   f"{study.number(given.get('fcd'), 2)} | | |")
  text = "\n".join(lines) + "\n"
  if "hdd" in results and "ddpm" in results and results["hdd"].get("fid"):
    ratio = results["hdd"]["fid"] / results["ddpm"]["fid"]
    text += (f"\nFID of the cascade / FID of the DDPM at the same budget: {ratio:.2f}x. "
             f"{results['hdd']['num_samples']} samples each; quality: {results.get('quality')}\n")
  return text


def sampled_runs() -> list[Run]:
  """The cascade trained in W/hdd sampled with the --sample_set settings, the DDPM trained
  in W/ddpm with the --ddpm_sample_set ones (each checked), where any are given."""
  runs = []
  for model, lever in SAMPLING_LEVERS.items():
    settings = list(getattr(FLAGS, lever.flag))
    if not settings:
      continue
    study.check_settings(lever.flag, settings, lever.pattern, lever.fields,
                         SETTINGS_EXAMPLES[lever.flag][1])
    config = budget_configs(FLAGS.minutes)[model]
    apply_settings(config, lever.flag, settings)
    runs.append(Run(f"{lever.row_prefix}/" + ",".join(settings), model, config, FLAGS.minutes,
                    tuple(settings)))
  return runs


def run_directory(workdir: str, run: Run) -> str:
  """W/<key>; a sampled run's W/<sampled or ddpm_sampled>/<its settings, with path
  separators replaced>."""
  if run.sample_set:
    return os.path.join(workdir, SAMPLING_LEVERS[run.model].row_prefix,
                        ",".join(run.sample_set).replace(os.sep, "_"))
  return os.path.join(workdir, run.key)


def check_reusable(done, key: str, run: Run, workdir: str) -> None:
  """Refuses a workdir whose finished run `key` (results row `done`) was made with other
  settings or another budget than `run` asks for."""
  flag, settings = settings_of(run.model)
  if done is not None and done.get(flag, []) != settings:
    raise UserError(f"{workdir} holds a run of {key} with --{flag}="
                    f"{done.get(flag, [])}, not {settings}: use another --workdir")
  variant = done.get("cascade_variant", "budget") if done is not None else None  # older rows
  if run.model == "hdd" and variant not in (None, FLAGS.cascade_variant):
    raise UserError(f"{workdir} holds a run of {key} with --cascade_variant={variant}, not "
                    f"{FLAGS.cascade_variant}: use another --workdir")
  if done is not None and done["budget_minutes"] != run.minutes:
    raise UserError(f"{workdir} holds a {done['budget_minutes']:g}-minute run of {key}, "
                    f"not --minutes={run.minutes:g}: use another --workdir")


def check_flags() -> None:
  """Refuses a bad --models, --curve_minutes or --cascade_variant before anything runs."""
  study.choices("models", FLAGS.models, MODELS)
  if "seed" in FLAGS.models and FLAGS.dataset != "cifar10":
    raise UserError(f"--models=seed: seed 002's recipe is a CIFAR-10 recipe, not "
                    f"{FLAGS.dataset}'s; use --dataset=cifar10 or leave seed out of --models")
  study.numbers("curve_minutes", FLAGS.curve_minutes, float, "10,20", positive=True,
                allow_empty=True)
  import importlib
  module = importlib.import_module(f"configs.hdd_{FLAGS.dataset}")
  variants = [v for v in getattr(module, "VARIANTS", ("budget",)) if v.endswith("budget")
              and not v.startswith("cond")]
  if FLAGS.cascade_variant not in variants:
    raise UserError(f"--cascade_variant={FLAGS.cascade_variant}: configs/hdd_{FLAGS.dataset}.py "
                    f"has the unconditional budget variants {variants}; use one of them")


def main(argv):
  del argv
  check_flags()
  if FLAGS.quick:
    # 11 samples: two rows of the 10-column grid.
    FLAGS.num_samples, FLAGS.classifier_steps = 11, 4
    FLAGS.minutes = min(FLAGS.minutes, 0.1)
    FLAGS.curve_minutes = [str(min(float(m), 0.05)) for m in FLAGS.curve_minutes[:1]]
  workdir = FLAGS.workdir
  configs = budget_configs(FLAGS.minutes)
  runs = [Run(model, model, configs[model], FLAGS.minutes) for model in FLAGS.models]
  for minutes in map(float, FLAGS.curve_minutes):
    runs.append(Run(f"hdd_{minutes:g}min", "hdd", budget_configs(minutes)["hdd"], minutes))
  runs += sampled_runs()
  results = study.open_workdir(workdir, "budget", {
      **study.common_inputs(), **study.quality_inputs(), "fid": FLAGS.fid})
  for run in runs:
    check_reusable(results.data.get(run.key), run.key, run, workdir)
    if run.sample_set:
      check_reusable(results.data.get(run.model), run.model, run, workdir)
      if run.model not in results.data and run.model not in FLAGS.models:
        raise UserError(f"--{SAMPLING_LEVERS[run.model].flag} samples the model trained in "
                        f"{workdir}/{run.model}, and it has none yet: add {run.model} to "
                        "--models")
  study.start_runtime()
  quality = study.Quality(configs["ddpm"].data, workdir, FLAGS.classifier_steps, FLAGS.fid,
                          FLAGS.fid_reference_examples)
  results.data["quality"] = quality.description
  for run in runs:
    if run.key not in results.data:
      model_dir = os.path.join(workdir, run.model) if run.sample_set else ""
      results.data[run.key] = measure(run, run_directory(workdir, run), quality, model_dir)
      results.save()
  study.write_markdown(workdir, markdown(results.data))


if __name__ == "__main__":
  study.run(main)
