"""The restricted torch unpickler (evaluation.torch_pickle): weight files written here by
hand in both torch serializations (zip and legacy) read back without torch, truncated
files are refused, and pickles that would run arbitrary code are refused."""
import collections
import io
import os
import pickle
import struct
import sys
import types
import zipfile

import numpy as np
import pytest

from evaluation import torch_pickle


class _StorageRef:
  def __init__(self, key, numel):
    self.key, self.numel = key, numel


@pytest.fixture
def fake_torch(monkeypatch):
  """Just enough of torch's module names for pickle to write references to them."""
  torch_module, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")
  torch_module.FloatStorage = type("FloatStorage", (), {"__module__": "torch"})

  def _rebuild_tensor_v2(*args):
    raise AssertionError("only pickled, never called")

  _rebuild_tensor_v2.__module__ = "torch._utils"
  _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
  utils._rebuild_tensor_v2 = _rebuild_tensor_v2
  torch_module._utils = utils
  monkeypatch.setitem(sys.modules, "torch", torch_module)
  monkeypatch.setitem(sys.modules, "torch._utils", utils)
  return torch_module


class _Tensor:
  """Pickles like a torch tensor: _rebuild_tensor_v2(storage, offset, size, stride, ...)."""

  def __init__(self, ref, offset, shape, stride):
    self.ref, self.offset, self.shape, self.stride = ref, offset, shape, stride

  def __reduce__(self):
    return (sys.modules["torch._utils"]._rebuild_tensor_v2,
            (self.ref, self.offset, self.shape, self.stride, False, collections.OrderedDict()))


def _pickle_state(state_tensors, fake_torch) -> bytes:
  buffer = io.BytesIO()
  pickler = pickle.Pickler(buffer, protocol=2)
  pickler.persistent_id = lambda obj: (("storage", fake_torch.FloatStorage, obj.key, "cpu",
                                        obj.numel) if isinstance(obj, _StorageRef) else None)
  pickler.dump(state_tensors)
  return buffer.getvalue()


def write_torch_file(path, fake_torch, legacy: bool):
  """{'a.weight': 2x3 row-major, 'b.weight': a transposed (strided) view of storage 1}."""
  storages = {"0": np.arange(6, dtype=np.float32), "1": np.arange(10, 16, dtype=np.float32)}
  state = collections.OrderedDict([
      ("a.weight", _Tensor(_StorageRef("0", 6), 0, (2, 3), (3, 1))),
      ("b.weight", _Tensor(_StorageRef("1", 6), 0, (3, 2), (1, 3))),
  ])
  data = _pickle_state(state, fake_torch)
  if legacy:
    with open(path, "wb") as f:
      pickle.dump(torch_pickle.LEGACY_MAGIC, f, protocol=2)
      pickle.dump(1001, f, protocol=2)
      pickle.dump({"protocol_version": 1001, "little_endian": True}, f, protocol=2)
      f.write(data)
      pickle.dump(sorted(storages), f, protocol=2)
      for key in sorted(storages):
        f.write(struct.pack("<q", storages[key].size) + storages[key].tobytes())
  else:
    with zipfile.ZipFile(path, "w") as archive:
      archive.writestr("archive/data.pkl", data)
      archive.writestr("archive/version", "3\n")
      for key, array in storages.items():
        archive.writestr(f"archive/data/{key}", array.tobytes())
  return {"a.weight": np.arange(6, dtype=np.float32).reshape(2, 3),
          "b.weight": np.arange(10, 16, dtype=np.float32).reshape(2, 3).T}


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_reads_handwritten_torch_files(tmp_path, fake_torch, legacy):
  path = str(tmp_path / "state.pth")
  expected = write_torch_file(path, fake_torch, legacy)
  loaded = torch_pickle.load(path)
  assert list(loaded) == ["a.weight", "b.weight"]
  for name, value in expected.items():
    np.testing.assert_array_equal(loaded[name], value)
  truncated = open(path, "rb").read()[:-5]
  with pytest.raises(torch_pickle.TorchFileError):
    torch_pickle.load(truncated)


def test_refuses_arbitrary_code_in_pickles():
  payload = pickle.dumps(collections.OrderedDict(x=os.getcwd), protocol=2)
  with zipfile.ZipFile(buffer := io.BytesIO(), "w") as archive:
    archive.writestr("archive/data.pkl", payload)
  with pytest.raises(torch_pickle.TorchFileError, match="refusing to load posix.getcwd"):
    torch_pickle.load(buffer.getvalue())
