"""Training hooks (hdd.hooks): SampleGrid logs a grid of EMA samples at
multiples of `every` only; FidMonitor needs the weights file when it is built, loads its
reference once, at first use, and logs fid_<N>samples; from_config builds the hooks the
train section asks for; with the real FID weights, FID is logged during training."""
import json
import os
import types

import jax
import numpy as np
import pytest

from common import parallel
from common.errors import CheckpointError
from evaluation import statistics, weights
from helpers import tiny_cascade, tiny_config, tiny_sampling_config
from hdd import generate, hooks, stages, train
from hdd.build import create_model
from hdd.plan import SamplingPlan
from hdd.train_step import create_train_state


class FakeWriter:
  """Records what a hook writes, like clu's MetricWriter."""

  def __init__(self):
    self.images, self.scalars = [], []

  def write_images(self, step, values):
    self.images.append((step, values))

  def write_scalars(self, step, values):
    self.scalars.append((step, values))


@pytest.fixture(scope="module")
def state():
  """A fresh train state whose EMA parameters differ from the raw ones."""
  config = tiny_sampling_config()
  fresh = create_train_state(config, create_model(config))
  return fresh.replace(ema_params=jax.tree_util.tree_map(lambda p: 0.8 * p + 0.01,
                                                         fresh.params))


def test_sample_grid_logs_ema_samples_at_multiples_only(state):
  config = tiny_sampling_config()
  hook = hooks.SampleGrid(config, every=3)
  writer = FakeWriter()
  for step in range(1, 7):
    hook(step, state, writer, float(step))
  assert [step for step, _ in writer.images] == [3, 6] and writer.scalars == []
  grid = writer.images[0][1]["samples"]
  # 16 samples of 8x8 in a 4x4 grid with 2-pixel padding, as one image [1, H, W, C].
  assert grid.shape == (1, 4 * 10 + 2, 4 * 10 + 2, 1) and grid.dtype == np.uint8
  np.testing.assert_array_equal(writer.images[1][1]["samples"], grid)
  plan, mesh = SamplingPlan.create(config), parallel.create_mesh()
  ema_samples, _ = generate.sample_images(plan, state.ema_params, mesh, 16)
  for i in range(16):
    top, left = 2 + (i // 4) * 10, 2 + (i % 4) * 10
    np.testing.assert_array_equal(grid[0, top:top + 8, left:left + 8], ema_samples[i])
  raw_samples, _ = generate.sample_images(plan, state.params, mesh, 4)
  assert np.any(raw_samples != ema_samples[:4])   # The grid shows EMA, not raw, samples.


def test_sample_grid_of_a_conditional_model_has_a_row_per_class():
  """(The U-Net on one level, the quickest to compile: the grid's rows do not depend on it.)"""
  config = tiny_sampling_config()
  config.model.update(num_classes=3, channel_mult=(1,), attention_resolutions=())
  state = create_train_state(config, create_model(config))
  writer = FakeWriter()
  hooks.SampleGrid(config, every=1)(1, state, writer, 1.0)
  grid = writer.images[0][1]["samples"]
  assert grid.shape == (1, 3 * 10 + 2, 2 * 10 + 2, 1)   # 3 classes, 2 samples each.


@pytest.fixture
def fake_weights(tmp_path):
  """A file where the FID weights are looked for: hooks only check that it exists."""
  path = tmp_path / "fid_weights.pt"
  path.write_bytes(b"not read by these tests")
  return str(path)


def test_fid_monitor_loads_its_reference_once_at_first_use(state, monkeypatch, fake_weights):
  config = tiny_sampling_config()
  config.train.fid_samples = 4
  config.eval.inception_weights = fake_weights
  loads, scored = [], []

  class FakeReference:
    def score(self, samples):
      scored.append(samples)
      return {"fid": float(samples.astype(np.float64).mean())}

  def fake_load(*args):
    loads.append(args)
    return FakeReference()

  monkeypatch.setattr(statistics.FidReference, "load", fake_load)
  hook = hooks.FidMonitor(config, every=2)
  assert loads == [] and hook.reference is None
  writer = FakeWriter()
  for step in range(1, 5):
    hook(step, state, writer, float(step))
  assert len(loads) == 1
  assert loads[0][1:5] == ("test", 8, config.eval.reference_examples, fake_weights)
  assert [step for step, _ in writer.scalars] == [2, 4] and writer.images == []
  assert all(list(values) == ["fid_4samples"] for _, values in writer.scalars)
  assert all(s.shape == (4, 8, 8, 1) and s.dtype == np.uint8 for s in scored)
  assert writer.scalars[0][1]["fid_4samples"] == pytest.approx(scored[0].mean())


def test_fid_monitor_needs_the_weights_when_it_is_built(tmp_path):
  config = tiny_config()
  config.eval.inception_weights = str(tmp_path / "missing.pt")
  with pytest.raises(CheckpointError, match=r"train.fid_every=5 needs the FID Inception "
                     r"weights, not found at .*missing.pt"):
    hooks.FidMonitor(config, every=5)


def test_from_config(monkeypatch, fake_weights):
  def refuse(*args, **kwargs):
    raise AssertionError("building the hooks must not load weights or statistics")

  monkeypatch.setattr(weights, "load_fid_inception", refuse)
  monkeypatch.setattr(statistics.FidReference, "load", refuse)
  config = tiny_config()
  config.eval.inception_weights = fake_weights
  assert config.train.sample_every == 0 and config.train.fid_every == 0
  assert hooks.from_config(config) == []
  config.train.update(sample_every=7, fid_every=5)
  built = hooks.from_config(config)
  assert [type(h) for h in built] == [hooks.FidMonitor, hooks.SampleGrid]
  assert [h.every for h in built] == [5, 7] and built[0].reference is None
  config.train.fid_every = 0
  (only,) = hooks.from_config(config)
  assert isinstance(only, hooks.SampleGrid) and only.every == 7
  config.train.update(sample_every=0, fid_every=3)
  (only,) = hooks.from_config(config)
  assert isinstance(only, hooks.FidMonitor) and only.every == 3


@pytest.mark.parametrize("content, problem", [
    (b'[{"step": 2, "fid": 31.5}', "Expecting ',' delimiter: line 1 column 26 (char 25)"),
    (b"\xff\xfe", "'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"),
    (b'{"step": 2}', "expected a list of {step, fid, ...} points"),
    (b'[{"fid": 31.5}]', "expected a list of {step, fid, ...} points"),
])
def test_a_damaged_fid_curve_is_refused_when_the_hooks_are_built(tmp_path, fake_weights,
                                                                  content, problem):
  """A garbled fid_curve.json of a resumed run failed with a JSONDecodeError after the
  model had compiled and trained up to the first FID."""
  config = tiny_config()
  config.train.fid_every = 2
  config.eval.inception_weights = fake_weights
  curve = tmp_path / "fid_curve.json"
  curve.write_bytes(content)
  with pytest.raises(CheckpointError) as error:
    hooks.from_config(config, str(tmp_path))
  assert str(error.value) == (f"{curve} is damaged ({problem}); remove it (its FID points are "
                              "lost) or use another --workdir")


@pytest.mark.skipif(not os.path.exists(weights.default_path()),
                    reason="real FID weights not fetched (python -m evaluation.weights)")
def test_fid_is_logged_during_training(stripes_npz, tmp_path):
  from tensorboard.backend.event_processing import event_accumulator
  from tensorboard.util import tensor_util
  config = tiny_config(stripes_npz)
  config.train.update(num_steps=4, fid_every=2, fid_samples=8)
  config.eval.stats_dir = str(tmp_path / "stats")
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(config, workdir, hooks.from_config(config))
  events = event_accumulator.EventAccumulator(workdir)
  events.Reload()
  values = [float(tensor_util.make_ndarray(event.tensor_proto))
            for event in events.Tensors("fid_8samples")]
  assert len(values) == 2 and all(np.isfinite(v) and v > 0 for v in values)


def test_fid_monitor_measures_through_the_cascade_and_resumes_its_curve(
    tmp_path, monkeypatch, fake_weights):
  """The hook of a later stage samples from the earlier stages' output (fetched once);
  fid_curve.json records the training seconds the loop gives the hook, and a resumed run
  drops the points after the step it resumed from."""
  config = stages.stage_config(tiny_cascade(), "stage2")
  config.train.fid_samples, config.sample.batch_size = 4, 4
  config.eval.inception_weights = fake_weights
  state = create_train_state(config, create_model(config))
  monkeypatch.setattr(statistics.FidReference, "load",
                      lambda *args: types.SimpleNamespace(
                          score=lambda samples: {"fid": float(samples.mean())}))
  low_res_calls = []

  def low_res(count):
    low_res_calls.append(count)
    return np.full((count, 4, 4, 1), 200, np.uint8)

  def run(hook, steps_and_seconds):
    for step, seconds in steps_and_seconds:
      hook(step, state, FakeWriter(), seconds)

  hook = hooks.FidMonitor(config, every=2, workdir=str(tmp_path), low_res=low_res)
  assert hook.sample.plan.handover.method == "mix"
  run(hook, [(1, 5.0), (2, 10.0), (3, 15.0), (4, 27.0), (5, 30.0), (6, 33.0)])
  assert low_res_calls == [4]
  curve = json.loads((tmp_path / "fid_curve.json").read_text())
  assert [(row["step"], row["train_seconds"]) for row in curve] == [(2, 10.0), (4, 27.0),
                                                                     (6, 33.0)]
  assert all(row["measure_seconds"] > 0 and row["num_samples"] == 4 for row in curve)
  # Killed after the FID at step 6, resumed from the checkpoint at step 4.
  resumed = hooks.FidMonitor(config, every=2, workdir=str(tmp_path), low_res=low_res)
  run(resumed, [(5, 29.0), (6, 31.0)])
  curve = json.loads((tmp_path / "fid_curve.json").read_text())
  assert [(row["step"], row["train_seconds"]) for row in curve] == [(2, 10.0), (4, 27.0),
                                                                     (6, 31.0)]
