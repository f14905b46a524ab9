"""Data sources. Each returns a `Source`: how many examples, and how to fetch one by index.

In-memory sources (npz, idx, tfds) hold uint8 images already cropped and resized to the
training resolution; an image folder is read file by file. Fetching by index is what
makes the pipeline's order a pure function of (seed, step), so training resumes exactly.
"""
from __future__ import annotations

import dataclasses
import gzip
import logging
import math
import os
from typing import Callable, Optional

import numpy as np
import tensorflow as tf
from PIL import Image

from common.errors import DataError

SOURCES = ("tfds", "folder", "npz", "idx")
CROPS = ("center", "bbox", "none")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
# The only PIL plugins an image file may open with, whatever its content claims: those of
# the extensions above (a PostScript file named a.png must never reach the EPS plugin,
# which runs Ghostscript).
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")
# What data.path holds for each source that reads one, and its placeholder in messages.
PATH_CONTENTS = {"folder": ("the image files", "DIR"), "npz": ("the npz file", "FILE"),
                 "idx": ("the idx files", "DIR")}
# The command that makes what data.path holds, for the sources that have one.
PREPARE_COMMANDS = {"folder": "python -m input_pipeline.prepare_folder DOWNLOADED DIR makes DIR "
                              "from a folder of images of any sizes"}
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


@dataclasses.dataclass
class Source:
  """`fetch(index)` maps a scalar int64 tensor to (uint8 image [S, S, C], int32 label).
  `label_range` is (smallest, largest) label, or None for unlabelled data."""
  num_examples: int
  fetch: Callable[[tf.Tensor], tuple]
  label_range: Optional[tuple[int, int]]
  description: str

  @property
  def has_labels(self) -> bool:
    return self.label_range is not None


def crop_and_resize(image: tf.Tensor, size: int, crop: str, bbox: Optional[tf.Tensor] = None):
  """Square crop (centre, or around a [ymin, xmin, ymax, xmax] box in [0, 1]) and an
  antialiased bilinear resize to size x size; returns uint8."""
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  if crop == "bbox" and bbox is not None:
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    bbox = tf.clip_by_value(tf.cast(bbox, tf.float32), 0.0, 1.0)
    # Corners in either order; a degenerate box still gets a 1-pixel square at least.
    ymin, ymax = tf.minimum(bbox[0], bbox[2]) * h, tf.maximum(bbox[0], bbox[2]) * h
    xmin, xmax = tf.minimum(bbox[1], bbox[3]) * w, tf.maximum(bbox[1], bbox[3]) * w
    side = tf.clip_by_value(tf.maximum(ymax - ymin, xmax - xmin), 1.0, tf.minimum(h, w))
    top = tf.clip_by_value((ymin + ymax - side) / 2, 0.0, h - side)
    left = tf.clip_by_value((xmin + xmax - side) / 2, 0.0, w - side)
    side_px = tf.cast(side, tf.int32)
    image = tf.image.crop_to_bounding_box(image, tf.cast(top, tf.int32), tf.cast(left, tf.int32),
                                          side_px, side_px)
  elif crop in ("center", "bbox"):
    side = tf.minimum(height, width)
    image = tf.image.crop_to_bounding_box(image, (height - side) // 2, (width - side) // 2,
                                          side, side)
  image = tf.image.resize(image, (size, size), method="bilinear", antialias=True)
  return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def match_channels(image: tf.Tensor, channels: int) -> tf.Tensor:
  """Converts grayscale <-> RGB; drops an alpha channel."""
  source_channels = image.shape[-1]
  if source_channels == 4:
    image, source_channels = image[..., :3], 3
  if source_channels == channels:
    return image
  if source_channels == 1 and channels == 3:
    return tf.repeat(image, 3, axis=-1)
  if source_channels == 3 and channels == 1:
    return tf.cast(tf.round(tf.image.rgb_to_grayscale(tf.cast(image, tf.float32))), image.dtype)
  raise DataError(f"cannot convert images with {source_channels} channels to {channels}; "
                  "set data.channels to 1 or 3")


def _as_nhwc(images: np.ndarray, what: str) -> np.ndarray:
  if images.ndim == 3:
    images = images[..., None]
  if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
    raise DataError(f"{what}: expected images [N, H, W] or [N, H, W, 1|3|4], got {images.shape}")
  if images.shape[0] == 0:
    raise DataError(f"{what}: holds no images")
  if images.dtype != np.uint8:
    raise DataError(f"{what}: expected uint8 images, got {images.dtype}")
  return images


def in_memory_source(images: np.ndarray, labels: Optional[np.ndarray], size: int, channels: int,
                     crop: str, description: str, bboxes: Optional[np.ndarray] = None) -> Source:
  """A source over arrays: crops, resizes and converts channels once, then serves by gather."""
  images = _as_nhwc(images, description)
  if images.shape[1] < 8 or images.shape[2] < 8:
    raise DataError(f"{description}: images of {images.shape[1]}x{images.shape[2]} are too "
                    "small (need at least 8x8)")
  if images.shape[1:3] != (size, size) or crop == "bbox":
    boxes = bboxes if bboxes is not None else np.zeros((len(images), 4), np.float32)
    dataset = tf.data.Dataset.from_tensor_slices((images, boxes))
    dataset = dataset.map(lambda image, box: crop_and_resize(image, size, crop, box))
    images = np.concatenate(list(dataset.batch(1024).as_numpy_iterator()))
  images = match_channels(tf.constant(images), channels)
  label_array = np.zeros(len(images), np.int64) if labels is None else _as_labels(labels,
                                                                                 description)
  if len(label_array) != len(images):
    raise DataError(f"{description}: {len(images)} images but {len(label_array)} labels")
  label_tensor = tf.constant(label_array.astype(np.int32))

  def fetch(index):
    return tf.gather(images, index), tf.gather(label_tensor, index)

  label_range = None if labels is None else (int(label_array.min()), int(label_array.max()))
  return Source(len(images), fetch, label_range, description)


def _as_labels(labels, description: str) -> np.ndarray:
  """Integer class labels as int64 [N]; anything else (floats, strings, huge values) is an
  error that names the data."""
  labels = np.asarray(labels).reshape(-1)
  if labels.dtype.kind not in "iub":
    raise DataError(f"{description}: labels must be integers, got {labels.dtype}")
  labels = labels.astype(np.int64)
  if len(labels) and (labels.min() < -2**31 or labels.max() >= 2**31):
    raise DataError(f"{description}: labels out of the int32 range")
  return labels


def read_idx(path: str) -> np.ndarray:
  """Reads an idx file (MNIST format), gzip-compressed or not."""
  opener = gzip.open if path.endswith(".gz") else open
  try:
    with opener(path, "rb") as f:
      data = f.read()
  except (OSError, EOFError) as e:
    raise DataError(f"cannot read idx file {path}: {e}") from None
  if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
    raise DataError(f"{path} is not an unsigned-byte idx file (bad magic number)")
  ndim = data[3]
  if len(data) < 4 + 4 * ndim:
    raise DataError(f"{path} is truncated: its header names {ndim} dimensions")
  shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
  expected = math.prod(shape)  # Python integers: a huge header cannot overflow.
  payload = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
  if payload.size != expected:
    raise DataError(f"{path} does not match its header: expected {expected} values for shape "
                    f"{shape}, found {payload.size}")
  return payload.reshape(shape)


def _find(directory: str, stem: str) -> Optional[str]:
  for name in (stem, stem + ".gz"):
    if os.path.exists(os.path.join(directory, name)):
      return os.path.join(directory, name)
  return None


def load_idx(directory: str, split: str):
  if split not in IDX_FILES:
    raise DataError(f"idx data has splits {tuple(IDX_FILES)}, not {split!r}")
  image_stem, label_stem = IDX_FILES[split]
  image_path = _find(directory, image_stem)
  if image_path is None:
    raise DataError(f"no {image_stem}[.gz] in {directory!r}; set data.path to the folder with "
                    "the idx files (Fashion-MNIST: apt-get install dataset-fashion-mnist)")
  label_path = _find(directory, label_stem)
  labels = read_idx(label_path) if label_path else None
  return read_idx(image_path), labels


def load_npz(path: str, split: str):
  """Keras-style npz (x_train/y_train, x_test/y_test) or a samples file (images/labels)."""
  try:
    with np.load(path) as data:
      keys = set(data.files)
      for image_key, label_key in ((f"x_{split}", f"y_{split}"), ("images", "labels")):
        if image_key in keys:
          return data[image_key], (data[label_key] if label_key in keys else None)
  except Exception as e:  # noqa: BLE001 (a damaged archive fails in many ways)
    raise DataError(f"cannot read npz file {path}: {type(e).__name__}: "
                    f"{' '.join(str(e).split())[:200]}") from None
  raise DataError(f"{path} has no 'x_{split}' or 'images' array (found {sorted(keys)})")


def decode_image(path, channels: int) -> np.ndarray:
  """uint8 [H, W, channels] of an image file, decoded by PIL: the one decoder of image
  folders, used by the up-front check and by the pipeline alike. Only IMAGE_FORMATS are
  opened (a JPEG named .png still is; a file of another format is unreadable). Any mode
  (palette, CMYK, 16-bit, alpha) becomes grey or RGB; an animation gives its first frame;
  RGB to grey uses the weights of tf.image.rgb_to_grayscale, as the in-memory sources do."""
  path = path.decode() if isinstance(path, bytes) else path
  try:
    with Image.open(path, formats=IMAGE_FORMATS) as image:
      grey = image.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F") or (
          image.mode == "P" and image.getpalette() is None)
      if image.mode.startswith(("I", "F")):  # 16/32-bit grey: scale to 8 bits.
        scale = 1 / 256 if image.mode.startswith("I;16") else 1.0
        image = image.point(lambda v: v * scale).convert("L")
      array = np.asarray(image.convert("L" if grey else "RGB"), np.uint8)
  except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
    raise DataError(f"cannot decode image {path!r}: {e}") from None
  if array.ndim == 2:
    array = array[..., None]
  if array.shape[-1] == channels:
    return array
  if channels == 3:
    return np.repeat(array, 3, axis=-1)
  weights = np.array([0.2989, 0.5870, 0.1140], np.float32)
  return np.round(array.astype(np.float32) @ weights)[..., None].astype(np.uint8)


def unreadable_images(files, channels: int) -> list[str]:
  """The files `decode_image` cannot decode completely (truncated, corrupt, not an image)."""
  bad = []
  for name in files:
    try:
      decode_image(name, channels)
    except DataError:
      bad.append(name)
  return bad


def image_files(path: str) -> list[str]:
  """Every image file under `path`, recursively and sorted, following symbolic links to
  folders but visiting each real folder once (a link cycle adds nothing)."""
  files, visited = [], set()
  for root, folders, names in os.walk(path, followlinks=True):
    real = os.path.realpath(root)
    if real in visited:
      folders[:] = []
      continue
    visited.add(real)
    files += [os.path.join(root, name) for name in names
              if name.lower().endswith(IMAGE_EXTENSIONS)]
  return sorted(files)


def folder_source(path: str, size: int, channels: int, crop: str,
                  bad_images: str = "error") -> Source:
  """All images under `path`, recursively, in sorted order. If every image lies in a
  first-level subfolder, the subfolder names (sorted) are the class labels. Every file is
  decoded once up front by the decoder the pipeline uses: unreadable ones are an error,
  or skipped and counted (bad_images="skip"), so a bad file never stops a run half-way."""
  files = image_files(path)
  if not files:
    raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {path!r}")
  bad = unreadable_images(files, channels)
  if bad and bad_images == "error":
    raise DataError(f"{len(bad)} unreadable image file(s) under {path!r}, e.g. {bad[0]!r}; "
                    "remove them or set data.bad_images=skip")
  if bad:
    logging.warning("Skipping %d unreadable image file(s) under %s, e.g. %s.", len(bad), path,
                    bad[0])
    files = [f for f in files if f not in set(bad)]
    if not files:
      raise DataError(f"every image file under {path!r} is unreadable")
  classes = sorted({os.path.relpath(f, path).split(os.sep)[0] for f in files})
  has_labels = all(os.sep in os.path.relpath(f, path) for f in files) and len(classes) > 1
  labels = [classes.index(os.path.relpath(f, path).split(os.sep)[0]) if has_labels else 0
            for f in files]
  file_tensor, label_tensor = tf.constant(files), tf.constant(labels, tf.int32)

  def fetch(index):
    image = tf.numpy_function(lambda name: decode_image(name, channels),
                              [tf.gather(file_tensor, index)], tf.uint8, stateful=False)
    image.set_shape([None, None, channels])
    return crop_and_resize(image, size, crop), tf.gather(label_tensor, index)

  skipped = f", {len(bad)} unreadable skipped" if bad else ""
  return Source(len(files), fetch, (0, len(classes) - 1) if has_labels else None,
                f"image folder {path} ({len(files)} images{skipped})")


def load_tfds(name: str, split: str, data_dir: Optional[str], download: bool):
  """Reads a whole tfds split into memory as (images, labels, bboxes)."""
  import tensorflow_datasets as tfds  # Imported lazily: slow, and only this source needs it.
  try:
    builder = tfds.builder(name, data_dir=data_dir)
    if download:
      builder.download_and_prepare()
    dataset = builder.as_dataset(split=split)
  except Exception as e:  # tfds raises many types for a missing or unprepared dataset.
    raise DataError(f"tfds dataset {name!r} split {split!r} is not available "
                    f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); on a "
                    "machine without internet use data.source=npz|idx|folder with "
                    "data.path") from None
  images, labels, bboxes = [], [], []
  for example in dataset.as_numpy_iterator():
    images.append(example["image"])
    labels.append(example.get("label", -1))
    box = example.get("bbox")
    if box is None and "objects" in example and len(example["objects"].get("bbox", [])):
      box = example["objects"]["bbox"][0]
    bboxes.append(box if box is not None else np.array([0, 0, 1, 1], np.float32))
  return images, np.asarray(labels), np.asarray(bboxes, np.float32)


def for_split(data_config, split: str):
  """A copy of `data_config` that reads `split`: from data.eval_path when that is the eval
  split and data.eval_path is set (a test set shipped as its own file, as CIFAR-10's
  often is), else from data.path."""
  data_config = data_config.copy_and_resolve_references()
  if split != data_config.split and split == data_config.eval_split and data_config.eval_path:
    data_config.path = data_config.eval_path
  data_config.split = split
  return data_config


def check_path(data_config) -> None:
  """Refuses a file or folder source whose data.path (or data.eval_path, when set) is
  missing, in one line that names the path (absolute too), what belongs there, the flag
  that points elsewhere and, for a folder, the command that prepares one. Runs check it
  before they create anything, and `create_source` again."""
  kind = data_config.source
  for field in ("path", "eval_path"):
    path = data_config.get(field, "")
    if kind not in PATH_CONTENTS or os.path.exists(path) or (field == "eval_path" and not path):
      continue
    where = "" if os.path.isabs(path) else f" ({os.path.abspath(path)})"
    what, placeholder = PATH_CONTENTS[kind]
    what = what if field == "path" else f"{what} of the {data_config.eval_split} split"
    prepare = f"; {PREPARE_COMMANDS[kind]}" if kind in PREPARE_COMMANDS else ""
    raise DataError(f"data.{field} {path!r}{where} does not exist (data.source={kind}): put "
                    f"{what} there or pass --config.data.{field}={placeholder}{prepare}")


def create_source(data_config) -> Source:
  """Builds the source named by `data_config.source` (see configs/default.py)."""
  kind, size, channels, crop = (data_config.source, data_config.image_size,
                                data_config.channels, data_config.crop)
  check_path(data_config)
  if kind == "folder":
    return folder_source(data_config.path, size, channels, crop, data_config.bad_images)
  if kind == "npz":
    images, labels = load_npz(data_config.path, data_config.split)
    return in_memory_source(images, labels, size, channels, crop,
                            f"npz {data_config.path} [{data_config.split}]")
  if kind == "idx":
    images, labels = load_idx(data_config.path, data_config.split)
    return in_memory_source(images, labels, size, channels, crop,
                            f"idx {data_config.path} [{data_config.split}]")
  if kind == "tfds":
    images, labels, bboxes = load_tfds(data_config.name, data_config.split,
                                       data_config.tfds_data_dir or None, data_config.download)
    labels = None if np.all(labels < 0) else labels
    description = f"tfds {data_config.name} [{data_config.split}]"
    if len({image.shape for image in images}) == 1:
      return in_memory_source(np.stack(images), labels, size, channels, crop, description, bboxes)
    resized = np.stack([crop_and_resize(tf.constant(image), size, crop, tf.constant(box)).numpy()
                        for image, box in zip(images, bboxes)])
    return in_memory_source(resized, labels, size, channels, "none", description)
  raise DataError(f"unknown data.source {kind!r}; expected one of {SOURCES}")
