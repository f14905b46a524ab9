"""Reference statistics of real images (evaluation.statistics): computed once under a
progress line, cached under a fingerprint of the data, preprocessing and weights, and
refused when the fingerprint differs."""
import functools
import os

import numpy as np
import pytest

from common.errors import CheckpointError
from evaluation import inception, statistics, weights
from helpers import golden_state_dict, load_golden, tiny_config
from input_pipeline.pipeline import real_images


@pytest.mark.skipif(not os.path.exists(weights.default_path()),
                    reason="real FID weights not fetched (python -m evaluation.weights)")
def test_reference_statistics_are_cached_and_fingerprinted(stripes_npz, tmp_path):
  config = tiny_config(stripes_npz)
  variables = weights.load_fid_inception(weights.default_path())
  cache = str(tmp_path / "stats")
  stats = statistics.reference_statistics(config.data, "test", 8, 0, variables,
                                          weights.default_path(), cache)
  assert int(stats["n"]) == 16 and stats["mu"].shape == (2048,)
  (cached,) = os.listdir(cache)
  again = statistics.reference_statistics(config.data, "test", 8, 0, variables,
                                          weights.default_path(), cache)
  np.testing.assert_array_equal(again["sigma"], stats["sigma"])
  # The real images against their own statistics: FID 0 up to rounding.
  real, _ = real_images(config.data, "test", 8)
  assert abs(statistics.fid_and_kid(real, stats, variables)["fid"]) < 1e-3
  config.data.crop = "none"   # Other preprocessing of the data: another fingerprint.
  key = statistics.fingerprint(config.data, "test", 8, 16, weights.default_path())
  with pytest.raises(CheckpointError, match="fingerprint mismatch"):
    statistics.load_statistics(os.path.join(cache, cached), key)


def test_reference_statistics_advance_a_progress_line_per_batch(stripes_npz, tmp_path, capsys,
                                                                 monkeypatch):
  """The seeded random Inception weights of tests/golden (a stand-in file for their
  fingerprint) on the 16 test stripes in batches of 4: in a log (stderr is no terminal
  here) one line at each quarter; the second call reads the cache and computes nothing."""
  variables = weights.convert(golden_state_dict(load_golden()))
  weights_path = tmp_path / "random.pt"
  weights_path.write_bytes(b"the tests' random weights")
  monkeypatch.setattr(inception, "fid_features",
                      functools.partial(inception.fid_features, batch_size=4))
  config, cache = tiny_config(stripes_npz), str(tmp_path / "stats")
  compute = lambda: statistics.reference_statistics(config.data, "test", 8, 0, variables,
                                                    str(weights_path), cache)
  stats = compute()
  lines = [line.split("  ") for line in capsys.readouterr().err.splitlines()
           if "FID reference statistics (test split)" in line]
  assert [line[1] for line in lines] == [f"{n}/16 images ({n * 100 // 16}%)"
                                         for n in (4, 8, 12, 16)]
  assert int(stats["n"]) == 16
  again = compute()
  assert "FID reference statistics" not in capsys.readouterr().err
  np.testing.assert_array_equal(again["mu"], stats["mu"])


def test_fingerprint_names_everything_that_determines_the_statistics(tmp_path):
  """Without the real weights: the fingerprint changes with the data, the split, the size,
  the count and the weights file's bytes, and a cached file with another one is refused."""
  weights_a, weights_b = tmp_path / "a.pt", tmp_path / "b.pt"
  weights_a.write_bytes(b"weights a")
  weights_b.write_bytes(b"weights b")
  config = tiny_config(str(tmp_path / "stripes.npz"))
  base = statistics.fingerprint(config.data, "test", 8, 16, str(weights_a))
  assert base == statistics.fingerprint(config.data, "test", 8, 16, str(weights_a))
  variants = [statistics.fingerprint(config.data, "train", 8, 16, str(weights_a)),
              statistics.fingerprint(config.data, "test", 16, 16, str(weights_a)),
              statistics.fingerprint(config.data, "test", 8, 15, str(weights_a)),
              statistics.fingerprint(config.data, "test", 8, 16, str(weights_b))]
  for field, value in (("crop", "none"), ("channels", 3), ("path", str(tmp_path / "other.npz"))):
    changed = tiny_config(str(tmp_path / "stripes.npz"))
    changed.data[field] = value
    variants.append(statistics.fingerprint(changed.data, "test", 8, 16, str(weights_a)))
  assert len(set(variants + [base])) == len(variants) + 1
  path = str(tmp_path / "stats.npz")
  np.savez(path, mu=np.arange(3.0), sigma=np.eye(3), n=np.asarray(16),
           fingerprint=np.asarray(base))
  loaded = statistics.load_statistics(path, base)
  np.testing.assert_array_equal(loaded["mu"], [0.0, 1.0, 2.0])
  with pytest.raises(CheckpointError, match="fingerprint mismatch"):
    statistics.load_statistics(path, variants[-1])
