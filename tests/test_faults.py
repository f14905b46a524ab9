"""The faults found by trying to break the codebase (issue 10), one test each; every test
here failed on the code as it was.

 1 code run from a weights file        8 labels outside model.num_classes
 2 a transient restore error            9 images only PIL could decode
 3 SIGTERM that did not stop the run   10 tracebacks: huge idx header, bad samples.npz
 4 a read-only checkpoint dir hung     11 errors found only after training
 5 NaN parameters saved as success     12 sampling outputs not written as a set
 6 resume under another T / target     13 symlink cycles, read-only modes renaming
 7 a checkpoint in flight lost            checkpoints, "Event loop is closed" spam
"""
import errno
import io
import json
import os
import pickle
import shutil
import signal
import struct
import subprocess
import time
import zipfile

import jax
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from PIL import Image

from common import files
from common.errors import CheckpointError, ConfigError, DataError
from evaluation import torch_pickle, weights
from helpers import (COMPILATION_CACHE, BackgroundRun, copy_workdir, run_main,
                     save_stripes_npz, stripes_batch, tiny_config)
from hdd import cascade, checkpoints, config_checks, train, train_step
from hdd.build import create_model, create_schedule
from input_pipeline import pipeline, sources


def one_error_line(result) -> str:
  """The one `error:` line of a failed main.py run (exit 2, no traceback)."""
  assert result.returncode == 2, result.stderr[-3000:]
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1, result.stderr[-3000:]
  return errors[0]


# 1 ------------------------------------------------------------------------------------------

class _WritesMarker:
  """Unpickling this calls builtins.open(marker, 'w'): code a weights file must never run."""

  def __init__(self, marker):
    self.marker = str(marker)

  def __reduce__(self):
    return (open, (self.marker, "w"))


def _legacy_file(parts) -> bytes:
  buffer = io.BytesIO()
  for part in parts:
    pickle.dump(part, buffer, protocol=2)
  return buffer.getvalue()


@pytest.mark.parametrize("position", range(5), ids=["magic", "protocol", "sys_info", "object",
                                                     "storage_keys"])
def test_legacy_weights_with_code_in_any_pickle_are_refused(tmp_path, position):
  marker = tmp_path / "ran"
  parts = [torch_pickle.LEGACY_MAGIC, 1001, {"little_endian": True}, {}, []]
  parts[position] = _WritesMarker(marker)
  path = tmp_path / "evil.pth"
  path.write_bytes(_legacy_file(parts))
  with pytest.raises(CheckpointError, match="refusing to load"):
    weights.load_fid_inception(str(path))
  assert not marker.exists()


@pytest.mark.parametrize("member", ["archive/data.pkl", "archive/constants.pkl"])
def test_zip_and_torchscript_weights_with_code_never_run_it(tmp_path, member):
  marker = tmp_path / "ran"
  path = tmp_path / "evil.pt"
  with zipfile.ZipFile(path, "w") as archive:
    if member != "archive/data.pkl":
      archive.writestr("archive/data.pkl", pickle.dumps({}, protocol=2))
    archive.writestr("archive/code/__torch__.py", "import os\nos.system('touch ran')\n")
    archive.writestr(member, pickle.dumps(_WritesMarker(marker), protocol=2))
  with pytest.raises(CheckpointError):   # Refused, or not the FID network: nothing ran.
    weights.load_fid_inception(str(path))
  assert not marker.exists()


def test_tensor_views_outside_their_storage_are_refused():
  storage = np.arange(6, dtype=np.float32)
  with pytest.raises(torch_pickle.TorchFileError, match="does not fit its storage"):
    torch_pickle._rebuild_tensor(storage, 0, (1000, 1000), (1000, 1))
  with pytest.raises(torch_pickle.TorchFileError, match="does not fit its storage"):
    torch_pickle._rebuild_tensor(storage, 5, (2,), (1,))
  np.testing.assert_array_equal(torch_pickle._rebuild_tensor(storage, 4, (2,), (1,)), [4, 5])


# 2, 13 -------------------------------------------------------------------------------------

def _two_checkpoints(tmp_path):
  config = tiny_config()
  state = train_step.create_train_state(config, create_model(config))
  directory = str(tmp_path / "checkpoints")
  manager = checkpoints.create_manager(directory)
  for step in (1, 2):
    checkpoints.save(manager, step, state.replace(step=step), train_seconds=float(step))
  checkpoints.finish(manager)
  return directory, state


@pytest.mark.parametrize("error", [
    OSError(errno.EMFILE, "Too many open files"),
    ValueError("RESOURCE_EXHAUSTED: cannot open file"),
    RuntimeError("something unexpected"),
])
@pytest.mark.parametrize("where", ["item_metadata", "restore"])
def test_a_transient_restore_error_moves_nothing(tmp_path, monkeypatch, error, where):
  directory, state = _two_checkpoints(tmp_path)
  before = sorted(os.listdir(directory))

  def fail(*args, **kwargs):
    raise error

  monkeypatch.setattr(ocp.CheckpointManager, where, fail)
  with pytest.raises(CheckpointError, match="nothing was changed"):
    checkpoints.restore_latest(directory, state)
  assert sorted(os.listdir(directory)) == before == ["1", "2"]


def _truncate_biggest_file(directory):
  found = [os.path.join(root, name) for root, _, names in os.walk(directory) for name in names]
  biggest = max(found, key=os.path.getsize)
  with open(biggest, "r+b") as f:
    f.truncate(os.path.getsize(biggest) // 2)


def test_read_only_restores_leave_a_damaged_checkpoint_in_place(tmp_path):
  directory, state = _two_checkpoints(tmp_path)
  _truncate_biggest_file(os.path.join(directory, "2"))
  step, _ = checkpoints.restore_latest(directory, state, read_only=True)
  assert step == 1 and sorted(os.listdir(directory)) == ["1", "2"]
  step, _ = checkpoints.restore_latest(directory, state)   # Training moves it aside.
  assert step == 1 and any(name.startswith("2.damaged-") for name in os.listdir(directory))


def test_failed_restore_is_one_line_without_event_loop_noise(trained_ddpm, tmp_path):
  data, trained = trained_ddpm
  wider = run_main(f"--config.data.path={data}", f"--workdir={copy_workdir(trained, tmp_path)}",
                   "--config.model.base_channels=16")
  assert "different model configuration" in one_error_line(wider)
  assert "Event loop is closed" not in wider.stderr


# 3 ------------------------------------------------------------------------------------------

def _start(args, config="tests/tiny_configs.py") -> BackgroundRun:
  """main.py in the background, its stderr into the file `stderr_path` (a pipe nobody reads
  would fill up and block it)."""
  env = dict(os.environ, HDD_COMPILATION_CACHE=COMPILATION_CACHE)
  return BackgroundRun(["main.py", f"--config={config}", *args], env)


def _stderr(process: BackgroundRun) -> str:
  with open(process.stderr_path) as f:
    return f.read()


def _wait_for(path, process, seconds=300):
  deadline = time.time() + seconds
  while not os.path.exists(path):
    assert process.poll() is None, _stderr(process)[-3000:]
    assert time.time() < deadline, f"{path} never appeared"
    time.sleep(0.05)


def _stop_with_sigterm(args, workdir, stage) -> tuple[str, int]:
  """Starts the tiny cascade's main.py with `args`, sends SIGTERM once `stage` has saved its
  step 20, and checks how the run ended: at once, exit 128 + SIGTERM, one `stopped:` line,
  no traceback, no samples, the step the signal arrived in saved and recorded as preempted.
  Returns (the run's stderr, that step)."""
  process = _start(args, config="tests/tiny_configs.py:cascade")
  _wait_for(os.path.join(workdir, stage, "checkpoints", "20"), process)
  process.send_signal(signal.SIGTERM)
  sent = time.time()
  process.wait(timeout=120)
  stderr = _stderr(process)
  assert time.time() - sent < 30
  assert process.returncode == 128 + signal.SIGTERM, stderr[-3000:]
  assert "Traceback" not in stderr
  stopped = [line for line in stderr.splitlines() if line.startswith("stopped: ")]
  assert len(stopped) == 1 and "re-run the same command to resume" in stopped[0]
  steps = _checkpoint_steps(workdir, stage)
  assert steps[-1] > 20   # The step the signal arrived in was saved.
  assert not os.path.exists(os.path.join(workdir, "samples"))
  timing = json.load(open(os.path.join(workdir, stage, "train_timing.json")))
  assert timing["preempted"] and timing["end_step"] == steps[-1]
  return stderr, steps[-1]


def _checkpoint_steps(workdir, stage) -> list:
  return sorted(int(s) for s in os.listdir(os.path.join(workdir, stage, "checkpoints"))
                if s.isdigit())


def _resumed(stderr, workdir, stage, step) -> bool:
  """Whether the run logged resuming `stage` from its checkpoint at `step`."""
  checkpoint_dir = os.path.join(workdir, stage, "checkpoints")
  return f"Resuming from the checkpoint at step {step} in {checkpoint_dir}" in stderr


def test_sigterm_ends_a_cascade_after_each_stages_checkpoint(tmp_path):
  """SIGTERM in stage 1, then in stage 2 of the run that resumes it, then a run that
  resumes stage 2 and samples. Each stage's learning rate is flat, so its train step is one
  compiled program whatever its num_steps: a resumed stage loads the program that its
  interrupted run compiled."""
  data = save_stripes_npz(str(tmp_path / "stripes16.npz"), 64, size=16)
  workdir = str(tmp_path / "hdd")
  args = [f"--config.data.path={data}", f"--workdir={workdir}"]
  for stage in ("stage1", "stage2"):
    args += [f"--config.stages.{stage}.train.lr_schedule=constant",
             f"--config.stages.{stage}.train.checkpoint_every=20"]
  _, stage1_stop = _stop_with_sigterm(
      args + ["--config.stages.stage1.train.num_steps=100000"], workdir, "stage1")
  assert not os.path.exists(os.path.join(workdir, "stage2"))

  args.append(f"--config.stages.stage1.train.num_steps={stage1_stop + 2}")
  stderr, stage2_stop = _stop_with_sigterm(
      args + ["--config.stages.stage2.train.num_steps=100000"], workdir, "stage2")
  assert _resumed(stderr, workdir, "stage1", stage1_stop), stderr[-3000:]
  assert _checkpoint_steps(workdir, "stage1")[-1] == stage1_stop + 2

  rerun = run_main(*args, f"--config.stages.stage2.train.num_steps={stage2_stop + 2}",
                   config="tests/tiny_configs.py:cascade")
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert _resumed(rerun.stderr, workdir, "stage2", stage2_stop), rerun.stderr[-3000:]
  assert os.path.exists(os.path.join(workdir, "samples", "samples.npz"))


def test_sigterm_stops_a_single_model_before_sampling(stripes_npz, tmp_path):
  workdir = str(tmp_path / "w")
  process = _start([f"--config.data.path={stripes_npz}", f"--workdir={workdir}",
                    "--config.train.num_steps=100000", "--config.train.checkpoint_every=100"])
  _wait_for(os.path.join(workdir, "checkpoints", "100"), process)
  process.send_signal(signal.SIGINT)
  process.wait(timeout=120)
  stderr = _stderr(process)
  assert process.returncode == 128 + signal.SIGINT, stderr[-3000:]
  assert not os.path.exists(os.path.join(workdir, "samples"))


# 4 ------------------------------------------------------------------------------------------

def test_read_only_checkpoint_directory_fails_at_once(trained_ddpm, tmp_path):
  data, trained = trained_ddpm
  workdir = copy_workdir(trained, tmp_path)
  data = f"--config.data.path={data}"
  directory = os.path.join(workdir, "checkpoints")
  if subprocess.run(["chattr", "+i", str(directory)], capture_output=True).returncode != 0:
    pytest.skip("chattr +i is not available on this filesystem")
  try:
    start = time.time()
    result = run_main(data, f"--workdir={workdir}", "--config.train.num_steps=9")
    assert time.time() - start < 120
    assert "cannot write checkpoints to" in one_error_line(result)
  finally:
    subprocess.run(["chattr", "-i", str(directory)], check=True)
  assert sorted(os.listdir(directory)) == ["3", "6"]


# 5 ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("field,value", [("train.weight_decay", float("nan")),
                                         ("train.weight_decay", -1.0),
                                         ("train.learning_rate", float("inf")),
                                         ("diffusion.beta_end", float("nan"))])
def test_non_finite_or_negative_hyper_parameters_are_refused(field, value):
  config = tiny_config("x.npz")
  section, key = field.split(".")
  config[section][key] = value
  with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
    config_checks.check_config(config)


def test_a_non_finite_update_is_not_applied():
  config = tiny_config()
  # The guard does not depend on the network, and this step is compiled for this test
  # alone: the smallest U-Net (one level, no attention, as the tiny cascade's 4x4 stage).
  config.model.update(channel_mult=(1,), attention_resolutions=())
  state = train_step.create_train_state(config, create_model(config))
  # Finite loss and gradients, but an update that makes the parameters NaN.
  state = state.replace(tx=optax.chain(optax.adam(1e-3), optax.scale(float("nan"))))
  state = state.replace(opt_state=state.tx.init(state.params))
  batch = train_step.split_micro_batches(stripes_batch(16, 0), 1)
  step = jax.jit(lambda s, b, sch: train_step.train_step(
      s, b, sch, prediction="eps", min_snr_gamma=0.0, num_classes=0, label_dropout=0.0,
      ema_decay=0.9, ema_warmup=True))
  new_state, metrics = step(state, batch, create_schedule(config.diffusion))
  assert np.isfinite(float(metrics["loss"])) and np.isfinite(float(metrics["grad_norm"]))
  assert not bool(metrics["finite"])
  for new, old in zip(jax.tree_util.tree_leaves(new_state.params),
                      jax.tree_util.tree_leaves(state.params)):
    np.testing.assert_array_equal(new, old)


# 6 ------------------------------------------------------------------------------------------

MEANINGS = {"diffusion.num_steps": "40", "diffusion.prediction": "v",
            "diffusion.schedule": "cosine"}


@pytest.fixture(scope="module")
def refused_resume(trained_ddpm, tmp_path_factory):
  """(the one error line, config.json before, after) of one resume of a copy of the trained
  DDPM under every field of MEANINGS changed: the refusal names each changed field, so one
  run checks all of them."""
  data, trained = trained_ddpm
  workdir = tmp_path_factory.mktemp("meanings") / "w"
  shutil.copytree(trained, workdir)
  recorded = (workdir / "config.json").read_text()
  refused = run_main(f"--config.data.path={data}", f"--workdir={workdir}",
                     *(f"--config.{field}={value}" for field, value in MEANINGS.items()))
  return one_error_line(refused), recorded, (workdir / "config.json").read_text()


@pytest.mark.parametrize("field", MEANINGS)
def test_resuming_under_another_meaning_is_refused(refused_resume, field):
  line, recorded, after = refused_resume
  assert f"{field}: " in line and "allow_config_change" in line
  assert after == recorded


def test_allow_config_change_resumes_and_keeps_the_old_config(trained_ddpm, tmp_path):
  data, trained = trained_ddpm
  workdir = tmp_path / "w"
  shutil.copytree(trained, workdir)
  recorded = (workdir / "config.json").read_text()
  allowed = run_main(f"--config.data.path={data}", f"--workdir={workdir}",
                     "--config.train.num_steps=8",
                     "--config.diffusion.prediction=v", "--config.train.allow_config_change=True",
                     "--config.sample.num_samples=0")
  assert allowed.returncode == 0, allowed.stderr[-3000:]
  assert (workdir / "config.before-step-6.json").read_text() == recorded
  assert '"prediction": "v"' in (workdir / "config.json").read_text()


# 7 ------------------------------------------------------------------------------------------

def test_a_failure_lets_the_checkpoint_in_flight_complete(stripes_npz, tmp_path):
  config = tiny_config(stripes_npz)
  config.train.checkpoint_every = 1

  def fail_at_step_4(step, state, writer, train_seconds):
    if step == 4:
      raise RuntimeError("injected failure")

  with pytest.raises(RuntimeError, match="injected failure"):
    train.train_and_evaluate(config, str(tmp_path / "w"), [fail_at_step_4])
  names = os.listdir(tmp_path / "w" / "checkpoints")
  assert "3" in names and not [n for n in names if "tmp" in n], names


# 8 ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("labels,message", [(np.arange(64) % 10, "labels in [0, 9]"),
                                            (np.full(64, -1), "labels in [-1, -1]")])
def test_labels_outside_num_classes_are_refused(tmp_path, labels, message):
  path = str(tmp_path / "data.npz")
  images = np.zeros((64, 8, 8), np.uint8)
  np.savez(path, x_train=images, y_train=labels)
  config = tiny_config(path)
  with pytest.raises(DataError, match=r"model.num_classes=2 needs them in \[0, 1\]") as error:
    next(pipeline.create_train_iterator(config.data, 16, 0, 0, num_classes=2))
  assert message in str(error.value)


# 9 ------------------------------------------------------------------------------------------

def _write(image: Image.Image, path, **kwargs):
  image.save(path, **kwargs)
  return np.asarray(Image.open(path).convert("L"))


def test_images_only_pil_decoded_now_train(tmp_path):
  rng = np.random.default_rng(0)
  folder = tmp_path / "images"
  folder.mkdir()
  rgb = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
  grey = Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8))
  expected = {
      "a.gif": _write(grey.convert("P"), folder / "a.gif"),
      "b.bmp": _write(grey, folder / "b.bmp"),
      "c.webp": _write(grey, folder / "c.webp", lossless=True),
      "d.jpg": None,
  }
  rgb.convert("CMYK").save(folder / "d.jpg", quality=95)
  source = sources.folder_source(str(folder), 8, 1, "none")
  assert source.num_examples == 4
  batch = next(pipeline.build_dataset(source, 4, seed=0, num_epochs=1).as_numpy_iterator())
  assert batch["image"].shape == (4, 8, 8, 1) and np.isfinite(batch["image"]).all()
  for name, pixels in expected.items():   # Grey files decode to exactly their pixels.
    if pixels is not None:
      np.testing.assert_array_equal(sources.decode_image(str(folder / name), 1)[..., 0], pixels)


# 10 -----------------------------------------------------------------------------------------

def test_an_idx_header_with_huge_dimensions_is_refused(tmp_path):
  path = tmp_path / "train-images-idx3-ubyte"
  path.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">III", 2**31, 2**31, 2**31) + b"\0" * 64)
  with pytest.raises(DataError, match="does not match its header"):
    sources.read_idx(str(path))


def test_eval_on_a_truncated_samples_file_is_one_line(trained_ddpm, tmp_path):
  data, trained = trained_ddpm
  workdir = copy_workdir(trained, tmp_path)
  samples = os.path.join(workdir, "samples", "samples.npz")
  with open(samples, "r+b") as f:
    f.truncate(100)
  result = run_main(f"--config.data.path={data}", f"--workdir={workdir}", "--mode=eval",
                    "--config.eval.inception_weights=/no/weights.pt")
  assert "cannot read samples from" in one_error_line(result)


# 11 -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("args,message", [
    (["--config.sample.trajectory_images=-1"], "sample.trajectory_images=-1: must be >= 1"),
    (["--config.train.fid_every=2", "--config.eval.inception_weights=/no/weights.pt"],
     "train.fid_every=2 needs the FID Inception weights"),
])
def test_late_errors_are_found_before_training(stripes_npz, tmp_path, args, message):
  workdir = tmp_path / "w"
  result = run_main(f"--config.data.path={stripes_npz}", f"--workdir={workdir}", *args)
  assert message in one_error_line(result)
  assert not (workdir / "checkpoints").exists()


def test_filter_without_classifier_fails_before_any_stage_trains(tmp_path):
  data = save_stripes_npz(str(tmp_path / "stripes16.npz"), 64, size=16)
  workdir = tmp_path / "hdd"
  result = run_main(f"--config.data.path={data}", f"--workdir={workdir}",
                    "--config.filter.enabled=True", config="tests/tiny_configs.py:cascade")
  assert "no trained classifier" in one_error_line(result)
  assert not (workdir / "stage1").exists()


# 12 -----------------------------------------------------------------------------------------

def test_a_sampling_run_that_fails_half_way_leaves_the_previous_set(tmp_path, monkeypatch):
  config = tiny_config()
  params = train_step.create_train_state(config, create_model(config)).ema_params
  workdir = str(tmp_path / "w")
  cascade.sample_and_save(config, {"model": params}, workdir)
  samples = os.path.join(workdir, "samples")
  before = {name: open(os.path.join(samples, name), "rb").read()
            for name in os.listdir(samples)}
  config.sample.seed = 1
  real_save_png = cascade.images.save_png
  calls = []

  def save_png_then_fail(path, image):
    calls.append(path)
    real_save_png(path, image)
    if len(calls) == 2:
      raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(cascade.images, "save_png", save_png_then_fail)
  with pytest.raises(OSError):
    cascade.sample_and_save(config, {"model": params}, workdir)
  after = {name: open(os.path.join(samples, name), "rb").read()
           for name in os.listdir(samples)}
  assert after == before
  # No temporary folder is left behind (the timing table is from the first, good run).
  assert sorted(os.listdir(workdir)) == ["samples", "timing.json", "timing.md"]


# 13 -----------------------------------------------------------------------------------------

def test_symlink_cycles_count_each_image_once(tmp_path):
  folder = tmp_path / "images"
  (folder / "sub").mkdir(parents=True)
  for index, where in enumerate([folder, folder, folder / "sub", folder / "sub"]):
    Image.fromarray(np.full((8, 8), index * 50, np.uint8)).save(where / f"{index}.png")
  os.symlink(folder, folder / "sub" / "loop")
  os.symlink(folder / "sub", folder / "again")
  assert len(sources.image_files(str(folder))) == 4
  assert sources.folder_source(str(folder), 8, 1, "none").num_examples == 4


def test_atomic_directory_replaces_as_a_whole(tmp_path):
  target = tmp_path / "set"
  with files.atomic_directory(str(target)) as new:
    open(os.path.join(new, "a"), "w").write("1")
  with pytest.raises(RuntimeError):
    with files.atomic_directory(str(target)) as new:
      open(os.path.join(new, "b"), "w").write("2")
      raise RuntimeError("half-way")
  assert os.listdir(target) == ["a"] and sorted(os.listdir(tmp_path)) == ["set"]
