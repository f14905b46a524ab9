"""The data-parallel mesh (common.parallel): a 1-D mesh over the devices, replicated and
batch-split shardings, and shard_batch placing a numpy batch (or pytree) unchanged.
Several devices are covered by test_multi_device.py."""
import jax
import numpy as np
from jax.sharding import PartitionSpec

from common import parallel


def test_mesh_over_all_devices():
  mesh = parallel.create_mesh()
  assert mesh.axis_names == (parallel.DATA_AXIS,) == ("data",)
  assert mesh.size == jax.device_count() and list(mesh.devices) == jax.devices()
  one = parallel.create_mesh(jax.devices()[:1])
  assert one.size == 1


def test_shardings():
  mesh = parallel.create_mesh()
  assert parallel.replicated(mesh).spec == PartitionSpec()
  assert parallel.batch_sharded(mesh).spec == PartitionSpec("data")
  assert parallel.batch_sharded(mesh, 1).spec == PartitionSpec(None, "data")


def test_shard_batch_places_a_pytree_unchanged():
  mesh = parallel.create_mesh()
  n = 4 * mesh.size
  batch = {"image": np.arange(n * 6, dtype=np.float32).reshape(n, 2, 3),
           "label": np.arange(n, dtype=np.int32)}
  placed = parallel.shard_batch(batch, mesh)
  assert set(placed) == {"image", "label"}
  for key, value in batch.items():
    assert isinstance(placed[key], jax.Array)
    assert placed[key].shape == value.shape and placed[key].dtype == value.dtype
    assert placed[key].sharding.spec == PartitionSpec("data")
    np.testing.assert_array_equal(np.asarray(placed[key]), value)
  micro = np.arange(2 * n, dtype=np.float32).reshape(2, n)   # [A, B/A]: split on axis 1.
  placed = parallel.shard_batch(micro, mesh, batch_axis=1)
  assert placed.sharding.spec == PartitionSpec(None, "data")
  np.testing.assert_array_equal(np.asarray(placed), micro)
