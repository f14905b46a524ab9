"""DDPM on Oxford Flowers 102 at 64x64 (`configs.common.rgb64_ddpm`): centre crops of
images of varying size, random flips.

  python main.py --config=configs/ddpm_flowers102.py --workdir=runs/ddpm_flowers102
  python main.py --config=configs/ddpm_flowers102.py:quick --workdir=runs/flowers_quick

Splits: trains on `train+test` (7,169 images) and holds out `validation` (1,020, ten per
class) for the loss and FID. The official `train` split has only ten images per class and
`test` holds most of the data, built for classifiers; a generative model wants the many,
and a held-out split with every class for its evaluation.
Data: tfds 'oxford_flowers102' (downloads 330 MB once). Offline: a folder of images with
--config.data.source=folder --config.data.path=DIR.
full:  8.95M parameters 64/(1,2,2,2), attention at 16x16, T=1000, 50k steps of 64 (about
       450 epochs), DDIM-100 samples: ~1.1e17 FLOP of training (11.4 GFLOP per image
       forward). CPU: impractical (weeks); one modern GPU: roughly 0.5-1.5 hours at 20-60
       TFLOP/s sustained (estimate, not measured). Expected (not measured): blossoms with
       petals in flower colours on green or dark backgrounds.
quick: 0.38M parameters, 300 steps of 64, DDIM-100 samples: the model and cost of
       configs/ddpm_stl10.py:quick, ~20 min on 2 shared CPU cores (measured rate, see
       there). Expected (not run to the end here): coloured blobs, a bright centre on green.
"""
from configs import common, default


def get_config(variant: str = ""):
  config = default.get_config()
  config.data.name = "oxford_flowers102"
  config.data.split = "train+test"
  config.data.eval_split = "validation"
  return common.rgb64_ddpm(config, variant, num_steps=50_000)
