"""Schedules against their closed forms, computed independently in float64 numpy."""
import math

import numpy as np
import pytest

from hdd.maths.schedules import Schedule, get_betas


def test_linear_endpoints_and_spacing():
  betas = get_betas("linear", 1000, 1e-4, 0.02)
  assert betas.dtype == np.float64 and betas.shape == (1000,)
  assert betas[0] == 1e-4 and abs(betas[-1] - 0.02) < 1e-15
  np.testing.assert_allclose(np.diff(betas), (0.02 - 1e-4) / 999, rtol=1e-9)


def test_quadratic_is_linear_in_sqrt_beta():
  betas = get_betas("quadratic", 500, 1e-4, 0.01)
  np.testing.assert_allclose(np.sqrt(betas), [
      math.sqrt(1e-4) + i * (math.sqrt(0.01) - math.sqrt(1e-4)) / 499 for i in range(500)],
                             rtol=1e-12)


def test_cosine_matches_nichol_dhariwal():
  num_steps, s = 1000, 0.008
  f = lambda t: math.cos((t / num_steps + s) / (1 + s) * math.pi / 2)**2
  expected = [min(1 - f(i + 1) / f(i), 0.999) for i in range(num_steps)]
  np.testing.assert_allclose(get_betas("cosine", num_steps), expected, rtol=1e-12)
  assert get_betas("cosine", num_steps)[-1] == 0.999
  # alpha_bar_t = f(t + 1) / f(0) while no beta is capped.
  alpha_bar = np.cumprod(1 - get_betas("cosine", num_steps))
  np.testing.assert_allclose(alpha_bar[:900], [f(i + 1) / f(0) for i in range(900)], rtol=1e-9)


def test_unknown_kind_and_bad_steps():
  with pytest.raises(ValueError, match="unknown schedule"):
    get_betas("sigmoid", 10)
  with pytest.raises(ValueError, match="num_steps"):
    get_betas("linear", 0)


def test_schedule_constants_match_ddpm_formulas():
  betas = np.linspace(1e-4, 0.02, 100)
  schedule = Schedule.from_betas(betas)
  assert schedule.num_steps == 100
  alpha_bar = np.array([np.prod(1 - betas[:i + 1]) for i in range(100)])
  alpha_bar_prev = np.array([1.0] + list(alpha_bar[:-1]))
  np.testing.assert_allclose(schedule.alphas_cumprod, alpha_bar, rtol=1e-6)
  np.testing.assert_allclose(schedule.alphas_cumprod_prev, alpha_bar_prev, rtol=1e-6)
  np.testing.assert_allclose(schedule.sqrt_one_minus_alphas_cumprod, np.sqrt(1 - alpha_bar),
                             rtol=1e-6)
  variance = betas * (1 - alpha_bar_prev) / (1 - alpha_bar)
  np.testing.assert_allclose(schedule.posterior_variance, variance, rtol=1e-5, atol=1e-12)
  assert schedule.posterior_variance[0] == 0
  np.testing.assert_allclose(schedule.posterior_log_variance_clipped,
                             np.log(np.append(variance[1], variance[1:])), rtol=1e-5)
  np.testing.assert_allclose(schedule.posterior_mean_coef_x0,
                             betas * np.sqrt(alpha_bar_prev) / (1 - alpha_bar), rtol=1e-5)
  np.testing.assert_allclose(schedule.posterior_mean_coef_xt,
                             (1 - alpha_bar_prev) * np.sqrt(1 - betas) / (1 - alpha_bar),
                             rtol=1e-5)


def test_from_betas_rejects_bad_values():
  with pytest.raises(ValueError):
    Schedule.from_betas([0.1, 1.0])
  with pytest.raises(ValueError):
    Schedule.from_betas([])
