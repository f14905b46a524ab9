"""Classifier-free guidance on the conditional MNIST cascade at CPU scale: FID and
sample-class accuracy against the guidance weight w.

  python experiments/guidance.py --data_path=../shared/data/mnist.npz --workdir=runs/guidance

Trains `configs/hdd_mnist.py:cond_quick` (14x14 -> 28x28, every stage conditioned on the
digit with label dropout 0.1) for --train_steps per stage, and the project's MNIST
classifier (evaluation.classifier) at 28x28. For each w (the same w at every stage) it
samples --num_samples images, ten classes in turn, from one seed, and measures
  accuracy: the share of samples asked for class k that the classifier calls k (overall,
            and of the worst class);
  FID:      against --fid_reference_examples test images (pytorch-fid Inception; --nofid
            skips it), and the classifier distance (experiments/study.py).
With --kept_eps_weights it also samples with diffusers' default DDIM, which keeps the
network's eps after clipping x0: under guidance that chain leaves the data range and class
accuracy falls as w grows. Writes WORKDIR/results.json, results.md and guidance.png; a
finished w is reused when the command is run again. Ho & Salimans (2022) report the same
trade: accuracy (there, IS) rises with w while FID is best at a small w.
"""
import os

from absl import flags, logging

from experiments import study
from hdd import stages

flags.DEFINE_string("data_path", None, "MNIST npz (Keras layout).")
flags.DEFINE_string("workdir", None, "Output directory.")
flags.DEFINE_integer("train_steps", 1000, "Training steps of each cascade stage.")
flags.DEFINE_integer("num_samples", 500, "Samples per guidance weight.")
flags.DEFINE_list("weights", ["0", "0.5", "1", "2", "3", "5"], "Guidance weights w.")
flags.DEFINE_list("kept_eps_weights", [],
                  "Also sample at these w with DDIM keeping the network's eps after clipping "
                  "x0 (diffusers' default) instead of re-deriving it (the config's choice).")
study.define_quality_flags(fid_reference_examples=2000)
flags.mark_flags_as_required(["data_path", "workdir"])
FLAGS = flags.FLAGS


def guidance_config():
  from configs import hdd_mnist
  config = hdd_mnist.get_config("cond_quick")
  config.data.source, config.data.path = "npz", FLAGS.data_path
  for model in stages.all_sections(config):
    model.train.num_steps = FLAGS.train_steps
    model.train.checkpoint_every = FLAGS.train_steps
  config.sample.batch_size = 100
  return config


def with_guidance(config, weight: float, clipped_eps: bool = True):
  config = config.copy_and_resolve_references()
  for model in stages.all_sections(config):
    model.sample.guidance_scale = weight
    model.sample.clipped_eps = clipped_eps
  return config


def class_accuracy(predicted, labels) -> dict:
  """Overall accuracy and that of the worst class."""
  import numpy as np
  per_class = {int(k): float(np.mean(predicted[labels == k] == k)) for k in np.unique(labels)}
  return {"accuracy": float(np.mean(predicted == labels)),
          "worst_class_accuracy": min(per_class.values()), "per_class_accuracy": per_class}


def results_markdown(results: dict) -> str:
  fid_title = (f"FID ({results['fid_reference']})" if "fid_reference" in results else "FID")
  lines = [f"Conditional MNIST cascade (14x14 -> 28x28, {results['train_steps']} steps per stage), "
           f"{results['num_samples']} samples per w; classifier test accuracy "
           f"{results['classifier_test_accuracy']:.4f}.", "",
           f"| DDIM eps | w | class accuracy | worst class | {fid_title} | network evals / image "
           "| sample s |", "|---|---|---|---|---|---|---|"]
  for table, name in (("weights", "from clipped x0"), ("kept_eps", "kept (diffusers)")):
    for key, row in sorted(results.get(table, {}).items(), key=lambda kv: float(kv[0])):
      fid = f"{row['fid']:.2f}" if "fid" in row else "-"
      lines.append(f"| {name} | {key} | {row['accuracy']:.3f} | "
                   f"{row['worst_class_accuracy']:.3f} | {fid} | "
                   f"{' + '.join(map(str, row['evaluations']))} | {row['sample_seconds']:.1f} |")
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
    rows = sorted(results.get(table, {}).items(), key=lambda kv: float(kv[0]))
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
  fid_axis.set_title(f"Classifier-free guidance, conditional MNIST cascade "
                     f"({results['num_samples']} samples per w)", fontsize=9)
  fid_axis.grid(alpha=0.3)
  study.save_figure(figure, path)


def main(argv):
  del argv
  study.numbers("weights", FLAGS.weights, float, "0,1,3")
  study.numbers("kept_eps_weights", FLAGS.kept_eps_weights, float, "0,1,3", allow_empty=True)
  workdir = FLAGS.workdir
  # --fid is left out: a w measured without FID is measured again under --fid.
  results = study.open_workdir(workdir, "guidance", {
      "data_path": study.absolute_path(FLAGS.data_path), **study.quality_inputs(),
      "train_steps": FLAGS.train_steps, "num_samples": FLAGS.num_samples})
  study.start_runtime()
  from common import images
  from hdd import config_checks, generate, pictures

  config = guidance_config()
  config_checks.check_config(config)
  results.data.update(train_steps=FLAGS.train_steps, num_samples=FLAGS.num_samples)
  quality = study.Quality(config.data, workdir, FLAGS.classifier_steps, FLAGS.fid,
                          FLAGS.fid_reference_examples)
  results.data["classifier_test_accuracy"] = quality.description["classifier_test_accuracy"]
  if FLAGS.fid:
    results.data["fid_reference"] = quality.description["fid_reference"]
  stage_params, _ = study.train_model(config, os.path.join(workdir, "cascade"))
  labels = generate.class_labels(config, FLAGS.num_samples)
  points = ([("weights", float(w), True) for w in FLAGS.weights] +
            [("kept_eps", float(w), False) for w in FLAGS.kept_eps_weights])
  for table, weight, clipped_eps in points:
    key = f"{weight:g}"
    rows = results.table(table)
    if key in rows and ("fid" in rows[key] or not FLAGS.fid):
      continue
    guided = with_guidance(config, weight, clipped_eps)
    samples, cost = study.sample_model(guided, stage_params, FLAGS.num_samples,
                                       f"w={key}" + ("" if clipped_eps else ", eps kept"))
    rows[key] = {**class_accuracy(quality.predict(samples), labels), **cost, **quality(samples)}
    logging.info("%s w=%s: %s", table, key, rows[key])
    results.save()
    suffix = "" if clipped_eps else "_kept_eps"
    images.save_png(os.path.join(workdir, f"grid_w{key}{suffix}.png"),
                    pictures.sample_grid(samples, labels))

  study.write_markdown(workdir, results_markdown(results.data))
  guidance_plot(results.data, os.path.join(workdir, "guidance.png"))


if __name__ == "__main__":
  study.run(main)
