"""The FID Inception-v3 in Flax: the TF "2015-12-05" graph as pytorch-fid ports it.

Differences from the torchvision Inception-v3, all kept here: a 1008-class head (unused:
FID reads the 2048-d pool3 features), the FID variants of the blocks (average pooling in
Mixed_5*/6*/7b excludes the padding; the pool branch of Mixed_7c is a max-pool), batch
norm with eps = 1e-3, inference mode only.

Preprocessing is pytorch-fid's: images in [0, 1] (quantised to uint8 levels first, as
images saved to disk are), grey repeated to RGB, a bilinear resize to 299x299 without
antialiasing (F.interpolate(mode="bilinear", align_corners=False)), then 2x - 1.

Weights: `evaluation.weights.load_fid_inception(path)` fetches and converts them.
"""
from __future__ import annotations

import itertools
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from common import batching, parallel
from common.progress import Progress

FEATURE_DIM = 2048
INPUT_SIZE = 299
BN_EPSILON = 1e-3



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


@jax.jit
def _features(variables, images):
  return FIDInceptionV3().apply(variables, preprocess(images))


def fid_features(variables: dict, images, batch_size: int = 50,
                 progress: Optional[Progress] = None) -> np.ndarray:
  """[N, 2048] float32 pool3 features of `images`: float in [0, 1], NHWC, any size, 1 or 3
  channels. Images are quantised to uint8 levels first, so generated and real images
  (from files) pass through the identical function. Batches are split over all devices;
  `progress` is told the images done after each."""
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f"images must be [N, H, W, 1 or 3], got shape {images.shape}")
  images = quantize(images).astype(np.float32)
  mesh = parallel.create_mesh()
  batch_size = min(batch_size, len(images))
  batch_size += (-batch_size) % mesh.size
  variables = jax.device_put(variables, parallel.replicated(mesh))
  sharding = parallel.batch_sharded(mesh)
  batches_done = itertools.count(1)

  def features_of(batch):
    features = np.asarray(_features(variables, jax.device_put(batch, sharding)))
    if progress is not None:
      progress.update(next(batches_done) * batch_size)
    return features

  return batching.map_in_batches(features_of, images, batch_size)
