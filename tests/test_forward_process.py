"""The forward-process picture (hdd.forward_process): x_t against the closed form of
q(x_t | x_0) in float64, the default steps, and the strip of a cascade's stages."""
import jax
import numpy as np
from PIL import Image

from helpers import tiny_cascade, tiny_config
from hdd import forward_process


def test_frames_follow_the_closed_form_of_q():
  config = tiny_config("unused.npz")
  config.pictures.forward_steps = (0, 10, 49)
  x0 = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 1), dtype=np.uint8)
  frames = forward_process.forward_frames(config, x0, seed=5)
  assert frames.shape == (4, 3, 8, 8, 1) and frames.dtype == np.uint8
  np.testing.assert_array_equal(frames[0], x0)
  betas = np.linspace(1e-4, 0.02, 50, dtype=np.float64)   # The tiny config's linear schedule.
  alphas_cumprod = np.cumprod(1.0 - betas)
  noise = np.asarray(jax.random.normal(jax.random.PRNGKey(5), x0.shape), np.float64)
  x = x0 / 127.5 - 1.0
  for frame, t in zip(frames[1:], (0, 10, 49)):
    expected = np.sqrt(alphas_cumprod[t]) * x + np.sqrt(1.0 - alphas_cumprod[t]) * noise
    expected = np.clip(np.round((expected + 1.0) * 127.5), 0, 255)
    assert np.abs(frame.astype(float) - expected).max() <= 1


def test_default_steps_span_the_chain():
  config = tiny_config("unused.npz")
  np.testing.assert_array_equal(forward_process.strip_steps(config),
                                [0, 7, 14, 21, 28, 35, 42, 49])


def test_a_cascade_strip_has_each_stage_at_the_final_size(stripes_npz, tmp_path):
  config = tiny_cascade(data_path=stripes_npz)
  config.pictures.update(forward_images=3, forward_steps=(5, 39))
  path = forward_process.forward_process_and_save(config, str(tmp_path))
  picture = np.asarray(Image.open(path))
  # 3 images x 2 stages; x0 and 2 steps; drawn 8 times as large (every image >= 64 px).
  assert picture.shape == (8 * (2 + 6 * 10), 8 * (2 + 3 * 10))
  strip = picture[::8, ::8]
  # Stage 1 is 4x4 shown at 8x8: each pixel repeated in 2x2 blocks.
  first = strip[2:10, 2:10]
  np.testing.assert_array_equal(first, np.repeat(np.repeat(first[::2, ::2], 2, 0), 2, 1))
