"""Which accelerator a machine has, the pip extra of this package that installs JAX for it,
and whether JAX ended up computing there: the choice the Colab notebook installs by, and the
check scripts/gpu_check.sh runs. Standard library only (JAX only in `devices_line`), so it
runs before the install it chooses.

  python -m common.accelerators                # this machine's accelerator and JAX's devices
  python -m common.accelerators --expect=gpu   # the same; exit 1 unless JAX computes on a GPU
"""
from __future__ import annotations

import argparse
import glob
import importlib.metadata
import os
import re
import subprocess
import sys
from typing import Iterable, Mapping, Optional, Sequence

ACCELERATORS = ("tpu", "gpu", "cpu")   # JAX's platform names (jax.default_backend()).
NAMES = {"tpu": "TPU", "gpu": "NVIDIA GPU", "cpu": "CPU"}
# The extra of pyproject.toml that installs JAX for each, and the JAX plugin it adds (a
# GPU machine whose JAX lacks jax-cuda12-plugin computes on the CPU).
EXTRAS = {"tpu": ".[tpu]", "gpu": ".[cuda12]", "cpu": "."}
PLUGINS = {"tpu": "libtpu", "gpu": "jax-cuda12-plugin", "cpu": None}
# TPU chips on the PCI bus: Google's vendor id and the device ids JAX's cloud_tpu_init
# knows (v2/v3, v4, v5p, v5e, v6e, 7x). Google's other devices (the gVNIC network card of
# Cloud VMs, Colab's GPU runtimes included) are not TPUs.
GOOGLE_PCI_VENDOR = "0x1ae0"
TPU_PCI_DEVICES = ("0x0027", "0x0056", "0x005e", "0x0062", "0x0063", "0x006f", "0x0076")
# Set to tpu, gpu or cpu to skip detection (the test suite takes the CPU path everywhere).
OVERRIDE = "HDD_ACCELERATOR"


def accelerator_of(environ: Mapping[str, str], pci_devices: Iterable[tuple[str, str]],
                   nvidia_gpus: Sequence[str]) -> str:
  """'tpu', 'gpu' or 'cpu' for a machine seen as its environment variables, its PCI
  devices ((vendor id, device id) pairs) and the GPUs `nvidia-smi -L` lists: HDD_ACCELERATOR
  when set, else a TPU chip, else an NVIDIA GPU, else the CPU."""
  forced = environ.get(OVERRIDE, "")
  if forced:
    if forced not in ACCELERATORS:
      raise ValueError(f"{OVERRIDE}={forced!r}: use one of {', '.join(ACCELERATORS)}, or unset "
                       "it to detect the accelerator")
    return forced
  if any(vendor == GOOGLE_PCI_VENDOR and device in TPU_PCI_DEVICES
         for vendor, device in pci_devices):
    return "tpu"
  return "gpu" if nvidia_gpus else "cpu"


def pci_devices() -> list[tuple[str, str]]:
  """(vendor id, device id) of every PCI device Linux lists; none elsewhere."""
  found = []
  for vendor_path in glob.glob("/sys/bus/pci/devices/*/vendor"):
    device_path = os.path.join(os.path.dirname(vendor_path), "device")
    try:
      with open(vendor_path) as vendor, open(device_path) as device:
        found.append((vendor.read().strip(), device.read().strip()))
    except OSError:
      continue
  return found


def nvidia_gpus() -> list[str]:
  """The GPUs `nvidia-smi -L` lists; none when it is missing or fails (no driver, no GPU)."""
  try:
    listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
  except (OSError, subprocess.TimeoutExpired):
    return []
  if listed.returncode != 0:
    return []
  return [line for line in listed.stdout.splitlines() if line.startswith("GPU ")]


def detect(environ: Mapping[str, str] = os.environ) -> str:
  """This machine's accelerator (`accelerator_of` what it shows)."""
  return accelerator_of(environ, pci_devices(), nvidia_gpus())


def install_command(accelerator: str, python: str) -> list[str]:
  """The pip command that installs the checkout in the working directory, editable, with
  the JAX of `accelerator`."""
  return [python, "-m", "pip", "install", "-q", "-e", EXTRAS[accelerator]]


def canonical_name(distribution: str) -> str:
  """A distribution's name as pip compares them (PEP 503: lower case, runs of -_. as -)."""
  return re.sub(r"[-_.]+", "-", distribution).lower()


def is_installed(accelerator: str, distributions: Iterable[str]) -> bool:
  """Whether HDD and the JAX plugin of `accelerator` are among the installed
  `distributions`, so that there is nothing to install."""
  names = {canonical_name(name) for name in distributions}
  plugin = PLUGINS[accelerator]
  return "hdd" in names and (plugin is None or plugin in names)


def installed_distributions() -> set[str]:
  """The names of the distributions this Python has installed."""
  return {d.metadata["Name"] for d in importlib.metadata.distributions() if d.metadata["Name"]}


def backend_mismatch(accelerator: str, platform: str) -> Optional[str]:
  """None when JAX computes on `accelerator` (or the machine has none); else what is wrong
  and how to fix it, in one line."""
  if accelerator == "cpu" or platform == accelerator:
    return None
  return (f"JAX computes on {platform}, not on this machine's {NAMES[accelerator]}: install its "
          f"JAX (in the checkout: pip install -e \"{EXTRAS[accelerator]}\"), then restart Python "
          "(on Colab: Runtime > Restart session) and run again")


def devices_line() -> str:
  """Which backend and devices JAX computes on, in one line (imports JAX)."""
  import jax
  kinds = sorted({device.device_kind for device in jax.devices()})
  return (f"JAX {jax.__version__} computes on {jax.default_backend()}: {jax.device_count()} "
          f"device(s), {', '.join(kinds)}")


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--expect", choices=ACCELERATORS,
                      help="exit 1 with one error line unless JAX computes on this platform")
  args = parser.parse_args(argv)
  accelerator = args.expect or detect()
  if not args.expect:
    print(f"this machine: {NAMES[accelerator]}; its JAX: pip install -e \"{EXTRAS[accelerator]}\"")
  print(devices_line())
  import jax
  problem = backend_mismatch(accelerator, jax.default_backend())
  if problem:
    print(f"error: {problem}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
