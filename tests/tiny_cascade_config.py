"""Tiny cascades for tests: 4x4 -> 8x8 (variant '') or 4x4 -> 8x8 -> 16x16 ('three'),
each stage a ~10k-parameter U-Net trained for a few steps.

  python main.py --config=tests/tiny_cascade_config.py:three --config.data.path=D.npz --workdir=W
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from configs import default  # noqa: E402
from tiny_config import get_config as tiny_config  # noqa: E402


def get_config(variant: str = "", data_path: str = ""):
  sizes = {"": (4, 8), "three": (4, 8, 16)}[variant]
  config = default.make_cascade(tiny_config(data_path), sizes)
  for name, size in zip(sorted(config.stages.keys()), sizes):
    stage = config.stages[name]
    stage.model.channel_mult = (1,) if size == 4 else (1, 2)
    stage.model.attention_resolutions = ()
    stage.diffusion.num_steps = 40
    stage.train.num_steps = 4
    stage.train.checkpoint_every = 2
    stage.sample.num_steps = 5
  config.stages.stage2.diffusion.beta_end = 0.01
  config.sample.trajectory_every = 0
  return config
