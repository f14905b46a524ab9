"""Data parallelism with `jax.jit` over a 1-D device mesh: the state is replicated, the
batch is split along its batch axis. The same code runs on 1 CPU, 8 GPUs, a TPU slice, or
several processes (hosts) joined by `initialize_processes`."""
from __future__ import annotations

import os
from typing import Optional, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def initialize_processes(coordinator_address: str = "", num_processes: int = 0,
                         process_id: int = -1) -> None:
  """Joins a multi-process run before JAX computes anything: with the given coordinator
  (host:port of process 0), process count and this process's id, or, where these are
  unset, with what JAX reads from the environment (JAX_COORDINATOR_ADDRESS,
  JAX_NUM_PROCESSES, JAX_PROCESS_ID; SLURM, Open MPI, Cloud TPU pods and Kubernetes are
  detected). A single process (nothing given or found) does nothing. Processes on CPUs
  exchange gradients over Gloo."""
  coordinator_address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS", "")
  num_processes = num_processes or int(os.environ.get("JAX_NUM_PROCESSES", "0"))
  if process_id < 0 and "JAX_PROCESS_ID" in os.environ:
    process_id = int(os.environ["JAX_PROCESS_ID"])
  if not coordinator_address and num_processes <= 1:
    return
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address or None, num_processes or None,
                             None if process_id < 0 else process_id)


def is_main_process() -> bool:
  """Process 0 of a multi-process run (the only one of a single-process run): the one that
  writes files other than checkpoints and talks to the user."""
  return jax.process_index() == 0


def from_main_process(value: float) -> float:
  """Process 0's value of a host-side number on every process (a collective when there are
  several): for decisions every process must take alike, such as the end of a time budget."""
  if jax.process_count() == 1:
    return value
  from jax.experimental import multihost_utils
  return float(multihost_utils.broadcast_one_to_all(np.float32(value)))


def to_host(x) -> np.ndarray:
  """A global array as numpy on every process: its local value, or the pieces of all
  processes gathered (a batch split over several processes)."""
  if getattr(x, "is_fully_addressable", True):
    return np.asarray(jax.device_get(x))
  from jax.experimental import multihost_utils
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


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
