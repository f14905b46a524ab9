"""Atomic files and cache locations (common.files): atomic_write replaces the target only
when its block succeeds and never leaves a temporary file, atomic_directory replaces a
set of files as a whole (or not at all), write_json round-trips, and the cache paths
follow CACHE_DIR and HDD_COMPILATION_CACHE."""
import json
import os

import pytest

from common import files


def test_atomic_write_replaces_the_target_on_success(tmp_path):
  path = tmp_path / "nested" / "dir" / "result.txt"   # Parent folders are created.
  with files.atomic_write(str(path)) as f:
    f.write("first")
    assert not path.exists()   # Readers see nothing until the block ends.
  assert path.read_text() == "first"
  with files.atomic_write(str(path)) as f:
    f.write("second")
    assert path.read_text() == "first"   # The old file stays readable while writing.
  assert path.read_text() == "second"
  assert os.listdir(path.parent) == ["result.txt"]


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt])
def test_an_error_inside_the_block_keeps_the_old_file(tmp_path, error):
  path = tmp_path / "result.bin"
  path.write_bytes(b"old contents")
  with pytest.raises(error):
    with files.atomic_write(str(path), "wb") as f:
      f.write(b"half of the new")
      raise error("stop")
  assert path.read_bytes() == b"old contents"
  assert os.listdir(tmp_path) == ["result.bin"]   # No temporary file left behind.
  missing = tmp_path / "never.txt"
  with pytest.raises(RuntimeError):
    with files.atomic_write(str(missing)) as f:
      f.write("x")
      raise RuntimeError("stop")
  assert sorted(os.listdir(tmp_path)) == ["result.bin"]


def test_temporary_name_keeps_the_extension(tmp_path):
  path = str(tmp_path / "arrays.npz")
  with files.atomic_write(path, "wb") as f:
    seen = f.name
  assert seen.endswith(".npz") and seen != path and os.path.dirname(seen) == str(tmp_path)


def test_write_json_round_trips(tmp_path):
  value = {"stages": [{"stage": "stage1", "seconds": 1.5, "steps": [3, 6]}], "none": None,
           "unicode": "Fréchet", "flag": True}
  path = str(tmp_path / "out" / "report.json")
  files.write_json(path, value)
  with open(path) as f:
    assert json.load(f) == value
  files.write_json(path, [1, 2])
  with open(path) as f:
    assert json.load(f) == [1, 2]
  assert os.listdir(os.path.dirname(path)) == ["report.json"]


def test_cache_paths(monkeypatch):
  expected_root = os.path.join(os.path.expanduser("~"), ".cache", "hdd")
  assert files.CACHE_DIR == expected_root
  assert files.cache_path("fid", "default_1.pt") == os.path.join(expected_root, "fid",
                                                                 "default_1.pt")
  monkeypatch.setattr(files, "CACHE_DIR", "/somewhere/else")
  assert files.cache_path("fid_stats") == "/somewhere/else/fid_stats"
  monkeypatch.delenv("HDD_COMPILATION_CACHE", raising=False)
  assert files.compilation_cache_dir() == "/somewhere/else/jax"
  monkeypatch.setenv("HDD_COMPILATION_CACHE", "/tmp/my-jax-cache")
  assert files.compilation_cache_dir() == "/tmp/my-jax-cache"


def test_atomic_directory_replaces_the_whole_set(tmp_path):
  target = tmp_path / "samples"
  with files.atomic_directory(str(target)) as new:
    assert os.path.dirname(new) == str(tmp_path) and os.listdir(new) == []
    assert not target.exists()
    for name in ("a.txt", "b.txt"):
      with open(os.path.join(new, name), "w") as f:
        f.write(f"first {name}")
  assert sorted(os.listdir(target)) == ["a.txt", "b.txt"]
  umask = os.umask(0)
  os.umask(umask)
  assert os.stat(target).st_mode & 0o777 == 0o777 & ~umask
  with files.atomic_directory(str(target)) as new:
    with open(os.path.join(new, "a.txt"), "w") as f:
      f.write("second a.txt")
    assert (target / "b.txt").read_text() == "first b.txt"   # Old set intact meanwhile.
  assert os.listdir(target) == ["a.txt"]   # No mix: b.txt of the old set is gone.
  assert (target / "a.txt").read_text() == "second a.txt"
  assert os.listdir(tmp_path) == ["samples"]   # No temporary or old directories left.


def test_atomic_directory_error_leaves_the_old_set(tmp_path):
  target = tmp_path / "samples"
  target.mkdir()
  (target / "old.txt").write_text("old")
  with pytest.raises(OSError):
    with files.atomic_directory(str(target)) as new:
      with open(os.path.join(new, "partial.txt"), "w") as f:
        f.write("partial")
      raise OSError("disk full")
  assert os.listdir(target) == ["old.txt"] and (target / "old.txt").read_text() == "old"
  assert os.listdir(tmp_path) == ["samples"]
