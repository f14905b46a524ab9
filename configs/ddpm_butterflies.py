"""DDPM at 64x64 on a folder of images (`configs.common.rgb64_ddpm`), by default the
Smithsonian butterflies in data/butterflies: 1,000 photographs on white, the Hugging Face
dataset `huggan/smithsonian_butterflies_subset`. Sub-folders would be class labels.

  python main.py --config=configs/ddpm_butterflies.py --workdir=runs/ddpm_butterflies
  python main.py --config=configs/ddpm_butterflies.py:quick --workdir=runs/butterflies_quick \
      --config.data.path=PATH/TO/IMAGES

Data: any image files under data.path (centre crop, resized to 64x64). To fetch the
butterflies on a machine with internet (`pip install datasets`):
  python -c "import datasets, os; os.makedirs('data/butterflies', exist_ok=True); [r['image']
    .save(f'data/butterflies/{i:04d}.png') for i, r in enumerate(datasets.load_dataset(
    'huggan/smithsonian_butterflies_subset', split='train'))]"
A folder has no held-out split: the loss and FID of --mode=eval use the same images.
full:  8.95M parameters 64/(1,2,2,2), attention at 16x16, T=1000, 20k steps of 64 (about
       1,300 epochs of 1,000 images), DDIM-100 samples: ~4.4e16 FLOP of training (11.4
       GFLOP per image forward). CPU: impractical (weeks); one modern GPU: roughly 15-40
       minutes at 20-60 TFLOP/s sustained (estimate, not measured). Expected (not
       measured): butterflies with wing patterns on a white background.
quick: 0.38M parameters, 300 steps of 64, DDIM-100 samples: the model and cost of
       configs/ddpm_stl10.py:quick, ~20 min on 2 shared CPU cores (measured rate, see
       there). Expected (not run to the end here): a coloured blob on white.
"""
from configs import common, default


def get_config(variant: str = ""):
  config = default.get_config()
  config.data.source = "folder"
  config.data.path = "data/butterflies"
  config.data.name = "butterflies"
  return common.rgb64_ddpm(config, variant, num_steps=20_000)
