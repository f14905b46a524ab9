"""The bottom layer: errors, the device mesh, image and file I/O, batching. Every other
package (input_pipeline, evaluation, hdd) may use it; it imports none of them.

Importing it sets HDD's default XLA flags (`common.xla_flags`), before JAX computes."""
from common import xla_flags

xla_flags.apply_defaults()
