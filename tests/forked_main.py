"""Runs of main.py (or another script of the repository) forked from one process that has
already imported what main.py imports (JAX, TensorFlow, orbax, flax, the project): each run
is a process of its own, from its command line to its exit status, without the ~5 s of
imports a fresh interpreter pays. helpers.run_python uses it; tests of what a start from
nothing prints use a fresh interpreter.

The server (`python tests/forked_main.py`) reads one request a line on stdin, JSON
{"argv", "env", "cwd", "stdout", "stderr"}, forks, and answers two lines: the run's pid
when it starts, then its exit status (negative: the signal that ended it).
"""
import json
import os
import runpy
import select
import signal
import subprocess
import sys
import tempfile
import time

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
  """In the forked child: the script as `python ARGV` would run it. Never returns: the
  script's SystemExit (absl's app.run always exits) ends the child as it ends an
  interpreter, through the same clean-up."""
  os.chdir(request["cwd"])
  os.environ.clear()
  os.environ.update(request["env"])
  from common import xla_flags
  xla_flags.apply_defaults()   # What importing `common` does in a fresh interpreter.
  for fd, path, flags in ((0, os.devnull, os.O_RDONLY),
                          (1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                          (2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
    opened = os.open(path, flags, 0o644)
    os.dup2(opened, fd)
    os.close(opened)
  sys.argv = list(request["argv"])
  sys.path[0] = os.path.dirname(os.path.abspath(sys.argv[0]))
  runpy.run_path(sys.argv[0], run_name="__main__")
  sys.exit(0)


def serve() -> None:
  preload()
  answers = os.fdopen(os.dup(1), "w", buffering=1)
  for line in sys.stdin:
    request = json.loads(line)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
      answers.close()
      run_request(request)
    answers.write(f"{pid}\n")
    _, status = os.waitpid(pid, 0)
    answers.write(f"{os.waitstatus_to_exitcode(status)}\n")


class Server:
  """The client side: `run` is subprocess.run(capture_output=True, text=True) answered by
  a forked run."""

  def __init__(self, log: str):
    self.env = dict(os.environ)
    with open(log, "w") as stderr:
      self.process = subprocess.Popen([sys.executable, os.path.abspath(__file__)], cwd=ROOT,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=stderr, bufsize=0)
    self.received = b""

  def can_run(self, env: dict) -> bool:
    """Whether a run in `env` sees what a fresh interpreter would."""
    keys = {k for k in set(env) | set(self.env) if k.startswith(READ_AT_IMPORT)}
    return self.process.poll() is None and all(env.get(k) == self.env.get(k) for k in keys)

  def _answer(self, deadline: float) -> str:
    """The server's next line, or '' if none came before `deadline` (time.time())."""
    while b"\n" not in self.received:
      left = deadline - time.time()
      if left <= 0 or not select.select([self.process.stdout], [], [], left)[0]:
        return ""
      chunk = os.read(self.process.stdout.fileno(), 4096)
      if not chunk:
        raise RuntimeError("the server of forked main.py runs ended (its log says why)")
      self.received += chunk
    line, self.received = self.received.split(b"\n", 1)
    return line.decode()

  def run(self, args: list, env: dict, timeout: float) -> subprocess.CompletedProcess:
    deadline = time.time() + timeout
    with tempfile.TemporaryDirectory() as directory:
      out, err = os.path.join(directory, "stdout"), os.path.join(directory, "stderr")
      request = {"argv": args, "env": env, "cwd": ROOT, "stdout": out, "stderr": err}
      self.process.stdin.write((json.dumps(request) + "\n").encode())
      pid = self._answer(time.time() + 120)   # The first waits for the imports.
      if not pid:
        raise RuntimeError("the server of forked main.py runs did not start the run")
      status = self._answer(deadline)
      if not status:
        os.kill(int(pid), signal.SIGKILL)
        self._answer(time.time() + 60)
        raise subprocess.TimeoutExpired(args, timeout)
      with open(out) as f_out, open(err) as f_err:
        return subprocess.CompletedProcess(args, int(status), f_out.read(), f_err.read())

  def close(self) -> None:
    self.process.stdin.close()
    self.process.wait(timeout=60)


if __name__ == "__main__":
  serve()
