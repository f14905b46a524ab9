"""What runs report (hdd.pictures, hdd.timing_report): stage-by-stage grids upsampled by
nearest neighbour, trajectory strips, the timing table of a cascade and of a single model
(JSON and markdown, with a total row) from stage timing files written here, and flat
hyper-parameters."""
import json
import os

import ml_collections
import numpy as np
import pytest

from helpers import tiny_cascade, tiny_config
from hdd import pictures, timing_report, tracking


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


def table(markdown):
  """{first cell: [cells]} of a markdown table, and its header."""
  lines = [line for line in markdown.splitlines() if line.startswith("|")]
  split = lambda line: [cell.strip() for cell in line.strip("|").split("|")]
  header = split(lines[0])
  assert set(lines[1].strip("|").split("|")) == {"---"}
  return header, {split(line)[0]: dict(zip(header, split(line))) for line in lines[2:]}


def test_timing_markdown_sums_a_total_row():
  rows = [{"stage": "stage1", "resolution": 4, "parameters": 12345, "T": 40,
           "train_steps": 4, "train_seconds": 1000.0, "sample_seconds": 0.25, "gamma": None},
          {"stage": "stage2", "resolution": 8, "train_seconds": 234.5, "sample_seconds": 0.5,
           "handover": "truncate", "gamma": 0.3125, "start_step": 17}]
  markdown = timing_report.timing_markdown(rows, 8)
  header, by_stage = table(markdown)
  assert len(header) == 13 and header[-1] == "sample s (8 img)"
  assert list(by_stage) == ["stage1", "stage2", "total"]
  assert by_stage["total"]["train s"] == "1,234.5"            # 1000.0 + 234.5
  assert by_stage["total"]["sample s (8 img)"] == "0.750"     # 0.25 + 0.5
  assert by_stage["stage1"]["params"] == "12,345" and by_stage["stage1"]["gamma"] == "-"
  assert by_stage["stage2"]["gamma"] == "0.312" and by_stage["stage2"]["t*"] == "17"
  assert by_stage["stage2"]["params"] == "-" and by_stage["total"]["size"] == "-"
  assert "Seconds exclude compilation" in markdown
  assert markdown.endswith("Seconds exclude compilation.\n")   # None is known here.


def test_write_timing_table_from_stage_files(tmp_path):
  config = tiny_cascade()
  workdir = tmp_path / "run"
  (workdir / "stage1").mkdir(parents=True)
  (workdir / "stage1" / "train_timing.json").write_text(json.dumps(
      {"start_step": 2, "end_step": 4, "total_train_seconds": 3.5, "train_seconds": 1.0,
       "compile_seconds": 7.0, "parameters": 1000}))
  sample_report = {"num_images": 8, "stages": [
      {"stage": "stage1", "handover": "noise", "start_step": 32, "sampler": "ddim",
       "network_evaluations_per_image": 5, "sample_seconds": 0.5, "compile_seconds": 2.0},
      {"stage": "stage2", "handover": "mix", "start_step": 32, "gamma": 0.3, "sampler": "ddim",
       "network_evaluations_per_image": 5, "sample_seconds": 2.0, "compile_seconds": 3.0}]}
  rows = timing_report.write_timing_table(config, str(workdir), sample_report)
  with open(workdir / "timing.json") as f:
    written = json.load(f)
  assert written == {"num_samples": 8, "stages": rows}
  assert rows[0] == {"stage": "stage1", "resolution": 4, "T": 40, "beta": "linear 0.0001-0.02",
                     "train_steps": 4, "train_seconds": 3.5, "train_compile_seconds": 7.0,
                     "parameters": 1000, "handover": "noise", "start_step": 32, "gamma": None,
                     "sampler": "ddim", "evaluations": 5, "sample_seconds": 0.5,
                     "sample_compile_seconds": 2.0}
  # Stage 2 was never trained here: no training columns.
  assert rows[1]["beta"] == "linear 0.0001-0.01" and "train_seconds" not in rows[1]
  assert rows[1]["gamma"] == 0.3 and rows[1]["sample_seconds"] == 2.0
  _, by_stage = table((workdir / "timing.md").read_text())
  assert by_stage["stage1"]["train s"] == "3.5" and by_stage["stage2"]["train s"] == "-"
  assert by_stage["total"]["train s"] == "3.5" and by_stage["total"]["sample s (8 img)"] == "2.5"
  assert sorted(os.listdir(workdir)) == ["stage1", "timing.json", "timing.md"]
  # Compilation, listed apart: stage 1's training, and both stages' sampling (2.0 + 3.0).
  markdown = (workdir / "timing.md").read_text()
  assert "which took 7.0 s in training and 5.0 s in sampling." in markdown

  # Without a sample report (a stage trained alone): training columns only.
  rows = timing_report.write_timing_table(config, str(workdir))
  assert "sample_seconds" not in rows[0] and rows[0]["train_steps"] == 4
  assert json.loads((workdir / "timing.json").read_text())["num_samples"] is None

  # A single model: one row, 'model', trained in the run's own workdir.
  (workdir / "train_timing.json").write_text((workdir / "stage1" / "train_timing.json").read_text())
  [row] = timing_report.timing_rows(tiny_config(), str(workdir), {"num_images": 8, "stages": [
      {**sample_report["stages"][0], "stage": "model"}]})
  assert (row["stage"], row["resolution"], row["T"]) == ("model", 8, 50)
  assert row["train_seconds"] == 3.5 and row["sample_seconds"] == 0.5


def test_flatten_config():
  config = ml_collections.ConfigDict({"a": 1, "b": {"c": (1, 2), "d": {"e": "x", "f": 2.5}},
                                      "g": True, "h": [3, 4]})
  assert tracking.flatten_config(config) == {"a": 1, "b.c": "(1, 2)", "b.d.e": "x", "b.d.f": 2.5,
                                            "g": True, "h": "[3, 4]"}
  flat = tracking.flatten_config(tiny_config())
  assert flat["model.channel_mult"] == "(1, 2)" and flat["train.batch_size"] == 16
  assert flat["data.source"] == "npz" and flat["seed"] == 0
  assert all(isinstance(v, (int, float, str, bool)) for v in flat.values())
  assert "model" not in flat and len(flat) > 50


def test_sample_grid_puts_one_row_per_class():
  rng = np.random.default_rng(1)
  samples = rng.integers(0, 256, (7, 4, 4, 1), dtype=np.uint8)
  labels = np.array([2, 0, 2, 1, 0, 2, 2])
  grid = pictures.sample_grid(samples, labels, columns=3)
  assert grid.shape == (2 + 3 * 6, 2 + 3 * 6, 1)   # Classes 0, 1, 2; three tiles each.
  np.testing.assert_array_equal(tile(grid, 0, 4, 3), samples[1])      # class 0, first
  np.testing.assert_array_equal(tile(grid, 1, 4, 3), samples[4])
  assert (tile(grid, 2, 4, 3) == 0).all()                             # class 0 has two
  np.testing.assert_array_equal(tile(grid, 3, 4, 3), samples[3])      # class 1
  np.testing.assert_array_equal([tile(grid, i, 4, 3) for i in (6, 7, 8)], samples[[0, 2, 5]])
  unconditional = pictures.sample_grid(samples)
  assert unconditional.shape == pictures.images.make_grid(samples).shape


def test_cascade_chain_and_interpolation_strip_layouts():
  low = np.full((3, 2, 4, 4, 1), 50, np.uint8)     # [frames, n, h, w, C]
  high = np.full((4, 5, 8, 8, 1), 200, np.uint8)
  chain = pictures.cascade_chain({"stage1": low, "stage2": high})
  # Rows: the 2 samples both stages have; columns: 3 + blank + 4 frames, all 8x8.
  assert chain.shape == (2 + 2 * 10, 2 + 8 * 10, 1)
  assert (tile(chain, 0, 8, 8) == 50).all() and (tile(chain, 3, 8, 8) == 0).all()
  assert (tile(chain, 4, 8, 8) == 200).all()
  strip = pictures.interpolation_strip({"stage1": low.transpose(1, 0, 2, 3, 4),
                                       "stage2": high[:3, :2].transpose(1, 0, 2, 3, 4)})
  # Per pair a row per stage: 2 pairs x 2 stages rows, 3 frames.
  assert strip.shape == (2 + 4 * 10, 2 + 3 * 10, 1)
  assert (tile(strip, 0, 8, 3) == 50).all() and (tile(strip, 3, 8, 3) == 200).all()
  with pytest.raises(ValueError, match="must divide the final one"):
    pictures.enlarge(np.zeros((1, 3, 3, 1), np.uint8), 8)


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
