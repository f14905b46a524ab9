"""The training loop: a run stopped half-way and resumed ends bit for bit where an
uninterrupted run ends; a checkpoint of another model configuration is refused by name."""
import jax
import numpy as np
import pytest

from common.errors import CheckpointError
from helpers import tiny_config
from hdd import checkpoints, train


def test_resume_continues_bit_for_bit(stripes_npz, tmp_path):
  straight = train.train_and_evaluate(tiny_config(stripes_npz), str(tmp_path / "straight"))
  first_half = tiny_config(stripes_npz)
  first_half.train.num_steps = 3
  interrupted = str(tmp_path / "interrupted")
  assert int(train.train_and_evaluate(first_half, interrupted).step) == 3
  resumed = train.train_and_evaluate(tiny_config(stripes_npz), interrupted)
  assert int(resumed.step) == int(straight.step) == 6
  for a, b in zip(jax.tree_util.tree_leaves((straight.params, straight.ema_params,
                                             straight.opt_state, straight.rng)),
                  jax.tree_util.tree_leaves((resumed.params, resumed.ema_params,
                                             resumed.opt_state, resumed.rng))):
    np.testing.assert_array_equal(a, b)
  # keep_checkpoints=3 kept the last three of steps 3 and 6 (both kept).
  assert checkpoints.step_names(str(tmp_path / "interrupted" / "checkpoints")) == [6, 3]

  wider = tiny_config(stripes_npz)
  wider.model.base_channels = 16
  with pytest.raises(CheckpointError,
                     match=r"different model configuration \(.*checkpoint \(16,\) vs "
                     r"config \(32,\)"):
    checkpoints.restore_params(wider, interrupted)
