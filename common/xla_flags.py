"""XLA settings HDD turns on by default, each with the measurement that put it here.

XLA reads XLA_FLAGS once, when JAX creates its first backend, so `apply_defaults` runs on
`import common`, before anything computes. A flag already in XLA_FLAGS is the user's
choice and is left as it is; every default is an XLA:CPU flag, which GPU and TPU runs
ignore.
"""
from __future__ import annotations

import os
from typing import Mapping, MutableMapping

DEFAULT_FLAGS = {
    # jax 0.10.2 hands convolutions and dots to YNNPACK fusions, which ran on one core of
    # our 2-core machines (a jax.profiler trace of the FID Inception). With no YNNPACK
    # fusion they run in XLA's Eigen kernels on every core. One-off probes, one process
    # per setting (2026-12-01, docs/speed.md): FID Inception 8.1 -> 18.2 img/s, features
    # within 1e-6 relative; train img/s 12.8 -> 21.5 for the 6.5M-parameter 28x28 U-Net,
    # 140 -> 199 for the quick 28x28 one; the same training losses. Empty value: "none".
    "--xla_cpu_experimental_ynn_fusion_type": "",
}


def apply_defaults(environ: MutableMapping[str, str] = os.environ,
                   defaults: Mapping[str, str] = DEFAULT_FLAGS) -> str:
  """Appends each `defaults` entry the user has not set to environ['XLA_FLAGS'];
  returns the new value."""
  current = environ.get("XLA_FLAGS", "")
  given = {item.split("=", 1)[0] for item in current.split()}
  added = [f"{flag}={value}" for flag, value in defaults.items() if flag not in given]
  if added:
    environ["XLA_FLAGS"] = " ".join([current, *added]).strip()
  return environ.get("XLA_FLAGS", "")
