"""The number of noise steps T against quality and generation time, for the full-resolution
DDPM and the 14 -> 28 cascade:

  python experiments/t_sweep.py --dataset=mnist --data_path=../shared/data/mnist.npz \
      --workdir=runs/t_sweep_mnist
  python experiments/t_sweep.py --dataset=fashion_mnist --workdir=runs/t_sweep_fmnist

For each T (--noise_steps) each model trains from the quick config with T noise steps
and the same training (--train_steps for the DDPM; each cascade stage half of them, the
published equal-epoch protocol), so only T differs. The beta range stays the DDPM
paper's linear 1e-4..0.02 (stage 2 of the cascade: 1e-4..0.01) at every T, as in the
published sweep: a short chain then ends far from pure noise, and the table gives the
signal left at T, sqrt(alpha_bar_T), so that this is visible. Each model is sampled twice:
the ancestral chain of all T steps (on every stage), and DDIM with --ddim_steps steps (per
stage). Measured: FID, KID and the classifier distance against the test split
(experiments/study.py), training seconds and sampling seconds (compilation excluded).
Writes WORKDIR/results.json, results.md and t_sweep.png; a finished T is reused.
"""
from absl import flags, logging

from experiments import study
from hdd import stages

study.define_common_flags(num_samples=500)
study.define_quality_flags()
flags.DEFINE_list("noise_steps", ["100", "250", "500", "1000", "2000"], "The values of T.")
flags.DEFINE_list("models", ["ddpm", "hdd"], "ddpm (28x28) and/or hdd (14x14 -> 28x28).")
flags.DEFINE_integer("train_steps", 600, "DDPM training steps; each cascade stage gets half.")
flags.DEFINE_integer("ddim_steps", 50, "DDIM steps (per cascade stage).")
FLAGS = flags.FLAGS

SAMPLERS = ("ancestral", "ddim")
MODELS = ("ddpm", "hdd")


def sweep_config(model: str, noise_steps: int):
  """The model's quick config with T noise steps, trained and sampled as the flags say."""
  config = study.model_configs(FLAGS.dataset, FLAGS.data_path,
                              test_data_path=FLAGS.test_data_path)[model]
  chains = stages.all_sections(config)
  for chain in chains:
    chain.diffusion.num_steps = noise_steps
    chain.sample.num_steps = min(FLAGS.ddim_steps, noise_steps)
    chain.train.num_steps = FLAGS.train_steps // len(chains)
    chain.train.checkpoint_every = chain.train.num_steps
  config.sample.batch_size = 100
  if FLAGS.quick:
    study.quick_model(config)
  return config


def with_sampler(config, sampler: str):
  """The config sampled by the T-step ancestral chain or by DDIM with --ddim_steps."""
  config = config.copy_and_resolve_references()
  for chain in stages.all_sections(config):
    if sampler == "ancestral":
      chain.sample.update(sampler="ddpm", num_steps=0)
    else:
      chain.sample.update(sampler="ddim", num_steps=min(FLAGS.ddim_steps,
                                                        chain.diffusion.num_steps))
  return config


def signal_left(config) -> float:
  """sqrt(alpha_bar_T) of the chain that starts from noise: how much of x0 the noisiest
  step keeps (0 for a chain that ends in pure noise)."""
  import numpy as np

  from hdd.build import create_schedule
  first = stages.all_sections(config)[0]
  return float(np.sqrt(np.asarray(create_schedule(first.diffusion).alphas_cumprod)[-1]))


def results_markdown(data: dict) -> str:
  quality = data["quality"]
  lines = [f"Dataset: {data['dataset']}; {data['num_samples']} samples per cell; training "
           f"{data['train_steps']} steps of 64 for the DDPM, {data['train_steps'] // 2} per "
           "cascade stage. FID and "
           f"Inception KID x1e3 against the {quality.get('fid_reference', '-')}; classifier "
           f"Fréchet distance (FCD) against the {quality['classifier_reference']} (classifier "
           f"test accuracy {quality['classifier_test_accuracy']:.3f}). DDIM: "
           f"{data['ddim_steps']} steps per stage.", "",
           "| model | T | sqrt(alpha_bar_T) | train s | ancestral: FID | FCD | sample s | "
           "DDIM: FID | FCD | sample s |", "|---|---|---|---|---|---|---|---|---|---|"]
  names = study.model_names(data["dataset"])
  for model, rows in data["runs"].items():
    for key, row in sorted(rows.items(), key=lambda kv: int(kv[0])):
      cells = []
      for sampler in SAMPLERS:
        measured = row[sampler]
        cells += [study.number(measured.get("fid")), study.number(measured["fcd"]),
                  study.number(measured["sample_seconds"], 1)]
      lines.append(f"| {names[model]} | {key} | {row['signal_left']:.3f} | "
                   f"{row['train_seconds']:.0f} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def sweep_plot(data: dict, path: str) -> None:
  """Quality (FID, or FCD without FID) and sampling seconds against T, log-scaled."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  figure, (quality_axis, time_axis) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=120)
  metric = "fid" if data["quality"].get("fid_reference") else "fcd"
  names = study.model_names(data["dataset"])
  for model, rows in data["runs"].items():
    points = sorted((int(k), row) for k, row in rows.items())
    t_values = [t for t, _ in points]
    for sampler, style in (("ancestral", "o-"), ("ddim", "s--")):
      label = f"{names[model]}, {'T-step ancestral' if sampler == 'ancestral' else 'DDIM'}"
      quality_axis.plot(t_values, [row[sampler][metric] for _, row in points], style,
                        label=label)
      time_axis.plot(t_values, [row[sampler]["sample_seconds"] for _, row in points], style,
                     label=label)
  t_values = sorted({int(k) for rows in data["runs"].values() for k in rows})
  for axis, ylabel in ((quality_axis, f"{metric.upper()} (lower is better)"),
                       (time_axis, f"seconds for {data['num_samples']} samples")):
    axis.set_xscale("log")
    axis.set_xticks(t_values, [str(t) for t in t_values])
    axis.minorticks_off()
    axis.set_xlabel("noise steps T")
    axis.set_ylabel(ylabel)
    axis.grid(alpha=0.3)
  time_axis.set_yscale("log")
  quality_axis.legend(fontsize=7)
  figure.suptitle(f"{data['dataset']}: the number of noise steps T", fontsize=10)
  study.save_figure(figure, path)


def check_flags() -> None:
  """Refuses a bad --models or --noise_steps before anything runs."""
  study.choices("models", FLAGS.models, MODELS)
  study.numbers("noise_steps", FLAGS.noise_steps, int, "100,1000", positive=True)


def main(argv):
  del argv
  import os

  check_flags()
  if FLAGS.quick:
    FLAGS.noise_steps, FLAGS.ddim_steps, FLAGS.num_samples = ["10", "20"], 5, 4
    FLAGS.train_steps = 4
  workdir = FLAGS.workdir
  results = study.open_workdir(workdir, "t_sweep", {
      **study.common_inputs(), **study.quality_inputs(), "fid": FLAGS.fid,
      "train_steps": FLAGS.train_steps, "ddim_steps": FLAGS.ddim_steps})
  study.start_runtime()
  from hdd import config_checks

  first = sweep_config(FLAGS.models[0], int(FLAGS.noise_steps[0]))
  quality = study.Quality(first.data, workdir,
                          4 if FLAGS.quick else FLAGS.classifier_steps, FLAGS.fid,
                          FLAGS.fid_reference_examples)
  results.data.update(dataset=FLAGS.dataset, num_samples=FLAGS.num_samples,
                      train_steps=FLAGS.train_steps, ddim_steps=FLAGS.ddim_steps,
                      quality=quality.description)
  runs = results.table("runs")
  for model in FLAGS.models:
    rows = runs.setdefault(model, {})
    for noise_steps in map(int, FLAGS.noise_steps):
      if str(noise_steps) in rows:
        continue
      config = sweep_config(model, noise_steps)
      config_checks.check_config(config)
      params, train_seconds = study.train_model(config, os.path.join(workdir,
                                                                     f"{model}_T{noise_steps}"))
      row = {"signal_left": signal_left(config), "train_seconds": sum(train_seconds)}
      for sampler in SAMPLERS:
        label = f"{model} T={noise_steps}, {sampler}"
        samples, cost = study.sample_model(with_sampler(config, sampler), params,
                                           FLAGS.num_samples, label)
        row[sampler] = {**cost, **quality(samples)}
      rows[str(noise_steps)] = row
      logging.info("T sweep %s T=%d: %s", model, noise_steps, row)
      results.save()
  study.write_markdown(workdir, results_markdown(results.data))
  sweep_plot(results.data, os.path.join(workdir, "t_sweep.png"))


if __name__ == "__main__":
  study.run(main)
