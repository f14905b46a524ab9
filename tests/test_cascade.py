"""The hierarchical cascade: hand-over rules against hand-computed values, stage config
validation, network evaluations per stage, and tiny two- and three-stage runs."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import make_stripes
from hdd import cascade, config_checks, generate, handover
from hdd.errors import ConfigError
from hdd.schedules import Schedule
from test_main import run_main
from tiny_cascade_config import get_config as tiny_cascade


def test_mix_is_gamma_weighted_sum():
  up = np.array([[[[0.5]], [[-1.0]]]], np.float32)   # [1, 2, 1, 1]
  noise = np.array([[[[2.0]], [[0.25]]]], np.float32)
  mixed = handover.mix(jnp.asarray(up), jnp.asarray(noise), 0.3)
  np.testing.assert_allclose(np.ravel(mixed), [0.3 * 0.5 + 0.7 * 2.0, 0.3 * -1.0 + 0.7 * 0.25],
                             rtol=1e-6)


def test_truncate_is_the_forward_process_at_t_star():
  betas = np.linspace(1e-4, 0.01, 500)
  schedule = Schedule.from_betas(betas)
  rng = np.random.default_rng(0)
  up, noise = rng.uniform(-1, 1, (2, 6, 6, 1)), rng.normal(size=(2, 6, 6, 1))
  t_star = 123
  alpha_bar = np.prod(1.0 - betas[:t_star + 1])    # 0-based: alpha_bar[t] = prod_{s<=t}.
  expected = np.sqrt(alpha_bar) * up + np.sqrt(1.0 - alpha_bar) * noise
  got = handover.truncate(schedule, jnp.asarray(up, jnp.float32), jnp.asarray(noise, jnp.float32),
                          t_star)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_gamma_and_start_step_match_signal_to_noise():
  alphas_cumprod = np.cumprod(1.0 - np.linspace(1e-4, 0.01, 500))
  snr = alphas_cumprod / (1 - alphas_cumprod)
  for gamma in (0.1, 0.3, 0.5, 0.7):
    t = handover.start_step_for_gamma(alphas_cumprod, gamma)
    target = (gamma / (1 - gamma))**2
    assert snr[t] >= target and (t == 499 or snr[t + 1] < target)
  t = 200
  gamma = handover.gamma_for_start_step(alphas_cumprod, t)
  assert np.isclose((gamma / (1 - gamma))**2, snr[t], rtol=1e-10)


def test_upsampling_nearest_repeats_pixels():
  x = jnp.arange(8, dtype=jnp.float32).reshape(2, 2, 2, 1)
  up = handover.upsample(x, 4, "nearest")
  np.testing.assert_array_equal(up, np.repeat(np.repeat(np.asarray(x), 2, 1), 2, 2))
  bilinear = handover.upsample(jnp.ones((1, 3, 3, 2)), 7, "bilinear")
  np.testing.assert_allclose(bilinear, np.ones((1, 7, 7, 2)), rtol=1e-6)


@pytest.mark.parametrize("field,value,message", [
    ("stages.stage2.image_size", 4, "stages.stage2.image_size=4: stage resolutions must increase"),
    ("stages.stage2.model.channel_mult", (1, 2, 2, 2, 2), "stages.stage2.image_size=8: must be "
     "divisible by 16"),
    ("stages.stage2.sample.handover", "blend", "stages.stage2.sample.handover='blend': must be "
     "one of ('mix', 'truncate')"),
    ("stages.stage2.sample.gamma", 1.5, "stages.stage2.sample.gamma=1.5: must lie in [0, 1]"),
    ("stages.stage2.sample.start_step", 40, "stages.stage2.sample.start_step=40: must lie in "
     "[0, diffusion.num_steps=40)"),
    ("stages.stage1.diffusion.beta_end", 2.0, "stages.stage1.diffusion.beta_start=0.0001"),
    ("stages.stage1.sample.upsample", "lanczos", "stages.stage1.sample.upsample='lanczos'"),
    ("stage", 3, "stage=3: must lie in [0, 2]"),
    ("data.image_size", 16, "data.image_size=16: must equal the last stage's image_size (8)"),
])
def test_bad_stage_configs_are_named(field, value, message):
  config = tiny_cascade(data_path="x.npz")
  config_checks.check_config(config)
  parent = config
  *path, last = field.split(".")
  for part in path:
    parent = parent[part]
  parent[last] = value
  with pytest.raises(ConfigError) as error:
    config_checks.check_config(config)
  assert any(line == f"invalid config: {message}" or line.startswith(f"invalid config: {message}")
             for line in str(error.value).splitlines()), str(error.value)


class CountingModel:
  """Wraps the U-Net so every network evaluation inside the compiled chain is recorded."""

  def __init__(self, model, calls):
    self.model, self.calls = model, calls

  def apply(self, variables, x, t, labels=None, train=False):
    jax.debug.callback(lambda t: self.calls.append((x.shape[1], int(t[0]))), t)
    return self.model.apply(variables, x, t, labels, train=train)


@pytest.mark.parametrize("rule,start_step,sampler,expected_stage2", [
    ("mix", -1, "ddpm", 40),            # All T steps.
    ("truncate", 17, "ddpm", 18),       # t*, ..., 0.
    ("truncate", 17, "ddim", 4),        # 17, then the DDIM steps 16, 8, 0 below it.
    ("truncate", -1, "ddpm", None),     # t* from gamma's SNR.
])
def test_each_stage_runs_the_advertised_network_evaluations(monkeypatch, rule, start_step,
                                                            sampler, expected_stage2):
  config = tiny_cascade(data_path="unused.npz")
  stage2 = config.stages.stage2
  stage2.sample.update(handover=rule, start_step=start_step, sampler=sampler, num_steps=5)
  config.stages.stage1.sample.update(sampler="ddim", num_steps=5)
  calls = []
  real_create_model = generate.create_model
  monkeypatch.setattr(generate, "create_model",
                      lambda c: CountingModel(real_create_model(c), calls))
  params = {}
  for name in cascade.stage_names(config):
    single = cascade.stage_config(config, name)
    model = real_create_model(single)
    size = single.data.image_size
    params[name] = model.init(jax.random.PRNGKey(0), jnp.zeros((1, size, size, 1)),
                              jnp.zeros((1,), jnp.int32))["params"]
  outputs, report = cascade.sample_cascade(config, params, num_images=3)
  jax.effects_barrier()
  assert [x.shape for x in outputs.values()] == [(3, 4, 4, 1), (3, 8, 8, 1)]
  per_stage = {size: [t for s, t in calls if s == size] for size in (4, 8)}
  assert per_stage[4] == [32, 24, 16, 8, 0]          # DDIM-5 of T=40, pure noise.
  advertised = [s["network_evaluations_per_image"] for s in report["stages"]]
  assert advertised == [5, len(per_stage[8])]
  if expected_stage2 is not None:
    assert len(per_stage[8]) == expected_stage2
  else:
    alphas_cumprod = np.cumprod(1.0 - np.linspace(1e-4, 0.01, 40))
    t_star = handover.start_step_for_gamma(alphas_cumprod, 0.3)
    assert per_stage[8] == list(range(t_star, -1, -1))
    assert np.isclose(report["stages"][1]["gamma"], handover.gamma_for_start_step(
        alphas_cumprod, t_star))


@pytest.fixture
def cascade_npz(tmp_path):
  images, labels = make_stripes(64, size=16)
  path = str(tmp_path / "stripes16.npz")
  np.savez(path, x_train=images, y_train=labels, x_test=images[:16], y_test=labels[:16])
  return path


def run_cascade(variant, *args):
  return run_main(*args, config=f"tests/tiny_cascade_config.py{variant}")


def test_two_stage_train_sample_and_independent_resume(cascade_npz, tmp_path):
  workdir = str(tmp_path / "hdd")
  data = f"--config.data.path={cascade_npz}"
  first = run_cascade("", data, f"--workdir={workdir}")
  assert first.returncode == 0, first.stderr[-3000:]
  for name in ("samples.npz", "stages.npz", "grid.png", "cascade.png", "timing.json"):
    assert os.path.exists(os.path.join(workdir, "samples", name)), name
  final = np.load(os.path.join(workdir, "samples", "samples.npz"))["images"]
  stages = np.load(os.path.join(workdir, "samples", "stages.npz"))
  assert final.shape == (8, 8, 8, 1) and stages["stage1"].shape == (8, 4, 4, 1)
  np.testing.assert_array_equal(stages["stage2"], final)
  timing = json.load(open(os.path.join(workdir, "timing.json")))
  assert [row["stage"] for row in timing["stages"]] == ["stage1", "stage2"]
  assert all(row["train_steps"] == 4 and row["sample_seconds"] > 0 for row in timing["stages"])
  assert "| total |" in open(os.path.join(workdir, "timing.md")).read()

  stage1_dir = os.path.join(workdir, "stage1", "checkpoints")
  before = {name: os.path.getmtime(os.path.join(stage1_dir, name))
            for name in os.listdir(stage1_dir)}
  more = run_cascade("", data, f"--workdir={workdir}", "--config.stage=2",
                     "--config.stages.stage2.train.num_steps=6")
  assert more.returncode == 0, more.stderr[-3000:]
  assert "Resuming from the checkpoint at step 4" in more.stderr
  after = {name: os.path.getmtime(os.path.join(stage1_dir, name))
           for name in os.listdir(stage1_dir)}
  assert after == before
  assert sorted(os.listdir(os.path.join(workdir, "stage2", "checkpoints"))) == ["2", "4", "6"]
  stage2_timing = json.load(open(os.path.join(workdir, "stage2", "train_timing.json")))
  assert stage2_timing["start_step"] == 4 and stage2_timing["end_step"] == 6


def test_three_stage_end_to_end(cascade_npz, tmp_path):
  workdir = str(tmp_path / "hdd3")
  result = run_cascade(":three", f"--config.data.path={cascade_npz}", f"--workdir={workdir}",
                       "--config.stages.stage3.sample.handover=truncate",
                       "--config.stages.stage3.sample.start_step=19")
  assert result.returncode == 0, result.stderr[-3000:]
  stages = np.load(os.path.join(workdir, "samples", "stages.npz"))
  assert [stages[n].shape[1] for n in ("stage1", "stage2", "stage3")] == [4, 8, 16]
  report = json.load(open(os.path.join(workdir, "samples", "timing.json")))
  # Stage 3 visits 19, then the DDIM steps 16, 8, 0 below it.
  assert [s["network_evaluations_per_image"] for s in report["stages"]] == [5, 5, 4]
  assert report["stages"][2]["start_step"] == 19
