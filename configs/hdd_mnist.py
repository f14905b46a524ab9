"""Hierarchical diffusion on MNIST, the published setting: a 14x14 U-Net that pools once
(14 -> 7) sampled from noise, then a 28x28 U-Net whose chain starts from
x = 0.3 up(x_14) + 0.7 z. T = 500 per stage; stage 1 beta linear 1e-4..0.02, stage 2
1e-4..0.01 (its input is not pure noise); each stage half the steps of configs/ddpm_mnist.py,
so the total training equals one DDPM run (`configs.common.published_cascade`).

  python main.py --config=configs/hdd_mnist.py --workdir=runs/hdd_mnist
  python main.py --config=configs/hdd_mnist.py:quick --workdir=runs/hdd_mnist_quick \
      --config.data.source=npz --config.data.path=../shared/data/mnist.npz

Data: tfds 'mnist' (downloads); offline from a Keras-style npz as above.
full:  stage 1 4.0M, stage 2 6.5M parameters, 10k steps of 128 each. CPU (2 cores): stage 1
       ~54 img/s (7 h), stage 2 ~11 img/s (32 h); one modern GPU: about an hour in all.
quick: 0.18M + 0.28M parameters, 150 steps of 64 each, DDIM-50 per stage: about 5 minutes
       on 2 CPU cores (a third of it compilation); blurry digit-like strokes.
budget: the quick U-Nets, attention at 7x7 only, trained for config.time_budget_minutes =
       30 minutes in all (35% stage 1, its loss weighted by Min-SNR-5), stochastic DDIM
       (eta = 1) with 50 steps per stage, stage 2 by truncate at t* = 399, trained on those
       400 steps only and conditional on up(x_14) (configs.common.conditional_stages):
       experiments/budget.py (which also trains configs/ddpm_mnist.py:budget).
cond, cond_quick: every stage class-conditional on the digit, label dropout 0.1, each
       guided at w = 2 (--config.stages.stageK.sample.guidance_scale); a row per class.
       FID and class accuracy against w: experiments/guidance.py.
"""
from configs import common, default


def get_config(variant: str = ""):
  return common.published_cascade(common.mnist_data(default.get_config()), (14, 28), variant,
                                   common.BUDGET_VARIANTS)
