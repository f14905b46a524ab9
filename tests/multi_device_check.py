"""Run by test_multi_device.py with 8 fake CPU devices: the same global batch through the
train step on a 1-device mesh and an 8-device mesh; prints the largest differences."""
import json

import jax
import numpy as np

from common import parallel
from helpers import stripes_batch, tiny_config
from hdd import generate
from hdd.build import create_model, create_schedule
from hdd.plan import SamplingPlan
from hdd.train_step import compile_train_step, create_train_state, split_micro_batches


def run(devices, config, batches):
  mesh = parallel.create_mesh(devices)
  state = jax.device_put(create_train_state(config, create_model(config)),
                         parallel.replicated(mesh))
  schedule = jax.device_put(create_schedule(config.diffusion), parallel.replicated(mesh))
  step_fn = compile_train_step(config, mesh)
  for batch in batches:
    state, metrics = step_fn(state, parallel.shard_batch(
        split_micro_batches(batch, config.train.grad_accum_steps), mesh, 1), schedule)
  samples, _ = generate.sample_images(SamplingPlan.create(config), state.ema_params, mesh, 16,
                                      seed=0)
  return jax.device_get(state), samples


def main():
  assert jax.device_count() == 8, jax.devices()
  config = tiny_config()
  config.model.dropout = 0.1
  config.train.grad_accum_steps = 2
  batches = [stripes_batch(32, seed=step) for step in range(3)]
  one, samples_one = run(jax.devices()[:1], config, batches)
  eight, samples_eight = run(jax.devices(), config, batches)
  diffs = [float(np.max(np.abs(a - b))) for a, b in zip(
      jax.tree_util.tree_leaves((one.params, one.ema_params, one.opt_state)),
      jax.tree_util.tree_leaves((eight.params, eight.ema_params, eight.opt_state)))]
  scale = max(float(np.max(np.abs(a))) for a in jax.tree_util.tree_leaves(one.params))
  print(json.dumps({"max_abs_diff": max(diffs), "param_scale": scale,
                    "steps": [int(one.step), int(eight.step)],
                    "sample_max_diff": int(np.max(np.abs(samples_one.astype(int) -
                                                         samples_eight.astype(int))))}))


if __name__ == "__main__":
  main()
