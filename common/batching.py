"""Applying a fixed-batch function to any number of examples: pad the last batch, run,
strip the padding. One compiled program serves every batch."""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np


def num_batches(count: int, batch_size: int) -> int:
  return -(-count // batch_size)


def pad_rows(array: np.ndarray, rows: int) -> np.ndarray:
  """`array` with zero rows appended up to `rows` rows."""
  return np.pad(array, ((0, rows - len(array)),) + ((0, 0),) * (array.ndim - 1))


def batch_of(array: Optional[np.ndarray], index: int, batch_size: int) -> Optional[np.ndarray]:
  """Rows [index * B, (index + 1) * B) of `array`, zero-padded to B rows; None stays None.
  Padding rows are zeros: a function whose rows do not interact is unchanged by them."""
  if array is None:
    return None
  return pad_rows(array[index * batch_size:(index + 1) * batch_size], batch_size)


def map_in_batches(fn: Callable, array: np.ndarray, batch_size: int):
  """fn applied to `array` in zero-padded batches of `batch_size` rows. fn returns an
  array, or a tuple of arrays, with one row per input row; the real rows are concatenated
  as numpy."""
  if not len(array):
    raise ValueError("map_in_batches needs at least one row")
  outputs = []
  for index in range(num_batches(len(array), batch_size)):
    rows = min(batch_size, len(array) - index * batch_size)
    result = fn(batch_of(array, index, batch_size))
    parts = result if isinstance(result, tuple) else (result,)
    outputs.append(tuple(np.asarray(part)[:rows] for part in parts))
  joined = tuple(np.concatenate(column) for column in zip(*outputs))
  return joined if isinstance(result, tuple) else joined[0]
