"""Errors caused by user input, and the stop a signal asks for. `main.py` prints each as
one line and exits non-zero: 2 for an error, 128 + the signal number for a stop."""


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
