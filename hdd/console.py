"""What main.py prints: an error as one line (a bad flag or config override mapped to what
is wrong), and the closing summary of a run's outputs, its timing and the commands to run
next. Light to import: flag errors are reported before TensorFlow or JAX load. (The
training's progress line is `hdd.writers.ProgressLine`; third-party logs are kept quiet by
`common.runtime.quiet_logs`.)"""
from __future__ import annotations

import os
import shlex
import sys

from common.progress import duration
from hdd import layout

def outputs_of(workdir: str) -> list[tuple[str, str]]:
  """(what, path) of the outputs a run left in its workdir, for the closing summary."""
  samples = layout.samples_dir(workdir)
  candidates = [("samples", os.path.join(samples, layout.GRID)),
                ("stages", os.path.join(samples, layout.CASCADE_PICTURE)),
                ("chain", os.path.join(samples, layout.CHAIN)),
                ("trajectory", os.path.join(samples, layout.TRAJECTORY)),
                ("images", layout.samples_path(workdir)),
                ("timing", layout.timing_paths(workdir)[1]),
                ("held-out loss", layout.eval_path(workdir)),
                ("sample quality", layout.quality_path(workdir)),
                ("interpolation", layout.interpolation_dir(workdir)),
                ("forward process", layout.forward_process_path(workdir))]
  found = [(what, path) for what, path in candidates if os.path.exists(path)]
  stage_losses = sorted(layout.eval_path(os.path.join(workdir, name))
                        for name in os.listdir(workdir)
                        if os.path.isfile(layout.eval_path(os.path.join(workdir, name))))
  found += [("held-out loss", path) for path in stage_losses]
  checkpoint_dirs = sorted(layout.checkpoint_dir(os.path.join(workdir, name))
                           for name in os.listdir(workdir)
                           if os.path.isdir(layout.checkpoint_dir(os.path.join(workdir, name))))
  if os.path.isdir(layout.checkpoint_dir(workdir)):
    checkpoint_dirs.insert(0, layout.checkpoint_dir(workdir))
  found += [("checkpoints", d) for d in checkpoint_dirs]
  return found


def without_flags(argv: list[str], names: tuple[str, ...]) -> list[str]:
  """argv without the flags `names`, given as `--name=value` or as `--name value`."""
  kept, skip = [], False
  for arg in argv:
    if skip:
      skip = False
    elif arg in names:
      skip = True
    elif not arg.startswith(tuple(f"{name}=" for name in names)):
      kept.append(arg)
  return kept


def summary(workdir: str, mode: str, argv: list[str], seconds: float, stage: int = 0) -> str:
  """The closing summary: where the outputs are, the timing table, the next commands. After
  one stage of a cascade (`stage` k > 0), the next commands train the others, then sample
  all of them: sampling and evaluating need every stage."""
  command = without_flags(argv[1:], ("--mode",) + (("--config.stage",) if stage else ()))
  base = "python main.py " + " ".join(shlex.quote(a) for a in command)
  lines = ["", f"Done: {mode} in {duration(seconds)}. Outputs in {workdir}:"]
  lines += [f"  {what:<16}{path}" for what, path in outputs_of(workdir)]
  lines.append(f"  {'logs':<16}tensorboard --logdir {shlex.quote(workdir)}")
  timing = layout.timing_paths(workdir)[1]
  if os.path.exists(timing):
    with open(timing) as f:
      lines += ["", f.read().rstrip()]
  if stage:
    lines += ["", f"Next (stage {stage} is trained; sampling needs every stage):",
              f"  another stage   {base} --config.stage=K",
              f"  then sample     {base} --mode=sample"]
    return "\n".join(lines)
  lines += ["", "Next:",
            f"  sample again    {base} --mode=sample",
            f"  evaluate        {base} --mode=eval",
            f"  web app         python -m hdd.app --workdir={shlex.quote(workdir)}"]
  return "\n".join(lines)


def fail(message: str, exit_code: int = 2, label: str = "error") -> None:
  """Prints `label: line` per line and exits at once: saves were already waited for, and
  library threads stuck on a failed write (orbax) must not keep the process alive."""
  print("\n".join(f"{label}: {line}" for line in str(message).splitlines()), file=sys.stderr,
        flush=True)
  os._exit(exit_code)


def flag_error(error: Exception) -> str:
  """One line for what parsing main.py's flags raised: an unknown or bad flag, a config
  file that fails to load, a config field that does not exist or a value of the wrong type."""
  from absl import flags
  if isinstance(error, flags.Error):  # Unknown flags, bad values, missing flags, a raising config.
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (f"{lines[0].split(': Error')[0]}: {lines[-1]}" if "Traceback" in str(error) else
            " ".join(lines))
  if isinstance(error, OSError):
    return f"cannot load --config: {str(error).splitlines()[-1].strip()}"
  if isinstance(error, (AttributeError, KeyError)):  # ml_collections: a field the config lacks.
    return (f"unknown config field {str(error).strip(chr(34) + chr(39))!r}; the fields are "
            "listed in configs/default.py")
  return f"bad config override: {' '.join(str(error).split())}"  # TypeError, ValueError.
