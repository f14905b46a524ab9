"""Reliability end to end: main.py killed with SIGKILL and resumed gives the uninterrupted
run's final state bit for bit (tests/kill_resume.py): at random moments, and at each point
inside a checkpoint save (tests/save_faults.py), where every restart must resume from the
newest committed step."""
import os

import pytest

import kill_resume
import save_faults
from helpers import COMPILATION_CACHE, save_stripes_npz

NUM_STEPS = 24


@pytest.fixture(scope="module")
def env():
  return dict(os.environ, HDD_COMPILATION_CACHE=COMPILATION_CACHE)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, env):
  """(data, the final arrays of an uninterrupted run of NUM_STEPS steps)."""
  root = tmp_path_factory.mktemp("kills")
  data = save_stripes_npz(str(root / "stripes.npz"))
  result = kill_resume.run(data, str(root / "reference"), NUM_STEPS, env)
  assert result.returncode == 0, result.stderr[-3000:]
  return data, kill_resume.final_arrays(str(root / "reference"))


def test_sigkill_at_random_moments_resumes_bitwise_identical(reference, tmp_path, env):
  data, arrays = reference
  killed = kill_resume.run_with_kills(data, str(tmp_path / "resumed"), NUM_STEPS, kills=3,
                                      env=env, seed=1)
  assert killed >= 1
  assert kill_resume.compare(arrays, kill_resume.final_arrays(str(tmp_path / "resumed"))) == []


def test_sigkill_inside_saves_resumes_from_the_newest_commit_bitwise_identical(reference,
                                                                               tmp_path, env):
  data, arrays = reference
  resumed = str(tmp_path / "resumed")
  landed = kill_resume.run_with_save_kills(data, resumed, NUM_STEPS, kills=10, env=env, seed=2)
  assert sum(landed.values()) == 10 and all(landed[p] >= 1 for p in save_faults.POINTS), landed
  assert kill_resume.compare(arrays, kill_resume.final_arrays(resumed)) == []
  leftovers = [n for n in os.listdir(os.path.join(resumed, "checkpoints"))
               if save_faults.TEMPORARY in n]
  assert leftovers == []   # The last restart removed the killed saves' temporary folders.
