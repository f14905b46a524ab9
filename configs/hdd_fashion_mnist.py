"""Hierarchical diffusion on Fashion-MNIST: 14x14 -> 28x28 with the published settings
(`configs.common.published_cascade`) except the hand-over, from the idx files of Debian's
dataset-fashion-mnist. Stage 2 starts from the forward process q(x_499 | up(x_14))
(`truncate` at t* = T-1): in our comparison (docs/results.md, experiments/hdd_vs_ddpm.py) it beat
the published gamma=0.3 mix on MNIST and Fashion-MNIST at one extra network evaluation.
--config.stages.stage2.sample.handover=mix restores the published rule.

  python main.py --config=configs/hdd_fashion_mnist.py:quick --workdir=runs/hdd_fmnist_quick
  python main.py --config=configs/hdd_fashion_mnist.py --workdir=runs/hdd_fmnist

full:  as hdd_mnist (10k steps of 128 per stage): ~39 h on 2 CPU cores, about an hour on
       one modern GPU.
quick: 0.18M + 0.28M parameters, 150 steps of 64 per stage, DDIM-50 per stage: measured
       4.3 min end to end on 2 idle CPU cores with a warm compilation cache (train 35 s +
       162 s, sample 64 images 3 s + 11 s; compiling from scratch adds about 40 s); rough
       garment silhouettes. GPU: about a minute, mostly compilation.
budget: as configs/hdd_mnist.py:budget, 30 minutes of training in all: experiments/budget.py
       --dataset=fashion_mnist.
cond, cond_quick: every stage class-conditional on the garment class, label dropout 0.1, each
       guided at w = 2 (--config.stages.stageK.sample.guidance_scale); a row per class.
"""
from configs import common, default


def get_config(variant: str = ""):
  config = common.published_cascade(common.fashion_mnist_data(default.get_config()), (14, 28),
                                    variant, common.BUDGET_VARIANTS)
  config.stages.stage2.sample.handover = "truncate"
  config.stages.stage2.sample.start_step = config.stages.stage2.diffusion.num_steps - 1
  return config
