"""Checkpoints under WORKDIR/checkpoints/ with orbax: periodic, keep-last-N, atomic.

A checkpoint directory becomes visible only once orbax has finalised it, so a run killed
mid-write leaves the previous checkpoints intact. Restoring checks every array's shape
against the model built from the current config first and names the ones that differ.
`restore_params` gives sampling and evaluation the (EMA) parameters of the latest one.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any, Optional

import jax
import ml_collections
import orbax.checkpoint as ocp

from common.errors import CheckpointError
from hdd.build import create_model
from hdd.train_step import create_train_state


def create_manager(directory: str, keep: int = 3) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
  return ocp.CheckpointManager(os.path.abspath(directory), options=options,
                               item_handlers=ocp.StandardCheckpointHandler())


def _key_name(key) -> str:
  for attribute in ("key", "name", "idx"):
    if hasattr(key, attribute):
      return str(getattr(key, attribute))
  return str(key)


def _shapes(tree) -> dict:
  """{'params/Conv_0/kernel': (3, 3, 1, 16), ...} for a pytree or orbax's metadata tree."""
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {"/".join(_key_name(k) for k in path): tuple(getattr(leaf, "shape", ()))
          for path, leaf in flat}


class _Damaged(Exception):
  pass


def _check_compatible(manager: ocp.CheckpointManager, step: int, target) -> None:
  """Raises CheckpointError naming the arrays whose shapes differ from `target`, or
  _Damaged when the checkpoint's metadata cannot be read."""
  try:
    metadata = manager.item_metadata(step)
  except Exception as e:  # orbax raises various errors for unreadable metadata.
    raise _Damaged(f"unreadable metadata: {e}") from None
  if metadata is None:
    raise _Damaged("no metadata")
  stored = _shapes(metadata.tree)
  expected = _shapes(target)
  problems = [f"{k}: checkpoint {stored.get(k)} vs config {v}" for k, v in expected.items()
              if stored.get(k) != v]
  problems += [f"{k}: only in checkpoint" for k in stored if k not in expected]
  if problems:
    more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
    shown = "; ".join(problems[:5]) + more
    raise CheckpointError(f"checkpoint {step} in {manager.directory} was written by a different "
                          f"model configuration ({shown}); use another --workdir or the "
                          "config that wrote it")


def _quarantine(manager: ocp.CheckpointManager, step: int) -> str:
  """Moves a damaged checkpoint aside (kept for inspection, out of the way of new saves)."""
  source = os.path.join(manager.directory, str(step))
  target = f"{source}.damaged-{int(time.time())}"
  os.replace(source, target)
  manager.reload()
  return target


def restore_latest(manager: ocp.CheckpointManager, target) -> tuple[Optional[int], Any]:
  """Restores the newest checkpoint that reads back, into the structure of `target`.

  A checkpoint that fails to restore (truncated or corrupted files) is reported, moved
  aside to <step>.damaged-<time>, and the one before it is tried. A checkpoint of another
  model configuration is an error. Returns (step, state), or (None, target) if none.
  """
  steps = sorted(manager.all_steps(), reverse=True)
  abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, target)
  for step in steps:
    try:
      _check_compatible(manager, step, target)
      state = manager.restore(step, args=ocp.args.StandardRestore(abstract))
      return step, state
    except CheckpointError:
      raise
    except Exception as e:  # A damaged checkpoint: fall back to the previous one.
      moved = _quarantine(manager, step)
      logging.error("Checkpoint %d in %s cannot be restored (%s: %s); moved it to %s and "
                    "trying an older one.", step, manager.directory, type(e).__name__,
                    str(e).splitlines()[0][:200] if str(e) else "", moved)
  if steps:
    raise CheckpointError(f"no checkpoint in {manager.directory} could be restored "
                          f"(tried steps {steps}, moved aside as *.damaged-*); move the "
                          "directory away to start over")
  return None, target


def save(manager: ocp.CheckpointManager, step: int, state) -> None:
  manager.save(step, args=ocp.args.StandardSave(state), force=True)


def restore_params(config: ml_collections.ConfigDict, workdir: str, ema: bool = True):
  """The (EMA) parameters of the latest checkpoint in workdir, for sampling and evaluation."""
  state = create_train_state(config, create_model(config))
  manager = create_manager(os.path.join(workdir, "checkpoints"))
  step, state = restore_latest(manager, state)
  if step is None:
    raise CheckpointError(f"no checkpoint in {manager.directory}; train first with "
                          f"--mode=train --workdir={workdir}")
  logging.info("Restored the %s parameters of step %d from %s.", "EMA" if ema else "raw", step,
               manager.directory)
  return state.ema_params if ema else state.params
