"""The notebooks run top to bottom (nbclient, the quick settings they pick under
HDD_NOTEBOOK_QUICK=1), so they cannot rot: training, sampling, the pictures, FID."""
import glob
import json
import os

import nbformat
import pytest
from nbclient import NotebookClient

from helpers import COMPILATION_CACHE, ROOT

NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))


def test_there_are_notebooks():
  assert [os.path.basename(p) for p in NOTEBOOKS] == ["quickstart.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
  workdir = tmp_path / "run"
  monkeypatch.setenv("HDD_NOTEBOOK_QUICK", "1")
  monkeypatch.setenv("HDD_NOTEBOOK_WORKDIR", str(workdir))
  monkeypatch.setenv("HDD_COMPILATION_CACHE", COMPILATION_CACHE)
  notebook = nbformat.read(path, as_version=4)
  NotebookClient(notebook, timeout=600, kernel_name="python3",
                 resources={"metadata": {"path": ROOT}}).execute()
  outputs = "".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                    for o in cell.get("outputs", []))
  assert "2 steps per stage, 16 samples, FID against 16 test images" in outputs
  images = [o for cell in notebook.cells for o in cell.get("outputs", [])
            if "image/png" in o.get("data", {})]
  assert len(images) == 2   # The stages side by side and the grid.
  quality = json.load(open(workdir / "quality.json"))
  assert quality["num_samples"] == 16 and quality["fid"] > 0
  assert f"FID {quality['fid']:.1f}" in outputs
