"""Speed on the current machine: train images/s, sampling images/s, the compiled chain
(lax.scan) against a Python loop of jitted steps, model FLOPs per image (XLA's cost
analysis) and the achieved FLOP/s next to this machine's float32 matmul FLOP/s; with
--torch the same U-Net and train step in PyTorch, and the TorchScript FID Inception beside
ours, timed in the same run (`benchmarks/torch_reference.py`).

  python benchmarks/benchmark.py                       # quick-sized models
  python benchmarks/benchmark.py --configs=ddpm_mnist,hdd_mnist   # a cascade: every stage
  python benchmarks/benchmark.py --configs=ddpm_fashion_mnist --variants=full --steps=5
  pip install torch==2.14.1    # benchmark-only; then JAX against PyTorch at every size:
  python benchmarks/benchmark.py --configs=hdd_mnist,ddpm_cifar10 --variants=quick,full \
      --torch --inception_images=100

Synthetic batches: this measures compute, not the input pipeline.
"""
import argparse
import importlib
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from common import parallel
from hdd import stages
from hdd.maths import diffusion, sampling
from hdd.maths.handover import LowResInput
from hdd.build import create_model, create_schedule
from hdd.train_step import compile_train_step, create_train_state
from hdd.maths.unet import count_params

CPU_THREADS = len(os.sched_getaffinity(0))


def timed(fn, repeats):
  jax.block_until_ready(fn())
  start = time.perf_counter()
  for _ in range(repeats):
    out = fn()
  jax.block_until_ready(out)
  return (time.perf_counter() - start) / repeats


def flops_of(compiled) -> float:
  analysis = compiled.cost_analysis()
  analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
  return float(analysis.get("flops", float("nan")))


def matmul_flops_per_second(n=2048, repeats=5) -> float:
  a = jnp.ones((n, n), jnp.float32)
  f = jax.jit(lambda a: a @ a)
  return 2 * n**3 / timed(lambda: f(a), repeats)


def model_configs(name: str, variant: str) -> list:
  """[(label, single-model config)] of every model of the config (a cascade's labelled by
  stage); variant 'full' is the config's default."""
  variant = "" if variant == "full" else variant
  try:
    config = importlib.import_module(f"configs.{name}").get_config(variant)
  except ModuleNotFoundError:
    raise SystemExit(f"--configs={name}: there is no configs/{name}.py")
  except ValueError as error:   # An unknown variant, named by the config.
    raise SystemExit(f"--variants={variant}: {error}")
  label = f"{name}:{variant or 'full'}"
  models = stages.models(config)
  return [(label if len(models) == 1 else f"{label}/{stage.name}", stage.config)
          for stage in models]


def torch_train_images_per_second(config, params, schedule, steps: int) -> float:
  """The PyTorch U-Net's train images/s, after checking it has every parameter of ours."""
  import torch_reference
  network = torch_reference.unet_from_config(config)
  if torch_reference.parameter_shapes(network) != torch_reference.flax_parameter_shapes(params):
    raise SystemExit(f"benchmarks/torch_reference.py's U-Net differs from hdd.maths.unet.UNet for "
                     f"{config.model}")
  return torch_reference.train_images_per_second(config, schedule.alphas_cumprod, steps,
                                                 CPU_THREADS)


def bench_config(label, config, steps, chain_steps, compare_torch: bool = False):
  """One model's row; with `compare_torch` also the PyTorch train step's images/s, timed
  right after ours on the same batch size and schedule."""
  config.train.grad_accum_steps = 1
  mesh = parallel.create_mesh()
  model, schedule = create_model(config), create_schedule(config.diffusion)
  state = jax.device_put(create_train_state(config, model), parallel.replicated(mesh))
  size, channels, batch_size = config.data.image_size, config.data.channels, config.train.batch_size
  batch = {"image": np.random.default_rng(0).uniform(-1, 1, (1, batch_size, size, size, channels)
                                                    ).astype(np.float32),
           "label": np.zeros((1, batch_size), np.int32)}
  batch = parallel.shard_batch(batch, mesh, 1)
  step = compile_train_step(config, mesh).lower(state, batch, schedule).compile()
  holder = {"state": state}

  def one_step():
    holder["state"], metrics = step(holder["state"], batch, schedule)
    return metrics

  train_seconds = timed(one_step, steps)
  train_flops = flops_of(step)
  state = holder["state"]  # The step donates its input state.

  x = jnp.zeros((batch_size, size, size, channels))
  # A conditional cascade stage also sees the stage before's image (zeros here).
  low_res = LowResInput.from_config(config)
  extra = {} if low_res is None else {
      "low_res": jnp.zeros_like(x), "low_res_step": jnp.zeros((batch_size,), jnp.int32)}
  settings = sampling.SamplerSettings("ddim", num_steps=chain_steps, clip_x0=True)
  denoise = lambda params: sampling.model_denoise_fn(model.apply, params, schedule,
                                                     config.diffusion.prediction,
                                                     extra_inputs=extra)
  steps_seq, prev_seq = sampling.reverse_timesteps(settings, schedule.num_steps)
  chain = jax.jit(lambda p, x, k: sampling.run_chain(denoise(p), schedule, settings, x, k,
                                                     steps_seq, prev_seq)[0])
  chain_seconds = timed(lambda: chain(state.ema_params, x, jax.random.PRNGKey(0)), 1)

  @jax.jit
  def one_ddim(p, x, t, t_prev):
    t_b, p_b = jnp.full((batch_size,), t), jnp.full((batch_size,), t_prev)
    return diffusion.ddim_step(schedule, x, t_b, p_b, denoise(p)(x, t_b), clip_x0=True)

  def python_loop():
    y = x
    for t, t_prev in zip(steps_seq, prev_seq):
      y = one_ddim(state.ema_params, y, t, t_prev)
    return y

  loop_seconds = timed(python_loop, 1)
  forward = jax.jit(lambda p, x: model.apply({"params": p}, x, jnp.zeros((batch_size,), jnp.int32),
                                             **extra))
  forward_flops = flops_of(forward.lower(state.params, x).compile())
  row = {"config": label,
         "params": count_params(state.params), "size": f"{size}x{size}x{channels}",
         "dtype": "bf16" if config.train.mixed_precision else "f32",
         "batch": batch_size, "train_img_s": batch_size / train_seconds,
         "train_gflop_s": train_flops / train_seconds / 1e9,
         "forward_mflop_per_img": forward_flops / batch_size / 1e6,
         "sample_img_s_per_step": batch_size * chain_steps / chain_seconds,
         "scan_vs_loop": loop_seconds / chain_seconds}
  if compare_torch:
    row["torch_train_img_s"] = torch_train_images_per_second(config, state.params, schedule,
                                                             steps)
    row["jax_vs_torch"] = row["train_img_s"] / row["torch_train_img_s"]
  return row


def bench_inception(weights_path: str, images: int, batch_size: int = 50) -> dict:
  """FID Inception feature extraction from 28x28 grey images (resize included)."""
  from evaluation import inception, weights
  variables = weights.load_fid_inception(weights_path)
  x = np.random.default_rng(0).uniform(size=(images, 28, 28, 1))
  inception.fid_features(variables, x[:batch_size], batch_size)  # Compile.
  start = time.perf_counter()
  inception.fid_features(variables, x, batch_size)
  seconds = time.perf_counter() - start
  forward = inception._features.lower(variables, jnp.zeros((batch_size, 28, 28, 1))).compile()
  return {"img_s": images / seconds, "gflop_per_img": flops_of(forward) / batch_size / 1e9,
          "gflop_s": flops_of(forward) / batch_size * images / seconds / 1e9}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--configs", default="ddpm_fashion_mnist,ddpm_cifar10")
  parser.add_argument("--variants", default="quick",
                      help="comma-separated config variants: quick, full (the default config)")
  parser.add_argument("--steps", type=int, default=5, help="timed train steps")
  parser.add_argument("--chain_steps", type=int, default=20, help="DDIM steps in the chain timing")
  parser.add_argument("--inception_images", type=int, default=0,
                      help="> 0: also time FID Inception features on this many images")
  parser.add_argument("--torch", action="store_true",
                      help="also time the same U-Net and train step in PyTorch and the "
                      "TorchScript FID Inception (pip install torch==2.14.1)")
  args = parser.parse_args()
  if args.torch:
    try:
      import torch  # noqa: F401
    except ImportError:
      raise SystemExit("--torch needs PyTorch: pip install torch==2.14.1 (benchmark-only)")
  peak = matmul_flops_per_second()
  print(f"device: {jax.devices()[0].device_kind} x{jax.device_count()}; "
        f"XLA float32 matmul: {peak / 1e9:.1f} GFLOP/s; {CPU_THREADS} CPU threads; "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r} (common/xla_flags.py)")
  header = ["config", "params", "size", "dtype", "batch", "train_img_s", "train_gflop_s",
            "forward_mflop_per_img", "sample_img_s_per_step", "scan_vs_loop"]
  header += ["torch_train_img_s", "jax_vs_torch"] if args.torch else []
  print("| " + " | ".join(header) + " | % of matmul |")
  print("|" + "---|" * (len(header) + 1))
  for label, config in [c for name in args.configs.split(",")
                        for variant in args.variants.split(",")
                        for c in model_configs(name, variant)]:
    row = bench_config(label, config, args.steps, args.chain_steps, args.torch)
    cells = [f"{row[k]:.2f}" if isinstance(row[k], float) else str(row[k]) for k in header]
    print("| " + " | ".join(cells) + f" | {100 * row['train_gflop_s'] * 1e9 / peak:.0f}% |",
          flush=True)
  if args.inception_images:
    from evaluation import weights
    row = bench_inception(weights.default_path(), args.inception_images)
    print(f"FID Inception, 28x28 -> 299x299, batch 50: {row['img_s']:.2f} img/s, "
          f"{row['gflop_per_img']:.2f} GFLOP/img, {row['gflop_s']:.1f} GFLOP/s "
          f"({100 * row['gflop_s'] * 1e9 / peak:.0f}% of matmul); 10k images: "
          f"{10_000 / row['img_s'] / 60:.0f} min")
    if args.torch:
      import torch_reference
      torch_img_s = torch_reference.inception_images_per_second(
          weights.default_path(), args.inception_images, CPU_THREADS)
      print(f"TorchScript FID Inception (the same weights), same input: {torch_img_s:.2f} "
            f"img/s; ours / TorchScript: {row['img_s'] / torch_img_s:.2f}x")


if __name__ == "__main__":
  main()
