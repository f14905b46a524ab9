"""Hand-over between cascade stages (hdd.maths.handover): the mix and truncate rules against
hand-computed values, gamma <-> t* at equal signal-to-noise ratio, upsampling, and the
low-resolution input of a conditional stage against float64 references."""
import jax
import jax.numpy as jnp
import numpy as np

from configs import default
from hdd import stages
from hdd.maths import handover
from hdd.maths.schedules import Schedule


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


def triangle_downsample_by_2(x: np.ndarray) -> np.ndarray:
  """Float64 antialiased linear downsampling by 2 of [B, H, W, C]: output pixel i averages
  input pixels 2i-1, 2i, 2i+1, 2i+2 with weights 1, 3, 3, 1 (the triangle kernel widened
  to the output's pixel), renormalised where the kernel leaves the image."""
  size = x.shape[1]
  centres = np.arange(size) + 0.5
  weights = np.maximum(0.0, 1.0 - np.abs(centres[None, :] - (2 * np.arange(size // 2)[:, None]
                                                              + 1.0)) / 2.0)
  weights /= weights.sum(axis=1, keepdims=True)
  return np.einsum("ih,bhwc,jw->bijc", weights, x.astype(np.float64), weights)


def test_shrink_is_the_antialiased_downsampling_rounded_to_uint8_levels():
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (3, 8, 8, 1)) / 127.5 - 1.0
  expected = np.clip(np.round((triangle_downsample_by_2(x) + 1.0) * 127.5), 0, 255)
  got = (np.asarray(handover.shrink(jnp.asarray(x, jnp.float32), 4), np.float64) + 1.0) * 127.5
  np.testing.assert_allclose(got, expected, atol=1e-4)   # Whole levels, the same ones.


def linear_schedule(num_steps: int = 41):
  betas = np.linspace(1e-4, 0.02, num_steps)
  return Schedule.from_betas(betas), np.cumprod(1.0 - betas)


def test_low_res_input_is_the_forward_process_of_the_upsampled_image():
  """c = sqrt(abar_s) up(x_low) + sqrt(1 - abar_s) z at the given steps, the sampling step
  fixed for every image."""
  schedule, alphas_cumprod = linear_schedule()
  low_res_input = handover.LowResInput(size=4, upsample="nearest", max_train_step=20,
                                       sample_step=7)
  rng = np.random.default_rng(1)
  low, noise = rng.uniform(-1, 1, (3, 4, 4, 1)), rng.normal(size=(3, 8, 8, 1))
  up = np.repeat(np.repeat(low, 2, 1), 2, 2)
  steps = np.array([0, 13, 40])
  inputs = low_res_input.condition(schedule, jnp.asarray(low, jnp.float32), 8,
                                   jnp.asarray(steps), jnp.asarray(noise, jnp.float32))
  abar = alphas_cumprod[steps][:, None, None, None]
  np.testing.assert_allclose(inputs["low_res"], np.sqrt(abar) * up + np.sqrt(1 - abar) * noise,
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(inputs["low_res_step"], steps)
  sampled = low_res_input.for_sampling(schedule, jnp.asarray(low, jnp.float32),
                                       jnp.asarray(noise, jnp.float32))
  np.testing.assert_array_equal(sampled["low_res_step"], [7, 7, 7])
  abar = alphas_cumprod[7]
  np.testing.assert_allclose(sampled["low_res"], np.sqrt(abar) * up + np.sqrt(1 - abar) * noise,
                             rtol=1e-5, atol=1e-5)


def test_training_input_is_the_shrunk_image_noised_at_uniform_steps():
  """for_training: s ~ U{0..max}, and given s the input is q(c_s | up(shrink(x0))): its
  standardised residual is N(0, 1) and independent of the image."""
  schedule, alphas_cumprod = linear_schedule()
  low_res_input = handover.LowResInput(size=4, upsample="nearest", max_train_step=20,
                                       sample_step=0)
  rng = np.random.default_rng(2)
  x0 = rng.integers(0, 256, (4000, 8, 8, 1)) / 127.5 - 1.0
  inputs = low_res_input.for_training(schedule, jnp.asarray(x0, jnp.float32),
                                      jax.random.PRNGKey(0))
  steps = np.asarray(inputs["low_res_step"])
  counts = np.bincount(steps, minlength=41)
  assert counts[21:].sum() == 0 and np.all(counts[:21] > 4000 / 21 * 0.7)
  low = np.clip(np.round((triangle_downsample_by_2(x0) + 1.0) * 127.5), 0, 255) / 127.5 - 1.0
  up = np.repeat(np.repeat(low, 2, 1), 2, 2)
  abar = alphas_cumprod[steps][:, None, None, None]
  residual = (np.asarray(inputs["low_res"], np.float64) - np.sqrt(abar) * up) / np.sqrt(1 - abar)
  assert abs(residual.mean()) < 0.01 and abs(residual.std() - 1.0) < 0.01
  assert abs(np.corrcoef(residual.ravel(), up.ravel())[0, 1]) < 0.01


def test_low_res_input_from_config_reads_fractions_of_the_schedule():
  config = default.get_config()
  assert handover.LowResInput.from_config(config) is None     # Unconditional.
  config = default.make_cascade(default.get_config(), (14, 28))
  stage = config.stages.stage2
  stage.diffusion.num_steps = 101
  stage.model.low_res_size = 14
  stage.train.low_res_noise_max = 0.5
  stage.sample.update(low_res_noise=0.1, upsample="bicubic")
  got = handover.LowResInput.from_config(stages.stage_config(config, "stage2"))
  assert got == handover.LowResInput(size=14, upsample="bicubic", max_train_step=50,
                                     sample_step=10)


def test_noise_hand_over_starts_the_full_chain_from_the_noise():
  rule = handover.Handover(method="noise")
  schedule, alphas_cumprod = linear_schedule()
  assert rule.chain_start(alphas_cumprod) is None
  noise = jnp.asarray(np.random.default_rng(3).normal(size=(2, 8, 8, 1)), jnp.float32)
  np.testing.assert_array_equal(rule(schedule, jnp.ones((2, 4, 4, 1)), noise, None, rule.gamma),
                                noise)
