"""HDD's default XLA flags: set on `import common` unless the user set them, and in effect
in the compiled programs."""
import os
import subprocess
import sys
import textwrap

from common import xla_flags

YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"


def test_defaults_are_appended_to_the_users_flags():
  environ = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  assert xla_flags.apply_defaults(environ) == (
      f"--xla_force_host_platform_device_count=8 {YNN_FLAG}=")
  assert xla_flags.apply_defaults(environ) == environ["XLA_FLAGS"]   # Applying twice: same.
  empty = {}
  assert xla_flags.apply_defaults(empty) == f"{YNN_FLAG}="


def test_other_defaults_follow_the_same_rule():
  environ = {"XLA_FLAGS": "--xla_backend_optimization_level=2"}
  assert xla_flags.apply_defaults(environ, {"--xla_backend_optimization_level": "0"}) == (
      "--xla_backend_optimization_level=2")
  environ = {"XLA_FLAGS": f"{YNN_FLAG}="}
  assert xla_flags.apply_defaults(environ, {"--xla_backend_optimization_level": "0"}) == (
      f"{YNN_FLAG}= --xla_backend_optimization_level=0")


def test_a_flag_the_user_set_is_kept():
  environ = {"XLA_FLAGS": f"{YNN_FLAG}=individual_dot --xla_cpu_enable_fast_math=false"}
  assert xla_flags.apply_defaults(environ) == (
      f"{YNN_FLAG}=individual_dot --xla_cpu_enable_fast_math=false")


CONV_PROGRAM = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    import hdd.train_step   # Imports common, as every entry point does.
    rng = np.random.default_rng(0)
    x, k = rng.normal(size=(2, 12, 12, 32)), rng.normal(size=(3, 3, 32, 32))
    conv = jax.jit(lambda x, k: jax.lax.conv_general_dilated(
        x, k, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")))
    compiled = conv.lower(x.astype(np.float32), k.astype(np.float32)).compile()
    y = np.asarray(compiled(x.astype(np.float32), k.astype(np.float32)), np.float64)
    windows = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(1, 2))
    reference = np.einsum("bhwcij,ijco->bhwo", windows, k)
    relative = np.abs(y - reference).max() / np.abs(reference).max()
    print("ynn" in compiled.as_text().lower(), float(relative))
    """)


def compile_conv(xla_flags_value):
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  if xla_flags_value is not None:
    env["XLA_FLAGS"] = xla_flags_value
  result = subprocess.run([sys.executable, "-c", CONV_PROGRAM], capture_output=True, text=True,
                          env=env, timeout=300, cwd=os.path.dirname(os.path.dirname(
                              os.path.abspath(__file__))))
  assert result.returncode == 0, result.stderr[-2000:]
  uses_ynn, error = result.stdout.split()
  return uses_ynn == "True", float(error)


def test_convolutions_leave_ynnpack_by_default_and_stay_exact():
  uses_ynn, error = compile_conv(None)
  assert not uses_ynn
  assert error < 1e-5   # float32 against the float64 sum over each 3x3x32 window.


def test_the_users_choice_reaches_xla():
  uses_ynn, error = compile_conv(f"{YNN_FLAG}=individual_convolution")
  assert uses_ynn   # (YNNPACK takes convolutions of 32 channels or more.)
  assert error < 1e-5
