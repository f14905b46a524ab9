"""Weights & Biases beside CLU's writers (hdd.tracking), in offline mode: a tiny run's
losses and learning rates reach the W&B run on disk, equal to what CLU wrote to
TensorBoard; the default is off."""
import glob
import json
import os

import numpy as np

from helpers import run_main

BLOCK = 32768   # the run file's records: LevelDB's log format after a 7-byte ':W&B' header


def wandb_records(path: str):
  """The protobuf records of an offline run's .wandb file."""
  from wandb.proto import wandb_internal_pb2
  data = open(path, "rb").read()
  assert data[:4] == b":W&B"
  position, pieces = 7, b""
  while position + 7 <= len(data):
    if BLOCK - position % BLOCK < 7:   # A block's tail too short for a header is padding.
      position += BLOCK - position % BLOCK
      continue
    length, kind = int.from_bytes(data[position + 4:position + 6], "little"), data[position + 6]
    pieces += data[position + 7:position + 7 + length]
    position += 7 + length
    if kind in (1, 4):   # FULL or LAST: a whole record.
      record = wandb_internal_pb2.Record()
      record.ParseFromString(pieces)
      yield record
      pieces = b""


def logged_scalars(path: str) -> dict:
  """{step: {name: value}} of the history records."""
  history = {}
  for record in wandb_records(path):
    if record.WhichOneof("record_type") == "history":
      items = {item.key or "/".join(item.nested_key): json.loads(item.value_json)
               for item in record.history.item}
      history.setdefault(items.get("_step", record.history.step.num), {}).update(items)
  return history


def tensorboard_scalars(workdir: str) -> dict:
  import tensorflow as tf
  scalars = {}
  for path in glob.glob(os.path.join(workdir, "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        array = tf.make_ndarray(value.tensor)
        if array.ndim == 0 and array.dtype.kind == "f":
          scalars.setdefault(event.step, {})[value.tag] = float(array)
  return scalars


def test_a_run_logs_to_wandb_offline(stripes_npz, tmp_path, monkeypatch):
  monkeypatch.setenv("WANDB_MODE", "offline")
  monkeypatch.setenv("WANDB_SILENT", "true")
  workdir = str(tmp_path / "run")
  result = run_main(f"--config.data.path={stripes_npz}", f"--workdir={workdir}",
                    "--config.train.num_steps=4", "--config.sample.num_samples=0",
                    "--config.train.wandb_project=hdd-tests")
  assert result.returncode == 0, result.stderr[-3000:]
  [path] = glob.glob(os.path.join(workdir, "wandb", "offline-run-*", "run-*.wandb"))
  logged, written = logged_scalars(path), tensorboard_scalars(workdir)
  for step in (2, 4):   # train.log_every = 2
    for name in ("train_loss", "train_learning_rate", "train_grad_norm"):
      np.testing.assert_allclose(logged[step][name], written[step][name], rtol=1e-6)
  configs = [r for r in wandb_records(path) if r.WhichOneof("record_type") == "config"]
  keys = {item.key or "/".join(item.nested_key) for r in configs for item in r.config.update}
  assert {"train.batch_size", "diffusion.num_steps"} <= keys


def test_tracking_is_off_by_default(stripes_npz, tmp_path):
  from helpers import tiny_config
  from hdd import tracking
  assert tracking.writers(tiny_config(stripes_npz), str(tmp_path), "run") == []
  assert not os.path.exists(tmp_path / "wandb")
