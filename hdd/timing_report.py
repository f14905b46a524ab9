"""The timing table of a run: per stage, training and sampling seconds without compilation,
as WORKDIR/timing.json and timing.md, and the same table for one sampling request."""
from __future__ import annotations

import json
import os
from typing import Optional

import ml_collections

from common import files
from hdd import stages


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
