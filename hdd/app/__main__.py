"""python -m hdd.app --workdir=DIR [--port=7860] [--workdirs=A,B] [--config=FILE[:VARIANT]]:
the flags of the web app, checked before anything loads, and its start."""

from absl import app as absl_app, flags
from ml_collections import config_flags

from common.errors import UserError, exit_with_error as fail
from hdd.app import page

flags.DEFINE_string("workdir", None, "Workdir of a trained model or cascade to serve.")
config_flags.DEFINE_config_file("config", None, "Config file[:variant] of a workdir that has "
                                "no config.json (one trained before it was kept), read as "
                                "main.py reads its --config.", lock_config=True)
flags.DEFINE_integer("port", 7860, "Port on 127.0.0.1.")
flags.DEFINE_list("workdirs", [], "Further workdirs the page may switch to, chosen from a list "
                  "(the page can load no other directory).")
flags.DEFINE_integer("keep_outputs", page.KEEP_OUTPUTS, "Keep the download files of this many "
                     "latest requests (older ones are deleted, all of them when the server "
                     "stops).")
flags.DEFINE_bool("library_logs", False, "Also show the INFO logs of gradio, orbax and JAX.")
flags.mark_flag_as_required("workdir")
FLAGS = flags.FLAGS


def parse_flags(argv):
  """The flags, with --config loaded now; a mistake in them is one line, as in main.py."""
  try:
    argv = FLAGS(argv)
    if FLAGS.config is not None:
      FLAGS.config.keys()  # A config file that failed to load raises here, not later.
    return argv
  except (flags.Error, OSError, AttributeError, KeyError, TypeError, ValueError) as e:
    from hdd import console
    fail(console.flag_error(e))


def main(argv):
  del argv
  try:
    page.check_start(FLAGS.port, FLAGS.keep_outputs)
  except UserError as e:
    fail(e)
  from common import runtime
  if not FLAGS.library_logs:
    runtime.quiet_logs()
  runtime.configure_runtime()
  application = page.App(FLAGS.workdir, FLAGS.config, FLAGS.workdirs, FLAGS.keep_outputs)
  try:
    page.serve(application, FLAGS.port, FLAGS.library_logs)
  except UserError as e:
    fail(e)
  finally:
    application.close()


if __name__ == "__main__":
  absl_app.run(main, flags_parser=parse_flags)
