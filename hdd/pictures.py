"""Pictures of samples for people: grids sized to what they hold, every stage of a sample
side by side, every recorded step of a chain under its step t, interpolations, magnified
so a 14-pixel image is visible."""
from __future__ import annotations

import math
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
GRID_IMAGES = 64      # a grid shows all of up to this many samples
BACKGROUND = 255      # images.make_grid's padding and empty places: white
TEXT_LINE = 16        # pixels per line of text above a picture (PIL's default font)


def text_lines(width: int, channels: int, lines: list) -> np.ndarray:
  """A white strip [len(lines) * TEXT_LINE, width, channels] with black text: `lines` is a
  list of lines, each a list of (x, text)."""
  strip = Image.new("L", (width, TEXT_LINE * len(lines)), BACKGROUND)
  draw, font = ImageDraw.Draw(strip), ImageFont.load_default()
  for row, line in enumerate(lines):
    for x, text in line:
      draw.text((x, 2 + row * TEXT_LINE), text, fill=0, font=font)
  return np.asarray(strip)[..., None].repeat(channels, -1)


def for_display(grid: np.ndarray, tile_size: int, column_labels: Optional[list[str]] = None,
                title: str = "") -> np.ndarray:
  """A grid of tile_size-pixel images as saved for people: magnified by repeating pixels
  so that every image is at least DISPLAY_PIXELS wide, under a header with the `title`
  and a label per column of tiles when they are given."""
  factor = -(-DISPLAY_PIXELS // tile_size)
  picture = np.repeat(np.repeat(grid, factor, 0), factor, 1)
  lines = [[(GRID_PADDING * factor, title)]] if title else []
  if column_labels:
    step = (tile_size + GRID_PADDING) * factor
    lines.append([(GRID_PADDING * factor + column * step, label)
                  for column, label in enumerate(column_labels)])
  if not lines:
    return picture
  return np.concatenate([text_lines(picture.shape[1], picture.shape[-1], lines), picture])


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


def chain_labels(steps: np.ndarray, prev_steps: np.ndarray, every: int,
                 frames: int) -> list[str]:
  """The step of each recorded frame of a chain that visited `steps` (then `prev_steps`,
  `hdd.maths.sampling.reverse_timesteps`) recording every `every` steps: 't=499' for the
  start, the state after the (k * every)-th step at the step it goes to, 'x0' for the
  finished sample (`sampling.run_chain` records the start and every every-th state)."""
  at = [int(steps[0])] + [int(prev_steps[k * every - 1]) for k in range(1, frames)]
  return [f"t={t}" if t >= 0 else "x0" for t in at]


def spread(count: int, most: int) -> np.ndarray:
  """The indices of at most `most` of `count` frames, evenly spread from the first to the
  last (both kept when most >= 2)."""
  return np.unique(np.round(np.linspace(0, count - 1, min(count, most))).astype(int))


def chain_picture(trajectories: dict, plans: dict, columns: int = 0) -> np.ndarray:
  """The recorded reverse chain of every stage ({stage: uint8 [frames, n, h, w, C]}) as
  saved for people: a block per stage, top to bottom, each a row per sample and a column
  per recorded step (`columns` > 0: at most that many, `spread` from the start to the
  end) at the final resolution, magnified as by `for_display`, under a header naming the
  stage and its resolution ('stage1 (14x14)') and each column's step (`chain_labels` of
  the stage's SamplingPlan in `plans`)."""
  final = list(trajectories.values())[-1]
  size, shown = final.shape[2], min(t.shape[1] for t in trajectories.values())
  blocks = []
  for name, trajectory in trajectories.items():
    plan = plans[name]
    labels = chain_labels(plan.steps, plan.prev_steps, plan.config.sample.trajectory_every,
                          len(trajectory))
    if columns:
      kept = spread(len(trajectory), columns)
      trajectory, labels = trajectory[kept], [labels[i] for i in kept]
    strip = trajectory_strip(enlarge(trajectory[:, :shown], size))
    title = f"{name} ({trajectory.shape[2]}x{trajectory.shape[3]})"
    blocks.append(for_display(strip, size, labels, title))
  width = max(block.shape[1] for block in blocks)
  return np.concatenate([np.pad(block, ((0, 0), (0, width - block.shape[1]), (0, 0)),
                                constant_values=BACKGROUND) for block in blocks])


def interpolation_strip(stage_images: dict) -> np.ndarray:
  """Interpolations {stage: uint8 [pairs, frames, h, w, C]} as one image: per pair, a row
  per stage at the final resolution, a column per interpolation point."""
  final = list(stage_images.values())[-1]
  frames, size = final.shape[1], final.shape[2]
  rows = np.stack([enlarge(x, size) for x in stage_images.values()], axis=1)
  return images.make_grid(rows.reshape((-1,) + final.shape[2:]), columns=frames)


def in_rows(indices: np.ndarray, width: int) -> np.ndarray:
  """`indices` in rows of `width`, the last row filled up with -1 (an empty place)."""
  rows = -(-len(indices) // width)
  return np.append(indices, np.full(rows * width - len(indices), -1)).reshape(rows, width)


def grid_cells(count: int, labels: Optional[np.ndarray] = None, columns: int = 10,
               max_classes: int = 32) -> np.ndarray:
  """Where `sample_grid` puts each of `count` samples: [rows, width] sample indices, -1 for
  an empty place. Unconditional: the first GRID_IMAGES in a near-square grid. Conditional:
  a class per row (up to `max_classes` classes, in order), wrapping after `columns`
  images, each class showing max(columns, GRID_IMAGES // classes) of its samples, and as
  many columns as the fullest row needs: places are empty only at the end of a class."""
  if labels is None:
    shown = min(count, GRID_IMAGES)
    return in_rows(np.arange(shown), math.ceil(math.sqrt(shown)))
  classes = np.unique(labels)[:max_classes]
  per_class = max(columns, GRID_IMAGES // len(classes))
  chosen = [np.flatnonzero(labels == label)[:per_class] for label in classes]
  width = min(columns, max(len(indices) for indices in chosen))
  return np.concatenate([in_rows(indices, width) for indices in chosen])


def sample_grid(samples: np.ndarray, labels: Optional[np.ndarray] = None,
                columns: int = 10, max_classes: int = 32) -> np.ndarray:
  """The samples laid out by `grid_cells` (a row per class for class-conditional ones),
  empty places white as the padding."""
  cells = grid_cells(len(samples), labels, columns, max_classes)
  empty = np.full(samples.shape[1:], BACKGROUND, samples.dtype)
  tiles = np.stack([samples[i] if i >= 0 else empty for i in cells.ravel()])
  return images.make_grid(tiles, columns=cells.shape[1])


def trajectory_strip(trajectory: np.ndarray) -> np.ndarray:
  """[frames, n, H, W, C] -> one image: a row per sample, a column per recorded step."""
  frames, n = trajectory.shape[:2]
  return images.make_grid(trajectory.transpose(1, 0, 2, 3, 4).reshape(
      (frames * n,) + trajectory.shape[2:]), columns=frames)
