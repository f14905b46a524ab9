"""A ~20k-parameter DDPM on 8x8 grayscale images, for tests: seconds to compile and train.

  python main.py --config=tests/tiny_config.py --config.data.path=DATA.npz --workdir=W
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import default  # noqa: E402


def get_config(data_path: str = ""):
  config = default.get_config()
  config.data.source = "npz"
  config.data.path = data_path
  config.data.image_size = 8
  config.model.base_channels = 8
  config.model.channel_mult = (1, 2)
  config.model.num_res_blocks = 1
  config.model.attention_resolutions = (4,)
  config.model.norm_groups = 4
  config.model.dropout = 0.0
  config.diffusion.num_steps = 50
  config.train.batch_size = 16
  config.train.num_steps = 6
  config.train.learning_rate = 1e-3
  config.train.warmup_steps = 2
  config.train.log_every = 2
  config.train.checkpoint_every = 3
  config.sample.sampler = "ddim"
  config.sample.num_steps = 5
  config.sample.num_samples = 8
  config.sample.batch_size = 8
  config.sample.trajectory_every = 1
  config.eval.num_examples = 16
  config.eval.batch_size = 8
  return config
