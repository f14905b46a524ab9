"""The seeded random FID-Inception weights behind inception_golden.npz (no torch needed):
shared by make_inception_golden.py (which runs them through pytorch-fid's network) and
tests/test_inception.py (which runs them through the Flax port)."""
import numpy as np

SEED = 2015


def random_state_dict(names_and_shapes, seed=SEED):
  """Seeded weights in state-dict order: He-normal convs, batch norms near identity."""
  rng = np.random.default_rng(seed)
  out = {}
  for name, shape in names_and_shapes:
    if name.endswith("conv.weight"):
      value = rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[1:]))
    elif name.endswith("bn.weight") or name.endswith("running_var"):
      value = rng.uniform(0.5, 1.5, shape)
    elif name.endswith("bn.bias") or name.endswith("running_mean"):
      value = rng.standard_normal(shape) * 0.1
    elif name == "fc.weight":
      value = rng.standard_normal(shape) * 0.01
    else:
      value = np.zeros(shape)
    out[name] = value.astype(np.float32)
  return out
