"""Image conversion and files (common.images): exact uint8 <-> [-1, 1] round trips,
rounding and clipping, grid geometry and pixel placement by hand, PNG/npz files
that read back and leave no temporary files, and samples.npz files checked on reading."""
import os

import numpy as np
import pytest
from PIL import Image

from common import images
from common.errors import DataError


def test_every_uint8_level_round_trips_exactly():
  levels = np.arange(256, dtype=np.uint8)
  floats = images.from_uint8(levels)
  assert floats.dtype == np.float32
  np.testing.assert_allclose(floats, levels.astype(np.float64) / 127.5 - 1.0, atol=1e-7)
  assert floats[0] == -1.0 and floats[255] == 1.0
  back = images.to_uint8(floats)
  assert back.dtype == np.uint8
  np.testing.assert_array_equal(back, levels)


def test_to_uint8_rounds_to_the_nearest_level_and_clips():
  k = np.arange(255, dtype=np.float64)
  below_midpoint = (k + 0.45) / 127.5 - 1.0   # Nearer level k than k + 1.
  above_midpoint = (k + 0.55) / 127.5 - 1.0
  np.testing.assert_array_equal(images.to_uint8(below_midpoint), k)
  np.testing.assert_array_equal(images.to_uint8(above_midpoint), k + 1)
  np.testing.assert_array_equal(images.to_uint8([-5.0, -1.001, 1.001, 7.0, -1.0, 1.0]),
                                [0, 0, 255, 255, 0, 255])


def test_make_grid_geometry_and_placement():
  n, h, w = 5, 2, 3
  tiles = np.stack([np.full((h, w, 1), 10 * i + 1, np.uint8) for i in range(n)])
  grid = images.make_grid(tiles)   # ceil(sqrt(5)) = 3 columns, 2 rows, padding 2.
  assert grid.shape == (2 * (h + 2) + 2, 3 * (w + 2) + 2, 1) and grid.dtype == np.uint8
  expected = np.full(grid.shape, 255, np.uint8)
  for i, (top, left) in enumerate([(2, 2), (2, 7), (2, 12), (6, 2), (6, 7)]):
    expected[top:top + h, left:left + w] = 10 * i + 1
  np.testing.assert_array_equal(grid, expected)

  rgb = np.arange(3 * 2 * 2 * 3, dtype=np.uint8).reshape(3, 2, 2, 3)
  narrow = images.make_grid(rgb, columns=2, padding=1)
  assert narrow.shape == (2 * 3 + 1, 2 * 3 + 1, 3)
  np.testing.assert_array_equal(narrow[1:3, 1:3], rgb[0])
  np.testing.assert_array_equal(narrow[1:3, 4:6], rgb[1])
  np.testing.assert_array_equal(narrow[4:6, 1:3], rgb[2])
  assert (narrow[4:6, 4:6] == 255).all() and (narrow[0] == 255).all()


@pytest.mark.parametrize("channels,mode", [(1, "L"), (3, "RGB")])
def test_save_png_reads_back(tmp_path, channels, mode):
  image = np.random.default_rng(channels).integers(0, 256, (5, 7, channels), dtype=np.uint8)
  path = tmp_path / "out" / "grid.png"
  images.save_png(str(path), image)
  with Image.open(path) as loaded:
    assert loaded.format == "PNG" and loaded.mode == mode and loaded.size == (7, 5)
    pixels = np.asarray(loaded)
  np.testing.assert_array_equal(pixels.reshape(image.shape), image)
  assert os.listdir(path.parent) == ["grid.png"]


@pytest.mark.parametrize("compressed", [True, False])
def test_save_npz_reads_back(tmp_path, compressed):
  arrays = {"a": np.arange(12, dtype=np.float64).reshape(3, 4), "b": np.array([1, 2], np.int8)}
  path = tmp_path / "arrays.npz"
  images.save_npz(str(path), arrays, compressed=compressed)
  with np.load(path) as data:
    assert sorted(data.files) == ["a", "b"]
    for key, value in arrays.items():
      np.testing.assert_array_equal(data[key], value)
      assert data[key].dtype == value.dtype
  assert os.listdir(tmp_path) == ["arrays.npz"]


def test_save_samples_npz_with_and_without_labels(tmp_path):
  samples = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 1), dtype=np.uint8)
  images.save_samples_npz(str(tmp_path / "plain.npz"), samples)
  images.save_samples_npz(str(tmp_path / "labelled.npz"), samples, np.array([0, 1, 0, 1]))
  with np.load(tmp_path / "plain.npz") as data:
    assert data.files == ["images"]
    np.testing.assert_array_equal(data["images"], samples)
  with np.load(tmp_path / "labelled.npz") as data:
    assert sorted(data.files) == ["images", "labels"]
    np.testing.assert_array_equal(data["labels"], [0, 1, 0, 1])
  assert sorted(os.listdir(tmp_path)) == ["labelled.npz", "plain.npz"]


def test_load_samples_npz_checks_what_it_reads(tmp_path):
  samples = np.random.default_rng(0).integers(0, 256, (3, 4, 4, 3), dtype=np.uint8)
  images.save_samples_npz(str(tmp_path / "good.npz"), samples)
  np.testing.assert_array_equal(images.load_samples_npz(str(tmp_path / "good.npz")), samples)
  (tmp_path / "damaged.npz").write_bytes((tmp_path / "good.npz").read_bytes()[:40])
  np.savez(tmp_path / "floats.npz", images=samples.astype(np.float32))
  np.savez(tmp_path / "flat.npz", images=samples[..., 0])
  np.savez(tmp_path / "empty.npz", images=samples[:0])
  np.savez(tmp_path / "foreign.npz", x_train=samples)
  for name, message in (("damaged", "cannot read samples from"),
                        ("foreign", "cannot read samples from"),
                        ("floats", "holds float32 images of shape"),
                        ("flat", r"holds uint8 images of shape \(3, 4, 4\)"),
                        ("empty", r"holds uint8 images of shape \(0, 4, 4, 3\)")):
    with pytest.raises(DataError, match=message) as error:
      images.load_samples_npz(str(tmp_path / f"{name}.npz"))
    assert "sample again with --mode=sample" in str(error.value)
    assert "\n" not in str(error.value)
