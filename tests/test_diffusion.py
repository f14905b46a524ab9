"""Diffusion math against float64 numpy references written here from the papers."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hdd.maths import diffusion
from hdd.maths.schedules import Schedule, get_betas

T = 200
BETAS = get_betas("linear", T, 1e-4, 0.02)
ALPHA_BAR = np.cumprod(1 - BETAS)


def alpha_bar_at(t):
  return 1.0 if t < 0 else ALPHA_BAR[t]


def reference_ddpm_step(x, t, eps, z, variance="fixed_small"):
  """Ho et al. (2020), Algorithm 2, without clipping, in float64."""
  beta, alpha, ab = BETAS[t], 1 - BETAS[t], ALPHA_BAR[t]
  mean = (x - beta / np.sqrt(1 - ab) * eps) / np.sqrt(alpha)
  if t == 0:
    return mean
  sigma2 = beta * (1 - ALPHA_BAR[t - 1]) / (1 - ab) if variance == "fixed_small" else beta
  return mean + np.sqrt(sigma2) * z


def reference_ddim_step(x, t, t_prev, eps, eta, z):
  """Song et al. (2021), eq. 12 with sigma of eq. 16, in float64."""
  ab, ab_prev = ALPHA_BAR[t], alpha_bar_at(t_prev)
  x0 = (x - np.sqrt(1 - ab) * eps) / np.sqrt(ab)
  sigma = eta * np.sqrt((1 - ab_prev) / (1 - ab)) * np.sqrt(1 - ab / ab_prev)
  return np.sqrt(ab_prev) * x0 + np.sqrt(1 - ab_prev - sigma**2) * eps + sigma * z


@pytest.fixture(scope="module")
def schedule():
  return Schedule.from_betas(BETAS)


def _arrays(seed, shape=(3, 4, 4, 2)):
  rng = np.random.default_rng(seed)
  return rng.standard_normal(shape), rng.standard_normal(shape), rng.standard_normal(shape)


def test_q_sample_moments(schedule):
  x0 = np.full((20000, 1, 1, 1), 0.7, np.float32)
  t = np.full((20000,), 120)
  noise = jax.random.normal(jax.random.PRNGKey(0), x0.shape)
  x_t = np.asarray(diffusion.q_sample(schedule, x0, t, noise))
  assert abs(x_t.mean() - np.sqrt(ALPHA_BAR[120]) * 0.7) < 0.02
  assert abs(x_t.var() - (1 - ALPHA_BAR[120])) < 0.02


def test_q_sample_per_example_steps(schedule):
  x0, noise, _ = _arrays(0)
  t = np.array([0, 57, 199])
  expected = np.sqrt(ALPHA_BAR[t])[:, None, None, None] * x0 + np.sqrt(
      1 - ALPHA_BAR[t])[:, None, None, None] * noise
  got = diffusion.q_sample(schedule, jnp.float32(x0), t, jnp.float32(noise))
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("t", [0, 1, 50, 199])
@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
def test_ddpm_step_matches_reference(schedule, t, variance):
  x, eps, z = _arrays(t)
  got = diffusion.ddpm_step(schedule, jnp.float32(x), np.full(3, t), jnp.float32(eps),
                            jnp.float32(z), clip_x0=False, variance=variance)
  np.testing.assert_allclose(got, reference_ddpm_step(x, t, eps, z, variance),
                             rtol=2e-4, atol=2e-4)


def test_ddpm_step_clipping_uses_clipped_x0(schedule):
  x, eps, z = _arrays(5)
  t = 150
  x0 = np.clip((x - np.sqrt(1 - ALPHA_BAR[t]) * eps) / np.sqrt(ALPHA_BAR[t]), -1, 1)
  ab_prev = ALPHA_BAR[t - 1]
  mean = (np.sqrt(ab_prev) * BETAS[t] / (1 - ALPHA_BAR[t]) * x0 +
          np.sqrt(1 - BETAS[t]) * (1 - ab_prev) / (1 - ALPHA_BAR[t]) * x)
  expected = mean + np.sqrt(BETAS[t] * (1 - ab_prev) / (1 - ALPHA_BAR[t])) * z
  got = diffusion.ddpm_step(schedule, jnp.float32(x), np.full(3, t), jnp.float32(eps),
                            jnp.float32(z), clip_x0=True)
  np.testing.assert_allclose(got, expected, rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize("t,t_prev", [(199, 179), (100, 0), (20, -1), (0, -1)])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_step_matches_reference(schedule, t, t_prev, eta):
  x, eps, z = _arrays(t + 7)
  got = diffusion.ddim_step(schedule, jnp.float32(x), np.full(3, t), np.full(3, t_prev),
                            jnp.float32(eps), eta=eta, noise=jnp.float32(z))
  np.testing.assert_allclose(got, reference_ddim_step(x, t, t_prev, eps, eta, z),
                             rtol=2e-4, atol=2e-4)


def test_ddim_final_step_returns_x0_estimate(schedule):
  x, eps, z = _arrays(3)
  x0 = (x - np.sqrt(1 - ALPHA_BAR[40]) * eps) / np.sqrt(ALPHA_BAR[40])
  got = diffusion.ddim_step(schedule, jnp.float32(x), np.full(3, 40), -1, jnp.float32(eps),
                            eta=1.0, noise=jnp.float32(z))
  np.testing.assert_allclose(got, x0, rtol=1e-4, atol=1e-4)


def test_ddim_clipping_keeps_or_rederives_eps(schedule):
  """clip_x0 alone clips x0_hat and keeps eps (diffusers); clipped_eps re-derives eps from
  the clipped x0_hat (GLIDE), so x_prev is then q's mean direction for that x0_hat."""
  x, eps, _ = _arrays(5)
  eps = 4.0 * eps   # Large enough for x0_hat to leave [-1, 1].
  t, t_prev = 60, 30
  x0 = np.clip((x - np.sqrt(1 - ALPHA_BAR[t]) * eps) / np.sqrt(ALPHA_BAR[t]), -1, 1)
  assert (np.abs(x0) == 1).any()
  rederived = (x - np.sqrt(ALPHA_BAR[t]) * x0) / np.sqrt(1 - ALPHA_BAR[t])
  for clipped_eps, eps_used in ((False, eps), (True, rederived)):
    got = diffusion.ddim_step(schedule, jnp.float32(x), np.full(3, t), np.full(3, t_prev),
                              jnp.float32(eps), clip_x0=True, clipped_eps=clipped_eps)
    expected = np.sqrt(ALPHA_BAR[t_prev]) * x0 + np.sqrt(1 - ALPHA_BAR[t_prev]) * eps_used
    np.testing.assert_allclose(got, expected, rtol=2e-4, atol=2e-4)


def test_ddim_eta_one_equals_ddpm_on_adjacent_steps(schedule):
  """With eta=1 and t_prev=t-1, DDIM's sigma^2 is DDPM's beta~ and the means agree."""
  x, eps, z = _arrays(11)
  ddim = diffusion.ddim_step(schedule, jnp.float32(x), np.full(3, 80), np.full(3, 79),
                             jnp.float32(eps), eta=1.0, noise=jnp.float32(z))
  ddpm = diffusion.ddpm_step(schedule, jnp.float32(x), np.full(3, 80), jnp.float32(eps),
                             jnp.float32(z), clip_x0=False)
  np.testing.assert_allclose(ddim, ddpm, rtol=1e-4, atol=1e-4)


def test_ddim_timesteps_are_the_uniform_skip():
  np.testing.assert_array_equal(diffusion.ddim_timesteps(1000, 5), [0, 200, 400, 600, 800])
  np.testing.assert_array_equal(diffusion.ddim_timesteps(1000, 50)[:3], [0, 20, 40])
  assert len(diffusion.ddim_timesteps(1000, 1000)) == 1000
  with pytest.raises(ValueError):
    diffusion.ddim_timesteps(10, 11)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_every_parameterisation_recovers_eps(schedule, prediction):
  x0, noise, _ = _arrays(1)
  x0, noise = jnp.float32(x0), jnp.float32(noise)
  t = np.array([3, 90, 190])
  x_t = diffusion.q_sample(schedule, x0, t, noise)
  target = diffusion.training_target(schedule, x0, t, noise, prediction)
  eps = diffusion.eps_from_model_output(schedule, x_t, t, target, prediction)
  np.testing.assert_allclose(eps, noise, rtol=1e-3, atol=2e-3)


def test_v_target_closed_form(schedule):
  x0, noise, _ = _arrays(2)
  t = np.array([10, 100, 150])
  ab = ALPHA_BAR[t][:, None, None, None]
  expected = np.sqrt(ab) * noise - np.sqrt(1 - ab) * x0
  got = diffusion.training_target(schedule, jnp.float32(x0), t, jnp.float32(noise), "v")
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_denoising_loss_is_zero_for_the_oracle(schedule):
  """A model returning the true noise has zero loss; one returning zeros has loss E[eps^2]=1."""
  x0 = jnp.zeros((512, 4, 4, 1))
  rng = jax.random.PRNGKey(3)
  # For x0 = 0, x_t = sqrt(1 - ab_t) eps, so the oracle is x_t / sqrt(1 - ab_t).
  oracle = lambda x_t, t: x_t / schedule.sqrt_one_minus_alphas_cumprod[t][:, None, None, None]
  losses, t = diffusion.denoising_loss(oracle, schedule, x0, rng, "eps")
  assert losses.shape == (512,) and t.min() >= 0 and t.max() < T
  assert float(losses.max()) < 1e-8
  losses, _ = diffusion.denoising_loss(lambda x_t, t: jnp.zeros_like(x_t), schedule, x0, rng, "eps")
  assert abs(float(losses.mean()) - 1.0) < 0.05


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_min_snr_weight_closed_form(schedule, prediction):
  """Hang et al. (2023): the weighted loss of every parameterisation is the x0 loss times
  min(SNR, gamma). With x0-loss = ||x0_hat - x0||^2, an eps error e is an x0 error
  e sqrt(1-ab)/sqrt(ab) (eq. 4 inverted), so w_eps = min(SNR, gamma) (1 - ab) / ab."""
  t = np.array([0, 5, 40, 120, 199])
  ab = ALPHA_BAR[t]
  snr = ab / (1 - ab)
  x0_weight = np.minimum(snr, 5.0)
  # The squared x0 error per unit squared error of each output (closed forms, float64).
  x0_error_per_output = {"eps": (1 - ab) / ab, "x0": np.ones_like(ab), "v": 1 - ab}[prediction]
  expected = x0_weight * x0_error_per_output
  got = diffusion.min_snr_weight(schedule, jnp.asarray(t), prediction, 5.0)
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  # Steps with SNR below gamma keep weight 1 for eps: the noisy end of the chain.
  if prediction == "eps":
    assert np.all(np.asarray(got)[snr < 5.0] == pytest.approx(1.0))
  np.testing.assert_array_equal(
      diffusion.min_snr_weight(schedule, jnp.asarray(t), prediction, 0.0), np.ones(len(t)))


def test_denoising_loss_applies_the_min_snr_weight(schedule):
  """A model returning zeros for eps has squared error E[eps^2] = 1 per example, so the
  weighted per-example loss is the weight of its step."""
  x0 = jnp.zeros((4096, 2, 2, 1))
  zeros = lambda x_t, t: jnp.zeros_like(x_t)
  rng = jax.random.PRNGKey(5)
  weighted, t = diffusion.denoising_loss(zeros, schedule, x0, rng, "eps", min_snr_gamma=5.0)
  plain, t_plain = diffusion.denoising_loss(zeros, schedule, x0, rng, "eps")
  np.testing.assert_array_equal(t, t_plain)
  ab = ALPHA_BAR[np.asarray(t)]
  expected = np.minimum(ab / (1 - ab), 5.0) / (ab / (1 - ab))
  np.testing.assert_allclose(weighted, expected * np.asarray(plain), rtol=1e-5)
