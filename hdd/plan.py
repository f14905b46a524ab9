"""What one model's sampling run does, resolved once from its config: the network, the
schedule, the sampler, where the chain starts (the hand-over's t*) and the steps it
visits. Each cascade stage gets one plan; the sampler, the timing reports and the
experiments all read it instead of deriving these again."""
from __future__ import annotations

import dataclasses
from typing import Optional

import ml_collections
import numpy as np

from hdd.maths import sampling
from hdd.build import create_model, create_schedule
from hdd.maths.handover import Handover, LowResInput, gamma_for_start_step
from hdd.maths.schedules import Schedule
from hdd.maths.unet import UNet


@dataclasses.dataclass(frozen=True, eq=False)
class SamplingPlan:
  config: ml_collections.ConfigDict   # the model's (or stage's) single-model config
  model: UNet
  schedule: Schedule
  settings: sampling.SamplerSettings
  handover: Optional[Handover]        # None: the chain starts from pure noise
  start_step: Optional[int]           # t* of a hand-over; None: T - 1
  steps: np.ndarray                   # the steps t the chain visits, noisiest first
  prev_steps: np.ndarray              # the step after each (-1 after the last)
  low_res_input: Optional[LowResInput] = None  # a conditional stage's extra input

  @classmethod
  def create(cls, config: ml_collections.ConfigDict,
             handover: Optional[Handover] = None) -> "SamplingPlan":
    schedule = create_schedule(config.diffusion)
    settings = sampling.SamplerSettings.from_config(config.sample)
    start_step = (None if handover is None else
                  handover.chain_start(np.asarray(schedule.alphas_cumprod)))
    steps, prev_steps = sampling.reverse_timesteps(settings, config.diffusion.num_steps,
                                                   start_step)
    return cls(config, create_model(config), schedule, settings, handover, start_step, steps,
               prev_steps, LowResInput.from_config(config))

  @property
  def network_evaluations(self) -> int:
    """Network evaluations per image (x2 under classifier-free guidance)."""
    return len(self.steps) * (2 if self.config.sample.guidance_scale > 0 else 1)

  @property
  def gamma(self) -> Optional[float]:
    """The mix weight of the hand-over, or the SNR-equivalent one of truncation at t*."""
    if self.handover is None:
      return None
    if self.handover.method == "mix":
      return self.handover.gamma
    if self.handover.method == "noise":
      return 0.0
    return gamma_for_start_step(np.asarray(self.schedule.alphas_cumprod), self.start_step)

  def describe(self) -> dict:
    """The plan as report fields (timing tables, experiment results)."""
    described = {"resolution": self.config.data.image_size,
                 "sampler": self.settings.sampler,
                 "num_train_steps": self.config.diffusion.num_steps,
                 "handover": self.handover.method if self.handover else "noise",
                 "start_step": int(self.steps[0]),
                 "network_evaluations_per_image": self.network_evaluations}
    if self.handover is not None:
      described["gamma"] = self.gamma
    if self.low_res_input is not None:
      described["low_res_noise_step"] = self.low_res_input.sample_step
    return described
