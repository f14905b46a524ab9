"""HDD: hierarchical (cascaded) diffusion models in JAX.

  python main.py --config=CONFIG[:VARIANT] --workdir=DIR [--mode=MODE] [--config.FIELD=VALUE]

Modes (--mode):
  train             train, or resume what DIR holds, then sample (default)
  sample            sample from the latest checkpoint(s)
  eval              held-out loss, FID/KID and the classifier distance of the samples
  train_classifier  the feature classifier of the classifier distance and of the filter
  interpolate       DDIM interpolations between noises (and classes), through every stage
  forward_process   a picture of q(x_t | x_0) on real images

Configs: configs/hdd_mnist.py, hdd_fashion_mnist.py, hdd_cifar10.py, ddpm_*.py, ...;
variants: '' (the published sizes), quick (CPU minutes), budget (a 30-minute wall-clock
recipe), and cond, cond_quick, cond_budget (class-conditional) where the data has labels.
Most used overrides:
  --config.stages.stage1.train.num_steps=N   training steps of a stage (a cascade)
  --config.train.num_steps=N                 training steps (a single model)
  --config.sample.num_samples=N              images sampled after training
  --config.train.fid_every=N                 FID curve during training
  --config.data.path=PATH                    data file or folder (MNIST npz, ...)
Every field is listed, with its meaning, in configs/default.py.

Several processes (GPU hosts, a TPU pod slice): the same command on each, with
--coordinator_address=HOST:PORT --num_processes=N --process_id=K (or JAX's environment).
A process that meets not all the others within --join_timeout seconds, or whose flags differ
from process 0's, fails; when one stops mid-run, the others fail within seconds: restart all.

Then: python -m hdd.app --workdir=DIR serves the trained model in a web page.
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from common.errors import Stopped, UserError
from common.files import compilation_cache_dir

config_flags.DEFINE_config_file("config", None, "Config file, optionally path:variant.",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Checkpoints, logs and samples; re-running train resumes.")
flags.DEFINE_enum("mode", "train", ("train", "sample", "eval", "train_classifier", "interpolate",
                                    "forward_process"), "What to run (see above).")
flags.DEFINE_string("compilation_cache", compilation_cache_dir(),
                    "Persistent XLA compilation cache; '' disables.")
flags.DEFINE_string("coordinator_address", "", "Multi-process: host:port of process 0 (default "
                    "$JAX_COORDINATOR_ADDRESS; SLURM, Open MPI and TPU pods need none).")
flags.DEFINE_integer("num_processes", 0, "Multi-process: how many (default $JAX_NUM_PROCESSES).")
flags.DEFINE_integer("process_id", -1, "Multi-process: this one, 0.. (default $JAX_PROCESS_ID).")
flags.DEFINE_integer("join_timeout", 300, "Multi-process: seconds to wait for all the others.")
flags.DEFINE_bool("library_logs", False, "Also show the INFO logs of orbax, CLU, JAX and "
                  "TensorFlow (quiet by default).")
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def main(argv):
  from common import parallel
  from hdd import console
  try:
    parallel.initialize_processes(FLAGS.coordinator_address, FLAGS.num_processes,
                                  FLAGS.process_id, FLAGS.join_timeout)   # Before JAX computes.
    parallel.check_same_run(FLAGS.workdir, FLAGS.mode, FLAGS.config.to_json_best_effort())
    from hdd import run  # Imported once the flags are known good.
    run.run(FLAGS.config, FLAGS.workdir, FLAGS.mode, FLAGS.compilation_cache, sys.argv)
  except (UserError, Stopped) as e:
    parallel.leave_last()   # Process 0's end would abort the other processes (JAX).
    console.fail(str(e), *((e.exit_code, "stopped") if isinstance(e, Stopped) else ()))
  except Exception:   # Another process stopped: this one's collectives fail; one line then.
    parallel.exit_if_another_process_stopped()
    raise


def parse_flags(argv):
  try:
    argv = FLAGS(argv)
    FLAGS.config.keys()  # A config file that failed to load raises here, not later.
  except (flags.Error, OSError, AttributeError, KeyError, TypeError, ValueError) as e:
    from hdd import console
    console.fail(console.flag_error(e))
  if not FLAGS.library_logs:
    from common import runtime
    runtime.quiet_logs()
  return argv


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
