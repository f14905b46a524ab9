"""The app's refusals at start-up (port, --config), before anything loads. Sampling on
request without a trained model: tests/test_serving.py."""
import os
import socket
import subprocess
import sys
import time

from helpers import ROOT, free_port


def start_app(tmp_path, *args):
  """`python -m hdd.app` with `args` and TMPDIR=tmp_path: (result, seconds)."""
  start = time.perf_counter()
  result = subprocess.run([sys.executable, "-m", "hdd.app", *args], cwd=ROOT, timeout=60,
                          capture_output=True, text=True,
                          env=dict(os.environ, TMPDIR=str(tmp_path)))
  return result, time.perf_counter() - start


def test_a_busy_or_impossible_port_stops_the_app_before_it_loads(tmp_path):
  with socket.socket() as busy:
    busy.bind(("127.0.0.1", free_port()))
    busy.listen()
    port = busy.getsockname()[1]
    result, seconds = start_app(tmp_path, f"--workdir={tmp_path}", f"--port={port}")
  assert result.returncode == 2 and seconds < 20
  assert result.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port} (Address "
                                  "already in use)")
  assert len(result.stderr.splitlines()) == 1 and "Serving" not in result.stdout
  result, seconds = start_app(tmp_path, f"--workdir={tmp_path}", "--port=99999")
  assert result.returncode == 2 and seconds < 20
  assert result.stderr == "error: --port=99999: must lie in [1, 65535]\n"
  # --config is read as main.py reads it (ml_collections' config_flags), before anything.
  result, seconds = start_app(tmp_path, f"--workdir={tmp_path}", "--config=missing.py")
  assert result.returncode == 2 and seconds < 20
  assert result.stderr == ("error: cannot load --config: [Errno 2] No such file or directory: "
                           "'missing.py'\n")
  result, _ = start_app(tmp_path, f"--workdir={tmp_path}",
                        "--config=tests/tiny_configs.py:cascade_cond", "--config.nosuch=1")
  assert result.returncode == 2 and result.stderr.startswith("error: unknown config field")
  assert not os.listdir(tmp_path)   # Nothing made, nothing left behind.
