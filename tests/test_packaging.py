"""The install path (pyproject.toml): the accelerator extras pin the JAX of the CPU stack,
so `pip install -e .[cuda12]` or `.[tpu]` changes the backend and nothing else;
requirements.txt lists what pyproject.toml's dependencies do; scripts/gpu_check.sh stops in
one line, having created nothing, on a machine without a GPU."""
import os
import shutil
import subprocess
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from helpers import ROOT

GPU_CHECK = os.path.join(ROOT, "scripts", "gpu_check.sh")


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


def pins(requirements: list[str]) -> dict:
  """{normalised name: (extras, version specifiers, marker)} of requirement strings."""
  found = {}
  for text in requirements:
    requirement = Requirement(text)
    name = canonicalize_name(requirement.name)
    assert name not in found, f"{requirement.name} is listed twice"
    found[name] = (sorted(requirement.extras), str(requirement.specifier),
                   str(requirement.marker or ""))
  return found


def requirements_txt() -> list[str]:
  """The requirement lines of requirements.txt, without comments."""
  with open(os.path.join(ROOT, "requirements.txt")) as f:
    lines = (line.split("#")[0].strip() for line in f)
    return [line for line in lines if line]


def test_requirements_txt_pins_what_pyproject_does():
  assert pins(requirements_txt()) == pins(project()["dependencies"])


def test_pins_compare_normalised_names_and_exact_specifiers():
  assert pins(["Pillow", "importlib-resources", "jax==0.10.2"]) == pins(
      ["pillow", "importlib_resources", "jax == 0.10.2"])
  assert pins(["jax==0.10.2"]) != pins(["jax==0.10.3"])
  assert pins(["jax==0.10.2"]) != pins(["jax"])
  assert pins(["jax[cuda12]==0.10.2"]) != pins(["jax==0.10.2"])
  assert pins(["jax", "numpy"]) != pins(["jax"])
  with pytest.raises(AssertionError, match="listed twice"):
    pins(["numpy", "NumPy"])


def fake_nvidia_smi(folder, output: str, exit_code: int) -> str:
  """A folder holding an `nvidia-smi` that prints `output` and exits `exit_code`."""
  os.makedirs(folder, exist_ok=True)
  path = os.path.join(folder, "nvidia-smi")
  with open(path, "w") as f:
    f.write(f"#!/bin/sh\necho '{output}'\nexit {exit_code}\n")
  os.chmod(path, 0o755)
  return str(folder)


def run_gpu_check(tmp_path, **environ) -> subprocess.CompletedProcess:
  """scripts/gpu_check.sh with these environment variables (PATH among them), its check
  folder and virtual environment under tmp_path."""
  environ = {"HDD_GPU_CHECK_DIR": str(tmp_path / "check"), "HDD_GPU_VENV": str(tmp_path / "venv"),
             **environ}
  return subprocess.run(["/bin/bash", GPU_CHECK], capture_output=True, text=True, timeout=60,
                        env=environ)


def only_tools(folder, *names) -> str:
  """A folder of links to these programs alone: a PATH without nvidia-smi on any machine."""
  os.makedirs(folder)
  for name in names:
    os.symlink(shutil.which(name), os.path.join(folder, name))
  return str(folder)


@pytest.mark.parametrize("machine", ["no nvidia-smi", "nvidia-smi fails", "no GPU listed"])
def test_gpu_check_without_a_gpu_says_so_in_one_line_and_creates_nothing(machine, tmp_path):
  path = {"no nvidia-smi": lambda: only_tools(tmp_path / "bin", "dirname"),
          "nvidia-smi fails": lambda: fake_nvidia_smi(
              tmp_path / "bin", "NVIDIA-SMI has failed: no driver", 9) + ":/usr/bin:/bin",
          "no GPU listed": lambda: fake_nvidia_smi(
              tmp_path / "bin", "No devices were found", 0) + ":/usr/bin:/bin"}[machine]()
  before = sorted(os.listdir(tmp_path))
  result = run_gpu_check(tmp_path, PATH=path)
  assert result.returncode == 1
  assert result.stdout == ""
  assert result.stderr.startswith("error: no NVIDIA GPU here") and result.stderr.count("\n") == 1
  assert sorted(os.listdir(tmp_path)) == before


@pytest.mark.parametrize("problem", ["check folder exists", "venv exists", "old python"])
def test_gpu_check_refuses_in_one_line_before_creating_anything(problem, tmp_path):
  path = fake_nvidia_smi(tmp_path / "bin", "GPU 0: NVIDIA H200 (UUID: GPU-0)", 0)
  environ = {"PATH": path + ":/usr/bin:/bin"}
  if problem == "check folder exists":
    (tmp_path / "check").mkdir()
  elif problem == "venv exists":
    (tmp_path / "venv").mkdir()
  else:
    with open(tmp_path / "bin" / "python3.9", "w") as f:
      f.write("#!/bin/sh\nexit 1\n")   # What `sys.version_info < (3, 10)` exits with.
    os.chmod(tmp_path / "bin" / "python3.9", 0o755)
    environ["PYTHON"] = "python3.9"
  before = sorted(os.listdir(tmp_path))
  result = run_gpu_check(tmp_path, **environ)
  assert result.returncode == 1
  assert result.stdout == ""
  assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
  assert {"check folder exists": "check exists", "venv exists": "venv exists",
          "old python": "PYTHON=python3.9 is not Python 3.10"}[problem] in result.stderr
  assert sorted(os.listdir(tmp_path)) == before


def test_gpu_check_installs_the_cuda12_extra_and_checks_jax_on_the_gpu():
  script = open(GPU_CHECK).read()
  assert '-m venv "$VENV"' in script and '-e ".[cuda12]"' in script
  assert "-m common.accelerators --expect=gpu" in script
  assert "main.py --config=configs/hdd_fashion_mnist.py:quick" in script
  assert "benchmarks/benchmark.py" in script
