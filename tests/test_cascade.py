"""The hierarchical cascade (hdd.cascade): network evaluations per stage as advertised,
the low-resolution filter re-draws exactly the rejected samples, what a conditional stage's
network is given, and tiny two- and three-stage runs of main.py (train, sample,
independent resume, timing table, a conditional stage)."""
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from helpers import (TemplateDenoiser, copy_workdir, half_templates, run_main,
                     save_stripes_npz, tiny_cascade)
from common import images, parallel
from hdd import cascade, checkpoints, evaluate, generate, plan, stages
from hdd.maths import handover
from hdd.build import create_model


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
  real_create_model = plan.create_model
  monkeypatch.setattr(plan, "create_model", lambda c: CountingModel(real_create_model(c), calls))
  params = {}
  for name in stages.names(config):
    single = stages.stage_config(config, name)
    model = real_create_model(single)
    size = single.data.image_size
    params[name] = model.init(jax.random.PRNGKey(0), jnp.zeros((1, size, size, 1)),
                              jnp.zeros((1,), jnp.int32))["params"]
  outputs, report, _ = cascade.sample_cascade(config, params, num_images=3)
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


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_guided_cascade_honours_labels_at_every_stage_and_doubles_evaluations(monkeypatch,
                                                                             sampler):
  """With a network that is exact for one template per class, every stage must end on the
  template of the label asked for, guided or not; w > 0 evaluates conditional and
  unconditional rows, twice the rows of w = 0, stage by stage."""
  config = tiny_cascade(data_path="unused.npz")
  for stage in config.stages.values():
    stage.model.num_classes = 2
    stage.sample.update(sampler=sampler, num_steps=5)
  calls = []
  monkeypatch.setattr(plan, "create_model", lambda c: TemplateDenoiser(c, calls))
  params = {name: {} for name in stages.names(config)}

  def sample(w1, w2, label=-1):
    config.stages.stage1.sample.guidance_scale = w1
    config.stages.stage2.sample.guidance_scale = w2
    config.sample.label = label
    calls.clear()
    outputs, report, _ = cascade.sample_cascade(config, params, num_images=5)
    jax.effects_barrier()
    measured = [sum(rows for side, rows in calls if side == size) / 5 for size in (4, 8)]
    assert measured == [s["network_evaluations_per_image"] for s in report["stages"]]
    return outputs, measured

  unguided, unguided_evaluations = sample(0.0, 0.0)
  guided, guided_evaluations = sample(2.0, 3.0)
  assert guided_evaluations == [2 * e for e in unguided_evaluations]
  assert sample(2.0, 0.0)[1] == [guided_evaluations[0], unguided_evaluations[1]]
  cycled = np.arange(5) % 2
  for outputs in (unguided, guided):
    for name, size in (("stage1", 4), ("stage2", 8)):
      expected = (half_templates(size)[cycled] + 1) * 127.5
      np.testing.assert_allclose(outputs[name], expected, atol=1)
  fixed, _ = sample(3.0, 3.0, label=1)
  np.testing.assert_allclose(fixed["stage2"], (half_templates(8)[[1] * 5] + 1) * 127.5, atol=1)


def guided_ddim_from_a_mix(steps, prev_steps, labels, up, noise, w, gamma) -> np.ndarray:
  """Float64 reference of the template oracle's DDIM chain (eta = 0, x0 clipped) guided at
  w, from x = gamma up + (1 - gamma) noise: every state [frames, N, 8, 8, 1]. For exact eps
  per class, guidance is exact for x0 = (1 + w) template - w mean of the templates."""
  abar = np.cumprod(1.0 - np.linspace(1e-4, 0.01, 40))
  templates = half_templates(8).astype(np.float64)
  x0 = (1 + w) * templates[labels] - w * templates.mean(0)
  x = gamma * up + (1 - gamma) * noise
  states = [x]
  for t, t_prev in zip(steps, prev_steps):
    ab_prev = abar[t_prev] if t_prev >= 0 else 1.0
    eps = (x - np.sqrt(abar[t]) * x0) / np.sqrt(1 - abar[t])
    x = np.sqrt(ab_prev) * np.clip(x0, -1, 1) + np.sqrt(1 - ab_prev) * eps
    states.append(x)
  return np.stack(states)


def test_guidance_weight_and_mix_gamma_are_inputs_of_one_compiled_chain(monkeypatch):
  """Stage 2 guided and handed over by a mix, sampled at two (w, gamma) through one cache
  of compiled chains: one chain serves both, and each chain of states is the float64
  reference of its own w and gamma (to a uint8 level)."""
  config = tiny_cascade(data_path="unused.npz")
  stage2 = config.stages.stage2
  stage2.model.num_classes = 2
  stage2.sample.update(sampler="ddim", num_steps=4, handover="mix", trajectory_every=1)
  monkeypatch.setattr(plan, "create_model", lambda c: TemplateDenoiser(c, []))
  low = np.full((4, 4, 4, 1), 191, np.uint8)          # Upsampled: 191 / 127.5 - 1 everywhere.
  noise = np.random.default_rng(0).normal(size=(4, 8, 8, 1)).astype(np.float32)
  compiled, trajectories = {}, []
  for w, gamma in ((0.5, 0.3), (1.7, 0.62)):
    stage2.sample.update(guidance_scale=w, gamma=gamma)
    stage_plan = cascade.sampling_plans(config)["stage2"]
    samples, info = generate.sample_images(stage_plan, {}, parallel.create_mesh(), 4,
                                           with_trajectory=True, low_res=low, noise=noise,
                                           compiled=compiled)
    expected = guided_ddim_from_a_mix(stage_plan.steps, stage_plan.prev_steps, info["labels"],
                                      191 / 127.5 - 1, noise, w, gamma)
    np.testing.assert_allclose(info["trajectory"], images.to_uint8(expected), atol=1)
    np.testing.assert_allclose(samples, images.to_uint8(expected[-1]), atol=1)
    trajectories.append(info["trajectory"].astype(int))
  assert len(compiled) == 1
  assert np.abs(trajectories[0] - trajectories[1]).max() > 20   # Both values reach the chain.


class LowResCopier:
  """Stands in for a conditional stage's U-Net with x0-prediction: it predicts x0 = the
  low-resolution input c it is given, so every sampler ends on clip(c), and records the
  noise steps s and the rows of every evaluation."""

  def __init__(self, calls: list):
    self.calls = calls

  def apply(self, variables, x, t, labels=None, train=False, low_res=None, low_res_step=None):
    del variables, labels, train
    jax.debug.callback(lambda s: self.calls.append((len(s), set(np.asarray(s).tolist()))),
                       low_res_step)
    return low_res + 0.0 * x


@pytest.mark.parametrize("rule", ["noise", "truncate"])
def test_conditional_stage_sees_the_noised_low_res_image_at_every_step(monkeypatch, rule):
  """Under either hand-over, with or without guidance, the stage's network gets
  c = sqrt(abar_s) up(x_low) + sqrt(1 - abar_s) z at the fixed step s (its standardised
  residual is N(0, 1)), with noise z of its own, not the noise its chain starts from."""
  config = tiny_cascade(data_path="unused.npz")
  stage2 = config.stages.stage2
  stage2.model.update(low_res_size=4, num_classes=2)
  stage2.diffusion.prediction = "x0"
  stage2.sample.update(handover=rule, start_step=19, upsample="nearest", sampler="ddim",
                       num_steps=5, low_res_noise=8 / 39, trajectory_every=1)
  config.sample.batch_size = 32
  calls = []
  monkeypatch.setattr(plan, "create_model", lambda c: LowResCopier(calls))
  stage_plan = cascade.sampling_plans(config)["stage2"]
  low = np.random.default_rng(0).integers(64, 192, (64, 4, 4, 1)).astype(np.uint8)
  up = np.repeat(np.repeat(low / 127.5 - 1.0, 2, 1), 2, 2)
  alpha_bar = np.prod(1.0 - np.linspace(1e-4, 0.01, 40)[:9])     # abar_8
  outputs = {}
  for guidance in (0.0, 2.0):
    stage_plan.config.sample.guidance_scale = guidance
    calls.clear()
    samples, info = generate.sample_images(stage_plan, {}, parallel.create_mesh(), 64, seed=1,
                                           with_trajectory=True, low_res=low)
    jax.effects_barrier()
    assert {frozenset(steps) for _, steps in calls} == {frozenset({8})}
    assert {rows for rows, _ in calls} == {32 * (2 if guidance else 1)}
    outputs[guidance] = samples
  np.testing.assert_allclose(outputs[2.0], outputs[0.0], atol=1)
  residual = ((outputs[0.0] / 127.5 - 1.0) - np.sqrt(alpha_bar) * up) / np.sqrt(1 - alpha_bar)
  assert abs(residual.mean()) < 0.05 and abs(residual.std() - 1.0) < 0.05
  start = info["trajectory"][0] / 127.5 - 1.0      # The chain's first x, of the first 8.
  correlation = lambda a, b: np.corrcoef(np.ravel(a), np.ravel(b))[0, 1]
  assert abs(correlation(start, residual[:8])) < 0.15
  if rule == "noise":
    assert abs(correlation(start, up[:8])) < 0.15
  else:
    assert correlation(start, up[:8]) > 0.3


def test_filter_redraws_rejected_low_resolution_samples():
  config = tiny_cascade(data_path="unused.npz")
  config.filter.update(enabled=True, threshold=0.5, max_rounds=4)
  config.sample.batch_size = 8
  params = {}
  for name in stages.names(config):
    single = stages.stage_config(config, name)
    size = single.data.image_size
    params[name] = create_model(single).init(jax.random.PRNGKey(1), jnp.zeros((1, size, size, 1)),
                                             jnp.zeros((1,), jnp.int32))["params"]
  unfiltered, _, _ = cascade.sample_cascade(config, params, num_images=16)
  brightness = lambda x: x.reshape(len(x), -1).mean(axis=1)
  cut = np.median(brightness(unfiltered["stage1"]))
  critic = lambda x: (brightness(x) > cut).astype(np.float64)   # Rejects the darker half.
  outputs, report, _ = cascade.sample_cascade(config, params, num_images=16, critic=critic)
  filtered = report["stages"][0]["filter"]
  assert filtered["initially_rejected"] == int(np.sum(critic(unfiltered["stage1"]) < 0.5)) > 0
  low = outputs["stage1"]
  passing = critic(low) >= 0.5
  assert filtered["still_rejected"] == int(np.sum(~passing))
  assert filtered["still_rejected"] < filtered["initially_rejected"]
  # Accepted first draws are kept untouched; only rejected ones were replaced.
  kept = critic(unfiltered["stage1"]) >= 0.5
  np.testing.assert_array_equal(low[kept], unfiltered["stage1"][kept])
  assert filtered["redrawn"] % 8 == 0 and filtered["rounds"] >= 1


@pytest.fixture
def cascade_npz(tmp_path):
  return save_stripes_npz(str(tmp_path / "stripes16.npz"), 64, size=16)


def run_cascade(variant, *args):
  return run_main(*args, config=f"tests/tiny_configs.py:{variant}")


def test_two_stage_train_sample_and_independent_resume(trained_cascade, tmp_path):
  """The session's tiny two-stage cascade as main.py trained and sampled it; then stage 2
  alone trained on, on a copy, leaving stage 1's checkpoints untouched: from its step 2 to
  its num_steps again (its step 4 removed), so that its train step is the program that the
  session's training compiled, loaded from the compilation cache."""
  data, trained = trained_cascade
  for name in ("samples.npz", "stages.npz", "grid.png", "cascade.png", "timing.json"):
    assert os.path.exists(os.path.join(trained, "samples", name)), name
  final = np.load(os.path.join(trained, "samples", "samples.npz"))["images"]
  by_stage = np.load(os.path.join(trained, "samples", "stages.npz"))
  assert final.shape == (8, 8, 8, 1) and by_stage["stage1"].shape == (8, 4, 4, 1)
  np.testing.assert_array_equal(by_stage["stage2"], final)
  timing = json.load(open(os.path.join(trained, "timing.json")))
  assert [row["stage"] for row in timing["stages"]] == ["stage1", "stage2"]
  assert all(row["train_steps"] == 4 and row["sample_seconds"] > 0 for row in timing["stages"])
  assert "| total |" in open(os.path.join(trained, "timing.md")).read()

  workdir = copy_workdir(trained, tmp_path)
  stage1_dir = os.path.join(workdir, "stage1", "checkpoints")
  before = {name: os.path.getmtime(os.path.join(stage1_dir, name))
            for name in os.listdir(stage1_dir)}
  stage2_dir = os.path.join(workdir, "stage2", "checkpoints")
  shutil.rmtree(os.path.join(stage2_dir, "4"))
  more = run_cascade("cascade_cond", f"--config.data.path={data}", f"--workdir={workdir}",
                     "--config.stage=2")
  assert more.returncode == 0, more.stderr[-3000:]
  assert f"Resuming from the checkpoint at step 2 in {stage2_dir}" in more.stderr
  after = {name: os.path.getmtime(os.path.join(stage1_dir, name))
           for name in os.listdir(stage1_dir)}
  assert after == before
  assert sorted(os.listdir(stage2_dir)) == ["2", "4"]
  stage2_timing = json.load(open(os.path.join(workdir, "stage2", "train_timing.json")))
  assert stage2_timing["start_step"] == 2 and stage2_timing["end_step"] == 4


def test_three_stage_end_to_end_with_a_conditional_middle_stage(cascade_npz, tmp_path):
  """4 -> 8 -> 16 through main.py, stage 2 conditioned on stage 1's output and started
  from noise (logging sample grids while it trains), stage 3 the published unconditional
  stage handed over by truncate; then the conditional stage's held-out loss, which needs
  its low-resolution input too."""
  workdir = str(tmp_path / "hdd3")
  overrides = {"stages.stage2.model.low_res_size": 4, "stages.stage2.sample.handover": "noise",
               "stages.stage2.train.sample_every": 2,   # Its grid needs stage 1's output.
               "stages.stage3.sample.handover": "truncate", "stages.stage3.sample.start_step": 19}
  result = run_cascade("cascade3", f"--config.data.path={cascade_npz}", f"--workdir={workdir}",
                       *(f"--config.{field}={value}" for field, value in overrides.items()))
  assert result.returncode == 0, result.stderr[-3000:]
  by_stage = np.load(os.path.join(workdir, "samples", "stages.npz"))
  assert [by_stage[n].shape[1] for n in ("stage1", "stage2", "stage3")] == [4, 8, 16]
  report = json.load(open(os.path.join(workdir, "samples", "timing.json")))
  # Stage 2 runs its whole DDIM-5 chain; stage 3 visits 19, then the steps 16, 8, 0 below it.
  assert [s["network_evaluations_per_image"] for s in report["stages"]] == [5, 5, 4]
  assert report["stages"][1]["handover"] == "noise"
  assert report["stages"][1]["low_res_noise_step"] == round(0.1 * 39)
  assert report["stages"][2]["start_step"] == 19

  config = tiny_cascade("cascade3", cascade_npz)
  for field, value in overrides.items():
    section = config
    *path, key = field.split(".")
    for part in path:
      section = section[part]
    section[key] = value
  stage2 = stages.stage_config(config, "stage2")
  stage2_dir = os.path.join(workdir, "stage2")
  held_out = evaluate.evaluate_loss(stage2, checkpoints.restore_params(stage2, stage2_dir),
                                    stage2_dir)
  assert held_out["num_examples"] == 16 and 0.0 < held_out["eval_loss"] < 10.0


def test_conditional_cascade_main_samples_labels_interpolates_and_draws_the_processes(
    trained_cascade, tmp_path):
  """The session's conditional tiny cascade through main.py: labels in samples.npz, a grid
  row per class, the per-stage chain figure; then, on a copy, --mode=interpolate and
  --mode=forward_process."""
  data, trained = trained_cascade
  samples = np.load(os.path.join(trained, "samples", "samples.npz"))
  np.testing.assert_array_equal(samples["labels"], np.arange(8) % 2)
  grid = np.asarray(Image.open(os.path.join(trained, "samples", "grid.png")))
  # 2 class rows of the 4 images each class has, tiles of 8 + 2, drawn 8 times as large
  # (every image >= 64 px).
  assert grid.shape[:2] == (8 * (2 + 2 * 10), 8 * (2 + 4 * 10))
  chain = np.asarray(Image.open(os.path.join(trained, "samples", "chain.png")))
  # A block per stage, each under a 2-line header (name, steps): a row per sample of the
  # first batch (8), a column per frame (the start + 5 DDIM steps), 8x8 tiles drawn 8x.
  assert chain.shape[:2] == (2 * (2 * 16 + 8 * (2 + 8 * 10)), 8 * (2 + 6 * 10))
  timing = json.load(open(os.path.join(trained, "samples", "timing.json")))
  assert [s["network_evaluations_per_image"] for s in timing["stages"]] == [10, 10]  # DDIM-5, x2

  workdir = copy_workdir(trained, tmp_path)
  args = (f"--config.data.path={data}", f"--workdir={workdir}")
  interpolated = run_cascade("cascade_cond", *args, "--mode=interpolate")
  assert interpolated.returncode == 0, interpolated.stderr[-3000:]
  out = os.path.join(workdir, "interpolation")
  assert sorted(os.listdir(out)) == ["classes.png", "interpolation.npz", "noise.png"]
  arrays = np.load(os.path.join(out, "interpolation.npz"))
  assert arrays["noise_stage1"].shape == (2, 3, 4, 4, 1)
  assert arrays["classes_stage2"].shape == (2, 3, 8, 8, 1)
  np.testing.assert_allclose(arrays["alphas"], [0, 0.5, 1])

  drawn = run_cascade("cascade_cond", *args, "--mode=forward_process")
  assert drawn.returncode == 0, drawn.stderr[-3000:]
  strip = np.asarray(Image.open(os.path.join(workdir, "forward_process.png")))
  # 2 images x 2 stages; x0 + 8 steps; drawn 8 times as large.
  assert strip.shape[:2] == (8 * (2 + 4 * 10), 8 * (2 + 9 * 10))
