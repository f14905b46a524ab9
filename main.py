"""HDD entry point: parses flags and dispatches to training, sampling or evaluation.

  python main.py --config=configs/ddpm_fashion_mnist.py:quick --workdir=runs/fmnist
  python main.py --config=... --workdir=... --mode=sample

Re-running `train` on the same workdir resumes from the latest checkpoint.
"""
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
MODES = ("train", "sample", "eval", "train_classifier")
config_flags.DEFINE_config_file("config", None, "Config file, optionally path:variant.",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and samples.")
flags.DEFINE_enum("mode", "train", MODES,
                  "train (then sample), sample (from the latest checkpoint), eval (held-out "
                  "loss; sample quality when a classifier is trained), train_classifier (the "
                  "feature classifier for quality and the cascade's filter).")
flags.DEFINE_string("compilation_cache", os.environ.get(
    "HDD_COMPILATION_CACHE", os.path.expanduser("~/.cache/hdd/jax")),
                    "Persistent XLA compilation cache ('' disables): resumed runs, sampling "
                    "and evaluation skip recompiling.")
flags.mark_flags_as_required(["config", "workdir"])


def run(config, workdir: str, mode: str) -> None:
  from hdd import cascade, config_checks, evaluate, generate, train  # After TF hides GPUs.
  config_checks.check_config(config)
  if mode == "train_classifier":
    sizes = ([config.stages[name].image_size for name in cascade.stage_names(config)]
             if cascade.is_cascade(config) else [config.data.image_size])
    evaluate.train_classifiers(config, sizes, workdir)
  elif cascade.is_cascade(config):
    run_cascade(config, workdir, mode)
  elif mode == "train":
    state = train.train_and_evaluate(config, workdir)
    if config.sample.num_samples > 0:
      generate.generate_and_save(config, state.ema_params, workdir)
  elif mode == "sample":
    generate.generate_and_save(config, train.restore_params(config, workdir), workdir)
  elif mode == "eval":
    evaluate.evaluate_loss(config, train.restore_params(config, workdir), workdir)
    evaluate_quality(config, workdir)


def evaluate_quality(config, workdir: str) -> None:
  """FID/KID and classifier distances of the saved samples, when there are samples."""
  from hdd import evaluate
  if os.path.exists(os.path.join(workdir, "samples", "samples.npz")):
    evaluate.evaluate_samples(config, workdir)
  else:
    logging.warning("No sample quality: no %s/samples/samples.npz (run --mode=sample).",
                    workdir)


def run_cascade(config, workdir: str, mode: str) -> None:
  """The same modes for a hierarchical config: every stage under WORKDIR/<stage>/."""
  from hdd import cascade, evaluate
  if mode == "train":
    trained = cascade.train_cascade(config, workdir)
    if config.stage:
      cascade.write_timing_table(config, workdir)
      logging.info("Trained stage %d only; sample once every stage is trained.", config.stage)
      return
    if config.sample.num_samples > 0:
      cascade.generate_and_save(config, trained, workdir, cascade.load_critic(config, workdir))
  elif mode == "sample":
    cascade.generate_and_save(config, cascade.restore_cascade(config, workdir), workdir,
                              cascade.load_critic(config, workdir))
  elif mode == "eval":
    for name, params in cascade.restore_cascade(config, workdir).items():
      evaluate.evaluate_loss(cascade.stage_config(config, name), params,
                             cascade.stage_workdir(workdir, name))
    evaluate_quality(config, workdir)


def main(argv):
  del argv
  import tensorflow as tf
  tf.config.set_visible_devices([], "GPU")  # tf.data must never take accelerator memory.
  import jax
  from hdd.errors import UserError
  if FLAGS.compilation_cache:
    jax.config.update("jax_compilation_cache_dir", FLAGS.compilation_cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
  logging.info("JAX process %d/%d, local devices: %s", jax.process_index(), jax.process_count(),
               jax.local_devices())
  from hdd import workdir
  try:
    with workdir.exclusive(FLAGS.workdir):
      run(FLAGS.config, FLAGS.workdir, FLAGS.mode)
  except UserError as e:
    for line in str(e).splitlines():
      print(f"error: {line}", file=sys.stderr)
    sys.exit(2)
  except OSError as e:  # A full disk or a vanished directory mid-run.
    print(f"error: {e.strerror or e}: {e.filename or ''}; the last complete checkpoint is "
          "kept; fix this and re-run the same command to resume", file=sys.stderr)
    sys.exit(2)


def parse_flags(argv):
  """absl's flag parsing, with one `error:` line and exit 2 for a bad flag or override."""
  def fail(message: str):
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(2)

  try:
    argv = FLAGS(argv)
    FLAGS.config.keys()  # A config file that failed to load raises here, not later.
    return argv
  except flags.Error as e:  # Unknown flags, bad values, missing --config/--workdir.
    lines = [line for line in str(e).splitlines() if line.strip()]
    if any(line.startswith("Traceback") for line in lines):  # The config file raised.
      fail(f"{lines[0].split(': Error')[0]}: {lines[-1].strip()}")
    fail(e)
  except OSError as e:
    fail(f"cannot load --config: {e}")
  except (AttributeError, KeyError) as e:  # ml_collections: a field the config lacks.
    fail(f"unknown config field {str(e).strip(chr(34) + chr(39))!r}; the fields are listed "
         "in configs/default.py")
  except (TypeError, ValueError) as e:  # ml_collections: a value of the wrong type.
    fail(f"bad config override: {e}")


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
