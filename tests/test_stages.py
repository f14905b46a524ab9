"""The models view (hdd.stages): each stage as a single-model config with its workdir, the
stages to train, the resolutions, and a single model as a cascade of one."""
import pytest

from configs import default
from helpers import tiny_cascade, tiny_config
from hdd import stages


def test_names_in_sampling_order():
  assert stages.names(tiny_cascade()) == ["stage1", "stage2"]
  assert stages.names(tiny_cascade("cascade3")) == ["stage1", "stage2", "stage3"]
  assert stages.names(tiny_config()) == [stages.SINGLE]


def test_stage_config_carries_the_stages_own_sections():
  config = tiny_cascade(data_path="/data/stripes.npz")
  config.seed = 7
  config.stages.stage1.train.learning_rate = 5e-4
  config.stages.stage2.sample.update(handover="truncate", start_step=17, sampler="ddpm")
  assert stages.names(config) == ["stage1", "stage2"]
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


def test_a_cascade_stage_has_its_own_workdir_and_fields():
  every = stages.models(tiny_cascade(), "/runs/hdd")
  assert [(s.name, s.workdir, s.index, s.field_prefix) for s in every] == [
      ("stage1", "/runs/hdd/stage1", 0, "stages.stage1."),
      ("stage2", "/runs/hdd/stage2", 1, "stages.stage2.")]
  assert [s.config.data.image_size for s in every] == [4, 8]
  assert stages.sections(tiny_cascade(), "stage2").image_size == 8


def test_a_single_model_is_one_stage_in_the_run_s_own_workdir():
  config = tiny_config()
  (only,) = stages.models(config, "/runs/ddpm")
  assert (only.name, only.workdir, only.index, only.field_prefix) == (
      stages.SINGLE, "/runs/ddpm", 0, "")
  assert only.config is config and stages.sections(config, only.name) is config
  assert stages.all_sections(config) == [config]
  assert stages.names(config) == [stages.SINGLE] and stages.names(tiny_cascade()) == [
      "stage1", "stage2"]
  assert [s.name for s in stages.to_train(config, "/runs/ddpm")] == [stages.SINGLE]


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
  assert [s.name for s in stages.to_train(config, "/w")] == expected
  assert [s.workdir for s in stages.to_train(config, "/w")] == [f"/w/{name}" for name in expected]


def test_image_sizes():
  assert stages.image_sizes(tiny_cascade()) == [4, 8]
  assert stages.image_sizes(tiny_cascade("cascade3")) == [4, 8, 16]
  assert stages.image_sizes(tiny_config()) == [8]


def test_ten_or_more_stages_keep_their_order():
  config = default.get_config()
  sizes = [4 * 2**i for i in range(10)]
  default.make_cascade(config, sizes)
  assert stages.names(config) == [f"stage{i}" for i in range(1, 11)]
  assert stages.image_sizes(config) == sizes
