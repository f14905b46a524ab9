"""DDPM on MNIST (28x28): the full-resolution baseline of the hierarchical comparison.

  python main.py --config=configs/ddpm_mnist.py --workdir=runs/ddpm_mnist
  python main.py --config=configs/ddpm_mnist.py:quick --workdir=runs/mnist_quick

Data: tfds 'mnist' (downloads). Offline, from a Keras-style npz, e.g. on our machines:
  --config.data.source=npz --config.data.path=../shared/data/mnist.npz

full:  6.5M-parameter U-Net 64/(1,2,2), T=1000, 20k steps of 128. CPU (2 cores): ~11
       img/s, ~65 h; one modern GPU: under an hour.
quick: ~0.3M parameters, 300 steps of 64, DDIM-100 samples: ~6 minutes on 2 CPU cores
       (measured with the Fashion-MNIST quick config); blurry but digit-like strokes.
budget: the quick U-Net trained for train.time_budget_minutes = 30, stochastic DDIM
       (eta = 1) with 100 steps (the budget cascade's evaluations per image):
       experiments/budget.py.
cond, cond_quick: class-conditional on the digit, label dropout 0.1, sampled with
       classifier-free guidance at w = 2, 100 samples shown a row per class.
"""
from configs import common, default


def get_config(variant: str = ""):
  quick, conditional = common.parse_variant(variant, common.BUDGET_VARIANTS)
  config = common.mnist_data(default.get_config())
  if quick:
    common.apply_quick(config)
  if variant.endswith("budget"):
    common.budget_training(config.train)
    common.budget_sampler(config.sample, 100)   # The cascade's evaluations per image.
  return common.class_conditional(config) if conditional else config
