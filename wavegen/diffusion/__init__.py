"""Waveform diffusion (DiffWave / WaveGrad style): schedules, parameterisations, the weighted
denoising loss, samplers, classifier-free guidance, and the process object tying them together."""

from wavegen.diffusion.guidance import classifier_free_guidance, guided
from wavegen.diffusion.losses import WEIGHTINGS, LossTerms, denoising_loss, loss_factor, x0_weight
from wavegen.diffusion.parameterization import PARAMETERIZATIONS, convert, target_of, to_x0_eps
from wavegen.diffusion.process import DiffusionProcess
from wavegen.diffusion.samplers import SAMPLERS, ddim_sample, ddpm_sample, heun_sample, sample
from wavegen.diffusion.schedules import (SCHEDULE_KINDS, NoiseSchedule, ScheduleConfig,
                                         make_schedule)

__all__ = [
    "PARAMETERIZATIONS", "SAMPLERS", "SCHEDULE_KINDS", "WEIGHTINGS",
    "DiffusionProcess", "LossTerms", "NoiseSchedule", "ScheduleConfig",
    "classifier_free_guidance", "convert", "ddim_sample", "ddpm_sample", "denoising_loss",
    "guided", "heun_sample", "loss_factor", "make_schedule", "sample", "target_of",
    "to_x0_eps", "x0_weight",
]
