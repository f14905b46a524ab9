"""Imports run one way: common <- input_pipeline, evaluation <- hdd; configs are data.

Read from the source files, so a new import that runs back up fails here, not in review."""
import ast
import glob
import os

import pytest

from helpers import ROOT

# What each package may import from this project (itself always).
ALLOWED = {"common": set(), "input_pipeline": {"common"}, "evaluation": {"common", "input_pipeline"},
           "hdd": {"common", "input_pipeline", "evaluation"}, "configs": set()}
PROJECT = set(ALLOWED) | {"experiments", "benchmarks", "tests"}


def project_imports(path: str) -> set:
  """The top-level project packages a file imports, at any depth of the file."""
  found = set()
  for node in ast.walk(ast.parse(open(path).read(), path)):
    if isinstance(node, ast.Import):
      found |= {alias.name.split(".")[0] for alias in node.names}
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
      found.add(node.module.split(".")[0])
  return found & PROJECT


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_the_layers_below(package):
  for path in glob.glob(os.path.join(ROOT, package, "*.py")):
    wrong = project_imports(path) - ALLOWED[package] - {package}
    assert not wrong, f"{os.path.relpath(path, ROOT)} imports {sorted(wrong)}"


def test_the_checker_sees_imports_inside_functions(tmp_path):
  path = tmp_path / "module.py"
  path.write_text("import os\n\ndef f():\n  from hdd import train\n  import common.files\n")
  assert project_imports(str(path)) == {"hdd", "common"}


def test_no_file_edits_the_import_path():
  """The package is installed (`pip install -e .`); no file patches the module search path."""
  needle = ".".join(("sys", "path"))  # spelled so that this file does not match itself
  sources = [p for pattern in ("*.py", "*/*.py") for p in glob.glob(os.path.join(ROOT, pattern))
             if "/.venv/" not in p]
  offenders = [os.path.relpath(p, ROOT) for p in sources if needle in open(p).read()]
  assert offenders == []
