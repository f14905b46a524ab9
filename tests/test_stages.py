"""Views of a cascade config (hdd.stages): each stage as a single-model config, the
stages to train, the resolutions, and single models treated as a cascade of one."""
import pytest

from configs import default
from helpers import tiny_cascade, tiny_config
from hdd import stages


def test_is_cascade():
  assert stages.is_cascade(tiny_cascade())
  assert stages.is_cascade(tiny_cascade("cascade3"))
  assert not stages.is_cascade(tiny_config())


def test_stage_config_carries_the_stages_own_sections():
  config = tiny_cascade(data_path="/data/stripes.npz")
  config.seed = 7
  config.stages.stage1.train.learning_rate = 5e-4
  config.stages.stage2.sample.update(handover="truncate", start_step=17, sampler="ddpm")
  assert stages.stage_names(config) == ["stage1", "stage2"]
  first, second = (stages.stage_config(config, name) for name in ("stage1", "stage2"))
  # The stage's resolution, model, schedule and training.
  assert (first.data.image_size, second.data.image_size) == (4, 8)
  assert first.model.channel_mult == (1,) and second.model.channel_mult == (1, 2)
  assert first.model.attention_resolutions == () and first.model.base_channels == 8
  assert first.diffusion.num_steps == second.diffusion.num_steps == 40
  assert first.diffusion.beta_end == 0.02 and second.diffusion.beta_end == 0.01
  assert first.train.learning_rate == 5e-4 and second.train.learning_rate == 1e-3
  assert first.train.num_steps == 4 and first.train.checkpoint_every == 2
  # The stage's chain and hand-over over the shared sample section.
  assert first.sample.sampler == "ddim" and second.sample.sampler == "ddpm"
  assert second.sample.handover == "truncate" and second.sample.start_step == 17
  assert first.sample.handover == "mix" and first.sample.gamma == 0.3
  for single in (first, second):
    assert single.sample.num_samples == 8 and single.sample.batch_size == 8
    assert single.sample.seed == 0 and single.sample.guidance_scale == 0.0
    assert single.sample.num_steps == 5
    # The shared data (only the size differs), seed and eval.
    assert single.seed == 7
    assert single.data.source == "npz" and single.data.path == "/data/stripes.npz"
    assert single.data.channels == 1 and single.data.eval_split == "test"
    assert single.eval.num_examples == 16 and single.eval.batch_size == 8
    assert "stages" not in single and "filter" not in single
  assert config.data.image_size == 8   # The cascade's own data section is not changed.


def test_stage_config_is_a_copy():
  config = tiny_cascade()
  single = stages.stage_config(config, "stage1")
  single.model.base_channels = 99
  single.data.path = "elsewhere.npz"
  single.sample.num_steps = 1
  assert config.stages.stage1.model.base_channels == 8
  assert config.data.path == "" and config.stages.stage1.sample.num_steps == 5


def test_stage_workdir():
  assert stages.stage_workdir("/runs/hdd", "stage2") == "/runs/hdd/stage2"


@pytest.mark.parametrize("variant,stage,expected", [
    ("cascade", 0, ["stage1", "stage2"]),
    ("cascade", 2, ["stage2"]),
    ("cascade", 1, ["stage1"]),
    ("cascade3", 0, ["stage1", "stage2", "stage3"]),
    ("cascade3", 2, ["stage2"]),
])
def test_stages_to_train(variant, stage, expected):
  config = tiny_cascade(variant)
  config.stage = stage
  assert stages.stages_to_train(config) == expected


def test_image_sizes():
  assert stages.image_sizes(tiny_cascade()) == [4, 8]
  assert stages.image_sizes(tiny_cascade("cascade3")) == [4, 8, 16]
  assert stages.image_sizes(tiny_config()) == [8]


def test_ten_or_more_stages_keep_their_order():
  config = default.get_config()
  sizes = [4 * 2**i for i in range(10)]
  default.make_cascade(config, sizes)
  assert stages.stage_names(config) == [f"stage{i}" for i in range(1, 11)]
  assert stages.image_sizes(config) == sizes
