"""Reliability: SIGKILL at random moments then resume gives the uninterrupted result bit
for bit; a damaged latest checkpoint is moved aside and the one before it used; two runs
on one workdir are refused; an unusable workdir fails at once."""
import os

import pytest

import kill_resume
from conftest import COMPILATION_CACHE
from test_main import run_main


@pytest.fixture
def env():
  return dict(os.environ, HDD_COMPILATION_CACHE=COMPILATION_CACHE)


def test_sigkill_and_resume_is_bitwise_identical(stripes_npz, tmp_path, env):
  reference, resumed = str(tmp_path / "reference"), str(tmp_path / "resumed")
  result = kill_resume.run(stripes_npz, reference, 10, env)
  assert result.returncode == 0, result.stderr[-3000:]
  killed = kill_resume.run_with_kills(stripes_npz, resumed, 10, kills=3, env=env, seed=1)
  assert killed >= 1
  assert kill_resume.compare(kill_resume.final_arrays(reference),
                             kill_resume.final_arrays(resumed)) == []


def test_damaged_latest_checkpoint_falls_back_to_the_previous(stripes_npz, tmp_path):
  workdir = str(tmp_path / "run")
  data = f"--config.data.path={stripes_npz}"
  first = run_main(data, f"--workdir={workdir}")   # checkpoints at 3 and 6.
  assert first.returncode == 0, first.stderr[-3000:]
  latest = os.path.join(workdir, "checkpoints", "6")
  files = [os.path.join(root, name) for root, _, names in os.walk(latest) for name in names]
  biggest = max(files, key=os.path.getsize)
  with open(biggest, "r+b") as f:
    f.truncate(os.path.getsize(biggest) // 2)
  second = run_main(data, f"--workdir={workdir}", "--config.train.num_steps=8")
  assert second.returncode == 0, second.stderr[-3000:]
  assert "Checkpoint 6 in" in second.stderr and "cannot be restored" in second.stderr
  assert "Resuming from the checkpoint at step 3" in second.stderr
  names = os.listdir(os.path.join(workdir, "checkpoints"))
  assert any(name.startswith("6.damaged-") for name in names)
  assert {"3", "6", "8"} <= set(names)


def test_second_run_on_a_workdir_is_refused(stripes_npz, tmp_path):
  from hdd import workdir as guard
  workdir = str(tmp_path / "busy")
  with guard.exclusive(workdir):
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
  from hdd import workdir as guard
  from hdd.errors import UserError
  guard.check_free_space("/", 1)
  with pytest.raises(UserError, match="MiB free, the checkpoints of this run need about"):
    guard.check_free_space("/", 2**62)
