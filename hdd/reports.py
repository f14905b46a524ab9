"""What runs report to people: the timing table of a cascade, grids that show every stage
of a sample or every recorded step of a chain, and the flat hyper-parameters for logs."""
from __future__ import annotations

import json
import os
from typing import Optional

import ml_collections
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from common import files, images
from hdd import stages


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


def write_timing_table(config: ml_collections.ConfigDict, workdir: str,
                       sample_report: Optional[dict] = None) -> list[dict]:
  """WORKDIR/timing.json and timing.md: per stage, training time (all runs of the stage,
  resumes included) and sampling time, each without compilation, which is listed apart."""
  sampled = {s["stage"]: s for s in (sample_report or {}).get("stages", [])}
  rows = []
  for name in stages.stage_names(config):
    single = stages.stage_config(config, name)
    row = {"stage": name, "resolution": single.data.image_size,
           "T": single.diffusion.num_steps,
           "beta": f"{single.diffusion.schedule} {single.diffusion.beta_start:g}-"
                   f"{single.diffusion.beta_end:g}"}
    timing_path = os.path.join(stages.stage_workdir(workdir, name), "train_timing.json")
    if os.path.exists(timing_path):
      with open(timing_path) as f:
        trained = json.load(f)
      row.update(train_steps=trained["end_step"], train_seconds=trained["total_train_seconds"],
                 train_compile_seconds=trained["compile_seconds"],
                 parameters=trained.get("parameters"))
    if name in sampled:
      s = sampled[name]
      row.update(handover=s["handover"], start_step=s["start_step"], gamma=s.get("gamma"),
                 sampler=s["sampler"], evaluations=s["network_evaluations_per_image"],
                 sample_seconds=s["sample_seconds"], sample_compile_seconds=s["compile_seconds"])
    rows.append(row)
  num_samples = (sample_report or {}).get("num_images")
  files.write_json(os.path.join(workdir, "timing.json"),
                   {"num_samples": num_samples, "stages": rows})
  with files.atomic_write(os.path.join(workdir, "timing.md")) as f:
    f.write(timing_markdown(rows, num_samples))
  return rows


def timing_markdown(rows: list[dict], num_samples: Optional[int]) -> str:
  columns = [("stage", "stage"), ("resolution", "size"), ("parameters", "params"),
             ("T", "T"), ("beta", "beta"), ("train_steps", "train steps"),
             ("train_seconds", "train s"), ("handover", "hand-over"), ("gamma", "gamma"),
             ("start_step", "t*"), ("sampler", "sampler"), ("evaluations", "evals/img"),
             ("sample_seconds", f"sample s ({num_samples} img)")]

  def cell(value):
    if value is None:
      return "-"
    if isinstance(value, float):
      return f"{value:,.3f}" if value < 1 else f"{value:,.1f}"
    return f"{value:,}" if isinstance(value, int) else str(value)

  total = {"stage": "total", "train_seconds": sum(r.get("train_seconds") or 0.0 for r in rows),
           "sample_seconds": sum(r.get("sample_seconds") or 0.0 for r in rows)}
  lines = ["| " + " | ".join(title for _, title in columns) + " |",
           "|" + "---|" * len(columns)]
  for row in rows + [total]:
    lines.append("| " + " | ".join(cell(row.get(key)) for key, _ in columns) + " |")
  return "\n".join(lines) + "\n\nSeconds exclude compilation (listed in timing.json).\n"


def flatten_config(config: ml_collections.ConfigDict, prefix: str = "") -> dict:
  """{'train.batch_size': 128, ...}, with tuples as strings, for hyper-parameter logs."""
  flat = {}
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      flat.update(flatten_config(value, f"{prefix}{key}."))
    else:
      flat[prefix + key] = value if isinstance(value, (int, float, str, bool)) else str(value)
  return flat
