"""Workdir guards (hdd.guards, hdd.stop_signal): a second run on a locked workdir is refused (main.py and
in process), an unusable workdir fails at once with one line, the free-space check, and a
stop signal is recorded and raised at the next safe point."""
import os
import signal

import pytest

from helpers import run_main


def test_second_run_on_a_workdir_is_refused(stripes_npz, tmp_path):
  from hdd import guards
  workdir = str(tmp_path / "busy")
  with guards.exclusive(workdir):
    result = run_main(f"--config.data.path={stripes_npz}", f"--workdir={workdir}")
  assert result.returncode == 2
  errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
  assert errors == [f"error: another run (pid {os.getpid()}) is using --workdir={workdir}; "
                    "wait for it to finish or use another workdir"]


def test_unwritable_workdir_fails_at_once(stripes_npz, tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("not a directory")
  result = run_main(f"--config.data.path={stripes_npz}", f"--workdir={blocker}/run")
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert f"error: cannot use --workdir={blocker}/run" in result.stderr


def test_free_space_check():
  from hdd import guards
  from common.errors import UserError
  guards.check_free_space("/", 1)
  with pytest.raises(UserError, match="MiB free, the checkpoints of this run need about"):
    guards.check_free_space("/", 2**62)


def test_exclusive_lock_in_process(tmp_path):
  from hdd import guards
  workdir = str(tmp_path / "w")
  with guards.exclusive(workdir):
    assert open(os.path.join(workdir, ".lock")).read() == str(os.getpid())
    with pytest.raises(guards.WorkdirError, match=rf"another run \(pid {os.getpid()}\) is using"):
      with guards.exclusive(workdir):
        pass
  with guards.exclusive(workdir):   # Released on exit: the next run gets it.
    pass
  blocker = tmp_path / "file"
  blocker.write_text("")
  with pytest.raises(guards.WorkdirError, match="cannot use --workdir=.*choose a writable"):
    with guards.exclusive(str(blocker / "run")):
      pass


def test_stop_signal_is_recorded_for_the_next_safe_point():
  from common.errors import Stopped
  from hdd import stop_signal
  before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
  assert stop_signal.current().requested is None   # Outside a run nothing is ever requested.
  stop_signal.current().raise_if_requested("anywhere")
  with stop_signal.StopSignal() as stop:
    assert stop_signal.current() is stop and stop.requested is None
    stop.raise_if_requested("before the signal")
    os.kill(os.getpid(), signal.SIGTERM)   # Handled at the next bytecode: no exit.
    assert stop.requested == signal.SIGTERM
    with pytest.raises(Stopped, match="by signal 15 at step 3; the checkpoint is "
                       "complete") as stopped:
      stop.raise_if_requested("at step 3")
    assert stopped.value.exit_code == 128 + 15
  assert stop_signal.current().requested is None
  assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


@pytest.mark.parametrize("kind", ["symlink", "hardlink", "directory", "fifo"])
def test_a_lock_that_is_not_a_plain_file_is_refused(tmp_path, kind):
  """A .lock symlink (or hard link) to another file made every run write its pid there."""
  from hdd import guards
  workdir, victim = tmp_path / "w", tmp_path / "victim.txt"
  workdir.mkdir()
  victim.write_text("precious")
  lock = workdir / ".lock"
  {"symlink": lambda: lock.symlink_to(victim), "hardlink": lambda: os.link(victim, lock),
   "directory": lock.mkdir, "fifo": lambda: os.mkfifo(lock)}[kind]()
  with pytest.raises(guards.WorkdirError) as error:
    with guards.exclusive(str(workdir)):
      pass
  assert str(error.value) == (f"cannot use --workdir={workdir}: {lock} is a symbolic link or "
                              "not a plain file of its own; remove it (a run makes a new one) "
                              "or use another workdir")
  assert victim.read_text() == "precious"
