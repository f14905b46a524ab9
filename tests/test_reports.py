"""What runs report (hdd.timing_report, hdd.tracking): the timing table of a cascade and of
a single model (JSON and markdown, with a total row) from stage timing files written here,
and flat hyper-parameters. The pictures are tested in test_pictures.py."""
import json
import os

import ml_collections

from helpers import tiny_cascade, tiny_config
from hdd import timing_report, tracking


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
