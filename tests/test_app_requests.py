"""Requests to hdd.app.serving and hdd.app without a trained model: a cascade whose first stage
is conditional and whose second is not, sampled with the exact template network of
tests/helpers.py (compiled in a second), the bound on the compiled chains a server keeps,
and the app's refusals at start-up (port, --config), before anything loads."""
import os
import socket
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import ROOT, TemplateDenoiser, free_port, half_templates, tiny_cascade
from hdd import plan
from hdd.app import serving


class UnconditionalTemplateDenoiser(TemplateDenoiser):
  """TemplateDenoiser that also serves an unconditional stage: without labels it is exact
  for the mean of the templates."""

  def apply(self, variables, x, t, labels=None, train=False):
    if labels is None:
      labels = jnp.full(x.shape[:1], len(self.table) - 1, jnp.int32)
    return super().apply(variables, x, t, labels, train)


@pytest.fixture
def half_conditional(monkeypatch):
  """(served, calls): the tiny 4 -> 8 cascade, stage 1 conditioned on 2 classes (guided at
  w = 1.5 by its config), stage 2 unconditional; calls records every evaluation."""
  config = tiny_cascade(data_path="unused.npz")
  config.stages.stage1.model.num_classes = 2
  config.stages.stage1.sample.guidance_scale = 1.5
  calls = []
  monkeypatch.setattr(plan, "create_model", lambda c: UnconditionalTemplateDenoiser(c, calls))
  return serving.Served(config, "", params={"stage1": {}, "stage2": {}}), calls


def sample(served, calls, **fields):
  """The request's images and the evaluations per image that reached each stage's network."""
  calls.clear()
  generated = served.generate(serving.Request(**fields))
  jax.effects_barrier()
  rows = [sum(rows for side, rows in calls if side == size) for size in (4, 8)]
  return generated, [r / len(generated.images) for r in rows]


def stage1_templates(labels) -> np.ndarray:
  return (half_templates(4)[labels] + 1) * 127.5


def test_a_cascade_conditional_in_stage1_only_is_guided_there(half_conditional):
  served, calls = half_conditional
  assert served.defaults().guidance == 1.5   # Stage 1's own, not the unconditional stage's.
  generated, evaluations = sample(served, calls, guidance=2.0, label=1, num_images=3,
                                  steps=(5, 4))
  assert evaluations == [2 * 5, 4]   # Guided: both rows in stage 1, one in stage 2.
  np.testing.assert_allclose(generated.outputs["stage1"], stage1_templates([1, 1, 1]), atol=1)
  np.testing.assert_array_equal(generated.labels, [1, 1, 1])


def test_a_kept_chain_samples_the_class_of_each_request(half_conditional):
  served, calls = half_conditional
  first, _ = sample(served, calls, label=0, num_images=2, steps=(5, 4))
  compiled = len(served.compiled)
  second, _ = sample(served, calls, label=1, num_images=2, steps=(5, 4))
  assert len(served.compiled) == compiled   # The class did not compile anything.
  np.testing.assert_allclose(first.outputs["stage1"], stage1_templates([0, 0]), atol=1)
  np.testing.assert_allclose(second.outputs["stage1"], stage1_templates([1, 1]), atol=1)


def test_new_weights_and_gammas_reuse_one_chain_per_stage(half_conditional, monkeypatch):
  """The guidance weight and the mix gamma are inputs of the compiled chain: a new value
  compiles nothing and samples as a chain compiled for it; so does a new gamma under
  truncation at a given t*. w > 0 (twice the rows) and t* key the chains, MAX_CHAINS
  at most."""
  monkeypatch.setattr(serving, "MAX_CHAINS", 3)
  served, calls = half_conditional
  served = serving.Served(served.config, "", served.params)
  first, _ = sample(served, calls, num_images=2, steps=(3, 3), guidance=1.0, gamma=0.3)
  kept = dict(served.compiled)
  assert len(kept) == 2   # One chain per stage.
  fields = dict(num_images=2, steps=(3, 3), guidance=2.5, gamma=0.45)
  second, _ = sample(served, calls, **fields)
  assert dict(served.compiled) == kept
  fresh, _ = sample(serving.Served(served.config, "", served.params), calls, **fields)
  np.testing.assert_array_equal(second.animation, fresh.animation)
  # Stage 1's chain (4 frames) moves with w, stage 2's start with gamma.
  changed = [np.any(a != b) for a, b in zip(first.animation, second.animation)]
  assert any(changed[1:4]) and changed[4]
  sample(served, calls, num_images=2, steps=(3, 3), guidance=0.0)
  assert len(served.compiled) == 3   # Unguided: stage 1 evaluates half the rows.
  sample(served, calls, num_images=2, steps=(3, 3), guidance=2.0, handover="truncate",
         start_step=9, gamma=0.2)
  kept = dict(served.compiled)
  assert len(kept) == 3   # Stage 2 truncated at t* = 9 made a 4th, and the oldest went.
  generated, _ = sample(served, calls, num_images=2, steps=(3, 3), guidance=2.0,
                        handover="truncate", start_step=9, gamma=0.7)
  assert dict(served.compiled) == kept
  assert all(stage["compile_seconds"] < 0.05 for stage in generated.report["stages"])


def test_least_recently_used_forgets_the_entry_used_longest_ago():
  kept = serving.LeastRecentlyUsed(2)
  kept["a"], kept["b"] = 1, 2
  assert kept["a"] == 1   # Read: "b" is now the one used longest ago.
  kept["c"] = 3
  assert dict(kept) == {"a": 1, "c": 3}


def start_app(tmp_path, *args):
  """`python -m hdd.app` with `args` and TMPDIR=tmp_path: (result, seconds)."""
  start = time.perf_counter()
  result = subprocess.run([sys.executable, "-m", "hdd.app", *args], cwd=ROOT, timeout=60,
                          capture_output=True, text=True,
                          env=dict(os.environ, TMPDIR=str(tmp_path)))
  return result, time.perf_counter() - start


def test_a_busy_or_impossible_port_stops_the_app_before_it_loads(tmp_path):
  with socket.socket() as busy:
    busy.bind(("127.0.0.1", free_port()))
    busy.listen()
    port = busy.getsockname()[1]
    result, seconds = start_app(tmp_path, f"--workdir={tmp_path}", f"--port={port}")
  assert result.returncode == 2 and seconds < 20
  assert result.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port} (Address "
                                  "already in use)")
  assert len(result.stderr.splitlines()) == 1 and "Serving" not in result.stdout
  result, seconds = start_app(tmp_path, f"--workdir={tmp_path}", "--port=99999")
  assert result.returncode == 2 and seconds < 20
  assert result.stderr == "error: --port=99999: must lie in [1, 65535]\n"
  # --config is read as main.py reads it (ml_collections' config_flags), before anything.
  result, seconds = start_app(tmp_path, f"--workdir={tmp_path}", "--config=missing.py")
  assert result.returncode == 2 and seconds < 20
  assert result.stderr == ("error: cannot load --config: [Errno 2] No such file or directory: "
                           "'missing.py'\n")
  result, _ = start_app(tmp_path, f"--workdir={tmp_path}",
                        "--config=tests/tiny_configs.py:cascade_cond", "--config.nosuch=1")
  assert result.returncode == 2 and result.stderr.startswith("error: unknown config field")
  assert not os.listdir(tmp_path)   # Nothing made, nothing left behind.
