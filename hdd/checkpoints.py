"""Checkpoints under WORKDIR/checkpoints/ with orbax: periodic, keep-last-N, atomic.

A checkpoint becomes visible only once orbax has finalised it (its temporary folder is
renamed to the step number), so a run killed mid-save leaves the earlier checkpoints intact.
Listing a directory reads no step's metadata: each step is judged on its own when it is
restored, newest first. A damaged step (no folder, metadata that is missing, not JSON,
refused by orbax or with impossible training seconds, undecodable arrays) is moved aside
to <step>.damaged-<time> by training and passed over by sampling, evaluation and the app;
a checkpoint of another model configuration is refused naming the arrays that differ.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import time
from typing import Any, Optional

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from common.errors import CheckpointError
from hdd import layout
from hdd.build import create_model
from hdd.train_step import create_train_state

STEP_METADATA = "_CHECKPOINT_METADATA"   # orbax's per-step metadata file


def create_manager(directory: str, keep: int = 3) -> ocp.CheckpointManager:
  """orbax's manager that saves into `directory` (training, which holds the workdir's
  lock): its listing reads no step's metadata, and the temporary folders of saves that a
  killed run left behind are already removed when it returns."""
  directory = os.path.abspath(directory)
  _remove_unfinished_saves(directory)
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                         lightweight_initialize=True)
  return ocp.CheckpointManager(directory, options=options,
                               item_handlers=ocp.StandardCheckpointHandler())


def _remove_unfinished_saves(directory: str) -> None:
  """Deletes the temporary folders of saves that never finished (on the primary host).

  Done here, before anything else reads the workdir, rather than by orbax's
  `cleanup_tmp_directories`, which lists and deletes on a background thread that runs on
  into training and races whatever else touches the file system then."""
  if jax.process_index() == 0:
    for unfinished in ocp.utils.tmp_checkpoints(directory):
      shutil.rmtree(unfinished.get())


def _reader(directory: str) -> ocp.CheckpointManager:
  """A manager that only reads `directory`: it creates, deletes and cleans up nothing."""
  options = ocp.CheckpointManagerOptions(create=False, lightweight_initialize=True)
  return ocp.CheckpointManager(os.path.abspath(directory), options=options,
                               item_handlers=ocp.StandardCheckpointHandler())


def step_names(directory: str) -> list[int]:
  """The steps in `directory`, newest first: every entry named by a number, whatever it
  holds (a file of that name too, which a save must not silently replace)."""
  try:
    names = os.listdir(directory)
  except FileNotFoundError:
    return []
  return sorted((int(name) for name in names if name.isdigit()), reverse=True)


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
_TENSORSTORE_STATUS = re.compile(r"\s*[A-Z][A-Z_]+: ")


def damage_of(error: BaseException) -> Optional[str]:
  """Why a failed restore proves the checkpoint damaged (unparsable metadata, undecodable
  or missing arrays), or None when it may be transient (an OS error such as EMFILE or
  EACCES, or anything not recognised): such a checkpoint must not be moved aside."""
  if isinstance(error, _Damaged):
    return str(error)
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


def _step_metadata(directory: str, step: int) -> dict:
  """The step's own metadata file, parsed and checked here before orbax reads it, or
  _Damaged saying what is wrong with it (so orbax never logs or raises over it)."""
  path = os.path.join(directory, str(step))
  if not os.path.isdir(path):
    raise _Damaged("not a checkpoint folder")
  try:
    with open(os.path.join(path, STEP_METADATA), encoding="utf-8") as f:
      metadata = json.loads(f.read())
  except FileNotFoundError:
    raise _Damaged(f"no {STEP_METADATA}") from None
  except ValueError as e:   # Not JSON (or not UTF-8): truncated or garbled.
    raise _Damaged(f"{STEP_METADATA} is not valid JSON ({e})") from None
  if not (isinstance(metadata, dict) and isinstance(metadata.get("custom_metadata") or {}, dict)):
    raise _Damaged(f"{STEP_METADATA} is not the JSON object orbax writes")
  seconds = (metadata.get("custom_metadata") or {}).get("train_seconds")
  if seconds is not None and not (type(seconds) in (int, float) and math.isfinite(seconds)
                                  and seconds >= 0):
    raise _Damaged(f"its training seconds {seconds!r} are not a finite number >= 0")
  return metadata


def _item_metadata(manager: ocp.CheckpointManager, step: int):
  """orbax's reading of the step's metadata (the arrays' shapes): a refusal of metadata
  that is valid JSON (an unknown key, a field of the wrong type) is damage."""
  try:
    metadata = manager.item_metadata(step)
  except (ValueError, TypeError, KeyError, AttributeError) as e:
    if _TENSORSTORE_STATUS.match(str(e)):
      raise   # TensorStore's own status: damage_of tells damage from a transient failure.
    raise _Damaged(f"metadata orbax refuses: {type(e).__name__}: "
                   f"{' '.join(str(e).split())[:200]}") from None
  if metadata is None or getattr(metadata, "tree", None) is None:
    raise _Damaged("no metadata of its arrays")
  return metadata


class BudgetMismatch(CheckpointError):
  """A checkpoint written with (or without) a time budget restored into a state without
  (or with) one: their optimizer states differ. `budgeted` says how it was written."""

  def __init__(self, message: str, budgeted: bool):
    super().__init__(message)
    self.budgeted = budgeted


def _check_compatible(manager: ocp.CheckpointManager, step: int, target) -> None:
  """Raises CheckpointError naming the arrays whose shapes differ from `target`, or
  _Damaged when orbax refuses the checkpoint's metadata."""
  stored = _shapes(_item_metadata(manager, step).tree)
  expected = _shapes(target)
  if _budgeted(stored) != _budgeted(expected):
    written = "with" if _budgeted(stored) else "without"
    raise BudgetMismatch(f"checkpoint {step} in {manager.directory} was written by a run "
                         f"{written} a time budget, whose optimizer state differs; resume it "
                         f"{written} one (train.time_budget_minutes, or a cascade's "
                         "time_budget_minutes) or use another --workdir", _budgeted(stored))
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


def _quarantine(directory: str, step: int) -> str:
  """Moves a damaged step aside (kept for inspection, out of the way of new saves); in a
  multi-process run process 0 moves it and the others pass it over."""
  from common import parallel
  source = os.path.join(directory, str(step))
  target = f"{source}.damaged-{int(time.time())}"
  if parallel.is_main_process():
    os.replace(source, target)
  return target


def restore_latest(directory: str, target, read_only: bool = False
                   ) -> tuple[Optional[int], Any]:
  """Restores the newest step of `directory` that reads back, into the structure of
  `target`; (None, target) when there is none.

  Each step is judged on its own, newest first. A step proven damaged (`damage_of`) is
  reported and the one before it tried: training (which holds the workdir) moves it aside
  to <step>.damaged-<time>; read-only uses (sampling, evaluation, the app) leave it in
  place, and pass over a step that a running training removed while they read it. Any
  other failure to read (too many open files, no permission) is an error that changes
  nothing, and so is a checkpoint of another model configuration.
  """
  if not os.path.isdir(directory):
    return None, target
  abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, target)
  manager = _reader(directory)
  tried, damaged = [], []
  try:
    while (step := next((s for s in step_names(directory) if s not in tried), None)) is not None:
      tried.append(step)
      try:
        _step_metadata(directory, step)
        _check_compatible(manager, step, target)
        return step, manager.restore(step, args=ocp.args.StandardRestore(abstract))
      except CheckpointError:
        raise
      except Exception as e:  # noqa: BLE001 (sorted by damage_of)
        if read_only and not os.path.lexists(os.path.join(directory, str(step))):
          logging.info("Checkpoint %d in %s was removed while being read (a run is training "
                       "there); trying the next one.", step, directory)
          continue
        damage = damage_of(e)
        if damage is None:
          summary = " ".join(str(e).split())[:200]
          raise CheckpointError(f"cannot read checkpoint {step} in {directory} "
                                f"({type(e).__name__}: {summary}); nothing was changed. Fix "
                                "the cause and re-run; if the checkpoint is damaged, move it "
                                "out of the directory") from None
        damaged.append(step)
        if read_only:
          logging.error("Checkpoint %d in %s is damaged (%s); using an older one.", step,
                        directory, damage)
          continue
        moved = _quarantine(directory, step)
        logging.error("Checkpoint %d in %s cannot be restored (%s); moved it to %s and trying "
                      "an older one.", step, directory, damage, moved)
  finally:
    manager.close()
  if damaged:
    advice = ("re-train with --mode=train, which moves damaged steps aside" if read_only else
              "they were moved aside as <step>.damaged-<time>: re-run to train from the start")
    raise CheckpointError(f"no checkpoint in {directory} could be restored (tried steps "
                          f"{damaged}, all damaged); {advice}")
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
  path = layout.config_path(workdir)
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
    kept = layout.config_before_path(workdir, step)
    os.replace(path, kept)
    logging.warning("Resuming under a changed config (%s); the old one is in %s.",
                    "; ".join(changes), kept)


def save(manager: ocp.CheckpointManager, step: int, state, train_seconds: float) -> None:
  """Saves `state` at `step` with the run's training seconds up to it in the checkpoint's
  metadata (finalised with the arrays), which a resumed budget continues from."""
  manager.save(step, args=ocp.args.StandardSave(state), force=True,
               custom_metadata={"train_seconds": float(train_seconds)})


def trained_seconds(directory: str, step: Optional[int]) -> Optional[float]:
  """The training seconds recorded with the checkpoint at `step` of `directory`; None
  without a step or for a checkpoint written before they were recorded."""
  if step is None:
    return None
  seconds = (_step_metadata(directory, step).get("custom_metadata") or {}).get("train_seconds")
  return None if seconds is None else float(seconds)


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


def restore_params(config: ml_collections.ConfigDict, workdir: str, ema: bool = True):
  """The (EMA) parameters of the latest checkpoint in workdir, for sampling and evaluation,
  whether or not a time budget trained them (the optimizer state is read as written)."""
  directory = layout.checkpoint_dir(workdir)
  try:
    step, state = restore_latest(directory, create_train_state(config, create_model(config)),
                                 read_only=True)
  except BudgetMismatch as mismatch:
    config = config.copy_and_resolve_references()
    config.train.time_budget_minutes = 1.0 if mismatch.budgeted else 0.0
    step, state = restore_latest(directory, create_train_state(config, create_model(config)),
                                 read_only=True)
  if step is None:
    raise CheckpointError(f"no checkpoint in {directory}; train first with "
                          f"--mode=train --workdir={workdir}")
  logging.info("Restored the %s parameters of step %d from %s.", "EMA" if ema else "raw", step,
               directory)
  return state.ema_params if ema else state.params
