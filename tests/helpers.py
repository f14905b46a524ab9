"""What several test files share: tiny datasets made by the tests themselves, tiny
configs, and running main.py in a process of its own."""
import contextlib
import functools
import os
import signal
import socket
import subprocess
import sys

import numpy as np

from configs import default
from random_weights import random_state_dict
from tiny_configs import get_config as _tiny_get_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# XLA:CPU spends ~20 s compiling even a tiny U-Net's train step; tests that build the same
# computation share the compiled program through JAX's persistent cache.
COMPILATION_CACHE = os.environ.get("HDD_TEST_COMPILATION_CACHE", "/tmp/hdd-test-jax-cache")


def tiny_config(data_path: str = ""):
  """The tiny 8x8 DDPM of tests/tiny_configs.py."""
  return _tiny_get_config("", data_path)


def tiny_cascade(variant: str = "cascade", data_path: str = ""):
  """A tiny cascade of tests/tiny_configs.py: 'cascade' (4->8) or 'cascade3' (4->8->16)."""
  return _tiny_get_config(variant, data_path)


def tiny_sampling_config():
  """The tiny DDPM sampling 2 steps in batches of 4: for tests that sample fresh parameters."""
  config = tiny_config()
  config.sample.update(num_steps=2, batch_size=4)
  return config


def tiny_data_config(**fields):
  """The default data config at 8x8 with `fields` overridden."""
  config = default.get_config().data
  config.image_size = 8
  for key, value in fields.items():
    config[key] = value
  return config


def load_golden() -> dict:
  """tests/golden/inception_golden.npz (made by tests/make_inception_golden.py) as a dict."""
  with np.load(os.path.join(ROOT, "tests", "golden", "inception_golden.npz")) as data:
    return {k: data[k] for k in data.files}


def golden_state_dict(golden: dict) -> dict:
  """The seeded random Inception weights the golden features were computed with."""
  shapes = [tuple(int(d) for d in s.strip("()").split(",") if d.strip())
            for s in golden["shapes"]]
  return random_state_dict(list(zip(golden["names"], shapes)), int(golden["seed"]))


def make_stripes(num: int = 64, size: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """uint8 images [num, size, size]: class 0 has horizontal stripes, class 1 vertical."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 2, num).astype(np.uint8)
  images = np.zeros((num, size, size), np.uint8)
  phase = rng.integers(0, 2, num)
  for i in range(num):
    stripes = ((np.arange(size) + phase[i]) % 2 * 255).astype(np.uint8)
    images[i] = stripes[:, None] if labels[i] == 0 else stripes[None, :]
  return images, labels


def stripes_batch(num: int, seed: int) -> dict:
  """A training batch of stripes in the model's range: {'image': [num, 8, 8, 1] in [-1, 1]}."""
  images, labels = make_stripes(num, seed=seed)
  return {"image": images[..., None].astype(np.float32) / 127.5 - 1, "label": labels}


def save_stripes_npz(path: str, num: int = 64, size: int = 8) -> str:
  """A Keras-style npz of stripes: x_train/y_train (num), x_test/y_test (the first 16)."""
  images, labels = make_stripes(num, size=size)
  np.savez(path, x_train=images, y_train=labels, x_test=images[:16], y_test=labels[:16])
  return path


def save_colour_npz(directory: str, num: int = 200, size: int = 32) -> tuple[str, str]:
  """(train, test) Keras-style npz files of colour stripes, shaped like the shared CIFAR-10
  files: train.npz holds only x_train/y_train (`num` RGB images, class 0 red horizontal
  stripes, class 1 blue vertical), test.npz only x_test/y_test (its own 32 images), so
  the test split is found in the test file or nowhere."""
  paths = []
  for split, count, seed in (("train", num, 0), ("test", 32, 1)):
    grey, labels = make_stripes(count, size=size, seed=seed)
    colour = np.zeros(grey.shape + (3,), np.uint8)
    colour[labels == 0, ..., 0] = grey[labels == 0]
    colour[labels == 1, ..., 2] = grey[labels == 1]
    paths.append(os.path.join(directory, f"{split}.npz"))
    np.savez(paths[-1], **{f"x_{split}": colour, f"y_{split}": labels})
  return paths[0], paths[1]


def run_main(*args, config="tests/tiny_configs.py", fresh: bool = False):
  """main.py with `args` in a process of its own (`run_python`), sharing the tests'
  compilation cache."""
  env = dict(os.environ, HDD_COMPILATION_CACHE=COMPILATION_CACHE)
  return run_python(["main.py", f"--config={config}", *args], env, fresh=fresh)


def run_python(args, env: dict, timeout: float = 600, fresh: bool = False):
  """`python ARGS` in the repository in a process of its own, as subprocess.run with
  capture_output=True, text=True would: forked from one that has imported the libraries
  already (tests/forked_main.py), or with `fresh`, a new interpreter (for what a start from
  nothing prints). A forked run's exit finalizes the libraries the server imported (~1.9 s),
  so scripts that refuse their input before importing them are faster in a new interpreter
  (tests/test_experiment_inputs.py, tests/test_app_requests.py)."""
  if not fresh and _forked_server().can_run(env):
    return _forked_server().run(list(args), env, timeout)
  return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                        timeout=timeout, env=env)


class BackgroundRun:
  """`python ARGS` in the repository running in the background, forked like `run_python`'s
  runs (a new interpreter where the server cannot run it), its stdout and stderr (or both
  into one: `merge_stderr`) into files: the part of subprocess.Popen's interface the tests
  use, and `output()`."""

  def __init__(self, args: list, env: dict, merge_stderr: bool = False):
    import tempfile
    self.args, self.returncode = list(args), None
    self.directory = tempfile.mkdtemp(prefix="run-", dir=_outputs_directory())
    self.stdout_path = os.path.join(self.directory, "stdout")
    self.stderr_path = self.stdout_path if merge_stderr else os.path.join(self.directory,
                                                                           "stderr")
    self.server = _forked_server() if _forked_server().can_run(env) else None
    if self.server:
      self.pid = self.server.start(self.args, env, self.stdout_path, self.stderr_path)
      return
    with open(self.stdout_path, "w") as out, open(self.stderr_path, "a") as err:
      self.popen = subprocess.Popen([sys.executable, *self.args], cwd=ROOT, env=env,
                                    stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT if merge_stderr else err)
    self.pid = self.popen.pid

  def poll(self):
    return self._status(0.0)

  def wait(self, timeout=None) -> int:
    if self._status(timeout) is None:
      raise subprocess.TimeoutExpired(self.args, timeout)
    return self.returncode

  def _status(self, timeout):
    if self.returncode is None:
      if self.server:
        self.returncode = self.server.wait(self.pid, timeout)
      else:
        with contextlib.suppress(subprocess.TimeoutExpired):
          self.returncode = self.popen.wait(timeout)
    return self.returncode

  def send_signal(self, sig) -> None:
    if self.poll() is None:
      with contextlib.suppress(ProcessLookupError):   # It ended just now.
        os.kill(self.pid, sig)

  def kill(self) -> None:
    self.send_signal(signal.SIGKILL)

  def terminate(self) -> None:
    self.send_signal(signal.SIGTERM)

  def output(self, timeout=None) -> tuple[str, str]:
    """(stdout, stderr) once the run ended (stdout holds both with `merge_stderr`)."""
    self.wait(timeout)
    with open(self.stdout_path) as out, open(self.stderr_path) as err:
      return out.read(), err.read()


@functools.cache
def _outputs_directory() -> str:
  """A directory for the outputs of this process's background runs, removed at its exit."""
  import atexit
  import shutil
  import tempfile
  directory = tempfile.mkdtemp(prefix="hdd-runs-")
  atexit.register(shutil.rmtree, directory, ignore_errors=True)
  return directory


@functools.cache
def _forked_server():
  import atexit
  import tempfile
  from forked_main import Server
  server = Server(os.path.join(tempfile.gettempdir(), f"hdd-forked-main-{os.getpid()}.log"))
  atexit.register(server.close)
  return server


def train_tiny(root, name: str, *args, config="tests/tiny_configs.py") -> tuple[str, str]:
  """(data, workdir): stripes written into `root` and a model of `config` trained on them
  by main.py into root/name (a module's shared trained model)."""
  return train_tiny_run(root, name, *args, config=config)[:2]


def train_tiny_run(root, name: str, *args, config="tests/tiny_configs.py", fresh: bool = False
                   ) -> tuple[str, str, subprocess.CompletedProcess]:
  """`train_tiny`, and main.py's run that trained it (`fresh`: in a new interpreter, for
  tests of what a run prints from its start)."""
  data = save_stripes_npz(os.path.join(root, "stripes.npz"))
  workdir = os.path.join(root, name)
  trained = run_main(f"--config.data.path={data}", f"--workdir={workdir}", *args, config=config,
                     fresh=fresh)
  assert trained.returncode == 0, trained.stderr[-3000:]
  return data, workdir, trained


def copy_workdir(trained: str, root) -> str:
  """A copy of the workdir `trained` under `root`, for a test that changes it."""
  import shutil
  return shutil.copytree(trained, os.path.join(root, "w"))


def free_port() -> int:
  """A TCP port on 127.0.0.1 that nothing listens on now."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def half_templates(size: int) -> np.ndarray:
  """Two class templates in [-1, 1], [2, size, size, 1]: class 0 bright on top, class 1
  bright on the left (block means of any even size keep them exact)."""
  templates = -np.ones((2, size, size, 1), np.float32)
  templates[0, :size // 2] = 1.0
  templates[1, :, :size // 2] = 1.0
  return templates


class TemplateDenoiser:
  """Stands in for the U-Net of a model whose data is one template image per class: it
  returns the exact eps = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t) for x0 = the label's
  template (the null label: their mean; class weights [B, C + 1]: that mixture). Any
  sampler then ends on the template, so a sample shows which label reached the network.
  `calls` records (image side, rows) of every evaluation inside the compiled chain."""

  def __init__(self, config, calls: list):
    from hdd.build import create_schedule
    self.schedule = create_schedule(config.diffusion)
    templates = half_templates(config.data.image_size)
    self.table = np.concatenate([templates, templates.mean(0, keepdims=True)])
    self.calls = calls

  def apply(self, variables, x, t, labels=None, train=False):
    import jax
    import jax.numpy as jnp
    del variables, train
    rows, side = x.shape[0], x.shape[1]
    jax.debug.callback(lambda: self.calls.append((side, rows)))
    table = jnp.asarray(self.table)
    x0 = (table[labels] if labels.ndim == 1 else
          jnp.einsum("bk,khwc->bhwc", labels, table))
    abar = jnp.asarray(self.schedule.alphas_cumprod)[t][:, None, None, None]
    return (x - jnp.sqrt(abar) * x0) / jnp.sqrt(1.0 - abar)
