"""Imports run one way: common <- input_pipeline, evaluation <- hdd; configs are data. Inside
hdd, the maths sub-package imports nothing else, and the web app and the experiments restore
through the cascade, never through main.py's mode dispatcher (hdd.run).

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


def imported_modules(path: str) -> set:
  """Every module a file imports, at any depth of the file, dotted: `from hdd import run`
  counts as hdd.run (it may name a module) and as hdd."""
  found = set()
  for node in ast.walk(ast.parse(open(path).read(), path)):
    if isinstance(node, ast.Import):
      found |= {alias.name for alias in node.names}
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
      found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
  return found


def project_imports(path: str) -> set:
  """The top-level project packages a file imports, at any depth of the file."""
  return {name.split(".")[0] for name in imported_modules(path)} & PROJECT


def sources(package: str) -> list[str]:
  return glob.glob(os.path.join(ROOT, package, "**", "*.py"), recursive=True)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_the_layers_below(package):
  for path in sources(package):
    wrong = project_imports(path) - ALLOWED[package] - {package}
    assert not wrong, f"{os.path.relpath(path, ROOT)} imports {sorted(wrong)}"


def test_the_maths_imports_nothing_else_of_the_project():
  """Schedules, steps, chain, hand-over and U-Net: arrays in, arrays out."""
  paths = sources("hdd/maths")
  assert len(paths) >= 6
  for path in paths:
    wrong = {name for name in imported_modules(path) if name.split(".")[0] in PROJECT
             and not name.startswith("hdd.maths")}
    assert not wrong, f"{os.path.relpath(path, ROOT)} imports {sorted(wrong)}"


def test_the_app_and_the_experiments_do_not_import_the_mode_dispatcher():
  paths = sources("hdd/app") + sources("experiments")
  assert len(paths) >= 10
  for path in paths:
    assert "hdd.run" not in imported_modules(path), f"{os.path.relpath(path, ROOT)} imports hdd.run"


def test_the_checker_sees_imports_inside_functions(tmp_path):
  path = tmp_path / "module.py"
  path.write_text("import os\n\ndef f():\n  from hdd import train\n  import common.files\n")
  assert project_imports(str(path)) == {"hdd", "common"}
  assert {"hdd.train", "common.files"} <= imported_modules(str(path))


def test_no_file_edits_the_import_path():
  """The package is installed (`pip install -e .`); no file patches the module search path.
  The one exception is tests/forked_main.py, which runs a script as `python SCRIPT` (or a
  module as `python -m MODULE`) would and so sets the script's folder (the working folder)
  first on the path, as the interpreter does."""
  needle = ".".join(("sys", "path"))  # spelled so that this file does not match itself
  emulates_the_interpreter = os.path.join(ROOT, "tests", "forked_main.py")
  sources = [p for pattern in ("*.py", "*/*.py") for p in glob.glob(os.path.join(ROOT, pattern))
             if "/.venv/" not in p and p != emulates_the_interpreter]
  offenders = [os.path.relpath(p, ROOT) for p in sources if needle in open(p).read()]
  assert offenders == []
