"""The hierarchical-diffusion comparison at CPU scale, one command per dataset:

  python experiments/hdd_vs_ddpm.py --dataset=mnist --data_path=../shared/data/mnist.npz \
      --workdir=runs/compare_mnist
  python experiments/hdd_vs_ddpm.py --dataset=fashion_mnist --workdir=runs/compare_fmnist

(a) the published protocol: a full-resolution DDPM (T=1000) against the 14->28 cascade
(T=500 per stage, each stage half the DDPM's steps, so equal total epochs), same U-Net
family and batch; train seconds per stage, sample seconds per stage, and quality;
(b) the gamma sweep of the `mix` hand-over and the t* sweep of `truncate`, reusing one
set of stage-1 samples so only the hand-over differs.

Quality is the classifier Fréchet distance (FCD: a Fréchet distance in the 128-d features
of evaluation.classifier, trained here on the real training split) against the whole
test split, and KID in the same features (x1e3); with --fid_reference_examples=N also FID
and Inception KID of the two main rows against N test images. Writes WORKDIR/results.json,
results.md and sweeps.png; a finished part is reused when the command is run again.
"""
import json
import os

from absl import app, flags, logging

flags.DEFINE_enum("dataset", "mnist", ["mnist", "fashion_mnist"], "Dataset.")
flags.DEFINE_string("data_path", "", "npz (MNIST) or idx folder; default: the config's.")
flags.DEFINE_string("workdir", None, "Output directory.")
flags.DEFINE_integer("ddpm_steps", 800, "DDPM train steps; each HDD stage gets half.")
flags.DEFINE_integer("num_samples", 500, "Samples per model and per sweep point.")
flags.DEFINE_integer("ddpm_sample_steps", 100, "DDIM steps of the DDPM (T=1000).")
flags.DEFINE_integer("stage_sample_steps", 50, "DDIM steps per HDD stage (T=500).")
flags.DEFINE_list("gammas", ["0", "0.1", "0.3", "0.5", "0.7", "1"], "mix sweep.")
flags.DEFINE_list("start_steps", ["49", "99", "199", "299", "399", "499"], "truncate sweep.")
flags.DEFINE_integer("classifier_steps", 1000, "Training steps of the feature classifier.")
flags.DEFINE_float("filter_threshold", 0.0,
                   "> 0: also sample the cascade with the low-resolution filter (a 14x14 "
                   "classifier's top-class probability below this is re-drawn).")
flags.DEFINE_integer("fid_reference_examples", 0,
                     "> 0: also FID/KID of the DDPM and HDD rows against this many test images "
                     "(Inception on CPU runs at a few images/s); 0: skip.")
flags.mark_flag_as_required("workdir")
FLAGS = flags.FLAGS


def configs():
  from configs import ddpm_fashion_mnist, ddpm_mnist, hdd_fashion_mnist, hdd_mnist
  ddpm_module, hdd_module = {"mnist": (ddpm_mnist, hdd_mnist),
                             "fashion_mnist": (ddpm_fashion_mnist, hdd_fashion_mnist)}[
                                 FLAGS.dataset]
  ddpm, hdd = ddpm_module.get_config("quick"), hdd_module.get_config("quick")
  for config in (ddpm, hdd):
    if FLAGS.dataset == "mnist":
      config.data.source, config.data.path = "npz", FLAGS.data_path
    elif FLAGS.data_path:
      config.data.path = FLAGS.data_path
    config.sample.num_samples = FLAGS.num_samples
    config.sample.batch_size = 100
  ddpm.train.num_steps = FLAGS.ddpm_steps
  ddpm.train.checkpoint_every = FLAGS.ddpm_steps // 2
  ddpm.sample.num_steps = FLAGS.ddpm_sample_steps
  for stage in hdd.stages.values():
    stage.train.num_steps = FLAGS.ddpm_steps // 2
    stage.train.checkpoint_every = FLAGS.ddpm_steps // 4
    stage.sample.num_steps = FLAGS.stage_sample_steps
  return ddpm, hdd


def main(argv):
  del argv
  import numpy as np

  from hdd import run
  run.configure_runtime()
  from common import files, parallel
  from evaluation import classifier, fid
  from experiments import plots
  from hdd import cascade, config_checks, generate, reports, stages, train
  from hdd.handover import Handover
  from hdd.plan import SamplingPlan
  from input_pipeline.pipeline import real_images

  workdir = FLAGS.workdir
  os.makedirs(workdir, exist_ok=True)
  ddpm_config, hdd_config = configs()
  config_checks.check_config(ddpm_config)
  config_checks.check_config(hdd_config)
  results_path = os.path.join(workdir, "results.json")
  results = json.load(open(results_path)) if os.path.exists(results_path) else {}

  def save():
    files.write_json(results_path, results)

  classifier_dir = os.path.join(workdir, "classifier_28")
  if not os.path.exists(os.path.join(classifier_dir, "meta.json")):
    classifier.train_classifier(ddpm_config.data, 28, 10, classifier_dir,
                                num_steps=FLAGS.classifier_steps)
  model, params, meta = classifier.load_classifier(classifier_dir)
  reference, _ = real_images(ddpm_config.data, "test", 28)
  _, reference_features = classifier.apply_in_batches(model, params, reference)
  reference_stats = fid.feature_statistics(reference_features)

  def quality(samples):
    _, features = classifier.apply_in_batches(model, params, samples)
    measured = fid.distances(features, *reference_stats, reference_features, num_subsets=50,
                             subset_size=500)
    return {"fcd": measured["frechet"], "kid_x1e3": 1e3 * measured["kid"]}

  results["classifier"] = {"test_accuracy": meta["test_accuracy"],
                           "reference": f"test split, {len(reference)} images"}
  mesh = parallel.create_mesh()

  if "ddpm" not in results:
    state = train.train_and_evaluate(ddpm_config, os.path.join(workdir, "ddpm"))
    timing = json.load(open(os.path.join(workdir, "ddpm", "train_timing.json")))
    plan = SamplingPlan.create(ddpm_config)
    samples, info = generate.sample_images(plan, state.ema_params, mesh, FLAGS.num_samples)
    results["ddpm"] = {"train_seconds": timing["total_train_seconds"],
                       "sample_seconds": info["sample_seconds"],
                       "evaluations": plan.network_evaluations,
                       **quality(samples)}
    np.savez_compressed(os.path.join(workdir, "ddpm_samples.npz"), images=samples)
    save()

  hdd_dir = os.path.join(workdir, "hdd")
  if "hdd" not in results:
    stage_params = cascade.train_cascade(hdd_config, hdd_dir)
    outputs, report, _ = cascade.sample_cascade(hdd_config, stage_params, FLAGS.num_samples)
    rows = reports.write_timing_table(hdd_config, hdd_dir, report)
    results["hdd"] = {"train_seconds": [r["train_seconds"] for r in rows],
                      "sample_seconds": [s["sample_seconds"] for s in report["stages"]],
                      "evaluations": [s["network_evaluations_per_image"]
                                      for s in report["stages"]],
                      **quality(outputs["stage2"])}
    np.savez_compressed(os.path.join(workdir, "hdd_samples.npz"), **outputs)
    save()

  if FLAGS.fid_reference_examples and "fid" not in results["hdd"]:
    from evaluation.statistics import FidReference
    fid_reference = FidReference.load(ddpm_config.data, "test", 28, FLAGS.fid_reference_examples)
    results["fid_reference"] = fid_reference.description
    samples = {"ddpm": np.load(os.path.join(workdir, "ddpm_samples.npz"))["images"],
               "hdd": np.load(os.path.join(workdir, "hdd_samples.npz"))["stage2"]}
    for name, images in samples.items():
      measured = fid_reference.score(images)
      results[name].update(fid=measured["fid"], inception_kid_x1e3=measured["kid_x1e3"])
    save()

  stage_params = cascade.restore_cascade(hdd_config, hdd_dir)
  low_res = np.load(os.path.join(workdir, "hdd_samples.npz"))["stage1"]
  stage2 = stages.stage_config(hdd_config, "stage2")
  sweeps = results.setdefault("sweeps", {"mix": {}, "truncate": {}})
  points = [("mix", float(g), -1) for g in FLAGS.gammas] + [
      ("truncate", 0.3, int(t)) for t in FLAGS.start_steps]
  for method, gamma, start_step in points:
    key = f"{gamma:g}" if method == "mix" else str(start_step)
    if key in sweeps[method]:
      continue
    plan = SamplingPlan.create(stage2, Handover(method, gamma, start_step,
                                                stage2.sample.upsample))
    samples, info = generate.sample_images(plan, stage_params["stage2"], mesh,
                                           FLAGS.num_samples, stream=1, low_res=low_res)
    sweeps[method][key] = {
        "gamma": plan.gamma, "evaluations": plan.network_evaluations,
        "stage2_sample_seconds": info["sample_seconds"], **quality(samples)}
    logging.info("sweep %s %s: %s", method, key, sweeps[method][key])
    save()

  if FLAGS.filter_threshold and "filter" not in results:
    critic_dir = os.path.join(workdir, "classifier_14")
    if not os.path.exists(os.path.join(critic_dir, "meta.json")):
      classifier.train_classifier(hdd_config.data, 14, 10, critic_dir,
                                  num_steps=FLAGS.classifier_steps)
    hdd_config.filter.update(enabled=True, threshold=FLAGS.filter_threshold)
    outputs, report, _ = cascade.sample_cascade(
        hdd_config, stage_params, FLAGS.num_samples,
        critic=classifier.confidence_critic(critic_dir, 14))
    results["filter"] = {**report["stages"][0]["filter"],
                         "sample_seconds": [s["sample_seconds"] for s in report["stages"]],
                         **quality(outputs["stage2"])}
    save()

  with files.atomic_write(os.path.join(workdir, "results.md")) as f:
    f.write(plots.results_markdown(results, FLAGS.dataset, FLAGS.num_samples))
  plots.sweep_plot(results["sweeps"], os.path.join(workdir, "sweeps.png"),
                   f"{FLAGS.dataset}: stage-2 hand-over ({FLAGS.num_samples} samples)")
  print(open(os.path.join(workdir, "results.md")).read())


if __name__ == "__main__":
  app.run(main)
