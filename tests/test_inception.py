"""The FID Inception port: weight files read without torch (written here by hand in both
torch serializations), shape checks, pytorch-fid's preprocessing against a float64
reference, and features against golden features of pytorch-fid's own network."""
import collections
import io
import os
import pickle
import struct
import sys
import types
import zipfile

import jax.numpy as jnp
import numpy as np
import pytest

from evaluation import inception, torch_pickle, weights
from hdd.errors import CheckpointError

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")
sys.path.insert(0, GOLDEN)
from random_weights import random_state_dict  # noqa: E402


@pytest.fixture(scope="module")
def golden():
  with np.load(os.path.join(GOLDEN, "inception_golden.npz")) as data:
    return {k: data[k] for k in data.files}


def golden_state_dict(golden):
  shapes = [tuple(int(d) for d in s.strip("()").split(",") if d.strip())
            for s in golden["shapes"]]
  return random_state_dict(list(zip(golden["names"], shapes)), int(golden["seed"]))


# --- Hand-written torch containers ---------------------------------------------------------

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


def test_shapes_are_checked_against_the_network(golden):
  state = golden_state_dict(golden)
  inception.convert(dict(state))  # pytorch-fid's names and shapes convert cleanly.
  state["Mixed_6b.branch7x7_2.conv.weight"] = np.zeros((128, 128, 7, 1), np.float32)
  with pytest.raises(CheckpointError, match=r"Mixed_6b\.branch7x7_2\.kernel has shape"):
    inception.convert(dict(state))
  state = golden_state_dict(golden)
  del state["Mixed_7c.branch_pool.conv.weight"]
  with pytest.raises(CheckpointError, match="missing Mixed_7c.branch_pool.kernel"):
    inception.convert(state)


def test_missing_weights_say_how_to_get_them(tmp_path):
  with pytest.raises(CheckpointError, match="python -m evaluation.weights"):
    inception.load_fid_inception(str(tmp_path / "nope.pth"))
  bad = tmp_path / "bad.pth"
  bad.write_bytes(b"not a torch file")
  with pytest.raises(CheckpointError, match="cannot read FID Inception weights"):
    inception.load_fid_inception(str(bad))


# --- Preprocessing ----------------------------------------------------------------------

def torch_bilinear_reference(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
  """F.interpolate(mode='bilinear', align_corners=False), pixel by pixel in float64."""
  in_h, in_w = image.shape[:2]
  out = np.zeros((out_h, out_w) + image.shape[2:])
  for i in range(out_h):
    y = max((i + 0.5) * in_h / out_h - 0.5, 0.0)
    y0 = int(y)
    y1, wy = min(y0 + 1, in_h - 1), y - y0
    for j in range(out_w):
      x = max((j + 0.5) * in_w / out_w - 0.5, 0.0)
      x0 = int(x)
      x1, wx = min(x0 + 1, in_w - 1), x - x0
      out[i, j] = ((1 - wy) * ((1 - wx) * image[y0, x0] + wx * image[y0, x1]) +
                   wy * ((1 - wx) * image[y1, x0] + wx * image[y1, x1]))
  return out


@pytest.mark.parametrize("size", [11, 3, 299])
def test_preprocess_matches_bilinear_reference(size):
  image = np.random.default_rng(0).uniform(size=(5, 7, 1))
  expected = 2 * torch_bilinear_reference(np.repeat(image, 3, -1), size, size) - 1
  got = np.asarray(inception.preprocess(image[None], size))[0]
  np.testing.assert_allclose(got, expected, atol=2e-6)


def test_quantize_to_uint8_levels():
  np.testing.assert_array_equal(inception.quantize([0.0, 0.5, 1.2, -0.1, 0.499 / 255]),
                                [0.0, 128 / 255, 1.0, 0.0, 0.0])


# --- Features -------------------------------------------------------------------------------

def test_features_match_pytorch_fid_network(golden):
  """Seeded random weights through pytorch-fid's network (tests/golden) and through ours."""
  variables = inception.convert(golden_state_dict(golden))
  for key in ("rgb299", "grey28"):
    features = inception.fid_features(variables, golden[key] / 255.0)
    reference = golden[f"features_{key}"]
    assert features.shape == (2, inception.FEATURE_DIM)
    np.testing.assert_allclose(features, reference, rtol=1e-4,
                               atol=1e-5 * np.abs(reference).max())


@pytest.mark.skipif(not os.path.exists(weights.default_path()),
                    reason="real FID weights not fetched (python -m evaluation.weights)")
def test_real_weights_match_the_torchscript_network(golden):
  variables = inception.load_fid_inception(weights.default_path())
  x = jnp.asarray(golden["rgb299"] / 255.0 * 2 - 1, jnp.float32)
  features = np.asarray(inception.FIDInceptionV3().apply(variables, x))
  reference = golden["real_features_rgb299"]
  np.testing.assert_allclose(features, reference, rtol=1e-4, atol=1e-5 * np.abs(reference).max())


@pytest.mark.skipif(not os.path.exists(weights.default_path()),
                    reason="real FID weights not fetched (python -m evaluation.weights)")
def test_reference_statistics_are_cached_and_fingerprinted(stripes_npz, tmp_path):
  from evaluation import statistics
  from tiny_config import get_config
  config = get_config(stripes_npz)
  variables = inception.load_fid_inception(weights.default_path())
  cache = str(tmp_path / "stats")
  stats = statistics.reference_statistics(config.data, "test", 8, 0, variables,
                                          weights.default_path(), cache)
  assert int(stats["n"]) == 16 and stats["mu"].shape == (2048,)
  (cached,) = os.listdir(cache)
  again = statistics.reference_statistics(config.data, "test", 8, 0, variables,
                                          weights.default_path(), cache)
  np.testing.assert_array_equal(again["sigma"], stats["sigma"])
  # The real images against their own statistics: FID 0 up to rounding.
  from evaluation.classifier import real_images
  real, _ = real_images(config.data, "test", 8)
  assert abs(statistics.fid_and_kid(real, stats, variables)["fid"]) < 1e-3
  config.data.crop = "none"   # Other preprocessing of the data: another fingerprint.
  key = statistics.fingerprint(config.data, "test", 8, 16, weights.default_path())
  with pytest.raises(CheckpointError, match="fingerprint mismatch"):
    statistics.load_statistics(os.path.join(cache, cached), key)


@pytest.mark.skipif(not os.path.exists(weights.default_path()),
                    reason="real FID weights not fetched (python -m evaluation.weights)")
def test_fid_is_logged_during_training(stripes_npz, tmp_path):
  from tensorboard.backend.event_processing import event_accumulator
  from tensorboard.util import tensor_util
  from hdd import train
  from tiny_config import get_config
  config = get_config(stripes_npz)
  config.train.update(num_steps=4, fid_every=2, fid_samples=8)
  config.eval.stats_dir = str(tmp_path / "stats")
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(config, workdir)
  events = event_accumulator.EventAccumulator(workdir)
  events.Reload()
  values = [float(tensor_util.make_ndarray(event.tensor_proto))
            for event in events.Tensors("fid_8samples")]
  assert len(values) == 2 and all(np.isfinite(v) and v > 0 for v in values)
