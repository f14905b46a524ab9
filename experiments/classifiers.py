"""The classifiers of the generated-data augmentation study, scaled down for CPU: the
layouts of ResNet-18 (He et al. 2016) and VGG-16 (Simonyan & Zisserman 2015) with a base
width of `width` channels instead of 64. GroupNorm stands in for batch norm, so a model
is a pure function of its parameters (no running statistics to carry), which also keeps
small-batch training stable. Inputs are images in [-1, 1]; outputs are logits."""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp


def _norm(features: int) -> nn.GroupNorm:
  return nn.GroupNorm(num_groups=min(8, features // 4 or 1))


class BasicBlock(nn.Module):
  """Two 3x3 convolutions with a residual connection (a 1x1 projection when the shape
  changes)."""
  features: int
  stride: int = 1

  @nn.compact
  def __call__(self, x):
    y = nn.relu(_norm(self.features)(nn.Conv(self.features, (3, 3), self.stride,
                                             use_bias=False)(x)))
    y = _norm(self.features)(nn.Conv(self.features, (3, 3), use_bias=False)(y))
    if self.stride != 1 or x.shape[-1] != self.features:
      x = _norm(self.features)(nn.Conv(self.features, (1, 1), self.stride, use_bias=False)(x))
    return nn.relu(x + y)


class ResNet18(nn.Module):
  """A 3x3 stem (small images keep their resolution), four stages of two basic blocks at
  widths w, 2w, 4w, 8w (strides 1, 2, 2, 2), global average pooling, a linear head."""
  num_classes: int
  width: int = 8

  @nn.compact
  def __call__(self, x):
    x = nn.relu(_norm(self.width)(nn.Conv(self.width, (3, 3), use_bias=False)(x)))
    for stage, multiplier in enumerate((1, 2, 4, 8)):
      for block in range(2):
        x = BasicBlock(self.width * multiplier, 2 if stage and not block else 1)(x)
    return nn.Dense(self.num_classes)(jnp.mean(x, axis=(1, 2)))


class VGG16(nn.Module):
  """Thirteen 3x3 convolutions in five blocks (2, 2, 3, 3, 3) at widths w, 2w, 4w, 8w, 8w,
  each with GroupNorm and ReLU, max-pooling after the first three blocks (28 -> 3), then
  global average pooling and three dense layers (16w, 16w, classes)."""
  num_classes: int
  width: int = 8

  @nn.compact
  def __call__(self, x):
    for block, (convolutions, multiplier) in enumerate(((2, 1), (2, 2), (3, 4), (3, 8), (3, 8))):
      features = self.width * multiplier
      for _ in range(convolutions):
        x = nn.relu(_norm(features)(nn.Conv(features, (3, 3), use_bias=False)(x)))
      if block < 3:
        x = nn.max_pool(x, (2, 2), (2, 2))
    x = jnp.mean(x, axis=(1, 2))
    for _ in range(2):
      x = nn.relu(nn.Dense(16 * self.width)(x))
    return nn.Dense(self.num_classes)(x)


ARCHITECTURES = {"resnet18": ResNet18, "vgg16": VGG16}
