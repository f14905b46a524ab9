"""Converting model outputs to images and writing grids, strips and sample archives."""
from __future__ import annotations

import math

import numpy as np
from PIL import Image

from common.errors import DataError
from common.files import atomic_write


def to_uint8(x) -> np.ndarray:
  """[-1, 1] floats -> uint8 [0, 255], rounding to the nearest level."""
  return np.clip(np.round((np.asarray(x, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def from_uint8(x):
  """uint8 [0, 255] -> float32 [-1, 1] (traceable)."""
  return x.astype("float32") / 127.5 - 1.0


def make_grid(images: np.ndarray, columns: int = 0, padding: int = 2) -> np.ndarray:
  """Tiles uint8 images [N, H, W, C] into one [rows*(H+p)+p, cols*(W+p)+p, C] image."""
  n, h, w, c = images.shape
  columns = columns or math.ceil(math.sqrt(n))
  rows = math.ceil(n / columns)
  grid = np.full((rows * (h + padding) + padding, columns * (w + padding) + padding, c), 255,
                 np.uint8)
  for i, image in enumerate(images):
    top, left = padding + (i // columns) * (h + padding), padding + (i % columns) * (w + padding)
    grid[top:top + h, left:left + w] = image
  return grid


def without_gray_axis(image: np.ndarray) -> np.ndarray:
  """A [H, W, 1] image as [H, W] (what PIL and Gradio read as grayscale); RGB unchanged."""
  return image[..., 0] if image.shape[-1] == 1 else image


def save_png(path: str, image: np.ndarray) -> None:
  """Writes a uint8 [H, W, 1|3] image as PNG, atomically."""
  with atomic_write(path, "wb") as f:
    Image.fromarray(without_gray_axis(image)).save(f, format="PNG")


def save_npz(path: str, arrays: dict, compressed: bool = True) -> None:
  """Writes an npz atomically: readers never see a half-written file."""
  with atomic_write(path, "wb") as f:
    (np.savez_compressed if compressed else np.savez)(f, **arrays)


def load_samples_npz(path: str) -> np.ndarray:
  """The uint8 images [N, H, W, C] of a samples.npz; a damaged or foreign file is a
  DataError that names it."""
  try:
    with np.load(path) as data:
      images = data["images"]
  except Exception as e:  # noqa: BLE001 (a damaged archive fails in many ways)
    raise DataError(f"cannot read samples from {path} ({type(e).__name__}: "
                    f"{' '.join(str(e).split())[:200]}); sample again with --mode=sample"
                    ) from None
  if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3) or (
      not len(images)):
    raise DataError(f"{path} holds {images.dtype} images of shape {images.shape}, not uint8 "
                    "[N, H, W, 1|3]; sample again with --mode=sample")
  return images


def save_samples_npz(path: str, images: np.ndarray, labels=None) -> None:
  """Writes {'images': uint8 [N, H, W, C]} (and 'labels') atomically."""
  save_npz(path, {"images": images} if labels is None else {"images": images, "labels": labels})
