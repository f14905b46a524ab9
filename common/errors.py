"""Errors caused by user input. `main.py` prints them as one line and exits non-zero."""


class UserError(Exception):
  """Base class: the message says what is wrong and how to fix it."""


class ConfigError(UserError):
  pass


class DataError(UserError):
  pass


class CheckpointError(UserError):
  pass
