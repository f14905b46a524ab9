"""The FID Inception port (evaluation.inception): pytorch-fid's preprocessing against a
float64 reference, uint8 quantization, and features against golden features of
pytorch-fid's own network with seeded random weights (tests/golden)."""

import numpy as np
import pytest

from evaluation import inception, weights

from helpers import golden_state_dict, load_golden

@pytest.fixture(scope="module")
def golden():
  return load_golden()


# --- Preprocessing ----------------------------------------------------------------------

def torch_bilinear_reference(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
  """F.interpolate(mode='bilinear', align_corners=False), pixel by pixel in float64."""
  in_h, in_w = image.shape[:2]
  out = np.zeros((out_h, out_w) + image.shape[2:])
  for i in range(out_h):
    y = max((i + 0.5) * in_h / out_h - 0.5, 0.0)
    y0 = int(y)
    y1, wy = min(y0 + 1, in_h - 1), y - y0
    for j in range(out_w):
      x = max((j + 0.5) * in_w / out_w - 0.5, 0.0)
      x0 = int(x)
      x1, wx = min(x0 + 1, in_w - 1), x - x0
      out[i, j] = ((1 - wy) * ((1 - wx) * image[y0, x0] + wx * image[y0, x1]) +
                   wy * ((1 - wx) * image[y1, x0] + wx * image[y1, x1]))
  return out


@pytest.mark.parametrize("size", [11, 3, 299])
def test_preprocess_matches_bilinear_reference(size):
  image = np.random.default_rng(0).uniform(size=(5, 7, 1))
  expected = 2 * torch_bilinear_reference(np.repeat(image, 3, -1), size, size) - 1
  got = np.asarray(inception.preprocess(image[None], size))[0]
  np.testing.assert_allclose(got, expected, atol=2e-6)


def test_quantize_to_uint8_levels():
  np.testing.assert_array_equal(inception.quantize([0.0, 0.5, 1.2, -0.1, 0.499 / 255]),
                                [0.0, 128 / 255, 1.0, 0.0, 0.0])


# --- Features -------------------------------------------------------------------------------

def test_features_match_pytorch_fid_network(golden):
  """Seeded random weights through pytorch-fid's network (tests/golden) and through ours."""
  variables = weights.convert(golden_state_dict(golden))
  for key in ("rgb299", "grey28"):
    features = inception.fid_features(variables, golden[key] / 255.0)
    reference = golden[f"features_{key}"]
    assert features.shape == (2, inception.FEATURE_DIM)
    np.testing.assert_allclose(features, reference, rtol=1e-4,
                               atol=1e-5 * np.abs(reference).max())
