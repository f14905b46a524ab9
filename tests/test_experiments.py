"""The studies under experiments/ end to end at toy scale (--quick, tiny data made here),
and their pure parts against hand-computed values."""
import concurrent.futures
import json
import os
import re
import subprocess

import numpy as np
import pytest

from helpers import (COMPILATION_CACHE, run_python, save_colour_npz, save_stripes_npz,
                     tiny_cascade)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  """A Keras-style npz of 28x28 stripes (two classes), standing in for MNIST."""
  return save_stripes_npz(str(tmp_path_factory.mktemp("data") / "stripes28.npz"), num=200,
                          size=28)


@pytest.fixture(scope="module")
def colour_data(tmp_path_factory):
  """(train, test) npz files of 32x32 colour stripes, standing in for the shared CIFAR-10
  files: the test images only in the second."""
  return save_colour_npz(str(tmp_path_factory.mktemp("colour")))


def run_study(name: str, workdir, *args) -> subprocess.CompletedProcess:
  """A --quick run of a study, finished, its terminal as quiet as main.py's: no INFO logs
  of the libraries, no start-up notices of TensorFlow."""
  env = dict(os.environ, HDD_COMPILATION_CACHE=COMPILATION_CACHE,
             HDD_FID_STATS=str(workdir / "fid_stats"))
  result = run_python([f"experiments/{name}.py", "--quick", f"--workdir={workdir}", *args],
                      env, timeout=900)
  assert result.returncode == 0, result.stderr[-3000:]
  assert not re.search(r"^I\d{4} ", result.stderr, re.M), result.stderr[-3000:]
  for noise in ("orbax", "oneDNN custom operations"):
    assert noise not in result.stderr
  return result


def read_results(workdir) -> dict:
  with open(workdir / "results.json") as f:
    return json.load(f)


HANDOVER_FLAGS = ["--fid_reference_examples=16", "--gammas=0.3,1", "--start_steps=99,499",
                  "--fid_every=4"]
# The first run of each study test: {test: (study, flags besides --quick, --workdir and
# the data flags)}, the longest first. The budget study runs on CIFAR-10-shaped data, the
# others on MNIST-shaped data.
FIRST_RUNS = {
    "test_handover_sweeps_report_fid_and_fid_curves": ("hdd_vs_ddpm", HANDOVER_FLAGS),
    "test_augmentation_trains_each_classifier_on_each_set": ("augmentation", []),
    "test_t_sweep_measures_every_t_and_sampler": ("t_sweep", ["--nofid", "--models=hdd"]),
    "test_budget_trains_the_models_for_the_budget_and_scores_their_samples": (
        "budget", ["--nofid", "--minutes=0.05", "--dataset=cifar10"]),
    "test_guidance_scores_every_weight_on_cifar10_shaped_data": (
        "guidance", ["--nofid", "--minutes=0.05", "--dataset=cifar10", "--stage_weights=0.5:0"]),
}


@pytest.fixture(scope="module")
def first_runs(request, tmp_path_factory, data, colour_data):
  """{study: future of (stdout, workdir)}: the first run of the study of every selected
  test, started with the module's first study test, two at a time. A run keeps one of two
  cores busy most of the time (it traces and compiles one program after another), so two
  side by side finish in ~1.4x the time of one, not 2x."""
  selected = {item.name for item in request.session.items}
  pool = concurrent.futures.ThreadPoolExecutor(max_workers=2)

  def first_run(study: str, flags: list):
    workdir = tmp_path_factory.mktemp(study)
    train, test = colour_data
    data_flags = ([f"--data_path={train}", f"--test_data_path={test}"]
                  if "--dataset=cifar10" in flags else [f"--data_path={data}"])
    result = run_study(study, workdir, *data_flags, *flags)
    # Each sampling has its progress line (in a log: at every quarter, the last at 100%).
    assert re.search(r"^\d\d:\d\d:\d\d Sampling .+ images \(100%\)", result.stderr, re.M)
    return result.stdout, workdir

  yield {study: pool.submit(first_run, study, flags)
         for test, (study, flags) in FIRST_RUNS.items() if test in selected}
  pool.shutdown(cancel_futures=True)


def test_t_sweep_measures_every_t_and_sampler(first_runs, data):
  out, workdir = first_runs["t_sweep"].result()
  rows = read_results(workdir)["runs"]["hdd"]
  assert set(rows) == {"10", "20"}
  for key, row in rows.items():
    # Stage 1's linear betas 1e-4..0.02 over T steps: alpha_bar_T = prod(1 - beta_t).
    betas = np.linspace(1e-4, 0.02, int(key))
    assert row["signal_left"] == pytest.approx(np.sqrt(np.prod(1 - betas)), rel=1e-5)
    assert row["train_seconds"] > 0
    for sampler in ("ancestral", "ddim"):
      assert np.isfinite(row[sampler]["fcd"]) and row[sampler]["sample_seconds"] > 0
      assert "fid" not in row[sampler]
  # The ancestral chain visits every step of each stage; DDIM --ddim_steps (5 in --quick).
  assert rows["20"]["ancestral"]["evaluations"] == [20, 20]
  assert rows["20"]["ddim"]["evaluations"] == [5, 5]
  assert "| HDD 14->28 | 20 |" in out
  assert (workdir / "t_sweep.png").stat().st_size > 10_000
  made_from = json.loads((workdir / "study.json").read_text())
  assert made_from["study"] == "t_sweep" and made_from["dataset"] == "mnist"
  assert made_from["data_path"] == str(data) and made_from["quick"] is True
  # The same workdir for another dataset is refused before anything runs, results untouched.
  before = (workdir / "results.json").read_text()
  again = run_python(["experiments/t_sweep.py", "--quick", "--nofid", "--models=hdd",
                      f"--workdir={workdir}", f"--data_path={data}", "--dataset=fashion_mnist"],
                     dict(os.environ), timeout=120, fresh=True)
  assert again.returncode == 2 and again.stderr.strip().splitlines() == [
      f"error: {workdir} holds results made from other inputs (dataset: 'mnist' there, "
      "'fashion_mnist' now); use another --workdir or the same flags"]
  assert (workdir / "results.json").read_text() == before


def test_augmentation_trains_each_classifier_on_each_set(first_runs):
  _, workdir = first_runs["augmentation"].result()
  results = read_results(workdir)
  assert results["real_examples"] == 20 and results["synthetic_examples"] == 20
  with np.load(workdir / "synthetic.npz") as synthetic:
    assert synthetic["images"].shape == (20, 28, 28, 1)
    assert list(synthetic["labels"]) == [k % 10 for k in range(20)]
  for sets in results["accuracy"].values():
    assert set(sets) == {"origin", "synthesis", "mix"}
    for by_seed in sets.values():
      assert set(by_seed) == {"0", "1"} and all(0 <= a <= 1 for a in by_seed.values())
  assert "| resnet18 |" in (workdir / "results.md").read_text()
  assert (workdir / "augmentation.png").exists()


def test_handover_sweeps_report_fid_and_fid_curves(first_runs, data):
  _, workdir = first_runs["hdd_vs_ddpm"].result()
  results = read_results(workdir)
  assert results["quality"]["fid_reference"] == "test split, 16 images"
  for row in [results["ddpm"], results["hdd"], *results["sweeps"]["mix"].values(),
              *results["sweeps"]["truncate"].values()]:
    assert np.isfinite(row["fid"]) and np.isfinite(row["fcd"])
  # mix at gamma = 0.3 is the cascade's own hand-over: the same samples, the same scores.
  assert results["sweeps"]["mix"]["0.3"]["fid"] == pytest.approx(results["hdd"]["fid"])
  assert set(results["sweeps"]["truncate"]) == {"99", "499"}
  before = (workdir / "results.json").read_text()
  run_study("hdd_vs_ddpm", workdir, f"--data_path={data}", *HANDOVER_FLAGS)
  assert (workdir / "results.json").read_text() == before   # Everything reused.

  plots = workdir / "curves"
  curve = run_python(["experiments/fid_curve.py", f"--workdir={plots}",
                      f"--runs=DDPM={workdir / 'ddpm'},HDD={workdir / 'hdd'}"], dict(os.environ),
                     timeout=300)
  assert curve.returncode == 0, curve.stderr[-3000:]
  curves = read_results(plots)["curves"]
  # DDPM: 8 steps of 16 (--quick's batch), FID every 4; cascade: 4 + 4 steps, FID every 2
  # stage-2 steps, through the cascade (stage 1 has no curve of its own).
  assert [row["images"] for row in curves["DDPM"]] == [64, 128]
  assert [row["images"] for row in curves["HDD"]] == [64 + 32, 64 + 64]
  stage1 = json.loads((workdir / "hdd" / "stage1" / "train_timing.json").read_text())
  assert curves["HDD"][0]["seconds"] > stage1["total_train_seconds"]
  assert all(np.isfinite(row["fid"]) and row["num_samples"] == 2
             for row in curves["DDPM"] + curves["HDD"])
  assert not (workdir / "hdd" / "stage1" / "fid_curve.json").exists()
  assert (plots / "fid_curve.png").exists()


def test_balanced_subset():
  from experiments.study import balanced_subset
  labels = np.array([0] * 10 + [1] * 3 + [2] * 10)
  chosen = balanced_subset(labels, 9)
  assert len(chosen) == 9 and len(set(chosen)) == 9
  assert np.bincount(labels[chosen]).tolist() == [3, 3, 3]
  chosen = balanced_subset(labels, 15)   # Class 1 runs out: the others fill the rest.
  assert np.bincount(labels[chosen]).tolist() == [6, 3, 6]
  assert np.array_equal(balanced_subset(labels, 9), balanced_subset(labels, 9))


def test_guidance_class_accuracy_and_confusion_by_hand():
  """Classes 0, 1, 2 asked for twice each: class 0 called 0 and 2, class 1 called 2 twice,
  class 2 called 2 and 2; so accuracy 3/6, worst class 1 at 0, and class 1's misses are
  all called 2."""
  from experiments.guidance import class_accuracy, commonest_miss, results_markdown
  labels = np.array([0, 0, 1, 1, 2, 2])
  result = class_accuracy(np.array([0, 2, 2, 2, 2, 2]), labels, 3)
  assert result["accuracy"] == 0.5 and result["worst_class_accuracy"] == 0.0
  assert result["per_class_accuracy"] == {"0": 0.5, "1": 0.0, "2": 1.0}
  assert result["confusion"] == [[1, 0, 1], [0, 0, 2], [0, 0, 2]]
  assert [commonest_miss(result["confusion"], k) for k in range(3)] == [
      "2 (0.50)", "2 (1.00)", "-"]
  # A row reused from results.json beside one measured now: the table reads both (a re-run
  # that measured one more w once failed here on int against str class keys).
  row = {**result, "evaluations": [2, 2], "sample_seconds": 1.0}
  text = results_markdown({"num_samples": 6, "classifier_test_accuracy": 0.9, "train_steps": 2,
                           "weights": {"1": json.loads(json.dumps(row)), "3": row}})
  assert "| 1 | 0.50 | 0.00 | 1.00 |" in text and "| 3 | 2 (0.50) | 2 (1.00) | - |" in text


def test_load_curve_counts_earlier_stages(tmp_path):
  from experiments.study import load_curve
  config = tiny_cascade()   # The run's models are those of its config.json.
  for name, steps, seconds, batch in (("stage1", 100, 40.0, 64), ("stage2", 50, 90.0, 32)):
    config.stages[name].train.batch_size = batch
    stage = tmp_path / name
    stage.mkdir()
    (stage / "train_timing.json").write_text(json.dumps(
        {"end_step": steps, "total_train_seconds": seconds}))
  (tmp_path / "config.json").write_text(config.to_json_best_effort())
  (tmp_path / "stage2" / "fid_curve.json").write_text(json.dumps(
      [{"step": 25, "fid": 9.0, "train_seconds": 30.0, "measure_seconds": 5.0,
        "num_samples": 4}]))
  [row] = load_curve(str(tmp_path))
  assert row["images"] == 100 * 64 + 25 * 32 and row["seconds"] == 40.0 + 30.0


def test_budget_trains_the_models_for_the_budget_and_scores_their_samples(first_runs,
                                                                           colour_data):
  """The DDPM and the budget cascade (its stage 2 conditional), each for the same budget,
  on CIFAR-10-shaped data: 32x32 RGB training images in one file, the test images in
  another (--test_data_path)."""
  from PIL import Image
  out, workdir = first_runs["budget"].result()
  train, test = colour_data
  results = read_results(workdir)
  for key in ("hdd", "ddpm"):
    row = results[key]
    # Each trained its 3 s of training time (stopping at the first step past it).
    assert row["budget_minutes"] == 0.05 and 3.0 <= row["train_seconds"] < 8.0
    assert np.isfinite(row["fcd"]) and row["sample_seconds"] > 0 and row["num_samples"] == 11
    assert row["fid"] is None and row["kid"] is None   # --nofid: not measured.
    with np.load(workdir / key / "samples" / "samples.npz") as samples:
      assert samples["images"].shape == (11, 32, 32, 3) and samples["images"].dtype == np.uint8
    with Image.open(workdir / key / "samples" / "grid.png") as grid:
      assert grid.width >= 10 * 64 and grid.height >= 2 * 64   # 10 x 2 images, >= 64 px each.
  # The classifier of the scores was trained on the training file and tested on the 32
  # images of the test file (test.npz alone holds x_test).
  with open(workdir / "classifier_32" / "meta.json") as f:
    meta = json.load(f)
  assert meta["channels"] == 3 and meta["test_examples"] == 32
  assert results["quality"]["classifier_test_accuracy"] == meta["test_accuracy"]
  # CIFAR-10's judge: the wider recipe, trained with flips and shifts; the study records it.
  recipe = {"widths": [32, 64, 64, 128], "flip": True, "max_shift": 2}
  assert meta["recipe"] == recipe
  with open(workdir / "study.json") as f:
    made_from = json.load(f)
  assert made_from["test_data_path"] == test and made_from["classifier_recipe"] == recipe
  # The cascade's budget split 35% / 65%; stage 2 trained on its chain's 400 steps only.
  first, second = results["hdd"]["train_seconds_per_stage"]
  assert first >= 0.35 * 3.0 and second >= 0.65 * 3.0
  # Stage 2: t* = 399 itself, then the 25 strided steps below it.
  assert results["hdd"]["evaluations_per_image"] == [50, 26] and results["ddpm"][
      "evaluations_per_image"] == [100]
  with open(workdir / "hdd" / "stage2" / "config.json") as f:
    stage2 = json.load(f)
  assert stage2["diffusion"]["num_steps"] == 400 and stage2["model"]["low_res_size"] == 16
  assert stage2["data"]["eval_path"] == test and stage2["data"]["random_flip"]
  assert "| HDD cascade 16->32 | 0.05 |" in out and "| DDPM 32x32 | 0.05 |" in out
  # Stage 2 also scored on real 16x16 images in place of stage 1's samples: with the same
  # seed and noise stream, only the different input can change its scores.
  given = results["hdd"]["given_real_low_res"]
  assert np.isfinite(given["fcd"]) and given["fcd"] != results["hdd"]["fcd"]
  assert "given real low-resolution images" in out and "given_real_low_res" not in results["ddpm"]
  # The same workdir under another budget is refused before anything trains.
  env = dict(os.environ, HDD_COMPILATION_CACHE=COMPILATION_CACHE)
  budget = ["experiments/budget.py", f"--workdir={workdir}", f"--data_path={train}",
            f"--test_data_path={test}", "--dataset=cifar10", "--nofid", "--quick"]
  # Refusals come before the libraries are imported: a new interpreter is the quicker
  # (a forked run's exit finalizes the libraries, helpers.run_python).
  again = run_python([*budget, "--minutes=20", "--models=hdd"], env, fresh=True)
  assert again.returncode == 2
  assert again.stderr.strip().splitlines() == [   # --quick caps the budget at 0.1 minutes.
      f"error: {workdir} holds a 0.05-minute run of hdd, not --minutes=0.1: use another "
      "--workdir"]
  # So is the DDPM under other --ddpm_set settings, a field the DDPM's config lacks, and a
  # --sample_set field outside a stage's sampling.
  for flag, message in [
      ("--ddpm_set=sample.num_steps=50", f"error: {workdir} holds a run of ddpm with "
       "--ddpm_set=[], not ['sample.num_steps=50']: use another --workdir"),
      ("--ddpm_set=sample.num_stepz=50", "error: --ddpm_set=sample.num_stepz=50: expected "
       "FIELD=VALUE with FIELD a field of the DDPM config, e.g. sample.num_steps=50"),
      ("--sample_set=stages.stage2.model.low_res_size=0", "error: --sample_set=stages.stage2."
       "model.low_res_size=0: expected FIELD=VALUE with FIELD a sampling field of a cascade "
       "stage, e.g. stages.stage2.sample.low_res_noise=0.3"),
      ("--ddpm_sample_set=sample.num_samples=5", "error: --ddpm_sample_set=sample.num_samples=5: "
       "expected FIELD=VALUE with FIELD a field of the DDPM's chain, e.g. sample.eta=0.5"),
      # The two-stage cascade trained here is not the three-stage lever's, and a
      # conditional variant is not a lever of this unconditional study.
      ("--cascade_variant=three_stage_budget", f"error: {workdir} holds a run of hdd with "
       "--cascade_variant=budget, not three_stage_budget: use another --workdir"),
      ("--cascade_variant=cond_budget", "error: --cascade_variant=cond_budget: "
       "configs/hdd_cifar10.py has the unconditional budget variants ['budget', "
       "'three_stage_budget']; use one of them")]:
    models = "--models=hdd" if flag.startswith("--cascade_variant") else "--models=ddpm"
    again = run_python([*budget, "--minutes=0.05", models, flag], env, fresh=True)
    assert again.returncode == 2 and again.stderr.strip().splitlines() == [message]
  # A sampling lever of a model the workdir has not trained, and is not asked to train.
  elsewhere = workdir.parent / f"{workdir.name}_without_ddpm"
  again = run_python([*budget[:1], f"--workdir={elsewhere}", *budget[2:], "--minutes=0.05",
                      "--models=hdd", "--ddpm_sample_set=sample.eta=0.5"], env, fresh=True)
  assert again.returncode == 2 and again.stderr.strip().splitlines() == [
      f"error: --ddpm_sample_set samples the model trained in {elsewhere}/ddpm, and it has "
      "none yet: add ddpm to --models"]
  # Sampling levers: the trained cascade sampled with stage 2's input noised to 0.3 (T-1)
  # (0.1 (T-1) in training's row) and 20 DDIM steps in place of 25, and the trained DDPM
  # with half of DDPM's noise (eta 0.5 in place of 1), each a row of its own; nothing is
  # trained again.
  levers = ["stages.stage2.sample.low_res_noise=0.3", "stages.stage2.sample.num_steps=20"]
  sampled = run_python([*budget, "--minutes=0.05", "--models=ddpm", "--noreal_low_res",
                        *(f"--sample_set={lever}" for lever in levers),
                        "--ddpm_sample_set=sample.eta=0.5"], env)
  assert sampled.returncode == 0, sampled.stderr[-3000:]
  trained, trained_ddpm = results["hdd"], results["ddpm"]
  results = read_results(workdir)
  ddpm_row = results["ddpm_sampled/sample.eta=0.5"]
  assert results["ddpm"] == trained_ddpm and ddpm_row["sample_set"] == ["sample.eta=0.5"]
  assert ddpm_row["trained_images"] == trained_ddpm["trained_images"]
  assert ddpm_row["evaluations_per_image"] == trained_ddpm["evaluations_per_image"]
  with np.load(workdir / "ddpm_sampled" / "sample.eta=0.5" / "samples" / "samples.npz") as a, \
       np.load(workdir / "ddpm" / "samples" / "samples.npz") as b:
    assert a["images"].shape == (11, 32, 32, 3)
    assert not np.array_equal(a["images"], b["images"])
  assert "| DDPM 32x32, sampled with sample.eta=0.5 | 0.05 |" in sampled.stdout
  key = ",".join(levers)
  row = results[f"sampled/{key}"]
  assert results["hdd"] == trained and row["sample_set"] == levers
  assert row["train_seconds"] == trained["train_seconds"]
  assert row["trained_images"] == trained["trained_images"]
  # Stage 1 as trained; stage 2 at t* = 399, then the 20 steps of stride 20 below it.
  assert row["evaluations_per_image"] == [50, 21] and "given_real_low_res" not in row
  with np.load(workdir / "sampled" / key / "samples" / "samples.npz") as lever_samples, \
       np.load(workdir / "hdd" / "samples" / "samples.npz") as own_samples:
    assert lever_samples["images"].shape == (11, 32, 32, 3)
    assert not np.array_equal(lever_samples["images"], own_samples["images"])
  assert f"| HDD cascade 16->32, sampled with {', '.join(levers)} | 0.05 |" in sampled.stdout


def test_guidance_scores_every_weight_on_cifar10_shaped_data(first_runs, colour_data):
  """The conditional budget cascade of CIFAR-10 (16 -> 32, both stages conditioned on the
  class) trained for its budget, sampled at each w and judged by the 32x32 classifier."""
  from PIL import Image
  out, workdir = first_runs["guidance"].result()
  results = read_results(workdir)
  assert results["dataset"] == "cifar10" and results["image_sizes"] == [16, 32]
  assert results["minutes"] == 0.05 and 0 <= results["classifier_test_accuracy"] <= 1
  assert sorted(results["weights"]) == ["0", "0.5"]   # --quick: the first two weights.
  for key, row in results["weights"].items():
    # 20 samples, two of each class; one accuracy per class asked for.
    assert sorted(row["per_class_accuracy"]) == [str(k) for k in range(10)]
    assert row["accuracy"] == pytest.approx(np.mean(list(row["per_class_accuracy"].values())))
    assert row["worst_class_accuracy"] == min(row["per_class_accuracy"].values())
    # The confusion counts: each class asked for twice; its diagonal is its accuracy.
    confusion = np.array(row["confusion"])
    assert confusion.shape == (10, 10) and confusion.sum(axis=1).tolist() == [2] * 10
    assert [confusion[k, k] / 2 for k in range(10)] == [
        row["per_class_accuracy"][str(k)] for k in range(10)]
    assert np.isfinite(row["fcd"]) and "fid" not in row
    # A row per class of its 2 images: 32x32 tiles with a 2 px border, drawn twice as
    # large (>= 64 px per image); no empty columns.
    with Image.open(workdir / f"grid_w{key}.png") as grid:
      assert grid.size == (2 * (2 + 2 * 34), 2 * (2 + 10 * 34))
  # Guidance evaluates the network twice per step: with and without the class.
  assert results["weights"]["0"]["evaluations"] == [50, 26]
  assert results["weights"]["0.5"]["evaluations"] == [100, 52]
  # --stage_weights=0.5:0: stage 1 guided at w = 0.5 (two evaluations per step), stage 2 not.
  per_stage = results["stage_weights"]["0.5:0"]
  assert per_stage["evaluations"] == [100, 26] and np.isfinite(per_stage["fcd"])
  assert sorted(per_stage["per_class_accuracy"]) == [str(k) for k in range(10)]
  assert (workdir / "grid_w0.5_0.png").exists()
  assert "| from clipped x0, w per stage | 0.5:0 |" in (workdir / "results.md").read_text()
  with open(workdir / "cascade" / "stage2" / "config.json") as f:
    stage2 = json.load(f)
  assert stage2["model"]["num_classes"] == 10 and stage2["model"]["low_res_size"] == 16
  assert "Conditional cifar10 cascade (16x16 -> 32x32, 0.05 minutes of training)" in out
  # A sampling lever: the trained cascade sampled at w = 0.5 with stage 1 at eta = 0 in
  # place of 1, a row of its own; the rows before it and the training stay as they were.
  train, test = colour_data
  lever = "stages.stage1.sample.eta=0.0"
  rerun = run_study("guidance", workdir, f"--data_path={train}", f"--test_data_path={test}",
                    "--nofid", "--minutes=0.05", "--dataset=cifar10", "--weights=0.5",
                    f"--sample_set={lever}")
  again = read_results(workdir)
  assert {table: again[table] for table in ("weights", "stage_weights")} == {
      table: results[table] for table in ("weights", "stage_weights")}
  row = again["sampled"][f"0.5 with {lever}"]
  assert row["evaluations"] == [100, 52] and np.isfinite(row["fcd"])
  assert row["fcd"] != results["weights"]["0.5"]["fcd"]   # Other samples.
  assert "Training already finished" in rerun.stderr
  with Image.open(workdir / f"grid_w0.5_with_{lever}.png") as grid:
    assert grid.size == (2 * (2 + 2 * 34), 2 * (2 + 10 * 34))
  assert (f"| from clipped x0, sampled with the settings named | 0.5 with {lever} |"
          in (workdir / "results.md").read_text())
