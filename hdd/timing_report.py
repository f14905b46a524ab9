"""The timing table: per stage, training and sampling seconds without compilation. A run
writes it as WORKDIR/timing.json and timing.md; the web app shows it for each request."""
from __future__ import annotations

import json
import os
from typing import Optional

import ml_collections

from common import files
from hdd import layout, stages

COLUMNS = [("stage", "stage"), ("resolution", "size"), ("parameters", "params"), ("T", "T"),
           ("beta", "beta"), ("train_steps", "train steps"), ("train_seconds", "train s"),
           ("handover", "hand-over"), ("gamma", "gamma"), ("start_step", "t*"),
           ("sampler", "sampler"), ("evaluations", "evals/img")]


def timing_rows(config: ml_collections.ConfigDict, workdir: str,
                sample_report: Optional[dict] = None) -> list[dict]:
  """A row per stage: its schedule, its training time from its train_timing.json (all runs
  of the stage, resumes included; none without a `workdir`, '') and its sampling time in
  `sample_report` (`cascade.sample_cascade`'s), each without compilation, listed apart."""
  sampled = {s["stage"]: s for s in (sample_report or {}).get("stages", [])}
  rows = []
  for stage in stages.models(config, workdir):
    diffusion = stage.config.diffusion
    row = {"stage": stage.name, "resolution": stage.config.data.image_size,
           "T": diffusion.num_steps,
           "beta": f"{diffusion.schedule} {diffusion.beta_start:g}-{diffusion.beta_end:g}"}
    timing_path = layout.train_timing_path(stage.workdir)
    if workdir and os.path.exists(timing_path):
      with open(timing_path) as f:
        trained = json.load(f)
      row.update(train_steps=trained["end_step"], train_seconds=trained["total_train_seconds"],
                 train_compile_seconds=trained["compile_seconds"],
                 parameters=trained.get("parameters"))
    if stage.name in sampled:
      s = sampled[stage.name]
      row.update(handover=s["handover"], start_step=s["start_step"], gamma=s.get("gamma"),
                 sampler=s["sampler"], evaluations=s["network_evaluations_per_image"],
                 sample_seconds=s["sample_seconds"], sample_compile_seconds=s["compile_seconds"])
    rows.append(row)
  return rows


def write_timing_table(config: ml_collections.ConfigDict, workdir: str,
                       sample_report: Optional[dict] = None) -> list[dict]:
  """WORKDIR/timing.json and timing.md of `timing_rows`; returns the rows."""
  rows = timing_rows(config, workdir, sample_report)
  num_samples = (sample_report or {}).get("num_images")
  json_path, markdown_path = layout.timing_paths(workdir)
  files.write_json(json_path, {"num_samples": num_samples, "stages": rows})
  with files.atomic_write(markdown_path) as f:
    f.write(timing_markdown(rows, num_samples))
  return rows


def timing_markdown(rows: list[dict], num_samples: Optional[int]) -> str:
  """`timing_rows` as a markdown table with a total row ('-': not known), and the seconds
  of compilation below it."""
  columns = COLUMNS + [("sample_seconds", f"sample s ({num_samples} img)")]

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
  return "\n".join(lines) + f"\n\n{compilation_note(rows)}\n"


def compilation_note(rows: list[dict]) -> str:
  """'Seconds exclude compilation, which took 7.0 s in training and 5.0 s in sampling.'"""
  spent = [f"{sum(r.get(key) or 0.0 for r in rows):,.1f} s in {what}"
           for key, what in (("train_compile_seconds", "training"),
                             ("sample_compile_seconds", "sampling"))
           if any(key in r for r in rows)]
  return "Seconds exclude compilation" + (f", which took {' and '.join(spent)}." if spent
                                          else ".")
