"""Reads tensors out of PyTorch files without torch: a restricted unpickler that builds
numpy arrays and refuses everything else.

Handles the three containers FID weights come in:
  * torch.save zip files (torch >= 1.6): <root>/data.pkl + <root>/data/<storage key>;
  * TorchScript archives (torch.jit.save), the same zip layout, where data.pkl holds
    the module tree as objects of `__torch__.*` classes (read here as `ScriptObject`s);
  * legacy torch.save files (torch < 1.6): consecutive pickles (magic number, protocol,
    system info, the object, the sorted storage keys), then each storage as an int64
    element count followed by its raw little-endian bytes.
Every pickle goes through a restricted unpickler: the headers of legacy files may hold
plain data only, the object pickle only the classes a tensor file needs; anything else
raises `TorchFileError` before it runs. Tensor views are bounds-checked against their
storage. Other pickles of a TorchScript archive (constants.pkl, code) are never read.
"""
from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from typing import Any, Callable

import numpy as np

LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": None, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class TorchFileError(ValueError):
  pass


class StorageType:
  """Stands for torch.FloatStorage and friends: only the element type matters."""

  def __init__(self, name: str):
    if name not in STORAGE_DTYPES or STORAGE_DTYPES[name] is None:
      raise TorchFileError(f"unsupported tensor storage type torch.{name}")
    self.name, self.dtype = name, np.dtype(STORAGE_DTYPES[name])


class ScriptObject:
  """A TorchScript module or other `__torch__.*` object: its class name and attributes."""

  def __init__(self, *args):
    self.class_name = type(self).__qualname__
    self.attributes: dict = {}

  def __setstate__(self, state):
    self.attributes = dict(state) if isinstance(state, dict) else {"state": state}


def _rebuild_tensor(storage: np.ndarray, offset: int, size, stride, *unused) -> np.ndarray:
  """torch._utils._rebuild_tensor(_v2): a strided view of the flat storage, copied. The
  view must lie inside the storage (a file cannot make it read other memory)."""
  if not isinstance(storage, np.ndarray):
    raise TorchFileError(f"tensor storage is {type(storage).__name__}, not an array")
  try:
    offset, size, stride = int(offset), tuple(int(n) for n in size), tuple(int(n) for n in stride)
  except (TypeError, ValueError):
    raise TorchFileError("tensor offset, size or stride is not made of integers") from None
  last = offset + sum((n - 1) * s for n, s in zip(size, stride))
  if (len(size) != len(stride) or offset < 0 or any(n < 0 for n in size) or
      any(s < 0 for s in stride) or (all(size) and last >= len(storage)) or
      offset > len(storage)):
    raise TorchFileError(f"tensor of size {size}, stride {stride} at offset {offset} does not "
                         f"fit its storage of {len(storage)} elements")
  if not size:
    return storage[offset].copy()
  itemsize = storage.dtype.itemsize
  view = np.lib.stride_tricks.as_strided(storage[offset:], size,
                                         tuple(s * itemsize for s in stride))
  return np.ascontiguousarray(view)


class _LazyStorage:
  """A legacy-format storage whose bytes follow the pickle: filled in after it is read."""

  def __init__(self, dtype: np.dtype):
    self.dtype, self.array = dtype, None


class _LazyTensor:
  def __init__(self, storage: _LazyStorage, args):
    self.storage, self.args = storage, args

  def build(self) -> np.ndarray:
    return _rebuild_tensor(self.storage.array, *self.args)


def _rebuild_any(storage, *args):
  """torch._utils._rebuild_tensor(_v2)(storage, offset, size, stride, ...)."""
  if isinstance(storage, _LazyStorage):
    return _LazyTensor(storage, args)
  return _rebuild_tensor(storage, *args)


def _rebuild_parameter(data, *unused):
  return data


ALLOWED = {
    ("torch._utils", "_rebuild_tensor"): _rebuild_any,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_any,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("torch", "Size"): tuple,
    ("torch.jit._pickle", "build_intlist"): list,
    ("torch.jit._pickle", "build_doublelist"): list,
    ("torch.jit._pickle", "build_boollist"): list,
    ("torch.jit._pickle", "build_tensorlist"): list,
    ("torch.jit._pickle", "restore_type_tag"): lambda value, type_tag: value,
}


class _DataUnpickler(pickle.Unpickler):
  """Plain data only (numbers, strings, lists, dicts): any global or persistent id is
  refused. Reads the headers of legacy files."""

  def find_class(self, module: str, name: str):
    raise TorchFileError(f"refusing to load {module}.{name}: a header holds plain data only")

  def persistent_load(self, pid):
    raise TorchFileError("refusing a persistent id in a header")


def _load_data(file):
  return _DataUnpickler(file).load()


class _Unpickler(pickle.Unpickler):
  """The classes a tensor file needs (ALLOWED, storages, `__torch__.*` objects)."""

  def __init__(self, file, load_storage: Callable[[tuple], np.ndarray]):
    super().__init__(file)
    self._load_storage = load_storage
    self._script_classes: dict = {}

  def find_class(self, module: str, name: str):
    if (module, name) in ALLOWED:
      return ALLOWED[(module, name)]
    if module == "torch" and name.endswith("Storage"):
      return StorageType(name)
    if module.startswith("__torch__"):
      key = f"{module}.{name}"
      if key not in self._script_classes:
        self._script_classes[key] = type(name, (ScriptObject,), {"__qualname__": key})
      return self._script_classes[key]
    raise TorchFileError(f"refusing to load {module}.{name}: not part of a tensor file")

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
      raise TorchFileError(f"unsupported persistent id {pid!r}")
    return self._load_storage(pid)


def _storage_dtype(storage_type) -> np.dtype:
  if isinstance(storage_type, StorageType):
    return storage_type.dtype
  raise TorchFileError(f"unsupported storage type {storage_type!r}")


def _load_zip(archive: zipfile.ZipFile) -> Any:
  pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
  if len(pickles) != 1:
    raise TorchFileError(f"expected one data.pkl in the archive, found {len(pickles)}")
  root = pickles[0][:-len("data.pkl")]
  cache: dict = {}

  def load_storage(pid):
    _, storage_type, key, _location, numel = pid[:5]
    if key not in cache:
      dtype = _storage_dtype(storage_type)
      raw = archive.read(f"{root}data/{key}")
      if len(raw) < numel * dtype.itemsize:
        raise TorchFileError(f"storage {key} is truncated ({len(raw)} bytes, expected "
                             f"{numel * dtype.itemsize})")
      cache[key] = np.frombuffer(raw, dtype=dtype.newbyteorder("<"), count=numel)
    return cache[key]

  return _Unpickler(io.BytesIO(archive.read(pickles[0])), load_storage).load()


def _load_legacy(file) -> Any:
  try:
    magic = _load_data(file)
  except TorchFileError:
    raise
  except Exception as e:  # Not a pickle at all.
    raise TorchFileError("not a PyTorch file (neither a zip archive nor a legacy pickle)") from e
  if magic != LEGACY_MAGIC:
    raise TorchFileError("not a PyTorch file (no zip archive and no legacy magic number)")
  _load_data(file)  # Protocol version.
  _load_data(file)  # System info (endianness, type sizes).
  storages: dict = {}

  def load_storage(pid):
    _, storage_type, key, _location, _numel = pid[:5]
    if key not in storages:
      storages[key] = _LazyStorage(_storage_dtype(storage_type))
    return storages[key]

  obj = _Unpickler(file, load_storage).load()
  keys = _load_data(file)
  if not isinstance(keys, (list, tuple)):
    raise TorchFileError("the storage keys of a legacy file are not a list")
  for key in keys:
    (count,) = struct.unpack("<q", file.read(8))
    storage = storages.get(key) or _LazyStorage(np.dtype(np.float32))
    raw = file.read(count * storage.dtype.itemsize)
    if len(raw) < count * storage.dtype.itemsize:
      raise TorchFileError(f"storage {key} is truncated")
    storage.array = np.frombuffer(raw, dtype=storage.dtype.newbyteorder("<"), count=count)
  return _resolve_lazy(obj)


def _resolve_lazy(obj):
  if isinstance(obj, _LazyTensor):
    return obj.build()
  if isinstance(obj, dict):
    return type(obj)((k, _resolve_lazy(v)) for k, v in obj.items())
  if isinstance(obj, (list, tuple)):
    return type(obj)(_resolve_lazy(v) for v in obj)
  if isinstance(obj, ScriptObject):
    obj.attributes = {k: _resolve_lazy(v) for k, v in obj.attributes.items()}
  return obj


def load(source) -> Any:
  """The object stored in a torch.save / torch.jit.save file (path, bytes or file)."""
  data = source if isinstance(source, (bytes, bytearray)) else None
  if data is None:
    with open(source, "rb") as f:
      data = f.read()
  try:
    if zipfile.is_zipfile(io.BytesIO(data)):
      with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return _load_zip(archive)
    return _load_legacy(io.BytesIO(data))
  except TorchFileError:
    raise
  except RecursionError:
    raise TorchFileError("corrupt PyTorch file: nested too deeply") from None
  except Exception as e:  # noqa: BLE001 (any parse failure of an untrusted file is a bad file)
    raise TorchFileError(f"corrupt or truncated PyTorch file ({type(e).__name__}: "
                         f"{' '.join(str(e).split())[:200]})") from e


def flatten(obj, prefix: str = "") -> dict:
  """{'a.b.weight': array} for a state dict or a TorchScript module tree."""
  if isinstance(obj, np.ndarray):
    return {prefix.rstrip("."): obj}
  if isinstance(obj, ScriptObject):
    return flatten(obj.attributes, prefix)
  if isinstance(obj, dict):
    flat = {}
    for key, value in obj.items():
      flat.update(flatten(value, f"{prefix}{key}."))
    return flat
  return {}

