"""DDPM on Fashion-MNIST (28x28, grayscale), from the idx files of Debian's
dataset-fashion-mnist package (the README's setup installs it).

  python main.py --config=configs/ddpm_fashion_mnist.py --workdir=runs/ddpm_fmnist
  python main.py --config=configs/ddpm_fashion_mnist.py:quick --workdir=runs/fmnist_quick

Elsewhere: --config.data.source=tfds --config.data.name=fashion_mnist (downloads).

full:  6.5M-parameter U-Net 64/(1,2,2), T=1000, 20k steps of 128. CPU (2 cores): about
       11 img/s, so ~65 h; one modern GPU: well under an hour. Expected: clean garments.
quick: 0.28M-parameter U-Net 16/(1,2,2), 300 steps of 64, DDIM 100-step samples.
       CPU (2 cores): measured 7.4 min end to end (train 320 s at 60 img/s, compile 40 s,
       64 samples 24 s) while a test run shared the cores; GPU: about a minute, mostly
       compilation. Expected: garment-like silhouettes on a black background, not yet
       sharp.
budget: as configs/ddpm_mnist.py:budget, 30 minutes of training: experiments/budget.py
       --dataset=fashion_mnist.
cond, cond_quick: class-conditional on the garment class, label dropout 0.1, sampled with
       classifier-free guidance at w = 2, 100 samples shown a row per class.
"""
from configs import common, default


def get_config(variant: str = ""):
  quick, conditional = common.parse_variant(variant, common.BUDGET_VARIANTS)
  config = common.fashion_mnist_data(default.get_config())
  if quick:
    common.apply_quick(config)
  if variant.endswith("budget"):
    common.budget_training(config.train)
    common.budget_sampler(config.sample, 100)   # The cascade's evaluations per image.
  return common.class_conditional(config) if conditional else config
