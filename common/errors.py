"""Errors caused by user input, and the stop a signal asks for. `main.py` prints each as
one line and exits non-zero: 2 for an error, 128 + the signal number for a stop."""
import sys
from typing import NoReturn


class UserError(Exception):
  """Base class: the message says what is wrong and how to fix it."""


class ConfigError(UserError):
  pass


class DataError(UserError):
  pass


class CheckpointError(UserError):
  pass


class Stopped(Exception):
  """A stop signal (SIGTERM, SIGINT) ended the run at a safe point, after its checkpoint."""

  def __init__(self, signum: int, where: str):
    super().__init__(f"by signal {signum} {where}; the checkpoint is complete, re-run "
                     "the same command to resume")
    self.exit_code = 128 + signum


def exit_with_error(message) -> NoReturn:
  """Prints `error: message` as one line on stderr and exits with 2, as main.py does: the
  end of a command-line tool (the web app, the folder preparation) on a user error."""
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(2)
