"""A three-stage cascade on MNIST: 7x7 -> 14x14 -> 28x28, each later stage handed the
previous output by the published gamma=0.3 mix (switch any stage to truncate with
--config.stages.stage3.sample.handover=truncate). Each stage trains a third of the DDPM
budget.

  python main.py --config=configs/hdd_mnist_3stage.py:quick --workdir=runs/hdd3_quick \
      --config.data.source=npz --config.data.path=../shared/data/mnist.npz

full:  1.0M + 4.0M + 6.5M parameters, 6.7k steps of 128 per stage; one modern GPU: about
       an hour.
quick: 100 steps of 64 per stage, DDIM-50 per stage: about 5 minutes on 2 CPU cores
       (three compilations); blurry strokes.
cond, cond_quick: every stage class-conditional on the digit, label dropout 0.1, each
       guided at w = 2 (--config.stages.stageK.sample.guidance_scale); a row per class.
"""
from configs import common, default


def get_config(variant: str = ""):
  config = common.published_cascade(common.mnist_data(default.get_config()), (7, 14, 28),
                                    variant, common.LABELLED_VARIANTS)
  config.stages.stage1.model.channel_mult = (1,)   # 7x7 does not pool.
  config.stages.stage1.model.attention_resolutions = (7,)
  return config
