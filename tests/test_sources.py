"""Data sources (input_pipeline.sources): idx, npz, folder and tfds (mock) sources on data
the tests write, cropping, and clear one-line errors for bad or missing data."""
import gzip
import os
import re
import struct

import numpy as np
import pytest
from PIL import Image

from common.errors import DataError
from helpers import make_stripes, tiny_data_config
from input_pipeline import pipeline, sources


def write_idx(path, array):
  header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


def test_read_idx_round_trip(tmp_path):
  images, labels = make_stripes(10)
  write_idx(str(tmp_path / "train-images-idx3-ubyte.gz"), images)
  write_idx(str(tmp_path / "train-labels-idx1-ubyte"), labels)
  got_images, got_labels = sources.load_idx(str(tmp_path), "train")
  np.testing.assert_array_equal(got_images, images)
  np.testing.assert_array_equal(got_labels, labels)


def test_truncated_idx_is_reported(tmp_path):
  images, _ = make_stripes(10)
  path = str(tmp_path / "train-images-idx3-ubyte")
  write_idx(path, images)
  with open(path, "r+b") as f:
    f.truncate(100)
  with pytest.raises(DataError, match="truncated"):
    sources.read_idx(path)


def test_folder_source_with_class_subfolders(tmp_path):
  for label, colour in (("cats", 40), ("dogs", 200)):
    os.makedirs(tmp_path / label / "nested")
    for i in range(3):
      Image.fromarray(np.full((20, 30, 3), colour, np.uint8)).save(
          tmp_path / label / "nested" / f"{i}.png")
  source = sources.create_source(tiny_data_config(source="folder", path=str(tmp_path), channels=3))
  assert source.num_examples == 6 and source.has_labels
  batch = next(pipeline.build_dataset(source, 6, 0, num_epochs=1).as_numpy_iterator())
  assert batch["image"].shape == (6, 8, 8, 3)
  for image, label in zip(batch["image"], batch["label"]):
    np.testing.assert_allclose(image, (40 if label == 0 else 200) / 127.5 - 1, atol=1e-6)


def test_center_crop_and_bbox_crop():
  image = np.zeros((20, 40, 1), np.uint8)
  image[:, 10:30] = 255  # The centre 20x20 square is white.
  centre = sources.crop_and_resize(image, 10, "center").numpy()
  assert centre.shape == (10, 10, 1) and centre.min() == 255
  box = np.array([0.25, 0.0, 0.75, 0.25], np.float32)  # A 10x10 black square at the left.
  left = sources.crop_and_resize(image, 10, "bbox", box).numpy()
  assert left.max() == 0


@pytest.mark.parametrize("fields,message", [
    (dict(source="npz", path="/nonexistent.npz"), "does not exist"),
    (dict(source="folder", path="EMPTY"), "no images"),
    (dict(source="idx", path="EMPTY"), "no train-images-idx3-ubyte"),
    (dict(source="npz", path="NOT_NPZ"), "cannot read npz"),
    (dict(source="webdataset", path="EMPTY"), "unknown data.source"),
])
def test_bad_data_is_reported_in_one_line(tmp_path, fields, message):
  empty = tmp_path / "empty"
  empty.mkdir()
  (tmp_path / "bad.npz").write_bytes(b"not a zip file")
  fields = {k: str(empty) if v == "EMPTY" else str(tmp_path / "bad.npz") if v == "NOT_NPZ" else v
            for k, v in fields.items()}
  with pytest.raises(DataError, match=message) as error:
    sources.create_source(tiny_data_config(**fields))
  assert "\n" not in str(error.value)


def test_tiny_or_wrongly_shaped_images_are_refused():
  with pytest.raises(DataError, match="too small"):
    sources.in_memory_source(np.zeros((4, 4, 4), np.uint8), None, 8, 1, "center", "tiny")
  with pytest.raises(DataError, match="expected images"):
    sources.in_memory_source(np.zeros((4, 8, 8, 2), np.uint8), None, 8, 1, "center", "2ch")


@pytest.mark.parametrize("name,size,channels,crop", [
    ("mnist", 14, 1, "center"),
    ("caltech_birds2011", 16, 3, "bbox"),   # Variable-size RGB images with boxes.
])
def test_tfds_source_on_mock_data(name, size, channels, crop):
  """The real tfds code path (builder, download_and_prepare, as_dataset) on tfds' own mock
  data: random examples generated from the dataset's feature spec, nothing downloaded."""
  import tensorflow_datasets as tfds
  config = tiny_data_config(source="tfds", name=name, image_size=size, channels=channels, crop=crop)
  with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
    source = sources.create_source(config)
  assert source.num_examples == 6 and source.has_labels
  batch = next(iter(pipeline.build_dataset(source, 4, seed=0).as_numpy_iterator()))
  assert batch["image"].shape == (4, size, size, channels)
  assert -1.0 <= batch["image"].min() and batch["image"].max() <= 1.0


def test_unreadable_images_are_an_error_or_skipped(tmp_path):
  folder = tmp_path / "images"
  folder.mkdir()
  for i in range(3):
    Image.fromarray(np.full((12, 12), 40 * i, np.uint8)).save(folder / f"ok{i}.png")
  good = (folder / "ok0.png").read_bytes()
  (folder / "truncated.png").write_bytes(good[:len(good) // 2])
  (folder / "garbage.jpg").write_bytes(b"not an image at all")
  with pytest.raises(DataError, match=r"2 unreadable image file\(s\) under .*data.bad_images=skip"):
    sources.create_source(tiny_data_config(source="folder", path=str(folder)))
  source = sources.create_source(tiny_data_config(source="folder", path=str(folder),
                                             bad_images="skip"))
  assert source.num_examples == 3 and "2 unreadable skipped" in source.description
  batch = next(iter(pipeline.build_dataset(source, 3, seed=0).as_numpy_iterator()))
  assert batch["image"].shape == (3, 8, 8, 1)


def test_an_image_is_opened_only_by_the_plugins_of_image_folders(tmp_path, monkeypatch):
  """PIL picked the plugin by content: a PostScript file named a.png went to the EPS plugin,
  which runs Ghostscript. It is now unreadable, as any file not of IMAGE_FORMATS."""
  from PIL import EpsImagePlugin

  def refuse(self):
    raise AssertionError("the EPS plugin (Ghostscript) opened a data file")

  monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", refuse)
  folder = tmp_path / "images"
  folder.mkdir()
  Image.fromarray(np.full((12, 12), 40, np.uint8)).save(folder / "ok.png")
  Image.fromarray(np.full((12, 12), 80, np.uint8)).save(folder / "jpeg.png", format="JPEG")
  eps = folder / "a.png"
  eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nshowpage\n%%EOF\n")
  with pytest.raises(DataError, match=rf"^1 unreadable image file\(s\) under .*, e.g. "
                     rf"'{re.escape(str(eps))}'; "):
    sources.create_source(tiny_data_config(source="folder", path=str(folder)))
  with pytest.raises(DataError, match=rf"^cannot decode image '{re.escape(str(eps))}': "
                     "cannot identify image"):
    sources.decode_image(str(eps), 1)
  assert sources.decode_image(str(folder / "jpeg.png"), 1).shape == (12, 12, 1)


def test_the_eval_split_is_read_from_data_eval_path(tmp_path):
  """A test set in a file of its own (as CIFAR-10's often is): data.eval_path serves the
  eval split, data.path every other split; unset, data.path serves both."""
  from helpers import save_colour_npz
  train, test = save_colour_npz(str(tmp_path), num=40, size=8)
  config = tiny_data_config(source="npz", path=train, eval_path=test, channels=3)
  for split, count, path in (("train", 40, train), ("test", 32, test)):
    chosen = sources.for_split(config, split)
    assert chosen.split == split and chosen.path == path
    images, labels = pipeline.real_images(config, split, 8)
    assert images.shape == (count, 8, 8, 3) and set(labels) <= {0, 1}
  with np.load(test) as data:   # Class 0 red stripes, class 1 blue: read unchanged.
    assert np.array_equal(np.sort(images.reshape(32, -1), 0),
                          np.sort(data["x_test"].reshape(32, -1), 0))
  assert config.path == train and config.split == "train"   # The config is not changed.
  # Without data.eval_path the train file must hold x_test, and this one does not.
  with pytest.raises(DataError, match=r"has no 'x_test' or 'images' array"):
    pipeline.real_images(tiny_data_config(source="npz", path=train, channels=3), "test", 8)


def test_a_missing_eval_path_is_named_before_anything_runs(tmp_path):
  train = str(tmp_path / "train.npz")
  np.savez(train, x_train=np.zeros((4, 8, 8), np.uint8))
  config = tiny_data_config(source="npz", path=train, eval_path=str(tmp_path / "test.npz"))
  with pytest.raises(DataError) as error:
    sources.check_path(config)
  assert str(error.value) == (
      f"data.eval_path {str(tmp_path / 'test.npz')!r} does not exist (data.source=npz): put "
      "the npz file of the test split there or pass --config.data.eval_path=FILE")
