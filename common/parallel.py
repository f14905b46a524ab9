"""Data parallelism with `jax.jit` over a 1-D device mesh: the state is replicated, the
batch is split along its batch axis. The same code runs on 1 CPU, 8 GPUs or a TPU slice."""
from __future__ import annotations

from typing import Optional, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def create_mesh(devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  return Mesh(np.asarray(devices if devices is not None else jax.devices()), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh, batch_axis: int = 0) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec(*([None] * batch_axis), DATA_AXIS))


def shard_batch(batch, mesh: Mesh, batch_axis: int = 0):
  """Places this process's part of a global batch (numpy) on the mesh, split on batch_axis."""
  sharding = batch_sharded(mesh, batch_axis)

  def place(x):
    global_shape = list(x.shape)
    global_shape[batch_axis] *= jax.process_count()
    return jax.make_array_from_process_local_data(sharding, x, tuple(global_shape))

  return jax.tree_util.tree_map(place, batch)
