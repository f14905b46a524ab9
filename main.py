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
variants: quick (CPU minutes), cond_quick (class-conditional), '' (the published sizes).
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
import os
import sys
import time

from absl import app, flags
from ml_collections import config_flags

from common.errors import Stopped, UserError
from common.files import compilation_cache_dir

config_flags.DEFINE_config_file("config", None, "Config file, optionally path:variant.",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Checkpoints, logs and samples; re-running train resumes.")
flags.DEFINE_enum("mode", "train", ("train", "sample", "eval", "train_classifier", "interpolate",
                                    "forward_process"),
                  "train (then sample) | sample (latest checkpoint) | eval (loss, FID, FCD) | "
                  "train_classifier (for FCD and the cascade's filter) | interpolate (DDIM, "
                  "between noises and classes) | forward_process (q(x_t|x_0) on real images).")
flags.DEFINE_string("compilation_cache", compilation_cache_dir(),
                    "Persistent XLA compilation cache; '' disables.")
flags.DEFINE_string("coordinator_address", "", "Multi-process runs: host:port of process 0 "
                    "(default $JAX_COORDINATOR_ADDRESS; SLURM, Open MPI and TPU pods are "
                    "detected without it).")
flags.DEFINE_integer("num_processes", 0, "Multi-process runs: the number of processes "
                     "(default $JAX_NUM_PROCESSES).")
flags.DEFINE_integer("process_id", -1, "Multi-process runs: this process, 0..num_processes-1 "
                     "(default $JAX_PROCESS_ID).")
flags.DEFINE_integer("join_timeout", 300, "Multi-process runs: seconds a process waits for all "
                     "the others to start before it fails.")
flags.DEFINE_bool("library_logs", False, "Also show the INFO logs of orbax, CLU, JAX and "
                  "TensorFlow (quiet by default).")
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def fail(message: str, exit_code: int = 2, label: str = "error") -> None:
  """Prints `label: line` per line and exits at once: saves were already waited for, and
  library threads stuck on a failed write (orbax) must not keep the process alive."""
  print("\n".join(f"{label}: {line}" for line in str(message).splitlines()), file=sys.stderr,
        flush=True)
  os._exit(exit_code)


def main(argv):
  from common import parallel
  try:
    parallel.initialize_processes(FLAGS.coordinator_address, FLAGS.num_processes,
                                  FLAGS.process_id, FLAGS.join_timeout)   # Before JAX computes.
    parallel.check_same_run(FLAGS.workdir, FLAGS.mode, FLAGS.config.to_json_best_effort())
    from hdd import console, run  # Imported once the flags are known good.
    start = time.perf_counter()
    run.run(FLAGS.config, FLAGS.workdir, FLAGS.mode, FLAGS.compilation_cache)
    if parallel.is_main_process():
      print(console.summary(FLAGS.workdir, FLAGS.mode, sys.argv, time.perf_counter() - start),
            flush=True)
  except UserError as e:
    parallel.leave_last()   # Process 0's end would abort the other processes (JAX).
    fail(str(e))
  except Stopped as e:
    parallel.leave_last()
    fail(str(e), e.exit_code, "stopped")
  except Exception:   # Another process stopped: this one's collectives fail; one line then.
    parallel.exit_if_another_process_stopped()
    raise


def parse_flags(argv):
  try:
    argv = FLAGS(argv)
    FLAGS.config.keys()  # A config file that failed to load raises here, not later.
    if not FLAGS.library_logs:
      from common import runtime
      runtime.quiet_logs()
    return argv
  except flags.Error as e:  # Unknown flags, bad values, missing flags, a config that raised.
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    fail(f"{lines[0].split(': Error')[0]}: {lines[-1]}" if "Traceback" in str(e) else
         " ".join(lines))
  except OSError as e:
    fail(f"cannot load --config: {e}")
  except (AttributeError, KeyError) as e:  # ml_collections: a field the config lacks.
    fail(f"unknown config field {str(e).strip(chr(34) + chr(39))!r}; the fields are listed "
         "in configs/default.py")
  except (TypeError, ValueError) as e:  # ml_collections: a value of the wrong type.
    fail(f"bad config override: {' '.join(str(e).split())}")


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
