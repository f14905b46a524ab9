"""The compiled reverse chain: steps visited, network evaluations, and exact recovery of a
point mass with the oracle noise predictor (closed form)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hdd.maths import sampling
from hdd.maths.schedules import Schedule


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
  # diffusers' 'leading' spacing [0, k, ..., (S - 1) k], k = T // S; but one step starts
  # from noise, at T - 1 (leading's [0] made the one step take noise for a clean image).
  for sampler in ("ddim", "dpm_solver_2m"):
    steps, prev = sampling.reverse_timesteps(sampling.SamplerSettings(sampler, num_steps=2), 100)
    np.testing.assert_array_equal(steps, [50, 0])
    steps, prev = sampling.reverse_timesteps(sampling.SamplerSettings(sampler, num_steps=1), 100)
    np.testing.assert_array_equal(steps, [99])
    np.testing.assert_array_equal(prev, [-1])
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
    sampling.SamplerSettings("dpm_solver_2m", num_steps=10, clip_x0=False),
    sampling.SamplerSettings("dpm_solver_2m", num_steps=4, clip_x0=True),
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
    (sampling.SamplerSettings("dpm_solver_2m", num_steps=20), None, 20),
    (sampling.SamplerSettings("dpm_solver_2m", num_steps=20), 52, 12),
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
  assert calls[0] == (schedule.num_steps - (1 if settings.sampler == "ddpm" else 5)
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
  """eps = (1 + w) eps(x, y) - w eps(x, null) for a toy network eps = label, with w a
  constant or an input of the compiled function (a traced scalar)."""
  apply_fn = lambda variables, x, t, label, train: jnp.broadcast_to(
      label[:, None, None, None].astype(x.dtype), x.shape)
  labels = jnp.array([2, 5])

  def eps_at(w):
    denoise = sampling.model_denoise_fn(apply_fn, {}, schedule, "eps", labels,
                                        guidance_scale=w, null_label=10)
    return denoise(jnp.zeros((2, 2, 2, 1)), jnp.array([5, 5]))[:, 0, 0, 0]

  traced = jax.jit(eps_at)
  for w, eps in ((3.0, eps_at(3.0)), (3.0, traced(3.0)), (0.25, traced(jnp.float32(0.25)))):
    np.testing.assert_allclose(eps, [(1 + w) * 2 - w * 10, (1 + w) * 5 - w * 10])


def test_guidance_with_class_weights_uses_the_one_hot_null_class(schedule):
  """Class weights [B, C + 1] (interpolation): the unconditional half gets one-hot(null)."""
  apply_fn = lambda variables, x, t, weights, train: jnp.broadcast_to(
      (weights @ jnp.arange(weights.shape[1], dtype=x.dtype))[:, None, None, None], x.shape)
  weights = jnp.array([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0]])   # classes 0.5 and 1; null = 2.
  denoise = sampling.model_denoise_fn(apply_fn, {}, schedule, "eps", weights, guidance_scale=2.0,
                                      null_label=2)
  eps = denoise(jnp.zeros((2, 2, 2, 1)), jnp.array([5, 5]))
  np.testing.assert_allclose(eps[:, 0, 0, 0], [3 * 0.5 - 2 * 2, 3 * 1 - 2 * 2])


def gaussian_oracle(schedule, mean, std):
  """For data x0 ~ N(mean, std^2) per pixel, q(x_t) = N(a mean, a^2 std^2 + s^2) with a =
  sqrt(ab), s = sqrt(1 - ab), and the exact noise prediction is E[eps | x_t] =
  s (x_t - a mean) / (a^2 std^2 + s^2)."""
  def denoise(x, t):
    ab = schedule.alphas_cumprod[t][:, None, None, None]
    return jnp.sqrt(1 - ab) * (x - jnp.sqrt(ab) * mean) / (ab * std**2 + 1 - ab)
  return denoise


def gaussian_flow_endpoint(ab_start, ab_end, x, mean, std):
  """The probability-flow ODE of Gaussian data maps x_start to the point with the same
  standardised value under q(x_end): a_end mean + sqrt(var_end / var_start) (x - a_start mean)."""
  var = lambda ab: ab * std**2 + 1 - ab
  return (np.sqrt(ab_end) * mean + np.sqrt(var(ab_end) / var(ab_start))
          * (x - np.sqrt(ab_start) * mean))


def gaussian_problem():
  """A linear 1000-step schedule in float64, Gaussian data N(0.3, 0.5^2), and exact draws
  of q(x_999): (schedule, mean, std, x_init)."""
  schedule = Schedule.create("linear", 1000, 1e-4, 0.02)
  schedule = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), schedule)
  mean, std = 0.3, 0.5
  ab = np.asarray(schedule.alphas_cumprod)
  x_init = np.sqrt(ab[-1]) * mean + np.sqrt(ab[-1] * std**2 + 1 - ab[-1]) * np.asarray(
      jax.random.normal(jax.random.PRNGKey(0), (4, 4, 4, 1), jnp.float64))
  return schedule, mean, std, x_init


def solve(sampler: str, steps: int, problem, trajectory_every: int = 0):
  schedule, mean, std, x_init = problem
  settings = sampling.SamplerSettings(sampler, num_steps=steps, clip_x0=False)
  chain_steps, prev = sampling.reverse_timesteps(settings, 1000, start_step=999)
  x0, frames = sampling.run_chain(gaussian_oracle(schedule, mean, std), schedule, settings,
                                  jnp.asarray(x_init), jax.random.PRNGKey(1), chain_steps, prev,
                                  trajectory_every=trajectory_every, trajectory_images=4)
  return chain_steps, np.asarray(x0), None if frames is None else np.asarray(frames)


@pytest.mark.parametrize("sampler, order", [("ddim", 1), ("dpm_solver_2m", 2)])
def test_solver_error_falls_at_its_order_on_gaussian_data(sampler, order):
  """The state at t = 500 against the exact probability-flow solution from t = 999: as the
  steps grow 20 -> 40 -> 100 -> 200, the error falls like steps^-1 (DDIM, first order) or
  steps^-2 (DPM-Solver++(2M)). Float64."""
  with jax.enable_x64(True):
    problem = gaussian_problem()
    schedule, mean, std, x_init = problem
    ab = np.asarray(schedule.alphas_cumprod)
    exact = gaussian_flow_endpoint(ab[999], ab[500], x_init, mean, std)
    counts, errors = (20, 40, 100, 200), []
    for steps in counts:
      chain_steps, _, frames = solve(sampler, steps, problem, trajectory_every=1)
      # Frame k holds the state after k steps: step k - 1 ends on chain_steps[k] = 500.
      at_500 = frames[int(np.flatnonzero(chain_steps == 500)[0])]
      errors.append(float(np.max(np.abs(at_500 - exact))))
  orders = np.log(np.array(errors[:-1]) / errors[1:]) / np.log(np.array(counts[1:]) / counts[:-1])
  np.testing.assert_allclose(orders, order, atol=0.2)


@pytest.mark.parametrize("sampler", ["ddim", "dpm_solver_2m"])
def test_one_step_denoises_from_pure_noise(sampler):
  """One step from x_999 with the exact noise prediction gives E[x0 | x_999], in closed form
  mean + a std^2 (x - a mean) / (a^2 std^2 + 1 - a^2) with a = sqrt(ab_999): about the data
  mean, not the noise (the step once ran at t = 0 and returned x_init)."""
  with jax.enable_x64(True):
    schedule, mean, std, x_init = gaussian_problem()
    settings = sampling.SamplerSettings(sampler, num_steps=1, clip_x0=False)
    steps, prev = sampling.reverse_timesteps(settings, 1000)
    x0, _ = sampling.run_chain(gaussian_oracle(schedule, mean, std), schedule, settings,
                               jnp.asarray(x_init), jax.random.PRNGKey(1), steps, prev)
    ab = float(schedule.alphas_cumprod[999])
  exact = mean + np.sqrt(ab) * std**2 * (x_init - np.sqrt(ab) * mean) / (ab * std**2 + 1 - ab)
  np.testing.assert_allclose(np.asarray(x0), exact, rtol=1e-9, atol=1e-12)
  assert np.max(np.abs(exact - mean)) < 0.01


@pytest.mark.parametrize("steps, factor", [(10, 1.25), (15, 2), (20, 3), (25, 3), (50, 3)])
def test_dpm_solver_beats_ddim_at_few_steps_on_gaussian_data(steps, factor):
  """The whole chain, to the final denoised image, against the exact answer (the last
  denoising step from t = 0 applied to the exact flow from 999 to 0)."""
  with jax.enable_x64(True):
    problem = gaussian_problem()
    schedule, mean, std, x_init = problem
    ab = np.asarray(schedule.alphas_cumprod)
    at_zero = gaussian_flow_endpoint(ab[999], ab[0], x_init, mean, std)
    eps = np.sqrt(1 - ab[0]) * (at_zero - np.sqrt(ab[0]) * mean) / (ab[0] * std**2 + 1 - ab[0])
    exact = (at_zero - np.sqrt(1 - ab[0]) * eps) / np.sqrt(ab[0])
    ddim, solver = (float(np.max(np.abs(solve(s, steps, problem)[1] - exact)))
                    for s in ("ddim", "dpm_solver_2m"))
  assert solver < ddim / factor
