"""common.accelerators on faked machines: a TPU VM, a GPU machine (with Google's network
card, as on Colab), a CPU; the pip extra each installs, as pyproject.toml names it; when
there is nothing to install; and the one-line error when JAX is not on the accelerator."""
import os
import tomllib

import jax
import pytest

from common import accelerators
from helpers import ROOT

TPU_V5E = ("0x1ae0", "0x0063")
GOOGLE_NETWORK_CARD = ("0x1ae0", "0x0042")   # gVNIC: Google's vendor id, not a TPU
INTEL_BRIDGE = ("0x8086", "0x7190")
H200 = ["GPU 0: NVIDIA H200 (UUID: GPU-5d1c)"]


@pytest.mark.parametrize("environ, pci, gpus, expected", [
    ({}, [INTEL_BRIDGE, TPU_V5E], [], "tpu"),
    ({}, [GOOGLE_NETWORK_CARD, INTEL_BRIDGE], H200, "gpu"),
    ({}, [GOOGLE_NETWORK_CARD], [], "cpu"),
    ({}, [], [], "cpu"),
    ({"HDD_ACCELERATOR": "cpu"}, [TPU_V5E], H200, "cpu"),
    ({"HDD_ACCELERATOR": "gpu"}, [], [], "gpu"),
], ids=["tpu-vm", "gpu-on-a-cloud-vm", "cloud-vm-cpu", "cpu", "forced-cpu", "forced-gpu"])
def test_accelerator_of_a_machine(environ, pci, gpus, expected):
  assert accelerators.accelerator_of(environ, pci, gpus) == expected


def test_an_unknown_forced_accelerator_is_refused():
  with pytest.raises(ValueError, match="HDD_ACCELERATOR='cuda': use one of tpu, gpu, cpu"):
    accelerators.accelerator_of({"HDD_ACCELERATOR": "cuda"}, [], [])


def test_the_extras_are_pyprojects_jax_backends():
  with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
    extras = tomllib.load(f)["project"]["optional-dependencies"]
  assert accelerators.install_command("gpu", "py") == ["py", "-m", "pip", "install", "-q", "-e",
                                                       ".[cuda12]"]
  assert accelerators.install_command("tpu", "py")[-1] == ".[tpu]"
  assert accelerators.install_command("cpu", "py")[-1] == "."
  assert extras["cuda12"][0].startswith("jax[cuda12]==")
  assert extras["tpu"][0].startswith("jax[tpu]==")


@pytest.mark.parametrize("accelerator, distributions, expected", [
    ("gpu", {"HDD", "jax", "jax_cuda12_plugin"}, True),
    ("gpu", {"hdd", "jax"}, False),                   # HDD with the CPU's JAX
    ("gpu", {"jax", "jax-cuda12-plugin"}, False),     # Colab's own JAX, no HDD
    ("tpu", {"hdd", "jax", "libtpu"}, True),
    ("tpu", {"hdd", "jax", "jax-cuda12-plugin"}, False),
    ("cpu", {"hdd", "jax"}, True),
    ("cpu", {"jax"}, False),
])
def test_is_installed(accelerator, distributions, expected):
  assert accelerators.is_installed(accelerator, distributions) is expected


def test_this_python_has_hdd_installed():
  assert "hdd" in {accelerators.canonical_name(name)
                   for name in accelerators.installed_distributions()}


def test_backend_mismatch_names_the_fix():
  problem = accelerators.backend_mismatch("gpu", "cpu")
  assert problem.startswith("JAX computes on cpu, not on this machine's NVIDIA GPU")
  assert 'pip install -e ".[cuda12]"' in problem and "\n" not in problem
  assert accelerators.backend_mismatch("gpu", "gpu") is None
  assert accelerators.backend_mismatch("tpu", "tpu") is None
  assert accelerators.backend_mismatch("cpu", "gpu") is None   # No accelerator to miss.


def fake_nvidia_smi(tmp_path, monkeypatch, script: str):
  (tmp_path / "nvidia-smi").write_text("#!/bin/sh\n" + script)
  (tmp_path / "nvidia-smi").chmod(0o755)
  monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")


def test_nvidia_gpus_lists_what_nvidia_smi_lists(tmp_path, monkeypatch):
  fake_nvidia_smi(tmp_path, monkeypatch, "echo 'GPU 0: NVIDIA H200 (UUID: GPU-a)'\n"
                  "echo 'GPU 1: NVIDIA H200 (UUID: GPU-b)'\n")
  assert accelerators.nvidia_gpus() == ["GPU 0: NVIDIA H200 (UUID: GPU-a)",
                                        "GPU 1: NVIDIA H200 (UUID: GPU-b)"]


@pytest.mark.parametrize("script", ["echo 'NVIDIA-SMI has failed'; exit 9\n",
                                    "echo 'No devices were found'\n"])
def test_no_nvidia_gpus_when_nvidia_smi_fails_or_lists_none(script, tmp_path, monkeypatch):
  fake_nvidia_smi(tmp_path, monkeypatch, script)
  assert accelerators.nvidia_gpus() == []


def test_no_nvidia_gpus_without_nvidia_smi(monkeypatch, tmp_path):
  monkeypatch.setenv("PATH", str(tmp_path))
  assert accelerators.nvidia_gpus() == []


def test_expecting_a_gpu_fails_in_one_line_unless_jax_computes_on_one(capsys):
  code = accelerators.main(["--expect=gpu"])
  out, err = capsys.readouterr()
  assert f"computes on {jax.default_backend()}: {jax.device_count()} device(s)" in out
  if jax.default_backend() == "gpu":
    assert (code, err) == (0, "")
  else:
    assert code == 1
    assert err.startswith("error: JAX computes on cpu, not on this machine's NVIDIA GPU")
    assert err.count("\n") == 1


def test_the_command_line_names_the_machine_and_its_extra(monkeypatch, capsys):
  monkeypatch.setenv("HDD_ACCELERATOR", "cpu")
  assert accelerators.main([]) == 0
  out = capsys.readouterr().out
  assert out.startswith('this machine: CPU; its JAX: pip install -e "."\n')
