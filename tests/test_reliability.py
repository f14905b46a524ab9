"""Reliability end to end: main.py killed with SIGKILL and resumed gives the uninterrupted
run's final state bit for bit (tests/kill_resume.py): at random moments, and at each point
inside a checkpoint save (tests/save_faults.py), where every restart must resume from the
newest committed step."""
import os

import pytest

import kill_resume
import save_faults
from helpers import COMPILATION_CACHE, save_stripes_npz

NUM_STEPS = 32   # Room for every kill: a restart killed in its first or second save
                 # advances at most 2 steps.
SAVE_KILLS = 10   # Inside saves: each point of save_faults once, the first four twice.


@pytest.fixture(scope="module")
def env():
  return dict(os.environ, HDD_COMPILATION_CACHE=COMPILATION_CACHE)


def test_sigkill_at_random_moments_and_inside_saves_resumes_bitwise_identical(tmp_path, env):
  """One run killed twice at random moments, then ten times inside checkpoint saves (the
  points of save_faults in turn), and resumed after each kill: each restart after a kill in
  a save resumes from the newest committed step; the end is bit for bit that of an
  uninterrupted run (which saves only its last step), and no killed save's temporary folder
  is left."""
  data = save_stripes_npz(str(tmp_path / "stripes.npz"))
  reference = str(tmp_path / "reference")
  result = kill_resume.run(data, reference, NUM_STEPS, env, checkpoint_every=NUM_STEPS)
  assert result.returncode == 0, result.stderr[-3000:]
  resumed = str(tmp_path / "resumed")
  killed = kill_resume.run_with_kills(data, resumed, NUM_STEPS, kills=2, env=env, seed=1,
                                      finish=False)
  assert killed >= 1
  landed = kill_resume.run_with_save_kills(data, resumed, NUM_STEPS, kills=SAVE_KILLS,
                                           env=env, seed=2)
  # The points in turn: the first four twice, the last two once.
  turns = [save_faults.POINTS[k % len(save_faults.POINTS)] for k in range(SAVE_KILLS)]
  assert landed == {point: turns.count(point) for point in save_faults.POINTS}, landed
  assert kill_resume.compare(kill_resume.final_arrays(reference),
                             kill_resume.final_arrays(resumed)) == []
  leftovers = [n for n in os.listdir(os.path.join(resumed, "checkpoints"))
               if save_faults.TEMPORARY in n]
  assert leftovers == []   # The last restart removed the killed saves' temporary folders.
