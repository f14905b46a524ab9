"""DDPM on Caltech-UCSD Birds 2011 at 64x64 (`configs.common.rgb64_ddpm`): bounding-box
crops, cosine schedule, DDIM sampling with 5 steps.

  python main.py --config=configs/ddpm_birds.py --workdir=runs/ddpm_birds
  python main.py --config=configs/ddpm_birds.py:quick --workdir=runs/birds_quick \
      --config.data.source=folder --config.data.path=PATH/TO/IMAGES

Data: tfds 'caltech_birds2011' (downloads, with boxes); any image folder otherwise.
full:  ~9M parameters 64/(1,2,2,2), 50k steps of 64. CPU: impractical; one modern GPU:
       about half a day. Expected: bird-like shapes and colours.
quick: ~0.3M parameters, 300 steps of 64: ~15 minutes on 2 CPU cores at 64x64 (4x the
       pixels of the 28x28 quick configs); coloured blobs.
"""
from configs import common, default


def get_config(variant: str = ""):
  config = default.get_config()
  config.data.name = "caltech_birds2011"
  config.data.crop = "bbox"
  common.rgb64_ddpm(config, variant, num_steps=50_000)
  config.diffusion.schedule = "cosine"
  config.sample.num_steps = 5
  if variant == "quick":
    config.sample.trajectory_every = 1
  return config
