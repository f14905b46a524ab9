"""Checkpoints (hdd.checkpoints): save and restore round-trip with keep-last-N, a checkpoint
of another configuration is refused naming the arrays, damaged checkpoints are skipped
(moved aside by training, left in place by read-only use; main.py resumes from the one
before a damaged latest), and resuming under a config of another meaning is refused."""
import json
import os
import shutil

import numpy as np
import pytest

from common.errors import CheckpointError
from helpers import copy_workdir, run_main, tiny_config
from hdd import checkpoints
from hdd.app import serving


def test_a_damaged_latest_step_is_passed_over_by_sample_and_moved_aside_by_train(trained_ddpm,
                                                                                  tmp_path):
  """The user's case: steps 3 and 6, and an unknown key in step 6's metadata. Sampling
  uses step 3 and leaves step 6 in place; training resumes from step 3 and moves step 6
  to 6.damaged-<time>; each says so in one line naming the step."""
  data, trained = trained_ddpm
  workdir = copy_workdir(trained, tmp_path)
  data = f"--config.data.path={data}"
  directory = os.path.join(workdir, "checkpoints")
  _damage_metadata(os.path.join(directory, "6"), "unknown key")
  sampled = run_main(data, f"--workdir={workdir}", "--mode=sample",
                     "--config.sample.num_samples=4", "--config.sample.batch_size=4")
  assert sampled.returncode == 0, sampled.stderr[-3000:]
  assert "Checkpoint 6 in" in sampled.stderr and "letrics" in sampled.stderr
  assert "Restored the EMA parameters of step 3" in sampled.stderr
  assert sorted(os.listdir(directory)) == ["3", "6"]
  second = run_main(data, f"--workdir={workdir}", "--config.train.num_steps=8",
                    "--config.sample.num_samples=0")
  assert second.returncode == 0, second.stderr[-3000:]
  assert "Checkpoint 6 in" in second.stderr and "cannot be restored" in second.stderr
  assert "Resuming from the checkpoint at step 3" in second.stderr
  names = os.listdir(directory)
  assert any(name.startswith("6.damaged-") for name in names)
  assert {"3", "6", "8"} <= set(names)


def tree(scale):
  return {"params": {"w": np.arange(6, dtype=np.float32).reshape(2, 3) * scale,
                     "b": np.full((3,), scale, np.float32)},
          "step": np.asarray(scale, np.int32)}


def saved_manager(directory, steps, keep=2):
  manager = checkpoints.create_manager(directory, keep=keep)
  for step in steps:
    checkpoints.save(manager, step, tree(step), train_seconds=2.5 * step)
  manager.wait_until_finished()
  return manager


def test_restore_latest_round_trips_and_keeps_the_last_n(tmp_path):
  directory = str(tmp_path / "checkpoints")
  target = tree(0)
  assert checkpoints.restore_latest(directory, target) == (None, target)
  assert not os.path.exists(directory)   # Reading creates nothing.
  manager = saved_manager(directory, [1, 2, 3], keep=2)
  assert sorted(manager.all_steps()) == [2, 3]
  assert sorted(os.listdir(directory)) == ["2", "3"]
  step, restored = checkpoints.restore_latest(directory, target)
  assert step == 3
  np.testing.assert_array_equal(restored["params"]["w"], np.arange(6).reshape(2, 3) * 3)
  np.testing.assert_array_equal(restored["params"]["b"], [3, 3, 3])
  assert int(restored["step"]) == 3
  # Each checkpoint carries the training seconds up to it (what a resumed budget continues).
  assert [checkpoints.trained_seconds(directory, s) for s in (2, 3, None)] == [5.0, 7.5, None]


def test_the_folders_of_unfinished_saves_are_gone_when_the_manager_returns(tmp_path):
  """A killed save leaves `<step>.orbax-checkpoint-tmp-<time>`; it is deleted before
  create_manager returns (not by a background thread racing the run that starts)."""
  directory = str(tmp_path / "checkpoints")
  saved_manager(directory, [1, 2], keep=3).close()
  unfinished = os.path.join(directory, "3.orbax-checkpoint-tmp-1733356800123456")
  shutil.copytree(os.path.join(directory, "2"), unfinished)
  os.remove(os.path.join(unfinished, "_CHECKPOINT_METADATA"))
  manager = checkpoints.create_manager(directory, keep=3)
  assert sorted(os.listdir(directory)) == ["1", "2"]
  assert manager.latest_step() == 2


def test_another_configuration_is_refused_by_name(tmp_path):
  directory = str(tmp_path / "checkpoints")
  saved_manager(directory, [1])
  wider = tree(0)
  wider["params"]["w"] = np.zeros((2, 4), np.float32)
  wider["params"]["extra"] = np.zeros((1,), np.float32)
  with pytest.raises(CheckpointError) as error:
    checkpoints.restore_latest(directory, wider)
  message = str(error.value)
  assert "different model configuration" in message
  assert "params/w: checkpoint (2, 3) vs config (2, 4)" in message
  assert "params/extra: checkpoint None vs config (1,)" in message
  assert sorted(os.listdir(directory)) == ["1"]   # Nothing moved aside.


def test_damaged_checkpoints_are_moved_aside(tmp_path):
  directory = str(tmp_path / "checkpoints")
  saved_manager(directory, [1, 2])
  for root, _, names in os.walk(os.path.join(directory, "2")):
    for name in names:
      with open(os.path.join(root, name), "r+b") as f:
        f.truncate(0)
  # Sampling and evaluation (read-only) fall back but leave the damaged one in place.
  step, restored = checkpoints.restore_latest(directory, tree(0), read_only=True)
  assert step == 1 and int(restored["step"]) == 1
  assert sorted(os.listdir(directory)) == ["1", "2"]
  step, restored = checkpoints.restore_latest(directory, tree(0))
  assert step == 1 and int(restored["step"]) == 1
  names = sorted(os.listdir(directory))
  assert names[0] == "1" and len(names) == 2 and names[1].startswith("2.damaged-")
  for root, _, names in os.walk(os.path.join(directory, "1")):
    for name in names:
      with open(os.path.join(root, name), "r+b") as f:
        f.truncate(0)
  with pytest.raises(CheckpointError, match=r"no checkpoint in .* could be restored \(tried "
                     r"steps \[1\]"):
    checkpoints.restore_latest(directory, tree(0))


def test_resuming_under_a_config_of_another_meaning_is_refused(tmp_path):
  original = tiny_config()
  (tmp_path / "config.json").write_text(original.to_json_best_effort(indent=2))
  same = tiny_config()
  same.model.dropout = 0.3          # Dropout only affects training: same meaning.
  same.train.learning_rate = 1e-2
  checkpoints.check_resume_config(same, str(tmp_path), 3)
  changed = tiny_config()
  changed.diffusion.num_steps = 60
  changed.model.channel_mult = (1, 1)
  assert checkpoints.meaning_changes(json.loads(original.to_json_best_effort()), changed) == [
      "diffusion.num_steps: 50 -> 60", "model.channel_mult: [1, 2] -> [1, 1]"]
  with pytest.raises(CheckpointError, match=r"trained with another config: "
                     r"diffusion.num_steps: 50 -> 60; model.channel_mult"):
    checkpoints.check_resume_config(changed, str(tmp_path), 3)
  assert os.listdir(tmp_path) == ["config.json"]
  changed.train.allow_config_change = True
  checkpoints.check_resume_config(changed, str(tmp_path), 3)
  assert os.listdir(tmp_path) == ["config.before-step-3.json"]   # The old one is kept.
  checkpoints.check_resume_config(changed, str(tmp_path / "fresh"), 0)   # No config.json.


def test_a_config_json_older_than_a_field_reads_as_the_field_off(tmp_path):
  """A run's config.json written before model.low_res_size existed resumes under today's
  config, and is served with the field at 0 (what its absence meant)."""
  before = json.loads(tiny_config().to_json_best_effort())
  del before["model"]["low_res_size"]
  assert checkpoints.meaning_changes(before, tiny_config()) == []
  conditioned = tiny_config()
  conditioned.model.low_res_size = 4
  assert checkpoints.meaning_changes(before, conditioned) == ["model.low_res_size: 0 -> 4"]
  (tmp_path / "config.json").write_text(json.dumps(before))
  assert serving.load_config(str(tmp_path)).model.low_res_size == 0


def _damage_metadata(path: str, how: str) -> None:
  """Damages the step folder `path` the way `how` says."""
  metadata_path = os.path.join(path, checkpoints.STEP_METADATA)
  with open(metadata_path) as f:
    text = f.read()
  metadata = json.loads(text)
  if how == "empty folder":
    shutil.rmtree(path)
    os.mkdir(path)
    return
  if how == "a file":
    shutil.rmtree(path)
    with open(path, "w") as f:
      f.write("not a checkpoint")
    return
  if how == "truncated JSON":
    with open(metadata_path, "w") as f:
      f.write(text[:len(text) // 2])
    return
  if how == "unknown key":   # orbax's ValueError (what test_fuzz found)
    metadata["letrics"] = metadata.pop("metrics")
  elif how == "unknown statistic":   # orbax's TypeError
    metadata["performance_metrics"] = {"bogus": 1.0}
  elif how == "seconds not a number":
    metadata["custom_metadata"]["train_seconds"] = "abc"
  elif how == "seconds NaN":
    metadata["custom_metadata"]["train_seconds"] = float("nan")
  elif how == "seconds negative":
    metadata["custom_metadata"]["train_seconds"] = -1.0
  with open(metadata_path, "w") as f:
    json.dump(metadata, f)


DAMAGES = ["unknown key", "unknown statistic", "truncated JSON", "seconds not a number",
           "seconds NaN", "seconds negative", "empty folder", "a file"]


@pytest.mark.parametrize("how", DAMAGES)
def test_a_step_with_damaged_metadata_is_passed_over_like_any_damaged_step(tmp_path, caplog,
                                                                          how):
  """Listing reads no step's metadata, so one step orbax would refuse blocks nothing:
  read-only use restores the newest good step and leaves the damaged one in place;
  training moves it aside (its bytes kept) and resumes from the newest good step. orbax
  never gets to log about it: the only report is ours, once."""
  directory = str(tmp_path / "checkpoints")
  checkpoints.finish(saved_manager(directory, [2, 4, 6], keep=3))
  _damage_metadata(os.path.join(directory, "6"), how)
  damaged = {name: open(os.path.join(root, name), "rb").read()
             for root, _, names in os.walk(os.path.join(directory, "6")) for name in names}
  caplog.set_level("INFO")
  step, restored = checkpoints.restore_latest(directory, tree(0), read_only=True)
  assert (step, int(restored["step"])) == (4, 4)
  assert sorted(os.listdir(directory)) == ["2", "4", "6"]
  step, restored = checkpoints.restore_latest(directory, tree(0))
  assert (step, int(restored["step"])) == (4, 4)
  assert checkpoints.trained_seconds(directory, step) == 10.0
  names = sorted(os.listdir(directory))
  assert names[:2] == ["2", "4"] and names[2].startswith("6.damaged-") and len(names) == 3
  moved = os.path.join(directory, names[2])
  assert {name: open(os.path.join(root, name), "rb").read()
          for root, _, names in os.walk(moved) for name in names} == damaged or how == "a file"
  reports = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
  assert len(reports) == 2 and all(r.startswith("Checkpoint 6 in ") for r in reports), reports
  assert "\n" not in reports[1] and "moved it to" in reports[1]
  # A new save of the same step number is not blocked by what was moved aside.
  manager = checkpoints.create_manager(directory)
  checkpoints.save(manager, 6, tree(6), train_seconds=15.0)
  checkpoints.finish(manager)
  assert checkpoints.restore_latest(directory, tree(0))[0] == 6


def test_every_step_damaged_is_one_line_naming_them(tmp_path):
  directory = str(tmp_path / "checkpoints")
  checkpoints.finish(saved_manager(directory, [1, 2]))
  for step in ("1", "2"):
    _damage_metadata(os.path.join(directory, step), "unknown key")
  with pytest.raises(CheckpointError, match=r"tried steps \[2, 1\], all damaged\); re-train"):
    checkpoints.restore_latest(directory, tree(0), read_only=True)
  assert sorted(os.listdir(directory)) == ["1", "2"]


def test_a_step_removed_while_read_is_not_damage(tmp_path, monkeypatch, caplog):
  """A run training in the directory deletes old steps and adds new ones while the app or
  sampling reads it: a step that vanishes mid-read is passed over without a word of damage,
  and nothing is moved."""
  directory = str(tmp_path / "checkpoints")
  checkpoints.finish(saved_manager(directory, [1, 2, 3], keep=3))
  restore = checkpoints.ocp.CheckpointManager.restore

  def removed_by_the_trainer(self, step, *args, **kwargs):
    if step == 3:
      shutil.rmtree(os.path.join(directory, "3"))   # as orbax's deletion of an old step
    return restore(self, step, *args, **kwargs)

  monkeypatch.setattr(checkpoints.ocp.CheckpointManager, "restore", removed_by_the_trainer)
  caplog.set_level("INFO")
  step, restored = checkpoints.restore_latest(directory, tree(0), read_only=True)
  assert (step, int(restored["step"])) == (2, 2)
  assert sorted(os.listdir(directory)) == ["1", "2"]
  assert not [r for r in caplog.records if r.levelname == "ERROR"]
