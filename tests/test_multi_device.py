"""The same global batch on 1 and on 8 (fake CPU) devices gives the same parameters."""
import json
import os
import subprocess
import sys

from helpers import COMPILATION_CACHE


def test_one_and_eight_devices_agree():
  # The check's programs (8 devices' among them) load from the tests' persistent cache when
  # an earlier session compiled them: JAX reads JAX_* settings from the environment.
  xla_flags = " ".join([os.environ.get("XLA_FLAGS", ""),
                        "--xla_force_host_platform_device_count=8"])
  env = dict(os.environ, XLA_FLAGS=xla_flags.strip(),
             HDD_TEST_COMPILATION_CACHE=COMPILATION_CACHE,
             JAX_COMPILATION_CACHE_DIR=COMPILATION_CACHE,
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0.5")
  script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "multi_device_check.py")
  result = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=900,
                          env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads(result.stdout.strip().splitlines()[-1])
  assert report["steps"] == [3, 3]
  assert report["max_abs_diff"] < 1e-5 * max(report["param_scale"], 1.0), report
  assert report["sample_max_diff"] <= 1, report
