"""Fréchet distance and KID against closed forms and independent float64 computations."""
import numpy as np
import pytest
import scipy.linalg

from evaluation import fid


def test_frechet_distance_closed_form_for_commuting_gaussians():
  """Diagonal covariances: d^2 = |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2."""
  mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([0.5, -1.0, 0.0])
  a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
  expected = np.sum((mu1 - mu2)**2) + np.sum((np.sqrt(a) - np.sqrt(b))**2)
  assert np.isclose(fid.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)), expected, rtol=1e-12)
  assert fid.frechet_distance(mu1, np.diag(a), mu1, np.diag(a)) == pytest.approx(0.0, abs=1e-10)


def test_frechet_distance_matches_sqrtm_reference():
  """General covariances: against tr(sqrtm(S1 S2)) from scipy (the reference tools' route)."""
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(400, 16)), rng.normal(size=(300, 16)) @ rng.normal(size=(16, 16)) + 1
  mu1, s1 = x.mean(0), np.cov(x, rowvar=False)
  mu2, s2 = y.mean(0), np.cov(y, rowvar=False)
  covmean = scipy.linalg.sqrtm(s1 @ s2).real
  expected = np.sum((mu1 - mu2)**2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
  assert np.isclose(fid.frechet_distance(mu1, s1, mu2, s2), expected, rtol=1e-9)
  # Singular covariances (fewer samples than dimensions) stay finite and non-negative.
  few = rng.normal(size=(5, 16))
  assert 0 <= fid.frechet_distance(*fid.feature_statistics(few), mu2, s2) < np.inf


@pytest.mark.parametrize("num", [2, 5, 16, 40])
def test_frechet_distance_of_few_features_against_the_eigenvalues_of_the_product(num):
  """Fewer (or more) samples than dimensions: against tr((S1 S2)^(1/2)) as the sum of the
  square roots of the eigenvalues of S1 S2 from numpy's general (non-symmetric) solver."""
  rng = np.random.default_rng(num)
  features = rng.normal(size=(num, 16)) * np.linspace(0.5, 2.0, 16)
  y = rng.normal(size=(300, 16)) @ rng.normal(size=(16, 16)) + 1
  mu2, s2 = y.mean(0), np.cov(y, rowvar=False)
  mu1, s1 = features.mean(0), np.cov(features, rowvar=False)
  eigenvalues = np.linalg.eigvals(s1 @ s2)
  assert np.abs(eigenvalues.imag).max() < 1e-8
  # S1 has rank min(N - 1, D): only that many eigenvalues of S1 S2 are not zero (the rest
  # are roundoff, whose square roots would add ~1e-6). The general solver on a singular,
  # non-symmetric product still carries ~1e-9 relative error: hence rtol 1e-8.
  rank = min(num - 1, 16)
  expected = (np.sum((mu1 - mu2)**2) + np.trace(s1) + np.trace(s2)
              - 2 * np.sqrt(np.clip(np.sort(eigenvalues.real)[-rank:], 0, None)).sum())
  assert np.isclose(fid.frechet_distance_of_features(features, mu2, s2), expected, rtol=1e-8)
  assert np.isclose(fid.distances(features, mu2, s2, y)["frechet"], expected, rtol=1e-8)
  with pytest.raises(ValueError, match="mismatched statistics"):
    fid.frechet_distance_of_features(features, np.zeros(3), np.eye(3))


def test_frechet_distance_refuses_mismatched_shapes():
  with pytest.raises(ValueError, match="mismatched statistics"):
    fid.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_kid_matches_a_double_loop():
  """One subset: the unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3, summed pair by pair."""
  rng = np.random.default_rng(1)
  a, b = rng.normal(size=(12, 5)), rng.normal(0.3, 1.2, size=(9, 5))
  k = lambda x, y: (x @ y / 5 + 1)**3
  m = 9   # subset_size is capped at the smaller set.
  mean, std = fid.kernel_inception_distance(a, b, num_subsets=1, subset_size=100, seed=3)
  same_draws = np.random.default_rng(3)
  x = a[same_draws.choice(12, m, replace=False)]
  y = b[same_draws.choice(9, m, replace=False)]
  xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
  yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
  xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
  assert np.isclose(mean, xx + yy - 2 * xy, rtol=1e-10) and std == 0.0


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
  rng = np.random.default_rng(2)
  same, _ = fid.kernel_inception_distance(rng.normal(size=(400, 8)), rng.normal(size=(400, 8)),
                                          num_subsets=20, subset_size=200)
  shifted, _ = fid.kernel_inception_distance(rng.normal(size=(400, 8)),
                                             rng.normal(1.0, 1.0, size=(400, 8)),
                                             num_subsets=20, subset_size=200)
  assert abs(same) < 0.02 and shifted > 0.2
