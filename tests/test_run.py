"""Running a mode (hdd.run.run): the config is validated before the workdir is touched, the
mode runs holding the workdir's lock and a stop signal handler (both released after), an
OSError mid-run becomes a one-line UserError, and sampling without a checkpoint says to
train first. (main.py end to end is in test_main.py.)"""
import errno
import os

import pytest

from common.errors import CheckpointError, ConfigError, UserError
from helpers import tiny_config
from hdd import guards, run, stop_signal


def test_bad_config_is_refused_before_the_workdir_is_touched(tmp_path):
  config = tiny_config(str(tmp_path / "unused.npz"))
  config.train.batch_size = 0
  workdir = tmp_path / "run"
  with pytest.raises(ConfigError, match="train.batch_size=0: must be >= 1"):
    run.run(config, str(workdir), "train", compilation_cache="")
  assert not workdir.exists()


def test_mode_runs_with_the_lock_and_the_stop_signal(tmp_path, monkeypatch):
  seen = []

  def fake_train(config, workdir):
    with open(os.path.join(workdir, ".lock")) as f:
      seen.append((f.read(), stop_signal.current()))
    with pytest.raises(guards.WorkdirError, match="another run"):
      with guards.exclusive(workdir):
        pass

  monkeypatch.setitem(run.MODES, "train", fake_train)
  workdir = str(tmp_path / "run")
  run.run(tiny_config(str(tmp_path / "unused.npz")), workdir, "train", compilation_cache="")
  ((lock_owner, stop),) = seen
  assert lock_owner == str(os.getpid())
  assert isinstance(stop, stop_signal.StopSignal) and not isinstance(stop, stop_signal._NoSignal)
  assert stop_signal.current() is not stop and stop_signal.current().requested is None
  with guards.exclusive(workdir):   # Released after the run.
    pass


def test_os_error_mid_run_is_one_line(tmp_path, monkeypatch):
  def full_disk(config, workdir):
    raise OSError(errno.ENOSPC, "No space left on device", os.path.join(workdir, "ckpt"))

  monkeypatch.setitem(run.MODES, "sample", full_disk)
  workdir = str(tmp_path / "run")
  with pytest.raises(UserError) as error:
    run.run(tiny_config(str(tmp_path / "unused.npz")), workdir, "sample", compilation_cache="")
  assert str(error.value) == (f"No space left on device: {workdir}/ckpt; the last complete "
                              "checkpoint is kept; fix this and re-run the same command to "
                              "resume")


def test_sampling_without_a_checkpoint_says_to_train_first(tmp_path):
  workdir = str(tmp_path / "run")
  with pytest.raises(CheckpointError, match=r"no checkpoint in .*; train first with "
                     rf"--mode=train --workdir={workdir}"):
    run.run(tiny_config(str(tmp_path / "unused.npz")), workdir, "sample", compilation_cache="")
