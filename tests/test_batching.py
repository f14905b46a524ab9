"""Fixed-size batches over any number of rows (common.batching): padding, slicing, and
map_in_batches against the function applied row by row in float64 numpy."""
import numpy as np
import pytest

from common import batching


@pytest.mark.parametrize("count,batch_size,expected", [
    (1, 4, 1), (4, 4, 1), (5, 4, 2), (8, 4, 2), (9, 4, 3), (7, 1, 7), (3, 10, 1)])
def test_num_batches_is_the_ceiling(count, batch_size, expected):
  assert batching.num_batches(count, batch_size) == expected


def test_pad_rows_appends_zero_rows():
  array = np.arange(1, 7, dtype=np.float32).reshape(3, 2)
  padded = batching.pad_rows(array, 5)
  assert padded.shape == (5, 2) and padded.dtype == np.float32
  np.testing.assert_array_equal(padded[:3], array)
  np.testing.assert_array_equal(padded[3:], np.zeros((2, 2)))
  np.testing.assert_array_equal(batching.pad_rows(array, 3), array)
  labels = batching.pad_rows(np.array([7, 8], np.int32), 4)
  np.testing.assert_array_equal(labels, [7, 8, 0, 0])
  assert labels.dtype == np.int32


def test_batch_of_slices_and_pads():
  array = np.arange(10)[:, None] * np.ones((1, 3))
  np.testing.assert_array_equal(batching.batch_of(array, 0, 4), array[:4])
  np.testing.assert_array_equal(batching.batch_of(array, 1, 4), array[4:8])
  last = batching.batch_of(array, 2, 4)
  assert last.shape == (4, 3)
  np.testing.assert_array_equal(last[:2], array[8:])
  np.testing.assert_array_equal(last[2:], 0)
  assert batching.batch_of(None, 3, 4) is None


def fixed_batch(batch_size, calls):
  """A function that, like a compiled program, accepts only batches of batch_size rows."""
  def fn(x):
    assert x.shape[0] == batch_size, x.shape
    calls.append(x.shape[0])
    return np.tanh(x.astype(np.float32)).sum(axis=1) * 2 + 1
  return fn


@pytest.mark.parametrize("count", [1, 3, 4, 5, 11, 12])
def test_map_in_batches_equals_the_row_wise_reference(count):
  x = np.random.default_rng(count).normal(size=(count, 6))
  calls = []
  got = batching.map_in_batches(fixed_batch(4, calls), x, 4)
  expected = np.array([np.tanh(row.astype(np.float64)).sum() * 2 + 1 for row in x])
  assert got.shape == (count,) and isinstance(got, np.ndarray)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
  assert len(calls) == -(-count // 4)


def test_map_in_batches_with_tuple_outputs():
  x = np.random.default_rng(0).normal(size=(7, 3))

  def fn(batch):
    assert batch.shape == (3, 3)
    return batch.sum(axis=1), batch * batch

  sums, squares = batching.map_in_batches(fn, x, 3)
  assert sums.shape == (7,) and squares.shape == (7, 3)
  np.testing.assert_allclose(sums, x.astype(np.float64).sum(axis=1), rtol=1e-12)
  np.testing.assert_allclose(squares, x.astype(np.float64)**2, rtol=1e-12)


def test_map_in_batches_refuses_empty_input():
  with pytest.raises(ValueError, match="at least one row"):
    batching.map_in_batches(lambda x: x, np.zeros((0, 3)), 4)
