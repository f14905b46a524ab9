"""Classifier-free guidance on a conditional cascade at CPU scale: FID and sample-class
accuracy against the guidance weight w.

  python experiments/guidance.py --data_path=../shared/data/mnist.npz --workdir=runs/guidance
  python experiments/guidance.py --dataset=cifar10 \
      --data_path=../shared/data/cifar10_train_part1.npz \
      --test_data_path=../shared/data/cifar10_test.npz --minutes=30 --weights=0,1,2,3,5 \
      --fid_reference_examples=0 --workdir=runs/guidance_cifar10

Trains `configs/hdd_<dataset>.py:cond_quick` (MNIST: 14x14 -> 28x28; CIFAR-10: 16x16 ->
32x32; every stage conditioned on the class with label dropout 0.1) for --train_steps per
stage, or with --minutes > 0 the `cond_budget` cascade for that wall-clock budget, and the
project's classifier (evaluation.classifier) at the full size. For each w (the same w at
every stage) it
samples --num_samples images, ten classes in turn, from one seed, and measures
  accuracy: the share of samples asked for class k that the classifier calls k (overall,
            and of the worst class);
  FID:      against --fid_reference_examples test images (pytorch-fid Inception; --nofid
            skips it), and the classifier distance (experiments/study.py).
With --kept_eps_weights it also samples with diffusers' default DDIM, which keeps the
network's eps after clipping x0: under guidance that chain leaves the data range and class
accuracy falls as w grows. With --stage_weights it also samples with a w per stage (e.g. 3:0,
the class guided at the first stage only, where a 16x16 image decides what it shows). With
--sample_set=stages.<stage>.sample.FIELD=VALUE (repeatable) it samples the trained cascade at
this command's w with those settings (a sampling lever; training is unchanged), in rows of
their own keyed '<w> with <settings>'. With --cascade_set=FIELD=VALUE (repeatable) the
cascade trains with that config field changed, e.g. --cascade_set=seed=1: another
initialisation and data order, a second cascade on which to check a lever chosen on the first.
Writes WORKDIR/results.json, results.md and guidance.png; a finished w is reused when the
command is run again. Ho & Salimans (2022) report the same trade: accuracy (there, IS) rises
with w while FID is best at a small w.
"""
import math
import os
import re

from absl import flags, logging

from common.errors import UserError
from experiments import study
from hdd import stages

study.define_data_flags(data_path_required=True)
flags.DEFINE_string("workdir", None, "Output directory.")
flags.DEFINE_integer("train_steps", 1000, "Training steps of each cascade stage.")
flags.DEFINE_float("minutes", 0.0, "> 0: train the dataset's cond_budget cascade for this "
                   "many minutes in all (the budget recipe of experiments/budget.py) in place "
                   "of --train_steps steps of cond_quick.")
flags.DEFINE_bool("quick", False, "Run the whole path at toy scale in a few minutes (tiny "
                  "models, a few steps, samples and weights; for tests).")
flags.DEFINE_integer("num_samples", 500, "Samples per guidance weight.")
flags.DEFINE_list("weights", ["0", "0.5", "1", "2", "3", "5"], "Guidance weights w.")
flags.DEFINE_list("stage_weights", [],
                  "Also sample with a w of its own at each stage, the stages' w joined by ':' "
                  "(e.g. 3:1: w = 3 at the first stage, 1 at the second; 3:0 guides the first "
                  "stage only).")
flags.DEFINE_list("kept_eps_weights", [],
                  "Also sample at these w with DDIM keeping the network's eps after clipping "
                  "x0 (diffusers' default) instead of re-deriving it (the config's choice).")
flags.DEFINE_multi_string("sample_set", [],
                          "stages.<stage>.sample.FIELD=VALUE (repeatable): sample the trained "
                          "cascade at every w of --weights and --stage_weights with these "
                          "settings, in rows of their own (e.g. "
                          "stages.stage1.sample.eta=0.5).")
flags.DEFINE_multi_string("cascade_set", [],
                          "FIELD=VALUE (repeatable) of the cascade's config before it trains, "
                          "e.g. seed=1: a second, independently trained cascade.")
study.define_quality_flags(fid_reference_examples=2000)
flags.mark_flag_as_required("workdir")
FLAGS = flags.FLAGS


def guidance_config():
  """The conditional cascade of --dataset: cond_quick for --train_steps per stage, or the
  cond_budget recipe for --minutes."""
  variant = "cond_budget" if FLAGS.minutes > 0 else "cond_quick"
  config = study.model_configs(FLAGS.dataset, FLAGS.data_path, variant,
                               FLAGS.test_data_path)["hdd"]
  if FLAGS.minutes > 0:
    config.time_budget_minutes = FLAGS.minutes
  else:
    for model in stages.all_sections(config):
      model.train.num_steps = FLAGS.train_steps
      model.train.checkpoint_every = FLAGS.train_steps
  # After the study's training length, as budget.py's --cascade_set: a field set here wins.
  refuse_guidance_fields("cascade_set", FLAGS.cascade_set)
  study.apply_settings(config, "cascade_set", FLAGS.cascade_set, "cascade", "seed=1")
  config.sample.batch_size = 100
  if FLAGS.quick:
    study.quick_model(config)
    config.sample.batch_size = FLAGS.num_samples   # One batch, no padding rows sampled.
  return config


def with_guidance(config, weights: tuple, clipped_eps: bool = True):
  """`config` sampled at guidance weight weights[i] in stage i (one weight: every stage)."""
  config = config.copy_and_resolve_references()
  sections = stages.all_sections(config)
  for model, weight in zip(sections, weights * len(sections) if len(weights) == 1 else weights,
                           strict=True):
    model.sample.guidance_scale = weight
    model.sample.clipped_eps = clipped_eps
  return config


# The sampling fields that `with_guidance` sets at each point of the study.
GUIDANCE_FIELDS = ("guidance_scale", "clipped_eps")


def refuse_guidance_fields(flag: str, settings: list[str]) -> None:
  """Refuses a FIELD=VALUE of --`flag` that sets what the study sets at each point (a row
  would be labelled with a w it was not sampled at)."""
  for setting in settings:
    field = setting.partition("=")[0].rsplit(".", 1)[-1]
    if field in GUIDANCE_FIELDS:
      raise UserError(f"--{flag}={setting}: {field} is set by this study's --weights, "
                      "--stage_weights and --kept_eps_weights; use those")


def sampled_config(config, settings: list[str]):
  """`config` with the --sample_set settings, each a sampling field of a cascade stage."""
  study.check_settings("sample_set", settings, study.CASCADE_SAMPLING_SETTING,
                       study.CASCADE_SAMPLING_FIELDS, study.CASCADE_SAMPLING_EXAMPLE)
  refuse_guidance_fields("sample_set", settings)
  if settings and FLAGS.kept_eps_weights:
    raise UserError("--sample_set applies to --weights and --stage_weights; run "
                    "--kept_eps_weights in a command of its own")
  config = config.copy_and_resolve_references()
  study.apply_settings(config, "sample_set", settings, "cascade",
                       study.CASCADE_SAMPLING_EXAMPLE)
  return config


def stage_weights(values: list[str], num_stages: int) -> list[tuple]:
  """The --stage_weights entries as tuples of one non-negative w per stage."""
  example = ":".join(["3"] + ["1"] * (num_stages - 1))
  parsed = []
  for value in values:
    try:
      weights = [float(w) for w in value.split(":")]
    except ValueError:
      weights = []
    if len(weights) != num_stages or not all(math.isfinite(w) and w >= 0 for w in weights):
      raise UserError(f"--stage_weights={value}: expected {num_stages} non-negative numbers "
                      f"joined by ':', one per stage, e.g. --stage_weights={example}")
    parsed.append(tuple(weights))
  return parsed


def class_accuracy(predicted, labels, num_classes: int) -> dict:
  """Overall accuracy, that of the worst class, and the confusion counts: confusion[k][j]
  samples asked for class k were called j (what the misses were taken for). Keys are
  strings, as results.json gives them back: new rows and reused ones read alike."""
  import numpy as np
  per_class = {str(k): float(np.mean(predicted[labels == k] == k)) for k in np.unique(labels)}
  confusion = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(confusion, (labels, predicted), 1)
  return {"accuracy": float(np.mean(predicted == labels)),
          "worst_class_accuracy": min(per_class.values()), "per_class_accuracy": per_class,
          "confusion": confusion.tolist()}


def commonest_miss(confusion: list, asked: int) -> str:
  """'j (share)': the class most often called among the misses of class `asked`."""
  calls = list(confusion[asked])
  total, calls[asked] = sum(calls), -1
  called = max(range(len(calls)), key=calls.__getitem__)
  return f"{called} ({calls[called] / total:.2f})" if calls[called] > 0 else "-"


def weight_order(item) -> tuple:
  """Sorts table rows by their w ('3') or per-stage w ('3:1'), then by their sampling
  settings ('3 with stages.stage1.sample.eta=0.5')."""
  weights, _, settings = item[0].partition(" with ")
  return [float(w) for w in weights.split(":")], settings


def results_markdown(results: dict) -> str:
  fid_title = (f"FID ({results['fid_reference']})" if "fid_reference" in results else "FID")
  sizes = results.get("image_sizes", [14, 28])
  training = (f"{results['minutes']:g} minutes of training" if results.get("minutes") else
              f"{results['train_steps']} steps per stage")
  lines = [f"Conditional {results.get('dataset', 'mnist')} cascade "
           f"({' -> '.join(f'{s}x{s}' for s in sizes)}, {training}), "
           f"{results['num_samples']} samples per w; classifier test accuracy "
           f"{results['classifier_test_accuracy']:.4f}.", "",
           f"| DDIM eps | w | class accuracy | worst class | {fid_title} | network evals / image "
           "| sample s |", "|---|---|---|---|---|---|---|"]
  for table, name in (("weights", "from clipped x0"), ("kept_eps", "kept (diffusers)"),
                      ("stage_weights", "from clipped x0, w per stage"),
                      ("sampled", "from clipped x0, sampled with the settings named")):
    for key, row in sorted(results.get(table, {}).items(), key=weight_order):
      fid = f"{row['fid']:.2f}" if "fid" in row else "-"
      lines.append(f"| {name} | {key} | {row['accuracy']:.3f} | "
                   f"{row['worst_class_accuracy']:.3f} | {fid} | "
                   f"{' + '.join(map(str, row['evaluations']))} | {row['sample_seconds']:.1f} |")
  rows = [row for table in ("weights", "stage_weights", "sampled")
          for row in sorted(results.get(table, {}).items(), key=weight_order)]
  if rows:
    classes = sorted(rows[0][1]["per_class_accuracy"], key=int)
    lines += ["", "Class accuracy of the samples asked for each class (eps from clipped x0):", "",
              "| w | " + " | ".join(f"class {k}" for k in classes) + " |",
              "|---|" + "---|" * len(classes)]
    lines += [f"| {key} | " + " | ".join(f"{row['per_class_accuracy'][k]:.2f}" for k in classes)
              + " |" for key, row in rows]
    confused = [(key, row) for key, row in rows if "confusion" in row]
    if confused:
      lines += ["", "The class the misses were most often called, with its share of the samples "
                "asked for each class:", "",
                "| w | " + " | ".join(f"class {k}" for k in classes) + " |",
                "|---|" + "---|" * len(classes)]
      lines += [f"| {key} | " + " | ".join(commonest_miss(row["confusion"], int(k))
                                           for k in classes) + " |" for key, row in confused]
  return "\n".join(lines) + "\n"


def guidance_plot(results: dict, path: str) -> None:
  """FID (left axis) and class accuracy (right axis) against w."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  figure, fid_axis = plt.subplots(figsize=(6, 3.8), dpi=120)
  accuracy_axis = fid_axis.twinx()
  for table, style, name in (("weights", "-", "eps from clipped x0"),
                             ("kept_eps", ":", "eps kept (diffusers' DDIM)")):
    rows = sorted(results.get(table, {}).items(), key=weight_order)
    if not rows:
      continue
    weights = [float(key) for key, _ in rows]
    if all("fid" in row for _, row in rows):
      fid_axis.plot(weights, [row["fid"] for _, row in rows], "o" + style, color="tab:blue",
                    label=f"FID, {name}")
    accuracy_axis.plot(weights, [row["accuracy"] for _, row in rows], "s" + style,
                       color="tab:red", label=f"accuracy, {name}")
  fid_axis.set_xlabel("guidance weight w (every stage)")
  fid_axis.set_ylabel("FID (lower is better)", color="tab:blue")
  accuracy_axis.set_ylabel("class accuracy of samples", color="tab:red")
  accuracy_axis.set_ylim(0, 1.02)
  handles = fid_axis.get_legend_handles_labels()[0] + accuracy_axis.get_legend_handles_labels()[0]
  fid_axis.legend(handles=handles, fontsize=7, loc="center right")
  fid_axis.set_title(f"Classifier-free guidance, conditional {results.get('dataset', 'mnist')} "
                     "cascade "
                     f"({results['num_samples']} samples per w)", fontsize=9)
  fid_axis.grid(alpha=0.3)
  study.save_figure(figure, path)


def main(argv):
  del argv
  if FLAGS.quick:
    FLAGS.num_samples, FLAGS.classifier_steps, FLAGS.train_steps = 20, 4, 2
    FLAGS.fid_reference_examples, FLAGS.weights = 16, FLAGS.weights[:2]
    FLAGS.minutes = min(FLAGS.minutes, 0.05)
  study.numbers("weights", FLAGS.weights, float, "0,1,3")
  study.numbers("kept_eps_weights", FLAGS.kept_eps_weights, float, "0,1,3", allow_empty=True)
  config = guidance_config()   # configs only: the libraries are imported below
  per_stage = stage_weights(FLAGS.stage_weights, len(stages.names(config)))
  sampling = sampled_config(config, FLAGS.sample_set)
  workdir = FLAGS.workdir
  # --fid is left out: a w measured without FID is measured again under --fid. The
  # dataset, test data and budget are recorded only when given, so that the workdirs of
  # MNIST runs from before these flags existed stay valid.
  made_from = {"data_path": study.absolute_path(FLAGS.data_path), **study.quality_inputs(),
               "train_steps": FLAGS.train_steps, "num_samples": FLAGS.num_samples}
  if FLAGS.dataset != "mnist":
    made_from["dataset"] = FLAGS.dataset
  if FLAGS.test_data_path:
    made_from["test_data_path"] = study.absolute_path(FLAGS.test_data_path)
  if FLAGS.minutes:
    made_from["minutes"] = FLAGS.minutes
  if FLAGS.cascade_set:
    made_from["cascade_set"] = FLAGS.cascade_set
  if FLAGS.quick:
    made_from["quick"] = True
  results = study.open_workdir(workdir, "guidance", made_from)
  study.start_runtime()
  from common import images
  from hdd import config_checks, generate, pictures

  config_checks.check_config(config)
  config_checks.check_config(sampling)
  results.data.update(train_steps=FLAGS.train_steps, num_samples=FLAGS.num_samples,
                      dataset=FLAGS.dataset, minutes=FLAGS.minutes,
                      image_sizes=stages.image_sizes(config))
  quality = study.Quality(config.data, workdir, FLAGS.classifier_steps, FLAGS.fid,
                          FLAGS.fid_reference_examples)
  results.data["classifier_test_accuracy"] = quality.description["classifier_test_accuracy"]
  if FLAGS.fid:
    results.data["fid_reference"] = quality.description["fid_reference"]
  stage_params, _ = study.train_model(config, os.path.join(workdir, "cascade"))
  labels = generate.class_labels(config, FLAGS.num_samples)
  points = ([("weights", (float(w),), True) for w in FLAGS.weights] +
            [("kept_eps", (float(w),), False) for w in FLAGS.kept_eps_weights] +
            [("stage_weights", weights, True) for weights in per_stage])
  settings = ",".join(FLAGS.sample_set)
  for table, weights, clipped_eps in points:
    key = ":".join(f"{w:g}" for w in weights)
    if settings:
      table, key = "sampled", f"{key} with {settings}"
    rows = results.table(table)
    if key in rows and ("fid" in rows[key] or not FLAGS.fid):
      continue
    guided = with_guidance(sampling, weights, clipped_eps)
    samples, cost = study.sample_model(guided, stage_params, FLAGS.num_samples,
                                       f"w={key}" + ("" if clipped_eps else ", eps kept"))
    rows[key] = {**class_accuracy(quality.predict(samples), labels, stages.class_count(config)),
                 **cost, **quality(samples)}
    logging.info("%s w=%s: %s", table, key, rows[key])
    results.save()
    name = re.sub(r"[^\w.=-]+", "_", key) + ("" if clipped_eps else "_kept_eps")
    images.save_png(os.path.join(workdir, f"grid_w{name}.png"),
                    pictures.for_display(pictures.sample_grid(samples, labels),
                                         samples.shape[1]))

  study.write_markdown(workdir, results_markdown(results.data))
  guidance_plot(results.data, os.path.join(workdir, "guidance.png"))


if __name__ == "__main__":
  study.run(main)
