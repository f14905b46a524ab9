"""Checkpoints (hdd.checkpoints): save and restore round-trip with keep-last-N, a checkpoint
of another configuration is refused naming the arrays, damaged checkpoints are skipped
(moved aside by training, left in place by read-only use; main.py resumes from the one
before a damaged latest), and resuming under a config of another meaning is refused."""
import json
import os

import numpy as np
import pytest

from common.errors import CheckpointError
from helpers import run_main, tiny_config
from hdd import checkpoints, serving, train_step
from hdd.build import create_model


def test_damaged_latest_checkpoint_falls_back_to_the_previous(stripes_npz, tmp_path):
  workdir = str(tmp_path / "run")
  data = f"--config.data.path={stripes_npz}"
  no_samples = "--config.sample.num_samples=0"
  first = run_main(data, f"--workdir={workdir}", no_samples)   # checkpoints at 3 and 6.
  assert first.returncode == 0, first.stderr[-3000:]
  latest = os.path.join(workdir, "checkpoints", "6")
  files = [os.path.join(root, name) for root, _, names in os.walk(latest) for name in names]
  biggest = max(files, key=os.path.getsize)
  with open(biggest, "r+b") as f:
    f.truncate(os.path.getsize(biggest) // 2)
  second = run_main(data, f"--workdir={workdir}", "--config.train.num_steps=8", no_samples)
  assert second.returncode == 0, second.stderr[-3000:]
  assert "Checkpoint 6 in" in second.stderr and "cannot be restored" in second.stderr
  assert "Resuming from the checkpoint at step 3" in second.stderr
  names = os.listdir(os.path.join(workdir, "checkpoints"))
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
  empty = checkpoints.create_manager(directory)
  target = tree(0)
  assert checkpoints.restore_latest(empty, target) == (None, target)
  manager = saved_manager(directory, [1, 2, 3], keep=2)
  assert sorted(manager.all_steps()) == [2, 3]
  assert sorted(os.listdir(directory)) == ["2", "3"]
  step, restored = checkpoints.restore_latest(checkpoints.create_manager(directory), target)
  assert step == 3
  np.testing.assert_array_equal(restored["params"]["w"], np.arange(6).reshape(2, 3) * 3)
  np.testing.assert_array_equal(restored["params"]["b"], [3, 3, 3])
  assert int(restored["step"]) == 3
  # Each checkpoint carries the training seconds up to it (what a resumed budget continues).
  reopened = checkpoints.create_manager(directory)
  assert [checkpoints.trained_seconds(reopened, s) for s in (2, 3, None)] == [5.0, 7.5, None]


def test_another_configuration_is_refused_by_name(tmp_path):
  directory = str(tmp_path / "checkpoints")
  saved_manager(directory, [1])
  wider = tree(0)
  wider["params"]["w"] = np.zeros((2, 4), np.float32)
  wider["params"]["extra"] = np.zeros((1,), np.float32)
  with pytest.raises(CheckpointError) as error:
    checkpoints.restore_latest(checkpoints.create_manager(directory), wider)
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
  step, restored = checkpoints.restore_latest(checkpoints.create_manager(directory), tree(0),
                                              read_only=True)
  assert step == 1 and int(restored["step"]) == 1
  assert sorted(os.listdir(directory)) == ["1", "2"]
  step, restored = checkpoints.restore_latest(checkpoints.create_manager(directory), tree(0))
  assert step == 1 and int(restored["step"]) == 1
  names = sorted(os.listdir(directory))
  assert names[0] == "1" and len(names) == 2 and names[1].startswith("2.damaged-")
  for root, _, names in os.walk(os.path.join(directory, "1")):
    for name in names:
      with open(os.path.join(root, name), "r+b") as f:
        f.truncate(0)
  with pytest.raises(CheckpointError, match=r"no checkpoint in .* could be restored \(tried "
                     r"steps \[1\]"):
    checkpoints.restore_latest(checkpoints.create_manager(directory), tree(0))


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


def test_a_step_with_unparsable_metadata_is_refused_in_one_line(tmp_path):
  """A damaged metadata key (found by tests/test_fuzz.py) makes orbax's manager raise
  ValueError while it lists the steps: a one-line CheckpointError, and nothing moved."""
  config = tiny_config()
  state = train_step.create_train_state(config, create_model(config))
  directory = str(tmp_path / "checkpoints")
  manager = checkpoints.create_manager(directory)
  checkpoints.save(manager, 1, state.replace(step=1), train_seconds=1.0)
  checkpoints.finish(manager)
  path = os.path.join(directory, "1", "_CHECKPOINT_METADATA")
  with open(path) as f:
    metadata = json.load(f)
  metadata["letrics"] = metadata.pop("metrics")
  metadata["custom_metadata"] = metadata.get("custom_metadata") or {"note": 1}
  with open(path, "w") as f:
    json.dump(metadata, f)
  with pytest.raises(CheckpointError, match="metadata is damaged.*letrics") as error:
    checkpoints.create_manager(directory)
  assert "\n" not in str(error.value)
  assert os.listdir(directory) == ["1"]
