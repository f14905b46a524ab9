"""Turns a downloaded folder of images of any sizes and formats (the Kaggle anime-face
download is one: JPEGs of mixed sizes) into the square set a folder config reads:

  python -m input_pipeline.prepare_folder DOWNLOADED data/anime_faces [--size=64] [--overwrite]

Each image is decoded as the pipeline decodes it (RGB: grey repeated, alpha dropped),
cropped to its centre square, resized to --size by the pipeline's own antialiased bilinear
resize, and written as a PNG at its relative path (sub-folders, the class labels of a folder
source, are kept; a.jpg becomes a.png). Unreadable files are listed and skipped. Nothing in
the source folder changes. The output appears whole or not at all: it is written into a
temporary folder beside it, then renamed; a non-empty output folder is replaced only with
--overwrite. Speed, on 2 CPU cores shared with a training run: about 70 images a second
from JPEGs of about 100 pixels, 40 from 300-600 pixels.
"""
from __future__ import annotations

import argparse
import os
import sys

from PIL import Image

from common.errors import DataError, UserError, exit_with_error as fail
from common.files import atomic_directory
from common.progress import Progress

DEFAULT_SIZE = 64   # data.image_size of configs/hdd_afd.py and the other 64x64 folder configs
MIN_SIZE = 8
CHANNELS = 3
USAGE = "python -m input_pipeline.prepare_folder SOURCE OUTPUT [--size=64] [--overwrite]"


def check_request(source: str, output: str, size: int, overwrite: bool) -> None:
  """Refuses, before anything is read or written, a size too small, a source that is not a
  folder, an output that overlaps the source or is a file, and a non-empty output folder
  without `overwrite`."""
  if not source or not output:
    raise DataError(f"give a source folder and an output folder: {USAGE}")
  if size < MIN_SIZE:
    raise DataError(f"--size={size} is too small: give the config's data.image_size (at least "
                    f"{MIN_SIZE}, e.g. {DEFAULT_SIZE})")
  if not os.path.isdir(source):
    state = "is not a folder" if os.path.exists(source) else "does not exist"
    raise DataError(f"source {source!r} {state}: give the folder of downloaded images")
  real_source, real_output = os.path.realpath(source), os.path.realpath(output)
  if os.path.commonpath([real_source, real_output]) in (real_source, real_output):
    raise DataError(f"output {output!r} and source {source!r} overlap: choose an output folder "
                    "outside the source (the source is never changed)")
  if os.path.exists(output) and not os.path.isdir(output):
    raise DataError(f"output {output!r} is a file: choose a new folder")
  if os.path.isdir(output) and os.listdir(output) and not overwrite:
    raise DataError(f"output folder {output!r} is not empty: choose a new folder, or pass "
                    "--overwrite to replace it")


def output_names(files: list[str], source: str) -> list[str]:
  """Each file's path relative to `source`, with the extension .png; two files that would
  get one name (a.jpg and a.png) are an error naming both."""
  names, owners = [], {}
  for path in files:
    name = os.path.splitext(os.path.relpath(path, source))[0] + ".png"
    if name in owners:
      raise DataError(f"{owners[name]!r} and {path!r} would both be written as {name!r}: "
                      "rename one of them")
    owners[name] = path
    names.append(name)
  return names


def prepare(source: str, output: str, size: int = DEFAULT_SIZE,
            overwrite: bool = False) -> tuple[int, list[str]]:
  """Writes every readable image under `source` as a size x size RGB PNG under `output`;
  returns how many it wrote and, for each file it skipped, why."""
  check_request(source, output, size, overwrite)
  # TensorFlow loads here, so that `main` refuses bad arguments at once and loads it quietly.
  import tensorflow as tf

  from input_pipeline import sources
  files = sources.image_files(source)
  if not files:
    raise DataError(f"no images ({', '.join(sources.IMAGE_EXTENSIONS)}) found under {source!r}")
  names = output_names(files, source)
  skipped = []
  progress = Progress(f"Preparing {size}x{size} images", len(files), "files")
  with atomic_directory(output) as scratch:
    for done, (path, name) in enumerate(zip(files, names), start=1):
      try:
        image = sources.decode_image(path, CHANNELS)
      except DataError as e:
        skipped.append(str(e))
      else:
        square = sources.crop_and_resize(tf.constant(image), size, "center").numpy()
        destination = os.path.join(scratch, name)
        os.makedirs(os.path.dirname(destination), exist_ok=True)
        Image.fromarray(square).save(destination, format="PNG")
      progress.update(done)
    if len(skipped) == len(files):
      raise DataError(f"every image file under {source!r} is unreadable, e.g. {skipped[0]}")
  return len(files) - len(skipped), skipped


class Parser(argparse.ArgumentParser):
  """argparse whose mistakes are one `error:` line with the usage, not a usage block."""

  def error(self, message):
    fail(f"{message} (usage: {USAGE})")


def parse_args(argv=None) -> argparse.Namespace:
  parser = Parser(prog="python -m input_pipeline.prepare_folder", description=__doc__,
                  formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("source", help="the downloaded folder of images (read, never changed)")
  parser.add_argument("output", help="the new folder to write (a config's data.path)")
  parser.add_argument("--size", type=int, default=DEFAULT_SIZE,
                      help=f"side of the square images (the config's data.image_size; "
                           f"default {DEFAULT_SIZE})")
  parser.add_argument("--overwrite", action="store_true",
                      help="replace a non-empty output folder")
  return parser.parse_args(argv)


def main(argv=None) -> None:
  args = parse_args(argv)
  try:
    check_request(args.source, args.output, args.size, args.overwrite)
    from common import runtime
    runtime.quiet_logs()
    runtime.configure_runtime("")
    written, skipped = prepare(args.source, args.output, args.size, args.overwrite)
  except UserError as e:
    fail(e)
  except OSError as e:
    fail(f"cannot write the output folder {args.output!r}: {e}")
  for reason in skipped:
    print(f"skipped: {reason}", file=sys.stderr)
  note = f"; skipped {len(skipped):,} unreadable file(s), listed above" if skipped else ""
  print(f"Wrote {written:,} images of {args.size}x{args.size} to {args.output}{note}")


if __name__ == "__main__":
  # JAX is only asked which process writes: it stays off any accelerator.
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  main()
