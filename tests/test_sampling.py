"""The compiled reverse chain: steps visited, network evaluations, and exact recovery of a
point mass with the oracle noise predictor (closed form)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hdd import sampling
from hdd.schedules import Schedule


@pytest.fixture(scope="module")
def schedule():
  return Schedule.create("linear", 100, 1e-4, 0.02)


def point_mass_oracle(schedule, target):
  """For data = the single image `target`, the exact noise is (x_t - sqrt(ab) target)/sqrt(1-ab)."""
  def denoise(x, t):
    ab = schedule.alphas_cumprod[t][:, None, None, None]
    return (x - jnp.sqrt(ab) * target) / jnp.sqrt(1 - ab)
  return denoise


def test_reverse_timesteps():
  ddpm = sampling.SamplerSettings("ddpm")
  steps, prev = sampling.reverse_timesteps(ddpm, 10)
  np.testing.assert_array_equal(steps, np.arange(9, -1, -1))
  np.testing.assert_array_equal(prev, np.arange(8, -2, -1))
  ddim = sampling.SamplerSettings("ddim", num_steps=5)
  steps, prev = sampling.reverse_timesteps(ddim, 100)
  np.testing.assert_array_equal(steps, [80, 60, 40, 20, 0])
  np.testing.assert_array_equal(prev, [60, 40, 20, 0, -1])
  steps, _ = sampling.reverse_timesteps(ddpm, 100, start_step=29)
  assert len(steps) == 30 and steps[0] == 29
  with pytest.raises(ValueError):
    sampling.reverse_timesteps(sampling.SamplerSettings("euler"), 10)


def run_chain(denoise, schedule, settings, x_init, rng, start_step=None, **kwargs):
  """The chain over the steps `reverse_timesteps` gives for these settings and start."""
  steps, prev_steps = sampling.reverse_timesteps(settings, schedule.num_steps, start_step)
  return sampling.run_chain(denoise, schedule, settings, x_init, rng, steps, prev_steps,
                            **kwargs)


@pytest.mark.parametrize("settings", [
    sampling.SamplerSettings("ddpm", clip_x0=True),
    sampling.SamplerSettings("ddpm", ddpm_variance="fixed_large", clip_x0=False),
    sampling.SamplerSettings("ddim", num_steps=10, eta=0.0, clip_x0=False),
    sampling.SamplerSettings("ddim", num_steps=7, eta=1.0, clip_x0=True),
])
def test_chain_recovers_a_point_mass(schedule, settings):
  target = jnp.linspace(-0.9, 0.9, 16).reshape(1, 4, 4, 1)
  x_init = jax.random.normal(jax.random.PRNGKey(0), (3, 4, 4, 1))
  x0, _ = jax.jit(lambda x, k: run_chain(point_mass_oracle(schedule, target), schedule,
                                         settings, x, k))(x_init, jax.random.PRNGKey(1))
  np.testing.assert_allclose(x0, jnp.broadcast_to(target, x0.shape), atol=1e-4)


@pytest.mark.parametrize("settings,start,expected", [
    (sampling.SamplerSettings("ddpm"), None, 100),
    (sampling.SamplerSettings("ddpm"), 39, 40),
    (sampling.SamplerSettings("ddim", num_steps=20), None, 20),
    (sampling.SamplerSettings("ddim", num_steps=20), 50, 11),
    (sampling.SamplerSettings("ddim", num_steps=20), 52, 12),  # 52, then 50, 45, ..., 0.
])
def test_network_evaluations_are_counted(schedule, settings, start, expected):
  calls = []

  def denoise(x, t):
    jax.debug.callback(lambda t: calls.append(int(t[0])), t)
    return jnp.zeros_like(x)

  x0, _ = jax.jit(lambda x, k: run_chain(denoise, schedule, settings, x, k, start))(
      jnp.zeros((2, 4, 4, 1)), jax.random.PRNGKey(0))
  jax.block_until_ready(x0)
  assert len(calls) == expected
  assert calls == sorted(calls, reverse=True) and calls[-1] == 0
  assert calls[0] == (schedule.num_steps - (5 if settings.sampler == "ddim" else 1)
                      if start is None else start)


def test_seeded_and_trajectory(schedule):
  settings = sampling.SamplerSettings("ddim", num_steps=10, eta=1.0)
  denoise = lambda x, t: 0.1 * x
  run = jax.jit(lambda x, k: run_chain(denoise, schedule, settings, x, k,
                                       trajectory_every=5, trajectory_images=2))
  x_init = jax.random.normal(jax.random.PRNGKey(0), (3, 4, 4, 1))
  a, frames = run(x_init, jax.random.PRNGKey(1))
  b, _ = run(x_init, jax.random.PRNGKey(1))
  c, _ = run(x_init, jax.random.PRNGKey(2))
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)
  assert frames.shape == (3, 2, 4, 4, 1)  # x_init, after step 5, after step 10.
  np.testing.assert_array_equal(frames[0], x_init[:2])
  np.testing.assert_array_equal(frames[-1], a[:2])


def test_classifier_free_guidance_combination(schedule):
  """eps = (1 + w) eps(x, y) - w eps(x, null) for a toy network eps = label."""
  apply_fn = lambda variables, x, t, label, train: jnp.broadcast_to(
      label[:, None, None, None].astype(x.dtype), x.shape)
  labels = jnp.array([2, 5])
  denoise = sampling.model_denoise_fn(apply_fn, {}, schedule, "eps", labels, guidance_scale=3.0,
                                      null_label=10)
  eps = denoise(jnp.zeros((2, 2, 2, 1)), jnp.array([5, 5]))
  np.testing.assert_allclose(eps[:, 0, 0, 0], [4 * 2 - 3 * 10, 4 * 5 - 3 * 10])


def test_guidance_with_class_weights_uses_the_one_hot_null_class(schedule):
  """Class weights [B, C + 1] (interpolation): the unconditional half gets one-hot(null)."""
  apply_fn = lambda variables, x, t, weights, train: jnp.broadcast_to(
      (weights @ jnp.arange(weights.shape[1], dtype=x.dtype))[:, None, None, None], x.shape)
  weights = jnp.array([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0]])   # classes 0.5 and 1; null = 2.
  denoise = sampling.model_denoise_fn(apply_fn, {}, schedule, "eps", weights, guidance_scale=2.0,
                                      null_label=2)
  eps = denoise(jnp.zeros((2, 2, 2, 1)), jnp.array([5, 5]))
  np.testing.assert_allclose(eps[:, 0, 0, 0], [3 * 0.5 - 2 * 2, 3 * 1 - 2 * 2])
