"""Checkpoints under WORKDIR/checkpoints/ with orbax: periodic, keep-last-N, atomic.

A checkpoint directory becomes visible only once orbax has finalised it, so a run killed
mid-write leaves the previous checkpoints intact. Restoring checks every array's shape
against the model built from the current config first and names the ones that differ.
`restore_params` gives sampling and evaluation the (EMA) parameters of the latest one.
"""
from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Optional

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from common.errors import CheckpointError
from hdd.build import create_model
from hdd.train_step import create_train_state


def create_manager(directory: str, keep: int = 3) -> ocp.CheckpointManager:
  """orbax's manager of `directory`; a step whose metadata orbax cannot parse (orbax reads
  every step's metadata here) is refused with one line, and nothing is changed on disk."""
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
  try:
    return ocp.CheckpointManager(os.path.abspath(directory), options=options,
                                 item_handlers=ocp.StandardCheckpointHandler())
  except ValueError as error:
    raise CheckpointError(f"{directory}: a checkpoint's metadata is damaged "
                          f"({' '.join(str(error).split())}); move the damaged step folder "
                          f"out of {directory} or use another --workdir") from error


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


# TensorStore status codes that mean the bytes on disk are wrong, not that reading them
# failed for now (RESOURCE_EXHAUSTED, UNAVAILABLE, PERMISSION_DENIED, ... are transient).
_DAMAGE_STATUSES = ("OUT_OF_RANGE", "DATA_LOSS", "INVALID_ARGUMENT", "NOT_FOUND")


def damage_of(error: BaseException) -> Optional[str]:
  """Why a failed restore proves the checkpoint damaged (unparsable metadata, undecodable
  or missing arrays), or None when it may be transient (an OS error such as EMFILE or
  EACCES, or anything not recognised): such a checkpoint must not be moved aside."""
  chain = []
  while error is not None and len(chain) < 20:
    chain.append(error)
    error = error.__cause__ or error.__context__
  if any(isinstance(e, OSError) for e in chain):
    return None
  for e in chain:
    if isinstance(e, _Damaged):
      return str(e)
    if isinstance(e, json.JSONDecodeError):
      return f"unparsable metadata: {e}"
    message = " ".join(str(e).split())
    if isinstance(e, ValueError) and message.startswith(_DAMAGE_STATUSES):
      return f"undecodable arrays: {message[:200]}"
  return None


def _check_compatible(manager: ocp.CheckpointManager, step: int, target) -> None:
  """Raises CheckpointError naming the arrays whose shapes differ from `target`, or
  _Damaged when the checkpoint's metadata cannot be parsed."""
  try:
    metadata = manager.item_metadata(step)
  except (OSError, ValueError):
    raise  # damage_of tells a transient error from unparsable (JSON) metadata.
  except Exception as e:  # noqa: BLE001 (orbax raises various errors for bad metadata)
    raise _Damaged(f"unreadable metadata: {type(e).__name__}: {e}") from None
  if metadata is None:
    raise _Damaged("no metadata")
  stored = _shapes(metadata.tree)
  expected = _shapes(target)
  if _budgeted(stored) != _budgeted(expected):
    raise CheckpointError(f"checkpoint {step} in {manager.directory} was written by a run "
                          f"{'with' if _budgeted(stored) else 'without'} a time budget, whose "
                          "optimizer state differs; resume it "
                          f"{'with' if _budgeted(stored) else 'without'} one "
                          "(train.time_budget_minutes, or a cascade's time_budget_minutes) or "
                          "use another --workdir")
  problems = [f"{k}: checkpoint {stored.get(k)} vs config {v}" for k, v in expected.items()
              if stored.get(k) != v]
  problems += [f"{k}: only in checkpoint" for k in stored if k not in expected]
  if problems:
    more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
    shown = "; ".join(problems[:5]) + more
    raise CheckpointError(f"checkpoint {step} in {manager.directory} was written by a different "
                          f"model configuration ({shown}); use another --workdir or the "
                          "config that wrote it")


def _budgeted(shapes: dict) -> bool:
  """Whether a state's arrays are those of a budgeted run (its learning rate is stored in
  the optimizer state: `optimizer.create_optimizer`)."""
  return any("/hyperparams/" in f"/{key}/" for key in shapes)


def _quarantine(manager: ocp.CheckpointManager, step: int) -> str:
  """Moves a damaged checkpoint aside (kept for inspection, out of the way of new saves)."""
  source = os.path.join(manager.directory, str(step))
  target = f"{source}.damaged-{int(time.time())}"
  os.replace(source, target)
  manager.reload()
  return target


def restore_latest(manager: ocp.CheckpointManager, target,
                   read_only: bool = False) -> tuple[Optional[int], Any]:
  """Restores the newest checkpoint that reads back, into the structure of `target`.

  A checkpoint proven damaged (`damage_of`) is reported and the one before it tried;
  training moves it aside to <step>.damaged-<time>, read-only uses (sampling,
  evaluation) leave it in place. Any other failure to read (too many open files, no
  permission) is an error that changes nothing, and so is a checkpoint of another
  model configuration. Returns (step, state), or (None, target) if there is none.
  """
  steps = sorted(manager.all_steps(), reverse=True)
  abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, target)
  for step in steps:
    try:
      _check_compatible(manager, step, target)
      return step, manager.restore(step, args=ocp.args.StandardRestore(abstract))
    except CheckpointError:
      raise
    except Exception as e:  # noqa: BLE001 (sorted by damage_of)
      damage = damage_of(e)
      summary = " ".join(str(e).split())[:200]
      if damage is None:
        raise CheckpointError(f"cannot read checkpoint {step} in {manager.directory} "
                              f"({type(e).__name__}: {summary}); nothing was changed. Fix the "
                              "cause and re-run; if the checkpoint is damaged, move it out of "
                              "the directory") from None
      if read_only:
        logging.error("Checkpoint %d in %s is damaged (%s); using an older one.", step,
                      manager.directory, damage)
        continue
      moved = _quarantine(manager, step)
      logging.error("Checkpoint %d in %s cannot be restored (%s); moved it to %s and trying an "
                    "older one.", step, manager.directory, damage, moved)
  if steps:
    raise CheckpointError(f"no checkpoint in {manager.directory} could be restored (tried "
                          f"steps {steps}, all damaged); move the directory away to start over")
  return None, target


# What a checkpoint's numbers mean: the same arrays under another schedule, prediction
# target, resolution or network wiring are another model. (Dropout only affects training.)
MEANING_FIELDS = ("diffusion", "model", "data.image_size", "data.channels")
# Meaning-defining fields added after config.json was first written, with the value that
# means what their absence meant: an older run's config reads as if it had them.
ADDED_FIELDS = {"model.low_res_size": 0}


def meaning_changes(previous: dict, config: ml_collections.ConfigDict) -> list[str]:
  """'field: before -> now' for every meaning-defining field that differs between the
  config a run was started with (its config.json) and `config`."""
  now = json.loads(config.to_json_best_effort())

  def leaves(tree, prefix=""):
    if isinstance(tree, dict):
      for key, value in tree.items():
        yield from leaves(value, f"{prefix}{key}.")
    else:
      yield prefix[:-1], tree

  before, after = {**ADDED_FIELDS, **dict(leaves(previous))}, dict(leaves(now))
  changes = []
  for field in sorted(set(before) | set(after)):
    if field.startswith(MEANING_FIELDS) and field != "model.dropout":
      if before.get(field) != after.get(field):
        changes.append(f"{field}: {before.get(field)!r} -> {after.get(field)!r}")
  return changes


def check_resume_config(config: ml_collections.ConfigDict, workdir: str, step: int) -> None:
  """Refuses to resume the run in `workdir` at `step` under a config whose meaning-defining
  fields differ from its config.json, unless train.allow_config_change is set; then the
  old config.json is kept as config.before-step-<step>.json."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return
  try:
    with open(path) as f:
      previous = json.load(f)
  except (OSError, ValueError) as e:
    raise CheckpointError(f"cannot read {path} ({e}); it records the config the checkpoints "
                          "were trained with: restore it, or remove it to resume regardless"
                          ) from None
  changes = meaning_changes(previous, config)
  if changes and not config.train.allow_config_change:
    raise CheckpointError(f"the checkpoints in {workdir} were trained with another config: "
                          f"{'; '.join(changes)}; use the same config, another --workdir, or "
                          "--config.train.allow_config_change=True to continue regardless")
  if changes:
    kept = os.path.join(workdir, f"config.before-step-{step}.json")
    os.replace(path, kept)
    logging.warning("Resuming under a changed config (%s); the old one is in %s.",
                    "; ".join(changes), kept)


def save(manager: ocp.CheckpointManager, step: int, state, train_seconds: float) -> None:
  """Saves `state` at `step` with the run's training seconds up to it in the checkpoint's
  metadata (finalised with the arrays), which a resumed budget continues from."""
  manager.save(step, args=ocp.args.StandardSave(state), force=True,
               custom_metadata={"train_seconds": float(train_seconds)})


def trained_seconds(manager: ocp.CheckpointManager, step: Optional[int]) -> Optional[float]:
  """The training seconds recorded with the checkpoint at `step`; None without a step or for
  a checkpoint written before they were recorded."""
  if step is None:
    return None
  metadata = manager.metadata(step)
  value = (getattr(metadata, "custom_metadata", None) or {}).get("train_seconds")
  return None if value is None else float(value)


def finish(manager: ocp.CheckpointManager, raise_errors: bool = True) -> None:
  """Waits for a save in flight to be finalised, then releases the manager's threads.
  On a failure path (raise_errors=False) an error here is logged, not raised, so the
  original error is the one reported."""
  try:
    manager.wait_until_finished()
  except Exception as e:  # noqa: BLE001 (orbax and tensorstore raise many types)
    if raise_errors:
      raise
    logging.error("The checkpoint being written could not be completed: %s", e)
  finally:
    manager.close()


def latest_arrays(directory: str) -> tuple[int, dict]:
  """(step, {'.params[...]': numpy array}) of the newest checkpoint in `directory`, read
  without a model: for comparing runs array by array."""
  step = max(int(name) for name in os.listdir(directory) if name.isdigit())
  restored = ocp.StandardCheckpointer().restore(os.path.join(directory, str(step), "default"))
  flat, _ = jax.tree_util.tree_flatten_with_path(restored)
  return step, {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in flat}


def _with_optimizer_of(config: ml_collections.ConfigDict,
                      manager: ocp.CheckpointManager) -> ml_collections.ConfigDict:
  """`config`, budgeted or not as the run that wrote the newest checkpoint was."""
  step = manager.latest_step()
  try:
    stored = _shapes(manager.item_metadata(step).tree) if step is not None else {}
  except Exception:  # noqa: BLE001 (a damaged checkpoint: restore_latest reports it)
    return config
  if not stored or _budgeted(stored) == (config.train.time_budget_minutes > 0):
    return config
  config = config.copy_and_resolve_references()
  config.train.time_budget_minutes = 1.0 if _budgeted(stored) else 0.0
  return config


def restore_params(config: ml_collections.ConfigDict, workdir: str, ema: bool = True):
  """The (EMA) parameters of the latest checkpoint in workdir, for sampling and evaluation,
  whether or not a time budget trained them (the optimizer state is read as written)."""
  manager = create_manager(os.path.join(workdir, "checkpoints"))
  try:
    config = _with_optimizer_of(config, manager)
    state = create_train_state(config, create_model(config))
    step, state = restore_latest(manager, state, read_only=True)
  finally:
    manager.close()
  if step is None:
    raise CheckpointError(f"no checkpoint in {manager.directory}; train first with "
                          f"--mode=train --workdir={workdir}")
  logging.info("Restored the %s parameters of step %d from %s.", "EMA" if ema else "raw", step,
               manager.directory)
  return state.ema_params if ema else state.params
