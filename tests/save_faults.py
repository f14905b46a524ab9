"""Runs main.py with a SIGKILL planted at one point inside orbax's checkpoint saves:

  HDD_SAVE_KILL=POINT:SAVE python tests/save_faults.py --config=... --workdir=...

kills the process at POINT of its SAVE-th save (1 = its first save). The points, in the
order a save on a local disk passes them (orbax writes a step into a temporary folder,
then renames it to the step number):

  arrays          the temporary folder holds the step's metadata and some array files (the
                  first moment seen from save SAVE on)
  finalize        every array written; the commit time not yet in the step's metadata
  commit_marker   the commit time recorded; commit_success.txt not yet written
  rename          commit_success.txt written; the folder not yet renamed to the step
  renamed         just renamed: committed, before orbax's own bookkeeping
  delete_old      while deleting a step older than the last keep_checkpoints (the first
                  deletion once save SAVE is committed)

tests/kill_resume.py --in_saves drives it; tests/test_reliability.py runs a few kills.
"""
import os
import runpy
import signal
import sys
import threading
import time

POINTS = ("arrays", "finalize", "commit_marker", "rename", "renamed", "delete_old")
TEMPORARY = ".orbax-checkpoint-tmp"


def kill_now() -> None:
  os.kill(os.getpid(), signal.SIGKILL)


class Planted:
  """Counts saves (each finalises once) and kills at `point` of save number `save`."""

  def __init__(self, point: str, save: int):
    self.point, self.save, self.saves = point, save, 0

  def at(self, point: str) -> None:
    if point == self.point and self.saves == self.save:
      kill_now()


def watch_arrays(workdir: str, planted: Planted) -> None:
  """Kills once a temporary step folder under workdir holds array files (the step metadata
  and at least one file under default/): a save half-way through its arrays. Folders that
  a run killed earlier left behind do not count."""
  checkpoints = os.path.join(workdir, "checkpoints")

  def temporary_steps():
    """The temporary step folders (orbax makes them in checkpoints/): one listing, cheap
    enough to repeat every half millisecond without slowing the run being watched."""
    try:
      return {os.path.join(checkpoints, n) for n in os.listdir(checkpoints) if TEMPORARY in n}
    except FileNotFoundError:
      return set()

  left_before = temporary_steps()

  def arrays_written():
    for step in temporary_steps() - left_before:
      for root, _, names in os.walk(step):
        if os.sep + "default" in root[len(step):] and names:
          return True
    return False

  def watch():
    while True:
      if planted.saves >= planted.save - 1 and arrays_written():
        kill_now()
      time.sleep(0.0005)

  threading.Thread(target=watch, daemon=True).start()


def plant(point: str, save: int, workdir: str) -> None:
  """Wraps the orbax functions that a save passes through at each point."""
  from orbax.checkpoint._src.path import async_path, atomicity, deleter
  planted = Planted(point, save)
  finalize, write_text, rename = (atomicity.AtomicRenameTemporaryPath.finalize,
                                  async_path.write_text, async_path.rename)
  delete = deleter.PathDeleter.delete

  async def counted_finalize(self, *args, **kwargs):
    planted.saves += 1
    planted.at("finalize")
    return await finalize(self, *args, **kwargs)

  async def marked_write_text(path, text):
    folder, name = os.path.split(str(path))
    if name == atomicity.COMMIT_SUCCESS_FILE and TEMPORARY in os.path.basename(folder):
      planted.at("commit_marker")
    return await write_text(path, text)

  async def planted_rename(source, target):
    planted.at("rename")
    result = await rename(source, target)
    planted.at("renamed")
    return result

  def planted_delete(self, path, *args, **kwargs):
    if point == "delete_old" and planted.saves >= save:
      files = sorted(os.path.join(root, name) for root, _, names in os.walk(str(path))
                     for name in names)
      if files:
        os.remove(files[len(files) // 2])
      kill_now()
    return delete(self, path, *args, **kwargs)

  atomicity.AtomicRenameTemporaryPath.finalize = counted_finalize
  async_path.write_text = marked_write_text
  async_path.rename = planted_rename
  deleter.PathDeleter.delete = planted_delete
  if point == "arrays":
    watch_arrays(workdir, planted)


def main() -> None:
  point, _, save = os.environ["HDD_SAVE_KILL"].partition(":")
  if point not in POINTS or not save.isdigit():
    sys.exit(f"HDD_SAVE_KILL={os.environ['HDD_SAVE_KILL']}: POINT:SAVE, POINT one of {POINTS}")
  workdir = next(arg.split("=", 1)[1] for arg in sys.argv if arg.startswith("--workdir="))
  plant(point, int(save), workdir)
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  sys.argv[0] = os.path.join(root, "main.py")
  runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
  main()
