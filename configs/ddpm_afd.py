"""The full-resolution DDPM-64 baseline of the anime-face cascade configs/hdd_afd.py
(`configs.common.published_ddpm`): the same data settings and the U-Net of the cascade's
64x64 stage, T=1000 with beta up to 0.02, trained for the cascade's total steps (equal
epochs) and sampled with as many network evaluations as the whole cascade; the published
AFD comparison is this run against hdd_afd's.

  python main.py --config=configs/ddpm_afd.py --workdir=runs/ddpm_afd \
      --config.data.path=PATH/TO/IMAGES
  python main.py --config=configs/ddpm_afd.py:quick --workdir=runs/ddpm_afd_quick \
      --config.data.path=PATH/TO/IMAGES

Data: any folder of images, by default data/anime_faces (sub-folders are class labels;
faces need none), RGB, random flips.
full:  8.95M parameters 64/(1,2,2,2), attention at 32x32, 50k steps of 64 (hdd_afd: 25k per
       stage), DDPM sampling with all 1000 steps (hdd_afd: 500 + 500): 14.5 GFLOP per image
       forward, ~1.4e17 FLOP of training. CPU: impractical (months); one modern GPU: roughly
       40 min to 2 hours at 20-60 TFLOP/s sustained (estimate, not measured); on the published
       hardware the cascade's 64x64 stage took 12,546 s for half these steps, so about 7 h.
       Expected (not measured): recognisable anime faces.
quick: 0.38M parameters, 300 steps of 64 (hdd_afd:quick: 150 + 150), DDIM-100 (50 + 50).
       2 CPU cores, measured while other jobs shared them: train 4.8 img/s (attention at
       32x32 costs 930 MFLOP per image forward, against 492 at 16x16), so ~67 min for
       300 steps + ~4 min for 64 samples (26 img-steps/s); idle cores should take about
       half. Expected (not run to the end here): coloured blobs.
"""
from configs import common, default


def get_config(variant: str = ""):
  return common.published_ddpm(common.anime_faces_recipe(default.get_config()), (32, 64), variant)
