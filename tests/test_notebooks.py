"""The notebooks run top to bottom on the CPU path (nbclient, the quick settings they pick
under HDD_NOTEBOOK_QUICK=1), so they cannot rot: training, sampling, the pictures, FID. Their
set-up cells run here on faked machines: the install cell picks each runtime's extra, and
the checkout cell asks for REPO_URL outside a checkout."""
import glob
import json
import os
import subprocess
import sys

import jax
import nbformat
import pytest
from nbclient import NotebookClient

from common import accelerators
from helpers import COMPILATION_CACHE, ROOT

NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))
QUICKSTART = os.path.join(ROOT, "notebooks", "quickstart.ipynb")


def test_there_are_notebooks():
  assert [os.path.basename(p) for p in NOTEBOOKS] == ["quickstart.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
  workdir = tmp_path / "run"
  monkeypatch.setenv("HDD_NOTEBOOK_QUICK", "1")
  monkeypatch.setenv("HDD_NOTEBOOK_WORKDIR", str(workdir))
  monkeypatch.setenv("HDD_COMPILATION_CACHE", COMPILATION_CACHE)
  monkeypatch.setenv("HDD_ACCELERATOR", "cpu")
  notebook = nbformat.read(path, as_version=4)
  NotebookClient(notebook, timeout=600, kernel_name="python3",
                 resources={"metadata": {"path": ROOT}}).execute()
  outputs = "".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                    for o in cell.get("outputs", []))
  assert "CPU runtime: HDD and its JAX are installed" in outputs   # It installed nothing.
  assert f"computes on {jax.default_backend()}: {jax.device_count()} device(s)" in outputs
  assert "2 steps per stage, 16 samples, FID against 16 test images" in outputs
  images = [o for cell in notebook.cells for o in cell.get("outputs", [])
            if "image/png" in o.get("data", {})]
  assert len(images) == 2   # The stages side by side and the grid.
  quality = json.load(open(workdir / "quality.json"))
  assert quality["num_samples"] == 16 and quality["fid"] > 0
  assert f"FID {quality['fid']:.1f}" in outputs


def cell_source(first_line: str) -> str:
  """The source of quickstart.ipynb's code cell that starts with `first_line`."""
  notebook = nbformat.read(QUICKSTART, as_version=4)
  [source] = [cell.source for cell in notebook.cells
              if cell.cell_type == "code" and cell.source.startswith(first_line)]
  return source


def run_cell(source: str) -> dict:
  namespace = {}
  exec(compile(source, QUICKSTART, "exec"), namespace)
  return namespace


@pytest.fixture
def commands_run(monkeypatch):
  """The commands the cells run through subprocess.run, recorded instead of run."""
  commands = []
  monkeypatch.setattr(subprocess, "run", lambda command, **kwargs: commands.append(command))
  return commands


@pytest.mark.parametrize("pci, gpus, extra", [
    ([("0x1ae0", "0x0063")], [], ".[tpu]"),
    ([("0x1ae0", "0x0042")], ["GPU 0: Tesla T4 (UUID: GPU-1)"], ".[cuda12]"),
    ([("0x1ae0", "0x0042")], [], "."),
], ids=["tpu", "gpu", "cpu"])
def test_install_cell_installs_the_extra_of_the_runtime(pci, gpus, extra, monkeypatch,
                                                          commands_run, capsys):
  """A fresh Colab runtime of each kind, nothing of HDD installed yet."""
  monkeypatch.delenv("HDD_ACCELERATOR", raising=False)
  monkeypatch.setattr(accelerators, "pci_devices", lambda: pci)
  monkeypatch.setattr(accelerators, "nvidia_gpus", lambda: gpus)
  monkeypatch.setattr(accelerators, "installed_distributions", lambda: {"jax", "numpy"})
  run_cell(cell_source("# Install:"))
  assert commands_run == [[sys.executable, "-m", "pip", "install", "-q", "-e", extra]]
  assert f'pip install -e "{extra}"' in capsys.readouterr().out


def test_install_cell_installs_nothing_when_all_is_installed(monkeypatch, commands_run, capsys):
  monkeypatch.delenv("HDD_ACCELERATOR", raising=False)
  monkeypatch.setattr(accelerators, "pci_devices", lambda: [])
  monkeypatch.setattr(accelerators, "nvidia_gpus", lambda: ["GPU 0: Tesla T4 (UUID: GPU-1)"])
  monkeypatch.setattr(accelerators, "installed_distributions",
                      lambda: {"hdd", "jax", "jax-cuda12-plugin"})
  run_cell(cell_source("# Install:"))
  assert commands_run == []
  assert "NVIDIA GPU runtime: HDD and its JAX are installed" in capsys.readouterr().out


def test_checkout_cell_asks_for_the_repository_url(tmp_path, monkeypatch, commands_run):
  """On Colab (no checkout around), with REPO_URL left empty: one clear error, no clone."""
  monkeypatch.chdir(tmp_path)
  with pytest.raises(RuntimeError, match="REPO_URL is not set: set it in this cell to the git URL"):
    run_cell(cell_source("# Where the code comes from."))
  assert commands_run == [] and os.listdir(tmp_path) == [] and os.getcwd() == str(tmp_path)


@pytest.mark.parametrize("start", ["", "notebooks"], ids=["root", "notebooks-folder"])
def test_checkout_cell_uses_the_checkout_it_runs_in(start, monkeypatch, commands_run):
  monkeypatch.chdir(os.path.join(ROOT, start))
  assert run_cell(cell_source("# Where the code comes from."))["REPO_URL"] == ""
  assert commands_run == [] and os.getcwd() == ROOT
