"""HDD entry point: flags, one call to `hdd.run`, every error as one `error:` line, exit 2.

  python main.py --config=configs/hdd_fashion_mnist.py:quick --workdir=runs/hdd_fmnist
"""
import sys

from absl import app, flags
from ml_collections import config_flags

from common.errors import UserError
from common.files import compilation_cache_dir

config_flags.DEFINE_config_file("config", None, "Config file, optionally path:variant.",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Checkpoints, logs and samples; re-running train resumes.")
flags.DEFINE_enum("mode", "train", ("train", "sample", "eval", "train_classifier"),
                  "train (then sample) | sample (latest checkpoint) | eval (loss, FID, FCD) | "
                  "train_classifier (for FCD and the cascade's filter).")
flags.DEFINE_string("compilation_cache", compilation_cache_dir(),
                    "Persistent XLA compilation cache; '' disables.")
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def fail(message: str) -> None:
  print("\n".join(f"error: {line}" for line in str(message).splitlines()), file=sys.stderr)
  sys.exit(2)


def main(_):
  from hdd import run  # Imported once the flags are known good.
  try:
    run.run(FLAGS.config, FLAGS.workdir, FLAGS.mode, FLAGS.compilation_cache)
  except UserError as e:
    fail(str(e))
  except OSError as e:  # A full disk or a vanished directory mid-run.
    fail(f"{e.strerror or e}: {e.filename or ''}; the last complete checkpoint is kept; fix "
         "this and re-run the same command to resume")


def parse_flags(argv):
  try:
    argv = FLAGS(argv)
    FLAGS.config.keys()  # A config file that failed to load raises here, not later.
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
