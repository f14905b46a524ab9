"""User-facing errors (common.errors): every error caused by input is a UserError (main.py
prints it as one line, exit 2); a stop signal is a Stopped with exit code 128 + signal
and a message that says the checkpoint is complete."""
import signal

import pytest

from common import errors
from hdd import guards


@pytest.mark.parametrize("error", [errors.ConfigError, errors.DataError, errors.CheckpointError,
                                   guards.WorkdirError])
def test_input_errors_are_user_errors(error):
  assert issubclass(error, errors.UserError)
  with pytest.raises(errors.UserError, match="what is wrong"):
    raise error("what is wrong")


def test_stopped_carries_the_exit_code_of_its_signal():
  stopped = errors.Stopped(signal.SIGTERM, "at step 3 of 6 in /runs/w")
  assert not isinstance(stopped, errors.UserError)   # Not reported as an input error.
  assert stopped.exit_code == 128 + 15
  assert str(stopped) == ("by signal 15 at step 3 of 6 in /runs/w; the checkpoint is "
                          "complete, re-run the same command to resume")
  assert errors.Stopped(signal.SIGINT, "while sampling").exit_code == 130
