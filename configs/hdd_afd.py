"""Hierarchical diffusion on anime faces (AFD) from an image folder: 32x32 -> 64x64 with
the published recipe (`configs.common.published_cascade`), RGB, random flips.

  python -m input_pipeline.prepare_folder PATH/TO/DOWNLOAD data/anime_faces
  python main.py --config=configs/hdd_afd.py --workdir=runs/hdd_afd
  python main.py --config=configs/hdd_afd.py:quick --workdir=runs/hdd_afd_quick

Data: data/anime_faces, made by the first command from the downloaded folder (the Kaggle
anime-face download is JPEGs of mixed sizes): each image centre-cropped and resized to 64x64
PNG, unreadable files listed and skipped, the download left unchanged. Any folder of images
works with --config.data.path=DIR (sub-folders are class labels; faces need none); the
download itself does too, but then every full-size file is decoded at each start and each
time it is drawn.
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
