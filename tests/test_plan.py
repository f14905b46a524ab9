"""The sampling plan of one model or cascade stage (hdd.plan.SamplingPlan): the steps the
chain visits, the network evaluations (x2 under guidance), where a hand-over starts the
chain and its gamma against float64 closed forms from the betas, and describe()."""
import numpy as np
import pytest

from helpers import tiny_cascade, tiny_config
from hdd import stages
from hdd.maths import sampling
from hdd.maths.handover import Handover
from hdd.plan import SamplingPlan


def float64_alphas_cumprod(diffusion_config):
  assert diffusion_config.schedule == "linear"
  betas = np.linspace(diffusion_config.beta_start, diffusion_config.beta_end,
                      diffusion_config.num_steps, dtype=np.float64)
  return np.cumprod(1.0 - betas)


def stage2_config(**sample_fields):
  config = tiny_cascade()
  config.stages.stage2.sample.update(**sample_fields)
  return stages.stage_config(config, "stage2")


@pytest.mark.parametrize("sampler,num_steps,expected", [
    ("ddim", 5, [40, 30, 20, 10, 0]),     # DDIM-5 of T=50: stride 10.
    ("ddim", 2, [25, 0]),
    ("ddpm", 0, list(range(49, -1, -1))),
])
def test_steps_follow_the_sampler(sampler, num_steps, expected):
  config = tiny_config()
  config.sample.update(sampler=sampler, num_steps=num_steps)
  plan = SamplingPlan.create(config)
  reference_steps, reference_prev = sampling.reverse_timesteps(
      sampling.SamplerSettings(sampler, num_steps), 50)
  np.testing.assert_array_equal(plan.steps, reference_steps)
  np.testing.assert_array_equal(plan.prev_steps, reference_prev)
  assert plan.steps.tolist() == expected
  assert plan.prev_steps.tolist() == expected[1:] + [-1]
  assert plan.handover is None and plan.start_step is None and plan.gamma is None
  assert plan.network_evaluations == len(expected)
  assert plan.schedule.num_steps == 50 and plan.settings.sampler == sampler
  assert plan.model.out_channels == 1 and plan.model.base_channels == 8


def test_guidance_doubles_network_evaluations_of_a_conditional_model():
  config = tiny_config()
  config.model.num_classes = 2
  assert SamplingPlan.create(config).network_evaluations == 5
  config.sample.guidance_scale = 1.5
  plan = SamplingPlan.create(config)
  assert plan.network_evaluations == 10
  assert plan.describe()["network_evaluations_per_image"] == 10


def test_mix_starts_at_t_minus_1_with_its_gamma():
  single = stage2_config(handover="mix", gamma=0.25)
  plan = SamplingPlan.create(single, Handover.from_config(single.sample))
  assert plan.start_step is None and plan.gamma == 0.25
  assert plan.steps.tolist() == [32, 24, 16, 8, 0]   # DDIM-5 of T=40, the full chain.
  assert plan.describe() == {"resolution": 8, "sampler": "ddim", "num_train_steps": 40,
                             "handover": "mix", "start_step": 32,
                             "network_evaluations_per_image": 5, "gamma": 0.25}


def test_truncate_at_a_given_step_has_the_snr_equivalent_gamma():
  single = stage2_config(handover="truncate", start_step=17)
  plan = SamplingPlan.create(single, Handover.from_config(single.sample))
  assert plan.start_step == 17
  assert plan.steps.tolist() == [17, 16, 8, 0] and plan.prev_steps.tolist() == [16, 8, 0, -1]
  ab = float64_alphas_cumprod(single.diffusion)[17]   # beta 1e-4..0.01 over T=40.
  expected = np.sqrt(ab) / (np.sqrt(ab) + np.sqrt(1.0 - ab))
  assert plan.gamma == pytest.approx(expected, rel=1e-6)
  described = plan.describe()
  assert described["handover"] == "truncate" and described["start_step"] == 17
  assert described["network_evaluations_per_image"] == 4
  assert described["gamma"] == pytest.approx(expected, rel=1e-6)


def test_truncate_from_gamma_starts_at_the_last_step_with_enough_snr():
  single = stage2_config(handover="truncate", start_step=-1, gamma=0.75, sampler="ddpm")
  plan = SamplingPlan.create(single, Handover.from_config(single.sample))
  ab = float64_alphas_cumprod(single.diffusion)
  snr = ab / (1.0 - ab)
  target = (0.75 / 0.25)**2
  t_star = max(t for t in range(40) if snr[t] >= target)
  assert plan.start_step == t_star and 0 < t_star < 39
  assert plan.steps.tolist() == list(range(t_star, -1, -1))
  assert plan.network_evaluations == t_star + 1
  gamma = np.sqrt(ab[t_star]) / (np.sqrt(ab[t_star]) + np.sqrt(1.0 - ab[t_star]))
  assert plan.gamma == pytest.approx(gamma, rel=1e-6) and plan.gamma >= 0.75


def test_describe_without_a_hand_over():
  config = tiny_config()
  assert SamplingPlan.create(config).describe() == {
      "resolution": 8, "sampler": "ddim", "num_train_steps": 50, "handover": "noise",
      "start_step": 40, "network_evaluations_per_image": 5}
