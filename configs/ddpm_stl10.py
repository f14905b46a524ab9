"""DDPM on STL-10 at 64x64 (`configs.common.rgb64_ddpm`): trained on the 100k-image
`unlabelled` split, the split generative models of STL-10 use (its labels are all -1, so
the model is unconditional); held-out loss and FID against the 8k-image `test` split.

  python main.py --config=configs/ddpm_stl10.py --workdir=runs/ddpm_stl10
  python main.py --config=configs/ddpm_stl10.py:quick --workdir=runs/stl10_quick

Data: tfds 'stl10' (downloads 2.5 GB once; 96x96 images, resized to 64x64 in memory; the
unlabelled split is 2.8 GB at 96x96, held up to three times while loading, so expect a
peak near 8 GB of RAM: an estimate). Offline: a folder of images with
--config.data.source=folder --config.data.path=DIR, or --config.data.tfds_data_dir=DIR
holding a prepared copy.
full:  8.95M parameters 64/(1,2,2,2), attention at 16x16, T=1000, 100k steps of 64 (64
       epochs), DDIM-100 samples. 11.4 GFLOP per image forward (XLA's count), so ~2.2e17
       FLOP of training. CPU: impractical (months); one modern GPU: roughly 1-3 hours at
       20-60 TFLOP/s sustained (estimate, not measured). Expected (not measured):
       natural-image colours and textures, some animal- and vehicle-like shapes.
quick: 0.38M parameters, 300 steps of 64, DDIM-100 samples. 2 CPU cores, measured while
       other jobs shared them (`benchmarks/benchmark.py --configs=ddpm_stl10,ddpm_afd`):
       train 17.7 img/s, so ~18 min for 300 steps, + ~1.5 min for 64 samples (74.6
       img-steps/s) + ~1 min compiling; idle cores should take about half. One modern
       GPU: a minute or two, mostly compilation (estimate). Expected (not run to the end
       here): coloured blobs with a light/dark split, no objects.
"""
from configs import common, default


def get_config(variant: str = ""):
  config = default.get_config()
  config.data.name = "stl10"
  config.data.split = "unlabelled"
  config.data.eval_split = "test"
  return common.rgb64_ddpm(config, variant, num_steps=100_000)
