"""Hierarchical diffusion on anime faces (AFD) from an image folder: 32x32 -> 64x64 with
the published recipe (`configs.common.published_cascade`), RGB, random flips.

  python main.py --config=configs/hdd_afd.py --workdir=runs/hdd_afd \
      --config.data.path=PATH/TO/IMAGES
  python main.py --config=configs/hdd_afd.py:quick --workdir=runs/hdd_afd_quick \
      --config.data.path=PATH/TO/IMAGES

Data: any folder of images (sub-folders are class labels; faces need none).
full:  6.5M + 9.0M parameters, 25k steps of 64 per stage. CPU: impractical; one modern GPU:
       several hours (published: 3195 s + 12546 s training on their GPU).
quick: 0.28M + 0.38M parameters, 150 steps of 64 each, DDIM-50 per stage: 20-40 minutes
       on 2 CPU cores, most of it the 64x64 stage (its U-Net, attention at 32x32, trained
       at 4.8 img/s with other jobs on the cores: `benchmarks/benchmark.py
       --configs=ddpm_afd`, the same network); coloured blobs.
"""
from configs import common, default


def get_config(variant: str = ""):
  return common.published_cascade(common.anime_faces_recipe(default.get_config()), (32, 64),
                                  variant)
