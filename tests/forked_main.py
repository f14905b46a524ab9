"""Runs of main.py (or another script or `-m` module of the repository) forked from one
process that has already imported what main.py imports (JAX, TensorFlow, orbax, flax, the
project): each run is a process of its own, from its command line to its exit status,
without the 5-9 s of imports a fresh interpreter pays (TensorFlow's are most of it).
helpers.run_python and helpers.BackgroundRun use it; tests of what a start from nothing
prints use a fresh interpreter.

The server (`python tests/forked_main.py`) reads one request a line on stdin, JSON
{"id", "argv", "env", "cwd", "stdout", "stderr"} (stdout and stderr: file paths, the same
path for one file of both), forks, and answers a line "started ID PID" at once and a line
"ended PID STATUS" when the run ends (STATUS negative: the signal that ended it). Runs may
overlap: the processes of a multi-process run start side by side. When its stdin closes,
the server kills the runs still going and exits.
"""
import atexit
import contextlib
import itertools
import json
import os
import runpy
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Read when a library is imported: a run whose environment differs in them starts fresh.
READ_AT_IMPORT = ("JAX_", "TF_", "PYTHON")


def preload() -> None:
  """What main.py has imported by the time it trains, samples or evaluates; `common` first,
  as main.py does (importing it sets the default XLA flags before JAX is imported)."""
  import common  # noqa: F401
  from common import stderr
  stderr.import_tensorflow_quietly()
  from hdd import run  # noqa: F401


def run_request(request: dict) -> None:
  """In the forked child: the script (or, for ARGV `-m MODULE ...`, the module) as `python
  ARGV` would run it. Never returns: the script's SystemExit (absl's app.run always exits)
  ends the child as it ends an interpreter, through the same clean-up."""
  os.chdir(request["cwd"])
  os.environ.clear()
  os.environ.update(request["env"])
  tempfile.tempdir = None   # Found again from the run's TMPDIR, as a new interpreter would.
  from common import xla_flags
  xla_flags.apply_defaults()   # What importing `common` does in a fresh interpreter.
  written = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
  opened = {}   # One open file for stdout and stderr when both name it.
  for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, request["stdout"], written),
                          (2, request["stderr"], written)):
    if path not in opened:
      opened[path] = os.open(path, flags, 0o644)
    os.dup2(opened[path], fd)
  for descriptor in opened.values():
    os.close(descriptor)
  sys.argv = list(request["argv"])
  try:
    if sys.argv[0] == "-m":
      sys.argv, module = sys.argv[1:], sys.argv[1]
      sys.path[0] = os.getcwd()
      runpy.run_module(module, run_name="__main__", alter_sys=True)
    else:
      sys.path[0] = os.path.dirname(os.path.abspath(sys.argv[0]))
      runpy.run_path(sys.argv[0], run_name="__main__")
    status = 0
  except SystemExit as exit_request:
    status = exit_status(exit_request.code)
  except BaseException:  # noqa: BLE001 (reported as an interpreter reports it)
    traceback.print_exc()
    status = 1
  exit_without_finalizing(status)


def exit_status(code) -> int:
  """The status an interpreter exits with for `sys.exit(code)`: 0 for None, the int itself,
  otherwise 1 after printing the code to stderr."""
  if code is None:
    return 0
  if isinstance(code, int):
    return code & 0xFF
  print(code, file=sys.stderr)
  return 1


def exit_without_finalizing(status: int) -> None:
  """Ends the child as an interpreter's exit does (non-daemon threads joined, atexit
  handlers run, stdout and stderr flushed), then skips tearing down the modules the server
  imported: that teardown, which changes nothing a run leaves behind, took ~1.9 s a run."""
  threading._shutdown()   # What the interpreter's exit runs first.
  atexit._run_exitfuncs()
  for stream in (sys.stdout, sys.stderr):
    with contextlib.suppress(Exception):
      stream.flush()
  os._exit(status)


def serve() -> None:
  """Forks a run for each request line, reaping the runs as they end (polled every 20 ms:
  one thread, so that forking never copies another thread's state)."""
  preload()
  answers = os.fdopen(os.dup(1), "w", buffering=1)
  requests = os.fdopen(os.dup(0), "rb", buffering=0)
  running, pending = set(), b""
  while True:
    if select.select([requests], [], [], 0.02)[0]:
      chunk = os.read(requests.fileno(), 65536)
      if not chunk:
        break
      pending += chunk
      while b"\n" in pending:
        line, pending = pending.split(b"\n", 1)
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
          answers.close()
          requests.close()
          run_request(request)
        running.add(pid)
        answers.write(f"started {request['id']} {pid}\n")
    for pid in list(running):
      ended, status = os.waitpid(pid, os.WNOHANG)
      if ended:
        running.discard(pid)
        answers.write(f"ended {pid} {os.waitstatus_to_exitcode(status)}\n")
  for pid in running:   # The tests ended; nothing waits for these any more.
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


class Server:
  """The client side: `start` forks a run and gives its pid, `wait` its exit status; `run`
  is subprocess.run(capture_output=True, text=True) answered by a forked run. Threads may
  share a server."""

  def __init__(self, log: str):
    self.env = dict(os.environ)
    with open(log, "w") as stderr:
      self.process = subprocess.Popen([sys.executable, os.path.abspath(__file__)], cwd=ROOT,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=stderr, bufsize=0)
    self.received = b""
    self.started, self.ended = {}, {}    # {request id: pid}, {pid: exit status}
    self.ids = itertools.count()
    self.reading, self.writing = threading.Lock(), threading.Lock()

  def can_run(self, env: dict) -> bool:
    """Whether a run in `env` sees what a fresh interpreter would."""
    keys = {k for k in set(env) | set(self.env) if k.startswith(READ_AT_IMPORT)}
    return self.process.poll() is None and all(env.get(k) == self.env.get(k) for k in keys)

  def _read_until(self, found, deadline: float) -> bool:
    """Reads the server's answers into `started` and `ended` until `found()` or the
    deadline (time.time()); whether `found()`."""
    while not found():
      if not self.reading.acquire(timeout=max(0.0, min(0.05, deadline - time.time()))):
        if time.time() >= deadline:
          return False
        continue
      try:
        # At least one look, however late: poll() is wait(pid, 0).
        wait_s = min(max(0.0, deadline - time.time()), 0.05)
        if not found() and select.select([self.process.stdout], [], [], wait_s)[0]:
          chunk = os.read(self.process.stdout.fileno(), 4096)
          if not chunk:
            raise RuntimeError("the server of forked main.py runs ended (its log says why)")
          self.received += chunk
          while b"\n" in self.received:
            line, self.received = self.received.split(b"\n", 1)
            kind, key, value = line.decode().split()
            if kind == "started":
              self.started[int(key)] = int(value)
            else:
              self.ended[int(key)] = int(value)
      finally:
        self.reading.release()
      if not found() and time.time() >= deadline:
        return False
    return True

  def start(self, args: list, env: dict, stdout: str, stderr: str) -> int:
    """Forks `python ARGS` in `env`, its output into the files `stdout` and `stderr` (one
    file of both if the same path); returns its pid."""
    request_id = next(self.ids)
    request = {"id": request_id, "argv": list(args), "env": env, "cwd": ROOT,
               "stdout": stdout, "stderr": stderr}
    with self.writing:
      self.process.stdin.write((json.dumps(request) + "\n").encode())
    # The first waits for the imports.
    if not self._read_until(lambda: request_id in self.started, time.time() + 120):
      raise RuntimeError("the server of forked main.py runs did not start the run")
    return self.started.pop(request_id)

  def wait(self, pid: int, timeout: float | None = None) -> int | None:
    """The exit status of the run `pid`, or None if it is still going after `timeout`."""
    deadline = time.time() + (1e9 if timeout is None else timeout)
    if not self._read_until(lambda: pid in self.ended, deadline):
      return None
    return self.ended.pop(pid)

  def run(self, args: list, env: dict, timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as directory:
      out, err = os.path.join(directory, "stdout"), os.path.join(directory, "stderr")
      pid = self.start(args, env, out, err)
      status = self.wait(pid, timeout)
      if status is None:
        os.kill(pid, signal.SIGKILL)
        self.wait(pid, 60)
        raise subprocess.TimeoutExpired(args, timeout)
      with open(out) as f_out, open(err) as f_err:
        return subprocess.CompletedProcess(args, status, f_out.read(), f_err.read())

  def close(self) -> None:
    self.process.stdin.close()
    self.process.wait(timeout=60)


if __name__ == "__main__":
  serve()
