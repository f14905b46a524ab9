"""Pictures of samples for people: grids that show every stage of a sample side by side,
every recorded step of a chain, interpolations, magnified so a 14-pixel image is visible."""
from __future__ import annotations

from typing import Optional

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from common import images


def enlarge(x: np.ndarray, size: int) -> np.ndarray:
  """Images [..., h, w, C] shown at size x size by repeating pixels (nearest-neighbour, so
  the low-resolution pixels stay visible); h must divide size."""
  h, w = x.shape[-3:-1]
  if size % h or size % w:
    raise ValueError(f"a {h}x{w} stage cannot be shown at {size}x{size}: stage resolutions "
                     "must divide the final one")
  return np.repeat(np.repeat(x, size // h, -3), size // w, -2)


DISPLAY_PIXELS = 64   # the least size a sample is drawn at in a saved picture
GRID_PADDING = 2      # images.make_grid's default


def for_display(grid: np.ndarray, tile_size: int,
                column_labels: Optional[list[str]] = None) -> np.ndarray:
  """A grid of tile_size-pixel images as saved for people: magnified by repeating pixels
  so that every image is at least DISPLAY_PIXELS wide, under a header with a label per
  column of tiles when `column_labels` is given."""
  factor = -(-DISPLAY_PIXELS // tile_size)
  picture = np.repeat(np.repeat(grid, factor, 0), factor, 1)
  if not column_labels:
    return picture
  header = Image.new("L", (picture.shape[1], 16), 255)
  draw, font = ImageDraw.Draw(header), ImageFont.load_default()
  step = (tile_size + GRID_PADDING) * factor
  for column, label in enumerate(column_labels):
    draw.text((GRID_PADDING * factor + column * step, 2), label, fill=0, font=font)
  header = np.asarray(header)[..., None].repeat(picture.shape[-1], -1)
  return np.concatenate([header, picture])


def stage_labels(outputs: dict) -> list[str]:
  """'stage1 14x14', ...: the column labels of a side_by_side grid's stages."""
  return [f"{name} {x.shape[1]}x{x.shape[2]}" for name, x in outputs.items()]


def side_by_side(outputs: dict, count: int = 16, per_row: int = 4) -> np.ndarray:
  """A grid of `count` samples, `per_row` to a row, each shown as its stages side by side
  at the final resolution."""
  final = list(outputs.values())[-1]
  size, shown = final.shape[1], min(count, len(final))
  columns = [enlarge(x[:shown], size) for x in outputs.values()]
  tiles = np.stack(columns, axis=1).reshape((shown * len(columns),) + final.shape[1:])
  return images.make_grid(tiles, columns=len(columns) * min(per_row, shown))


def cascade_picture(outputs: dict, count: int = 16, per_row: int = 4) -> np.ndarray:
  """side_by_side as saved for people: magnified, each column labelled with its stage."""
  final = list(outputs.values())[-1]
  columns = min(per_row, count, len(final))
  return for_display(side_by_side(outputs, count, per_row), final.shape[1],
                     stage_labels(outputs) * columns)


def cascade_chain(trajectories: dict) -> np.ndarray:
  """The reverse chain of every stage in one figure: a row per sample, the recorded steps
  of stage 1, then of stage 2 (its first frame is the hand-over), ..., at the final
  resolution, with a blank column between stages."""
  final = list(trajectories.values())[-1]
  size, shown = final.shape[2], min(t.shape[1] for t in trajectories.values())
  blank = np.zeros((1, shown) + final.shape[2:], final.dtype)
  parts = []
  for trajectory in trajectories.values():
    parts += [enlarge(trajectory[:, :shown], size), blank]
  return trajectory_strip(np.concatenate(parts[:-1]))


def interpolation_strip(stage_images: dict) -> np.ndarray:
  """Interpolations {stage: uint8 [pairs, frames, h, w, C]} as one image: per pair, a row
  per stage at the final resolution, a column per interpolation point."""
  final = list(stage_images.values())[-1]
  frames, size = final.shape[1], final.shape[2]
  rows = np.stack([enlarge(x, size) for x in stage_images.values()], axis=1)
  return images.make_grid(rows.reshape((-1,) + final.shape[2:]), columns=frames)


def sample_grid(samples: np.ndarray, labels: Optional[np.ndarray] = None,
                columns: int = 10, max_classes: int = 32) -> np.ndarray:
  """The first 64 samples, or for class-conditional ones a row per class (up to
  `max_classes`): the first `columns` samples asked for with that label, blank-padded."""
  if labels is None:
    return images.make_grid(samples[:64])
  rows = []
  for label in np.unique(labels)[:max_classes]:
    chosen = samples[labels == label][:columns]
    blank = np.zeros((columns - len(chosen),) + samples.shape[1:], samples.dtype)
    rows.append(np.concatenate([chosen, blank]))
  return images.make_grid(np.concatenate(rows), columns=columns)


def trajectory_strip(trajectory: np.ndarray) -> np.ndarray:
  """[frames, n, H, W, C] -> one image: a row per sample, a column per recorded step."""
  frames, n = trajectory.shape[:2]
  return images.make_grid(trajectory.transpose(1, 0, 2, 3, 4).reshape(
      (frames * n,) + trajectory.shape[2:]), columns=frames)
