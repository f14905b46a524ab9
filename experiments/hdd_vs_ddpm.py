"""The hierarchical-diffusion comparison at CPU scale, one command per dataset:

  python experiments/hdd_vs_ddpm.py --dataset=mnist --data_path=../shared/data/mnist.npz \
      --workdir=runs/compare_mnist
  python experiments/hdd_vs_ddpm.py --dataset=fashion_mnist --workdir=runs/compare_fmnist

(a) the published protocol: a full-resolution DDPM (T=1000) against the 14->28 cascade
(T=500 per stage, each stage half the DDPM's steps, so equal total epochs), same U-Net
family and batch; train seconds per stage, sample seconds per stage, and quality;
(b) the gamma sweep of the `mix` hand-over and the t* sweep of `truncate`, reusing one
set of stage-1 samples so only the hand-over differs.

Quality: FID and Inception KID against the test split (all of it unless
--fid_reference_examples says otherwise) and the classifier Fréchet distance (FCD) and KID
in the features of evaluation.classifier, for every row and every sweep point
(experiments/study.py). Writes WORKDIR/results.json, results.md and sweeps.png; a
finished part is reused when the command is run again.
"""
import os

from absl import flags, logging

from experiments import study
from hdd import layout, stages

study.define_common_flags(num_samples=500)
study.define_quality_flags()
flags.DEFINE_integer("ddpm_steps", 800, "DDPM train steps; each HDD stage gets half.")
flags.DEFINE_integer("ddpm_sample_steps", 100, "DDIM steps of the DDPM (T=1000).")
flags.DEFINE_integer("stage_sample_steps", 50, "DDIM steps per HDD stage (T=500).")
flags.DEFINE_list("gammas", ["0", "0.1", "0.3", "0.5", "0.7", "1"], "mix sweep.")
flags.DEFINE_list("start_steps", ["49", "99", "199", "299", "399", "499"], "truncate sweep.")
flags.DEFINE_integer("fid_every", 0, "> 0: the FID curve during training: the DDPM's FID of "
                     "--fid_samples samples every N steps, the cascade's (through the cascade) "
                     "every N/2 stage-2 steps; plot with experiments/fid_curve.py.")
flags.DEFINE_integer("fid_samples", 200, "Samples of each FID-curve point.")
flags.DEFINE_float("filter_threshold", 0.0,
                   "> 0: also sample the cascade with the low-resolution filter (a 14x14 "
                   "classifier's top-class probability below this is re-drawn).")
FLAGS = flags.FLAGS

# The flags besides the common and quality ones that change results: the training of both
# models, their samplers and the FID curves made while they train.
RESULT_FLAGS = ("ddpm_steps", "ddpm_sample_steps", "stage_sample_steps", "fid_every",
                "fid_samples")


def configs():
  ddpm, hdd = study.model_configs(FLAGS.dataset, FLAGS.data_path,
                                 test_data_path=FLAGS.test_data_path).values()
  for config in (ddpm, hdd):
    config.sample.num_samples = FLAGS.num_samples
    config.sample.batch_size = 100
  ddpm.train.num_steps = FLAGS.ddpm_steps
  ddpm.train.checkpoint_every = FLAGS.ddpm_steps // 2
  ddpm.sample.num_steps = FLAGS.ddpm_sample_steps
  for stage in stages.all_sections(hdd):
    stage.train.num_steps = FLAGS.ddpm_steps // 2
    stage.train.checkpoint_every = FLAGS.ddpm_steps // 4
    stage.sample.num_steps = FLAGS.stage_sample_steps
  # The cascade's curve is measured through it, on its last stage.
  for model, fid_every in ((ddpm.train, FLAGS.fid_every),
                           (stages.all_sections(hdd)[-1].train, FLAGS.fid_every // 2)):
    model.fid_every, model.fid_samples = fid_every, FLAGS.fid_samples
  for config in (ddpm, hdd):
    config.eval.reference_examples = FLAGS.fid_reference_examples
    if FLAGS.quick:
      study.quick_model(config)
  return ddpm, hdd


def main(argv):
  del argv
  import numpy as np

  study.numbers("gammas", FLAGS.gammas, float, "0,0.3,1")
  study.numbers("start_steps", FLAGS.start_steps, int, "99,499")
  if FLAGS.quick:
    # As many samples as each FID-curve point: the final sampling reuses their programs.
    # Two, the fewest a covariance takes: every row's samples also go through the FID
    # Inception.
    FLAGS.num_samples, FLAGS.ddpm_steps, FLAGS.classifier_steps = 2, 8, 4
    FLAGS.fid_samples = 2
    FLAGS.ddpm_sample_steps, FLAGS.stage_sample_steps = 10, 5
  workdir = FLAGS.workdir
  results = study.open_workdir(workdir, "hdd_vs_ddpm", {
      **study.common_inputs(), **study.quality_inputs(), "fid": FLAGS.fid,
      **{name: getattr(FLAGS, name) for name in RESULT_FLAGS}})
  study.start_runtime()
  from common import parallel
  from evaluation import classifier
  from experiments import plots
  from hdd import cascade, config_checks, generate, timing_report
  from hdd.maths.handover import Handover
  from hdd.plan import SamplingPlan

  ddpm_config, hdd_config = configs()
  config_checks.check_config(ddpm_config)
  config_checks.check_config(hdd_config)
  quality = study.Quality(ddpm_config.data, workdir, FLAGS.classifier_steps, FLAGS.fid,
                          FLAGS.fid_reference_examples)
  results.data["quality"] = quality.description
  mesh = parallel.create_mesh()

  if "ddpm" not in results.data:
    params, train_seconds = study.train_model(ddpm_config, os.path.join(workdir, "ddpm"))
    samples, cost = study.sample_model(ddpm_config, params, FLAGS.num_samples, "DDPM")
    results.data["ddpm"] = {"train_seconds": sum(train_seconds), **cost, **quality(samples)}
    np.savez_compressed(os.path.join(workdir, "ddpm_samples.npz"), images=samples)
    results.save()

  hdd_dir = os.path.join(workdir, "hdd")
  if "hdd" not in results.data:
    stage_params, train_seconds = study.train_model(hdd_config, hdd_dir)
    outputs, report, _ = cascade.sample_cascade(
        hdd_config, stage_params, FLAGS.num_samples,
        progress=study.sampling_progress(hdd_config, FLAGS.num_samples, "HDD"))
    timing_report.write_timing_table(hdd_config, hdd_dir, report)
    results.data["hdd"] = {"train_seconds": train_seconds,
                           "sample_seconds": [s["sample_seconds"] for s in report["stages"]],
                           "evaluations": [s["network_evaluations_per_image"]
                                           for s in report["stages"]],
                           **quality(list(outputs.values())[-1])}
    np.savez_compressed(os.path.join(workdir, "hdd_samples.npz"), **outputs)
    results.save()

  # The sweeps: the last stage handed the same samples of the stage before it.
  stage_params = cascade.restore(hdd_config, hdd_dir)
  *_, before, last = stages.models(hdd_config)
  low_res = np.load(os.path.join(workdir, "hdd_samples.npz"))[before.name]
  sweeps = results.table("sweeps")
  points = [("mix", float(g), -1) for g in FLAGS.gammas] + [
      ("truncate", 0.3, int(t)) for t in FLAGS.start_steps]
  for method, gamma, start_step in points:
    key = f"{gamma:g}" if method == "mix" else str(start_step)
    if key in sweeps.setdefault(method, {}):
      continue
    plan = SamplingPlan.create(last.config, Handover(method, gamma, start_step,
                                                     last.config.sample.upsample))
    samples, info = generate.sample_images(
        plan, stage_params[last.name], mesh, FLAGS.num_samples, stream=last.index,
        low_res=low_res,
        progress=study.images_progress(f"Sampling {last.name}, {method} {key}",
                                       FLAGS.num_samples))
    sweeps[method][key] = {
        "gamma": plan.gamma, "evaluations": plan.network_evaluations,
        "stage2_sample_seconds": info["sample_seconds"], **quality(samples)}
    logging.info("sweep %s %s: %s", method, key, sweeps[method][key])
    results.save()

  if FLAGS.filter_threshold and "filter" not in results.data:
    size = stages.image_sizes(hdd_config)[0]
    critic_dir = layout.classifier_dir(workdir, size)
    if not classifier.is_trained(critic_dir):
      classifier.train_classifier(hdd_config.data, size, 10, critic_dir,
                                  num_steps=FLAGS.classifier_steps)
    hdd_config.filter.update(enabled=True, threshold=FLAGS.filter_threshold)
    outputs, report, _ = cascade.sample_cascade(
        hdd_config, stage_params, FLAGS.num_samples,
        critic=classifier.confidence_critic(critic_dir, size),
        progress=study.sampling_progress(hdd_config, FLAGS.num_samples, "HDD, filtered"))
    results.data["filter"] = {**report["stages"][0]["filter"],
                              "sample_seconds": [s["sample_seconds"] for s in report["stages"]],
                              **quality(list(outputs.values())[-1])}
    results.save()

  study.write_markdown(workdir, plots.results_markdown(results.data, FLAGS.dataset,
                                                       FLAGS.num_samples))
  plots.sweep_plot(results.data["sweeps"], os.path.join(workdir, "sweeps.png"),
                   f"{FLAGS.dataset}: stage-2 hand-over ({FLAGS.num_samples} samples)")


if __name__ == "__main__":
  study.run(main)
