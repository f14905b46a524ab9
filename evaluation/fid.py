"""Distances between feature distributions: Fréchet distance (FID when the features are
Inception pool3) and the kernel (MMD) distance KID. float64 numpy throughout."""
from __future__ import annotations

import numpy as np


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
  """(mean [D], covariance [D, D]) of features [N, D], in float64 (unbiased covariance)."""
  features = np.asarray(features, np.float64)
  if features.ndim != 2 or len(features) < 2:
    raise ValueError(f"need features [N >= 2, D], got shape {features.shape}")
  return features.mean(axis=0), np.cov(features, rowvar=False)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
  values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
  return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def _check_shapes(mu1, sigma1, mu2, sigma2) -> None:
  """Two sets of statistics of one feature space: means [D], covariances [D, D]."""
  if mu1 != mu2 or sigma1 != sigma2 or sigma1 != mu1 * 2:
    raise ValueError(f"mismatched statistics: mu {mu1} vs {mu2}, sigma {sigma1} vs {sigma2}")


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
  """d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)) (Dowson & Landau 1982).

  tr((S1 S2)^(1/2)) is computed as the sum of the square roots of the eigenvalues of the
  symmetric PSD matrix S1^(1/2) S2 S1^(1/2), which has the same spectrum as S1 S2. This
  equals the scipy.linalg.sqrtm route of the reference tools where that converges, and
  needs neither their epsilon offset for singular products nor the discarding of
  imaginary parts: no complex numbers arise.
  """
  mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
  sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
  sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
  _check_shapes(mu1.shape, sigma1.shape, mu2.shape, sigma2.shape)
  root = _psd_sqrt(sigma1)
  product_eigenvalues = np.linalg.eigvalsh(root @ sigma2 @ root)
  trace_covmean = np.sqrt(np.clip(product_eigenvalues, 0.0, None)).sum()
  diff = mu1 - mu2
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_covmean)


def frechet_distance_of_features(features, mu2, sigma2) -> float:
  """`frechet_distance` of the statistics of features [N, D] from (mu2, sigma2).

  With N <= D (every FID of up to 2,048 samples, the 2,000-sample results included, and
  the few samples of quick runs and tests, where a 2048 x 2048 eigendecomposition would cost
  seconds) it works in N x N, the same quantity in exact arithmetic: the covariance is
  S1 = A^T A with A = (features - mean) / sqrt(N - 1), so tr(S1) = |A|_F^2, and the
  non-zero eigenvalues of S1 S2 = A^T (A S2) are those of the symmetric PSD A S2 A^T.
  """
  features = np.asarray(features, np.float64)
  if features.ndim != 2 or not 2 <= len(features) <= features.shape[1]:
    return frechet_distance(*feature_statistics(features), mu2, sigma2)
  mu1 = features.mean(axis=0)
  mu2, sigma2 = np.atleast_1d(np.asarray(mu2, np.float64)), np.asarray(sigma2, np.float64)
  _check_shapes(mu1.shape, mu1.shape * 2, mu2.shape, sigma2.shape)
  a = (features - mu1) / np.sqrt(len(features) - 1)
  product = a @ sigma2 @ a.T
  trace_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((product + product.T) / 2), 0.0,
                                  None)).sum()
  diff = mu1 - mu2
  return float(diff @ diff + np.sum(a * a) + np.trace(sigma2) - 2.0 * trace_covmean)


def distances(features, reference_mu, reference_sigma, reference_features,
              num_subsets: int = 100, subset_size: int = 1000) -> dict:
  """Fréchet distance and KID (mean, std) of `features` against a reference set: its
  statistics (mu, sigma, possibly from more images) and features for the KID subsets
  (subset_size is capped at the number of samples)."""
  frechet = frechet_distance_of_features(features, reference_mu, reference_sigma)
  kid_mean, kid_std = kernel_inception_distance(features, reference_features, num_subsets,
                                                min(subset_size, len(features)))
  return {"frechet": frechet, "kid": kid_mean, "kid_std": kid_std}


def kernel_inception_distance(features_a, features_b, num_subsets: int = 100,
                              subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
  """KID (Bińkowski et al. 2018): the unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3,
  averaged over `num_subsets` random subsets of `subset_size` drawn without replacement
  from each set (capped at the smaller set). Returns (mean, std) over subsets."""
  a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
  if a.ndim != 2 or a.shape[1:] != b.shape[1:]:
    raise ValueError(f"need features [N, D] and [M, D], got {a.shape} and {b.shape}")
  m = min(subset_size, len(a), len(b))
  if m < 2:
    raise ValueError("KID needs at least 2 samples in each set")
  dim = a.shape[1]
  rng = np.random.default_rng(seed)
  estimates = np.empty(num_subsets)
  for index in range(num_subsets):
    x = a[rng.choice(len(a), m, replace=False)]
    y = b[rng.choice(len(b), m, replace=False)]
    k_xx, k_yy = (x @ x.T / dim + 1.0)**3, (y @ y.T / dim + 1.0)**3
    k_xy = (x @ y.T / dim + 1.0)**3
    within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    estimates[index] = within - 2.0 * k_xy.sum() / (m * m)
  return float(estimates.mean()), float(estimates.std())
