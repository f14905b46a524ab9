"""Fuzzing with Hypothesis: random and mutated bytes for every file the codebase reads
(npz, idx, image files, weights files, checkpoint files) and random values for every
config field. Each case ends in success or a `UserError` (what main.py prints as one
`error:` line with exit 2): never another exception, a hang, code execution or a lost
checkpoint. Each case has a time bound; the file runs in about two minutes."""
import contextlib
import gzip
import io
import os
import pickle
import shutil
import signal
import zipfile

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings, strategies as st
from PIL import Image

from common.errors import ConfigError, UserError
from configs import default
from evaluation import torch_pickle, weights
from helpers import make_stripes, run_main, tiny_cascade, tiny_config
from hdd import checkpoints, config_checks, stages, train_step
from hdd.build import create_model
from hdd.optimizer import create_optimizer, learning_rate_fn
from hdd.plan import SamplingPlan
from input_pipeline import pipeline, sources

FUZZ = settings(max_examples=20, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


@contextlib.contextmanager
def time_bound(seconds: float):
  """Fails the case if it runs longer than `seconds` (a hang is a failure, not a wait)."""
  def expire(signum, frame):
    raise TimeoutError(f"a fuzz case ran over {seconds} s")

  previous = signal.signal(signal.SIGALRM, expire)
  signal.setitimer(signal.ITIMER_REAL, seconds)
  try:
    yield
  finally:
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


def mutated(data: bytes):
  """A strategy of `data` with bytes flipped, cut, inserted or the file truncated."""
  def apply(edits):
    out = bytearray(data)
    for kind, position, value in edits:
      position %= max(len(out), 1)
      if kind == "flip" and out:
        out[position] ^= value or 1
      elif kind == "cut":
        del out[position:position + value]
      elif kind == "insert":
        out[position:position] = bytes([value]) * (value % 7 + 1)
      else:
        del out[position:]
    return bytes(out)

  edit = st.tuples(st.sampled_from(["flip", "cut", "insert", "truncate"]),
                   st.integers(0, 2**20), st.integers(0, 255))
  return st.lists(edit, min_size=1, max_size=6).map(apply)


def either(data: bytes):
  return st.one_of(mutated(data), st.binary(max_size=2048))


def expect_success_or_user_error(fn):
  try:
    with time_bound(30):
      return fn()
  except UserError as e:
    assert str(e).strip(), "an error needs a message"
    return None


def npz_bytes() -> bytes:
  images, labels = make_stripes(32)
  buffer = io.BytesIO()
  np.savez_compressed(buffer, x_train=images, y_train=labels)
  return buffer.getvalue()


@FUZZ
@given(data=either(npz_bytes()))
def test_npz_files(tmp_path_factory, data):
  path = tmp_path_factory.mktemp("npz") / "data.npz"
  path.write_bytes(data)
  config = tiny_config(str(path))
  expect_success_or_user_error(lambda: sources.create_source(config.data))


def idx_bytes() -> bytes:
  images, _ = make_stripes(8)
  return bytes([0, 0, 8, 3]) + b"".join(n.to_bytes(4, "big") for n in images.shape) + \
      images.tobytes()


@FUZZ
@given(data=either(idx_bytes()), compressed=st.booleans())
def test_idx_files(tmp_path_factory, data, compressed):
  path = tmp_path_factory.mktemp("idx") / ("f.gz" if compressed else "f")
  path.write_bytes(gzip.compress(data) if compressed else data)
  expect_success_or_user_error(lambda: sources.read_idx(str(path)))


def image_bytes(fmt: str) -> bytes:
  buffer = io.BytesIO()
  image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 10, 3), np.uint8))
  image.convert("P" if fmt == "GIF" else "RGB").save(buffer, format=fmt)
  return buffer.getvalue()


@FUZZ
@given(fmt=st.sampled_from(["PNG", "JPEG", "GIF", "BMP", "WEBP"]), data=st.data())
def test_image_files_that_pass_the_check_train(tmp_path_factory, fmt, data):
  folder = tmp_path_factory.mktemp("images")
  good = image_bytes(fmt)
  (folder / f"good.{fmt.lower()}").write_bytes(good)
  (folder / f"fuzzed.{fmt.lower()}").write_bytes(data.draw(either(good)))

  def load_every_image():
    source = sources.folder_source(str(folder), 8, data.draw(st.sampled_from([1, 3])), "center",
                                   bad_images="skip")
    batches = pipeline.build_dataset(source, 2, seed=0, num_epochs=1).as_numpy_iterator()
    return sum(len(batch["image"]) for batch in batches) == source.num_examples

  assert expect_success_or_user_error(load_every_image) in (True, None)


def legacy_weights() -> bytes:
  buffer = io.BytesIO()
  for part in (torch_pickle.LEGACY_MAGIC, 1001, {"little_endian": True},
               {"fc.weight": [1.0, 2.0]}, []):
    pickle.dump(part, buffer, protocol=2)
  return buffer.getvalue()


def zip_weights() -> bytes:
  buffer = io.BytesIO()
  with zipfile.ZipFile(buffer, "w") as archive:
    archive.writestr("archive/data.pkl", pickle.dumps({"a": [1, 2, 3]}, protocol=2))
    archive.writestr("archive/data/0", np.arange(6, dtype=np.float32).tobytes())
  return buffer.getvalue()


@FUZZ
@given(data=st.one_of(either(legacy_weights()), either(zip_weights())))
def test_weights_files(tmp_path_factory, data):
  path = tmp_path_factory.mktemp("weights") / "w.pth"
  path.write_bytes(data)
  with time_bound(30):
    try:
      torch_pickle.load(str(path))
    except torch_pickle.TorchFileError:
      pass
    with pytest.raises(UserError):   # Never the FID network: always a one-line refusal.
      weights.load_fid_inception(str(path))


@pytest.fixture(scope="module")
def saved_checkpoints(tmp_path_factory):
  config = tiny_config()
  state = train_step.create_train_state(config, create_model(config))
  directory = str(tmp_path_factory.mktemp("saved") / "checkpoints")
  manager = checkpoints.create_manager(directory)
  for step in (1, 2):
    checkpoints.save(manager, step, state.replace(step=step), train_seconds=float(step))
  checkpoints.finish(manager)
  return directory, state


@FUZZ
@given(data=st.data())
def test_checkpoint_files(tmp_path_factory, saved_checkpoints, data):
  source, state = saved_checkpoints
  directory = str(tmp_path_factory.mktemp("ckpt") / "checkpoints")
  shutil.copytree(source, directory)
  found = sorted(os.path.join(root, name) for root, _, names in os.walk(directory)
                 for name in names)
  victim = data.draw(st.sampled_from(found))
  with open(victim, "rb") as f:
    original = f.read()
  with open(victim, "wb") as f:
    f.write(data.draw(either(original)))
  restored = expect_success_or_user_error(lambda: checkpoints.restore_latest(directory, state))
  if restored is not None:
    assert restored[0] in (1, 2, None)
  kept = {name.split(".")[0] for name in os.listdir(directory) if name[0].isdigit()}
  assert kept == {"1", "2"}, os.listdir(directory)   # Moved aside at most, never lost.


def leaves(config, prefix=""):
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      yield from leaves(value, f"{prefix}{key}.")
    else:
      yield prefix + key, value


def value_like(value):
  """Values of a field's type, as a command-line override could give them."""
  if isinstance(value, bool):
    return st.booleans()
  if isinstance(value, int):
    return st.one_of(st.integers(-3, 40), st.integers(-2**40, 2**40))
  if isinstance(value, float):
    return st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                     st.floats(-2.0, 2.0), st.sampled_from([0.0, 1e-4, 0.02, 0.5, 1.0]))
  if isinstance(value, str):
    return st.one_of(st.text(max_size=12), st.sampled_from(
        ["linear", "cosine", "eps", "v", "x0", "ddim", "ddpm", "mix", "truncate", "noise", "npz",
         "folder", "bbox", "skip", "adamw", "constant", "nearest"]))
  if isinstance(value, tuple):
    return st.lists(st.integers(-2, 16), max_size=4).map(tuple)
  return st.just(value)


def check_and_build(config):
  """Validation, then everything built from a config before training (no compiling)."""
  config_checks.check_config(config)
  for single in [stage.config for stage in stages.models(config)]:
    plan = SamplingPlan.create(single)
    assert len(plan.steps) >= 1
    create_optimizer(single.train)
    rates = np.asarray(jax.vmap(learning_rate_fn(single.train))(jnp.arange(0, 50)))
    assert np.all(np.isfinite(rates)) and np.all(rates >= 0)
    size, channels = single.data.image_size, single.data.channels
    jax.eval_shape(lambda: plan.model.init(
        jax.random.PRNGKey(0), jnp.zeros((1, size, size, channels)), jnp.zeros((1,), jnp.int32),
        jnp.zeros((1,), jnp.int32) if single.model.num_classes else None))


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck),
          phases=[Phase.explicit, Phase.generate])   # Shrinking rebuilds models: report as found.
@given(kind=st.sampled_from(["ddpm", "cascade"]), data=st.data())
def test_config_values(kind, data):
  config = tiny_config("x.npz") if kind == "ddpm" else tiny_cascade(data_path="x.npz")
  fields = dict(leaves(config))
  for name in data.draw(st.lists(st.sampled_from(sorted(fields)), min_size=1, max_size=3)):
    *path, last = name.split(".")
    parent = config
    for part in path:
      parent = parent[part]
    try:
      parent[last] = data.draw(value_like(fields[name]))
    except (TypeError, ValueError):   # ml_collections refuses it, as the command line does.
      continue
  try:
    with time_bound(30):
      check_and_build(config)
  except ConfigError as e:
    assert all(line.startswith("invalid config: ") for line in str(e).splitlines())


def test_default_config_fields_are_all_reachable():
  assert len(dict(leaves(default.get_config()))) > 60


@settings(max_examples=4, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(data=mutated(npz_bytes()))
def test_main_on_fuzzed_data_is_exit_0_or_one_error_line(tmp_path_factory, data):
  folder = tmp_path_factory.mktemp("main")
  (folder / "data.npz").write_bytes(data)
  result = run_main(f"--config.data.path={folder / 'data.npz'}", f"--workdir={folder / 'w'}",
                    "--config.train.num_steps=1", "--config.sample.num_samples=0")
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  if result.returncode:
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode == 2 and len(errors) == 1, result.stderr[-3000:]
