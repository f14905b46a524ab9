"""main.py end to end in subprocesses: train, resume, sample, eval, and bad input."""
import json
import os
import re

import numpy as np
import pytest

from evaluation import weights
from helpers import copy_workdir, run_main


def test_train_resume_sample_eval(trained_ddpm_run, tmp_path):
  """The session's tiny DDPM as main.py trained it in a process of its own (6 steps): its
  files and what the terminal showed; then, on a copy, resumed to 8 steps, sampled again,
  evaluated, a classifier trained, and evaluated with it."""
  data, trained, first = trained_ddpm_run
  assert sorted(os.listdir(os.path.join(trained, "checkpoints"))) == ["3", "6"]
  assert any(name.startswith("events.out.tfevents") for name in os.listdir(trained))
  samples = np.load(os.path.join(trained, "samples", "samples.npz"))["images"]
  assert samples.shape == (8, 8, 8, 1) and samples.dtype == np.uint8
  for name in ("grid.png", "trajectory.png", "timing.json"):
    assert os.path.exists(os.path.join(trained, "samples", name))
  timing = json.load(open(os.path.join(trained, "train_timing.json")))
  assert timing["start_step"] == 0 and timing["end_step"] == 6
  # The terminal: a progress line, the closing summary, none of the libraries' INFO logs.
  terminal = first.stdout + first.stderr
  assert len(terminal.splitlines()) <= 40, terminal
  assert re.search(r"\bw 8px  step 6/6 \(100%\)  loss \d\.\d{4}  [\d,]+ img/s  ETA 0s", terminal)
  assert f"Outputs in {trained}:" in first.stdout and "python -m hdd.app" in first.stdout
  assert os.path.join(trained, "samples", "grid.png") in first.stdout
  for noise in ("orbax", "Scheduling D2H", "oneDNN custom operations", "steps_per_sec"):
    assert noise not in terminal

  workdir = copy_workdir(trained, tmp_path)
  data = f"--config.data.path={data}"
  second = run_main(data, f"--workdir={workdir}", "--config.train.num_steps=8")
  assert second.returncode == 0, second.stderr[-3000:]
  assert "Resuming from the checkpoint at step 6" in second.stderr
  # The last step is saved though checkpoint_every=3 does not divide it.
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["3", "6", "8"]
  timing = json.load(open(os.path.join(workdir, "train_timing.json")))
  assert timing["start_step"] == 6 and timing["end_step"] == 8

  resumed = np.load(os.path.join(workdir, "samples", "samples.npz"))["images"]

  sample = run_main(data, f"--workdir={workdir}", "--mode=sample", "--library_logs")
  assert sample.returncode == 0, sample.stderr[-3000:]
  assert "orbax" in sample.stderr   # --library_logs shows what is otherwise kept quiet.
  # Same seed, same parameters: sampling again reproduces the images bit for bit.
  np.testing.assert_array_equal(np.load(os.path.join(workdir, "samples", "samples.npz"))["images"],
                                resumed)

  evaluation = run_main(data, f"--workdir={workdir}", "--mode=eval",
                        "--config.eval.inception_weights=/no/weights.pt")
  assert evaluation.returncode == 0, evaluation.stderr[-3000:]
  result = json.load(open(os.path.join(workdir, "eval.json")))
  assert result["num_examples"] == 16 and 0 < result["eval_loss"] < 10
  assert "No FID: get the FID Inception weights" in evaluation.stderr

  classifier = run_main(data, f"--workdir={workdir}", "--mode=train_classifier",
                        "--config.eval.classifier_classes=2", "--config.eval.classifier_steps=30")
  assert classifier.returncode == 0, classifier.stderr[-3000:]
  assert json.load(open(os.path.join(workdir, "classifier_8", "meta.json")))["num_classes"] == 2
  weights_args = ([] if os.path.exists(weights.default_path()) else
                  ["--config.eval.inception_weights=/no/weights.pt"])
  evaluation = run_main(data, f"--workdir={workdir}", "--mode=eval",
                        f"--config.eval.stats_dir={tmp_path / 'stats'}", *weights_args)
  assert evaluation.returncode == 0, evaluation.stderr[-3000:]
  quality = json.load(open(os.path.join(workdir, "quality.json")))
  assert quality["num_samples"] == 8 and quality["fcd"] >= 0
  # The closing summary lists what eval wrote.
  for written in ("eval.json", "quality.json"):
    assert f" {os.path.join(workdir, written)}\n" in evaluation.stdout
  assert quality["fcd_reference"].startswith("test split, 16 images")
  if not weights_args:   # FID with the real weights (fetched by scripts/setup.sh).
    assert quality["fid_reference"] == "test split, 16 images" and quality["fid"] > 0
    assert len(os.listdir(tmp_path / "stats")) == 1


@pytest.mark.parametrize("args,message", [
    (["--config.train.batch_size=0"], "invalid config: train.batch_size=0: must be >= 1"),
    (["--config.train.num_steps=2147483648"],
     "invalid config: train.num_steps=2147483648: must lie in [1, 2147483647]"),
    (["--config.diffusion.beta_end=0.00001"], "invalid config: diffusion.beta_start=0.0001"),
    (["--config.sample.sampler=euler"], "invalid config: sample.sampler='euler': must be one of"),
    (["--config.data.path=/no/such/file.npz"], "data.path '/no/such/file.npz' does not exist"),
    (["--mode=sample"], "no checkpoint in"),
    (["--config.train.bogus=1"], "unknown config field 'bogus'; the fields are listed in"),
    (["--config.model.channel_mult=oops"],
     "invalid config: model.channel_mult=('oops',): must be a tuple of ints"),
    (["--config.train.batch_size=abc"], "flag --config.train.batch_size=abc: invalid literal"),
    (["--mode=nope"], "flag --mode=nope: value should be one of"),
    (["--config.sample.num_steps=999"],
     "invalid config: sample.num_steps=999: must lie in [0, diffusion.num_steps=50]"),
    (["--config.train.grad_accum_steps=3"],
     "invalid config: train.grad_accum_steps=3: must be >= 1 and divide train.batch_size=16"),
    (["--config.data.bad_images=ignore"], "invalid config: data.bad_images='ignore'"),
    (["--config.data.source=idx"], "no train-images-idx3-ubyte[.gz] in"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, stripes_npz, args, message):
  result = run_main(f"--config.data.path={stripes_npz}", f"--workdir={tmp_path / 'w'}", *args)
  assert result.returncode == 2, result.stderr[-2000:]
  errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
  assert "Traceback" not in result.stderr
