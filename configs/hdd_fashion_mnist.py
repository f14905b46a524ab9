"""Hierarchical diffusion on Fashion-MNIST: 14x14 -> 28x28 with the published settings
(see configs/hdd_mnist.py), from the idx files of Debian's dataset-fashion-mnist.

  python main.py --config=configs/hdd_fashion_mnist.py:quick --workdir=runs/hdd_fmnist_quick
  python main.py --config=configs/hdd_fashion_mnist.py --workdir=runs/hdd_fmnist

full:  as hdd_mnist (10k steps of 128 per stage): ~39 h on 2 CPU cores, about an hour on
       one modern GPU.
quick: 0.18M + 0.28M parameters, 150 steps of 64 per stage, DDIM-50 per stage: measured
       6.1 min end to end on 2 CPU cores while other work shared them (train 35 s + 144 s,
       sample 64 images 4 s + 15 s, the rest compilation and start-up); rough garment
       silhouettes.
"""
from configs import ddpm_fashion_mnist
from configs.hdd_mnist import published_cascade


def get_config(variant: str = ""):
  return published_cascade(ddpm_fashion_mnist.get_config(), (14, 28), variant)
