"""Pictures for people (hdd.pictures): stage-by-stage grids upsampled by nearest
neighbour, grids sized to the samples they hold (a row per class, no empty columns),
trajectory strips, chain pictures labelled with the stage and the step t of every column
(the steps in closed form), and the >= 64 px display of every saved image."""
import math

import numpy as np
import pytest

from helpers import tiny_cascade
from hdd import pictures
from hdd.maths import sampling


def tile(grid, index, size, columns, padding=2):
  """The index-th tile of a make_grid grid, by hand."""
  top = padding + (index // columns) * (size + padding)
  left = padding + (index % columns) * (size + padding)
  return grid[top:top + size, left:left + size]


def test_side_by_side_repeats_low_resolution_pixels():
  rng = np.random.default_rng(0)
  low = rng.integers(0, 256, (3, 4, 4, 1), dtype=np.uint8)
  high = rng.integers(0, 256, (3, 8, 8, 1), dtype=np.uint8)
  grid = pictures.side_by_side({"stage1": low, "stage2": high}, count=2, per_row=4)
  # Two samples, each as (stage1, stage2): one row of four 8x8 tiles.
  assert grid.shape == (8 + 4, 4 * (8 + 2) + 2, 1)
  for sample in range(2):
    upsampled = tile(grid, 2 * sample, 8, 4)
    for i in range(8):
      for j in range(8):
        assert upsampled[i, j, 0] == low[sample, i // 2, j // 2, 0]
    np.testing.assert_array_equal(tile(grid, 2 * sample + 1, 8, 4), high[sample])


def test_side_by_side_rows_and_three_stages():
  rng = np.random.default_rng(1)
  outputs = {"stage1": rng.integers(0, 256, (5, 2, 2, 1), dtype=np.uint8),
             "stage2": rng.integers(0, 256, (5, 4, 4, 1), dtype=np.uint8),
             "stage3": rng.integers(0, 256, (5, 8, 8, 1), dtype=np.uint8)}
  grid = pictures.side_by_side(outputs, count=16, per_row=2)
  # All 5 samples, 2 per row (6 tiles to a row), 3 rows.
  assert grid.shape == (3 * 10 + 2, 6 * 10 + 2, 1)
  for sample in range(5):
    first = tile(grid, 3 * sample, 8, 6)
    np.testing.assert_array_equal(first[::4, ::4], outputs["stage1"][sample])
    np.testing.assert_array_equal(first, np.kron(outputs["stage1"][sample][..., 0],
                                                 np.ones((4, 4), np.uint8))[..., None])
    np.testing.assert_array_equal(tile(grid, 3 * sample + 1, 8, 6)[::2, ::2],
                                  outputs["stage2"][sample])
    np.testing.assert_array_equal(tile(grid, 3 * sample + 2, 8, 6), outputs["stage3"][sample])
  assert (tile(grid, 15, 8, 6) == 255).all()   # The empty places stay white.


@pytest.mark.parametrize("low_size", [3, 6, 16])
def test_side_by_side_refuses_non_dividing_sizes(low_size):
  outputs = {"stage1": np.zeros((2, low_size, low_size, 1), np.uint8),
             "stage2": np.zeros((2, 8, 8, 1), np.uint8)}
  with pytest.raises(ValueError, match="must divide the final one"):
    pictures.side_by_side(outputs)


def test_trajectory_strip_has_a_row_per_sample_and_a_column_per_frame():
  frames, n, size = 3, 2, 2
  trajectory = np.zeros((frames, n, size, size, 1), np.uint8)
  for f in range(frames):
    for s in range(n):
      trajectory[f, s] = 10 * f + s
  strip = pictures.trajectory_strip(trajectory)
  assert strip.shape == (n * (size + 2) + 2, frames * (size + 2) + 2, 1)
  for s in range(n):
    for f in range(frames):
      top, left = 2 + s * (size + 2), 2 + f * (size + 2)
      assert (strip[top:top + size, left:left + size] == 10 * f + s).all()


def check_rows(cells, labels=None):
  """Every column holds a sample, every sample appears once, in order, and places are empty
  only at the end of a row that ends a class (every row, without labels: only the last)."""
  assert (cells[:, 0] >= 0).all() and (cells >= 0).any(axis=0).all()
  for row in cells:
    filled = row[row >= 0]
    assert (row[:len(filled)] == filled).all() and (np.diff(filled) > 0).all()
  shown = cells[cells >= 0]
  assert len(set(shown)) == len(shown)
  if labels is None:
    assert (cells[:-1] >= 0).all()
    return
  for row, below in zip(cells[:-1], cells[1:]):   # A row with empty places ends its class.
    assert (row >= 0).all() or labels[row[0]] != labels[below[0]]


@pytest.mark.parametrize("count", [1, 7, 10, 11, 20, 25, 64, 100, 1000])
def test_a_class_conditional_grid_has_a_row_per_class_and_no_empty_columns(count):
  labels = np.arange(count) % 10   # What class_labels gives 10 classes, label = -1.
  cells = pictures.grid_cells(count, labels)
  # A row per class; as many columns as a class has images, up to 10 (a class shows at
  # least 10 of its images, and all of them while there are at most 64).
  assert cells.shape == (min(count, 10), min(math.ceil(count / 10), 10))
  check_rows(cells, labels)
  for row in cells:
    assert len(set(labels[row[row >= 0]])) == 1
  if count <= 64:
    assert sorted(cells[cells >= 0]) == list(range(count))


@pytest.mark.parametrize("count, classes, shape", [
    (5, 1, (1, 5)), (64, 1, (7, 10)),    # One class: its 64 images wrap after 10.
    (64, 2, (8, 10)),                    # 32 each: 4 rows of 10, 10, 10, 2.
    (6, 2, (2, 3)), (200, 2, (8, 10))])  # At most 32 of each of 2 classes.
def test_classes_wrap_after_ten_columns(count, classes, shape):
  labels = np.arange(count) % classes
  cells = pictures.grid_cells(count, labels)
  assert cells.shape == shape
  check_rows(cells, labels)
  assert len(cells[cells >= 0]) == min(count, 64)


@pytest.mark.parametrize("count, shape", [(1, (1, 1)), (5, (2, 3)), (16, (4, 4)),
                                          (20, (4, 5)), (64, (8, 8)), (1000, (8, 8))])
def test_an_unconditional_grid_is_nearly_square(count, shape):
  cells = pictures.grid_cells(count)
  assert cells.shape == shape
  check_rows(cells)
  assert sorted(cells[cells >= 0]) == list(range(min(count, 64)))


def test_sample_grid_draws_the_cells():
  rng = np.random.default_rng(1)
  samples = rng.integers(0, 256, (7, 4, 4, 1), dtype=np.uint8)
  labels = np.array([2, 0, 2, 1, 0, 2, 2])
  grid = pictures.sample_grid(samples, labels, columns=3)
  # Class 0: 1, 4; class 1: 3; class 2: 0, 2, 5 and, wrapped, 6. Empty places are white.
  assert grid.shape == (2 + 4 * 6, 2 + 3 * 6, 1)
  for place, index in enumerate([1, 4, None, 3, None, None, 0, 2, 5, 6, None, None]):
    expected = samples[index] if index is not None else np.full((4, 4, 1), 255)
    np.testing.assert_array_equal(tile(grid, place, 4, 3), expected)
  conditional = pictures.sample_grid(rng.integers(0, 256, (20, 4, 4, 1), dtype=np.uint8),
                                     np.arange(20) % 10)
  assert conditional.shape == (2 + 10 * 6, 2 + 2 * 6, 1)   # 10 classes of 2: 10 x 2.
  unconditional = pictures.sample_grid(samples)
  assert unconditional.shape == (2 + 3 * 6, 2 + 3 * 6, 1)


def test_interpolation_strip_layout():
  low = np.full((3, 2, 4, 4, 1), 50, np.uint8)     # [frames, n, h, w, C]
  high = np.full((4, 5, 8, 8, 1), 200, np.uint8)
  strip = pictures.interpolation_strip({"stage1": low.transpose(1, 0, 2, 3, 4),
                                       "stage2": high[:3, :2].transpose(1, 0, 2, 3, 4)})
  # Per pair a row per stage: 2 pairs x 2 stages rows, 3 frames.
  assert strip.shape == (2 + 4 * 10, 2 + 3 * 10, 1)
  assert (tile(strip, 0, 8, 3) == 50).all() and (tile(strip, 3, 8, 3) == 200).all()
  with pytest.raises(ValueError, match="must divide the final one"):
    pictures.enlarge(np.zeros((1, 3, 3, 1), np.uint8), 8)


def ddim_labels(num_train_steps, num_steps, every):
  """The labels of a DDIM chain's recorded frames in closed form: it visits (S - 1 - j) k,
  k = T // S, after j of its S steps (x0 after all S); frames after 0, every, 2 every..."""
  k = num_train_steps // num_steps
  return [f"t={(num_steps - 1 - j) * k}" if j < num_steps else "x0"
          for j in range(0, num_steps + 1, every)]


@pytest.mark.parametrize("num_train_steps, num_steps, every", [
    (40, 5, 1), (40, 5, 2), (500, 50, 6), (500, 50, 10), (1000, 8, 3)])
def test_chain_labels_are_the_steps_the_ddim_chain_visited(num_train_steps, num_steps, every):
  steps, prev_steps = sampling.reverse_timesteps(sampling.SamplerSettings("ddim", num_steps),
                                                 num_train_steps)
  frames = 1 + num_steps // every   # What sampling.run_chain records.
  assert pictures.chain_labels(steps, prev_steps, every, frames) == ddim_labels(
      num_train_steps, num_steps, every)


def test_chain_labels_of_ddpm_and_of_a_truncated_chain():
  ddpm = sampling.reverse_timesteps(sampling.SamplerSettings("ddpm"), 10)
  assert pictures.chain_labels(*ddpm, 3, 1 + 10 // 3) == ["t=9", "t=6", "t=3", "t=0"]
  # DDIM-5 of T = 40 (32, 24, 16, 8, 0) truncated at t* = 20: it starts there.
  truncated = sampling.reverse_timesteps(sampling.SamplerSettings("ddim", 5), 40, 20)
  assert pictures.chain_labels(*truncated, 1, 5) == ["t=20", "t=16", "t=8", "t=0", "x0"]


def test_chain_picture_labels_each_stage_and_each_step():
  from hdd import cascade
  config = tiny_cascade()   # 4x4 -> 8x8, DDIM-5 of T = 40 in each stage.
  config.sample.trajectory_every = 2
  plans = cascade.sampling_plans(config)
  rng = np.random.default_rng(4)
  trajectories = {"stage1": rng.integers(0, 256, (3, 2, 4, 4, 1), dtype=np.uint8),
                  "stage2": rng.integers(0, 256, (3, 2, 8, 8, 1), dtype=np.uint8)}
  picture = pictures.chain_picture(trajectories, plans)
  # Per stage a block: a title line and a line of step labels (16 px each) over the two
  # samples' 3 frames, each 8 px drawn at 64 (8 times, the padding too).
  body_height, width = 8 * (2 + 2 * 10), 8 * (2 + 3 * 10)
  assert picture.shape == (2 * (2 * 16 + body_height), width, 1)
  labels = ddim_labels(40, 5, 2)
  assert labels == ["t=32", "t=16", "t=0"]
  for block, (name, size) in enumerate([("stage1", 4), ("stage2", 8)]):
    top = block * (2 * 16 + body_height)
    header, body = picture[top:top + 32], picture[top + 32:top + 32 + body_height]
    unlabelled = pictures.trajectory_strip(pictures.enlarge(trajectories[name], 8))
    np.testing.assert_array_equal(body, np.kron(unlabelled[..., 0], np.ones((8, 8), np.uint8))
                                  [..., None])
    assert (header < 128).any() and (header[:16, 100:] == 255).all()   # A short title.
    np.testing.assert_array_equal(header, pictures.text_lines(width, 1, [
        [(16, f"{name} ({size}x{size})")],
        [(16 + column * 80, label) for column, label in enumerate(labels)]]))
  # At most 2 columns a stage: the start and the end, under their own steps.
  ends = pictures.chain_picture(trajectories, plans, columns=2)
  assert ends.shape == (2 * (2 * 16 + body_height), 8 * (2 + 2 * 10), 1)
  np.testing.assert_array_equal(ends[:32], pictures.text_lines(8 * (2 + 2 * 10), 1, [
      [(16, "stage1 (4x4)")], [(16, "t=32"), (96, "t=0")]]))
  first_sample = slice(32 + 16, 32 + 16 + 64)   # Its row of stage 1, below the header.
  np.testing.assert_array_equal(ends[first_sample, 16:80], picture[first_sample, 16:80])
  np.testing.assert_array_equal(ends[first_sample, 96:160], picture[first_sample, 176:240])


@pytest.mark.parametrize("count, most, expected", [
    (51, 9, [0, 6, 12, 19, 25, 31, 38, 44, 50]),   # round(50 i / 8), halves to even.
    (6, 9, [0, 1, 2, 3, 4, 5]), (2, 9, [0, 1]), (10, 2, [0, 9]), (10, 1, [0])])
def test_spread_keeps_the_start_and_the_end(count, most, expected):
  assert pictures.spread(count, most).tolist() == expected


@pytest.mark.parametrize("size, factor", [(28, 3), (14, 5), (64, 1), (32, 2)])
def test_for_display_draws_every_image_at_least_64_pixels(size, factor):
  rng = np.random.default_rng(2)
  grid = rng.integers(0, 256, (size + 4, 2 * size + 6, 3), dtype=np.uint8)
  picture = pictures.for_display(grid, size)
  assert picture.shape == (factor * grid.shape[0], factor * grid.shape[1], 3)
  assert factor * size >= 64 and (factor - 1) * size < 64
  # Every pixel of the grid becomes a factor x factor block of its value.
  np.testing.assert_array_equal(picture[::factor, ::factor], grid)
  np.testing.assert_array_equal(picture[factor - 1::factor, factor - 1::factor], grid)


def test_cascade_picture_labels_every_stage_column():
  rng = np.random.default_rng(3)
  outputs = {"stage1": rng.integers(0, 256, (2, 14, 14, 1), dtype=np.uint8),
             "stage2": rng.integers(0, 256, (2, 28, 28, 1), dtype=np.uint8)}
  picture = pictures.cascade_picture(outputs)
  body = pictures.for_display(pictures.side_by_side(outputs), 28)
  header = picture[:picture.shape[0] - body.shape[0]]
  np.testing.assert_array_equal(picture[header.shape[0]:], body)
  # Four columns (2 samples x 2 stages), each 3 x (28 + 2) px wide, each with ink (its
  # stage's label) in the header above it.
  step = 3 * 30
  for column in range(4):
    assert (header[:, 6 + column * step:6 + column * step + 60] < 128).any()
  assert pictures.stage_labels(outputs) == ["stage1 14x14", "stage2 28x28"]
