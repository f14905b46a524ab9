"""Keeping C++ start-up notices off the terminal (common.stderr): which lines of file
descriptor 2 are dropped, and TensorFlow imported without its notices."""
import os
import re
import subprocess
import sys

from common import stderr
from helpers import ROOT


def test_cpp_info_records_and_their_continuations_are_dropped():
  text = ("WARNING: All log messages before absl::InitializeLog() is called are written to "
          "STDERR\n"
          "I0000 00:00:1796122236.232014    5572 port.cc:153] oneDNN custom operations are on.\n"
          "I0000 00:00:1796122236.5  5572 cpu_feature_guard.cc:210] This binary is optimized\n"
          "To enable the following instructions: AVX2, rebuild TensorFlow.\n"
          "W0000 00:00:1796122237.1  5572 gpu.cc:1] Cannot dlopen some GPU libraries.\n"
          "Traceback (most recent call last):\n")
  assert stderr.without_info_records(text) == (
      "W0000 00:00:1796122237.1  5572 gpu.cc:1] Cannot dlopen some GPU libraries.\n"
      "Traceback (most recent call last):\n")


def test_what_follows_a_kept_record_or_an_error_is_kept():
  """Continuation lines of a warning stay with it; an error line ends an INFO record's
  continuation; text without notices passes unchanged."""
  text = ("W0000 00:00:1.0  1 gpu.cc:1] Cannot dlopen some GPU libraries.\n"
          "Skipping registering GPU devices...\n"
          "I0000 00:00:1.0  1 port.cc:1] notice\n"
          "more of the notice\n"
          "RuntimeError: the real problem\n"
          "and its detail\n")
  assert stderr.without_info_records(text) == (
      "W0000 00:00:1.0  1 gpu.cc:1] Cannot dlopen some GPU libraries.\n"
      "Skipping registering GPU devices...\n"
      "RuntimeError: the real problem\n"
      "and its detail\n")
  plain = "a warning of Python\nwithout a final newline"
  assert stderr.without_info_records(plain) == plain


def test_without_notices_passes_other_output_of_descriptor_2(capfd):
  with stderr.without_notices():
    os.write(2, b"I0000 00:00:1.0  1 port.cc:1] notice\nImportError: real problem\n")
  assert capfd.readouterr().err == "ImportError: real problem\n"


def test_tensorflow_is_imported_without_its_start_up_notices():
  """A plain `import tensorflow` here prints absl's notice and INFO records (oneDNN, CPU
  features) on descriptor 2; the quiet import prints none of them."""
  result = subprocess.run(
      [sys.executable, "-c", "import sys\nfrom common import stderr\n"
       "stderr.import_tensorflow_quietly()\nprint('tensorflow' in sys.modules)"],
      cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert result.returncode == 0 and result.stdout == "True\n", result.stderr
  assert not re.search(r"^I\d{4} |absl::InitializeLog", result.stderr, re.M), result.stderr
