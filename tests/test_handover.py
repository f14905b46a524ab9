"""Hand-over between cascade stages (hdd.handover): the mix and truncate rules against
hand-computed values, gamma <-> t* at equal signal-to-noise ratio, and upsampling."""
import jax.numpy as jnp
import numpy as np

from hdd import handover
from hdd.schedules import Schedule


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
