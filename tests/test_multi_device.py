"""The same global batch on 1 and on 8 (fake CPU) devices gives the same parameters."""
import json
import os
import subprocess
import sys

from helpers import COMPILATION_CACHE


def test_one_and_eight_devices_agree():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             HDD_TEST_COMPILATION_CACHE=COMPILATION_CACHE)
  script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "multi_device_check.py")
  result = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=900,
                          env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads(result.stdout.strip().splitlines()[-1])
  assert report["steps"] == [3, 3]
  assert report["max_abs_diff"] < 1e-5 * max(report["param_scale"], 1.0), report
  assert report["sample_max_diff"] <= 1, report
