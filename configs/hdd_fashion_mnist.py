"""Hierarchical diffusion on Fashion-MNIST: 14x14 -> 28x28 with the published settings
(see configs/hdd_mnist.py), from the idx files of Debian's dataset-fashion-mnist.

  python main.py --config=configs/hdd_fashion_mnist.py:quick --workdir=runs/hdd_fmnist_quick
  python main.py --config=configs/hdd_fashion_mnist.py --workdir=runs/hdd_fmnist

full:  as hdd_mnist (10k steps of 128 per stage): ~39 h on 2 CPU cores, about an hour on
       one modern GPU.
quick: 0.2M + 0.28M parameters, 150 steps of 64 per stage, DDIM-50 per stage: about 4
       minutes on 2 CPU cores; garment-like silhouettes.
"""
from configs import default
from configs.hdd_mnist import published_cascade


def get_config(variant: str = ""):
  config = default.get_config()
  config.data.source = "idx"
  config.data.path = "/usr/share/datasets/fashion-mnist"
  config.data.name = "fashion_mnist"
  config.data.random_flip = True
  return published_cascade(config, (14, 28), variant)
