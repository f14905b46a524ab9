"""Sampling on request (hdd.app.serving) without a trained model: a cascade whose first stage
is conditional and whose second is not, sampled with the exact template network of
tests/helpers.py (compiled in a second), the bound on the compiled chains a server keeps, a
workdir's config read back, problems said in the names of the page's controls, and the
animation's GIF. Requests to a tiny trained cascade: tests/test_app.py."""
import io
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from common.errors import UserError
from helpers import TemplateDenoiser, half_templates, tiny_cascade, tiny_config
from hdd import config_checks, plan
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


def test_a_workdir_config_is_read_back_as_it_was_written(tmp_path):
  """Lists come back as tuples, and a field added since the file was written comes back at
  the value that means what its absence did."""
  config = tiny_cascade("cascade_cond", data_path="stripes.npz")
  tree = json.loads(config.to_json_best_effort())
  del tree["stages"]["stage2"]["model"]["low_res_size"]
  (tmp_path / "config.json").write_text(json.dumps(tree))
  assert serving.load_config(str(tmp_path)) == config
  (tmp_path / "config.json").write_text('{"stages": ')
  with pytest.raises(serving.RequestError, match=r"^cannot read .*config.json \("):
    serving.load_config(str(tmp_path))


def first_problem(config) -> str:
  with pytest.raises(UserError) as error:
    config_checks.check_config(config)
  return str(error.value).splitlines()[0].removeprefix("invalid config: ")


def test_problems_of_fields_a_request_sets_are_said_in_the_controls_names():
  cascade = tiny_cascade("cascade_cond", data_path="stripes.npz")
  cascade.stages.stage2.sample.gamma = 1.5
  assert serving.in_control_terms(cascade, first_problem(cascade)) == (
      "gamma 1.5: must lie in [0, 1]")
  cascade.stages.stage2.sample.gamma = 0.3
  cascade.stages.stage2.sample.num_steps = 99
  assert serving.in_control_terms(cascade, first_problem(cascade)) == (
      "stage2 steps 99: must lie in [0, diffusion.num_steps=40] (0 = all)")
  single = tiny_config("stripes.npz")
  single.sample.num_steps = 99
  assert serving.in_control_terms(single, first_problem(single)) == (
      "model steps 99: must lie in [0, diffusion.num_steps=50] (0 = all)")
  # A field no control sets, and a problem whose value is not the config's: as they are.
  cascade.stages.stage2.sample.num_steps = 5
  cascade.stages.stage2.sample.upsample = "sideways"
  problem = first_problem(cascade)
  assert problem.startswith("stages.stage2.sample.upsample='sideways': ")
  assert serving.in_control_terms(cascade, problem) == problem
  assert serving.in_control_terms(cascade, "stages.stage2.sample.gamma=0.9: must be 0.3") == (
      "stages.stage2.sample.gamma=0.9: must be 0.3")


def test_the_animation_loops_and_holds_its_last_frame():
  frames = [np.full((8, 8, 1), value, np.uint8) for value in (0, 100, 200)]
  gif = Image.open(io.BytesIO(serving.gif_bytes(frames, frame_ms=50, hold_last=4)))
  assert gif.n_frames == 3 and gif.size == (8, 8) and gif.info["loop"] == 0
  durations, shown = [], []
  for index in range(3):
    gif.seek(index)
    durations.append(gif.info["duration"])
    shown.append(int(np.asarray(gif.convert("L"))[0, 0]))
  assert durations == [50, 50, 200] and shown == [0, 100, 200]
