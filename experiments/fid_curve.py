"""FID during training, against training images and against wall-clock, of runs that
measured it (`train.fid_every`; the FID hook writes each run's fid_curve.json, and for a
cascade measures through the cascade: the earlier stages' samples handed over to the
last stage's current EMA model, hdd.hooks.FidMonitor):

  python experiments/hdd_vs_ddpm.py ... --workdir=runs/compare_mnist --fid_every=200
  python experiments/fid_curve.py --workdir=runs/compare_mnist/curves \
      --runs="DDPM=runs/compare_mnist/ddpm,HDD=runs/compare_mnist/hdd"

or any runs of main.py with --config.train.fid_every=N (on the last stage of a cascade).
A cascade's earlier stages train first, so their images and seconds come before its first
point. Writes WORKDIR/results.json, results.md (the points) and fid_curve.png.
"""
import os

from absl import flags

from common.errors import UserError
from experiments import study

flags.DEFINE_string("workdir", None, "Output directory.")
flags.DEFINE_list("runs", None, "label=workdir pairs of runs to plot (each run's models are "
                  "those of its config.json).")
flags.DEFINE_string("title", "FID during training", "Title of the plot.")
flags.mark_flags_as_required(["workdir", "runs"])
FLAGS = flags.FLAGS


def parse_runs(pairs: list[str]) -> dict:
  """{label: workdir} of --runs, each workdir an existing directory; a UserError naming
  the flag and how to write it otherwise."""
  runs = {}
  for pair in pairs or [""]:
    label, sep, directory = pair.partition("=")
    if not (label and sep and directory) or label in runs:
      raise UserError(f"--runs={','.join(pairs)}: expected LABEL=WORKDIR pairs with distinct "
                      "labels, e.g. --runs=DDPM=runs/compare/ddpm,HDD=runs/compare/hdd")
    if not os.path.isdir(directory):
      raise UserError(f"--runs: {pair}: {directory} is not a directory; give the workdir of a "
                      "run trained with --config.train.fid_every=N")
    runs[label] = directory
  return runs


def results_markdown(curves: dict) -> str:
  lines = ["| run | training images | training s | FID | samples |", "|---|---|---|---|---|"]
  for label, curve in curves.items():
    lines += [f"| {label} | {row['images']:.0f} | {row['seconds']:.0f} | {row['fid']:.2f} | "
              f"{row['num_samples']} |" for row in curve]
  return "\n".join(lines) + "\n"


def curve_plot(curves: dict, path: str, title: str) -> None:
  """FID against training images (steps x batch, all stages) and against seconds."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  figure, axes = plt.subplots(1, 2, figsize=(10, 3.8), dpi=120)
  for label, curve in curves.items():
    for axis, key in zip(axes, ("images", "seconds")):
      axis.plot([row[key] for row in curve], [row["fid"] for row in curve], "o-", label=label)
  axes[0].set_xlabel("training images (steps x batch, all stages)")
  axes[1].set_xlabel("training seconds (FID measurements excluded)")
  for axis in axes:
    axis.set_ylabel("FID (lower is better)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
  figure.suptitle(title, fontsize=10)
  study.save_figure(figure, path)


def main(argv):
  del argv
  runs = parse_runs(FLAGS.runs)
  curves = {label: study.load_curve(directory) for label, directory in runs.items()}
  results = study.open_workdir(FLAGS.workdir, "fid_curve", {
      "runs": {label: study.absolute_path(directory) for label, directory in runs.items()}})
  results.data["curves"] = curves
  results.save()
  study.write_markdown(FLAGS.workdir, results_markdown(curves))
  curve_plot(curves, os.path.join(FLAGS.workdir, "fid_curve.png"), FLAGS.title)


if __name__ == "__main__":
  study.run(main)
