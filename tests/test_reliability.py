"""Reliability end to end: main.py killed with SIGKILL at random moments and resumed
gives the uninterrupted run's final state bit for bit (tests/kill_resume.py)."""
import os

import pytest

import kill_resume
from helpers import COMPILATION_CACHE


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
