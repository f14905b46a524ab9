"""The install path (pyproject.toml): the accelerator extras pin the JAX of the CPU stack,
so `pip install -e .[cuda12]` or `.[tpu]` changes the backend and nothing else."""
import os
import tomllib

from helpers import ROOT


def project() -> dict:
  with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
    return tomllib.load(f)["project"]


def test_accelerator_extras_pin_the_same_jax():
  core = [d for d in project()["dependencies"] if d.startswith("jax==")]
  assert len(core) == 1
  version = core[0].split("==")[1]
  extras = project()["optional-dependencies"]
  assert extras["cuda12"] == [f"jax[cuda12]=={version}"]
  assert extras["tpu"] == [f"jax[tpu]=={version}"]


def test_setup_installs_the_extras_the_tests_need():
  setup = open(os.path.join(ROOT, "scripts", "setup.sh")).read()
  assert '-e ".[test,experiments,app]"' in setup
  assert "chromium chromium-driver" in setup
  extras = project()["optional-dependencies"]
  for package in ("gradio", "gradio_client", "selenium"):
    assert any(d.startswith(package + "==") for d in extras["test"]), package
