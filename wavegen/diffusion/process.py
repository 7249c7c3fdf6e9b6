"""DiffusionProcess: everything about a diffusion model that is not the network.

Schedule, parameterisation, loss weighting, conditioning dropout and the default sampler
live in one dataclass, stored with the model's training recipe, so training and sampling
cannot disagree about them. Samplers can still be changed at inference time: the defaults
here are only what :meth:`DiffusionProcess.sample` uses when not told otherwise.

Few-step schedules found for a trained model (:func:`wavegen.diffusion.fast_schedules.
search_time_grid`) are stored in :attr:`DiffusionProcess.time_grids`, keyed by the number
of steps, and so travel in the bundle's ``config.json``; sampling with that many steps
follows the stored grid unless the caller names ``times`` or a ``spacing``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from wavegen.diffusion.fast_schedules import check_time_grid
from wavegen.diffusion.losses import Denoiser, LossTerms, check_weighting, denoising_loss
from wavegen.diffusion.parameterization import check_parameterization
from wavegen.diffusion.samplers import (DDPM_VARIANCES, FIXED_STEPS, check_sampler,
                                        check_spacing, sample)
from wavegen.diffusion.schedules import NoiseSchedule, ScheduleConfig, make_schedule
from wavegen.errors import ConfigError
from wavegen.utils.config import from_dict, to_dict
from wavegen.utils.threads import shared_machine_threads


@dataclass
class DiffusionProcess:
    """The forward process, the training objective and the default sampler.

    Attributes:
        schedule: the noise schedule (:class:`~wavegen.diffusion.schedules.ScheduleConfig`).
        parameterization: what the network predicts: ``"eps"``, ``"x0"``, ``"v"``, ``"score"``.
        weighting: loss weighting, ``"none"``, ``"snr"``, ``"min_snr"``, ``"truncated_snr"``
            (see :mod:`wavegen.diffusion.losses`).
        min_snr_gamma: the clamp of ``"min_snr"`` (Hang et al. 2023 use 5).
        cond_dropout: probability, per training example, of zeroing the conditioning, so
            the same network also learns the unconditional model classifier-free guidance needs.
        sampler: default sampler, ``"ddpm"``, ``"ddim"`` or ``"heun"``.
        sampler_steps: default number of sampling steps.
        eta: default DDIM stochasticity (0 = deterministic).
        ddpm_variance: DDPM step variance, ``"posterior"`` or ``"beta"``.
        spacing: default sampling times, ``"uniform"``, ``"karras"`` (Karras et al.'s
            spacing of ``sigma / alpha``) or ``"diffwave_fast"`` (DiffWave's 6-step fast
            schedule; needs ``sampler_steps: 6``).
        guidance_scale: default classifier-free guidance scale (1 = plain conditional).
        signal_scale: the audio is multiplied by this before the forward process and the
            samples divided by it (1 = as is). Quiet material (rendered piano around
            -38 dBFS RMS) otherwise sits below the noise of the last sampling steps
            (sigma ~ 0.01 for DiffWave's betas), so the network must resolve it at an SNR
            near one; a scale that brings the RMS to about 0.1-0.2 (the level of the speech
            the papers trained on) avoids that. Measured in docs/RESULTS.md.
        time_grids: stored few-step grids by number of steps, ``{"6": [t_6, ..., t_1, 0],
            ...}`` (keys are strings, as in JSON; ``N + 1`` strictly decreasing times in
            [0, 1] ending in 0, which is appended if missing). Sampling with ``N`` steps uses
            the grid stored for ``N`` (see :meth:`sample`).
    """

    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    parameterization: str = "eps"
    weighting: str = "none"
    min_snr_gamma: float = 5.0
    cond_dropout: float = 0.0
    sampler: str = "ddim"
    sampler_steps: int = 50
    eta: float = 0.0
    ddpm_variance: str = "posterior"
    spacing: str = "uniform"
    guidance_scale: float = 1.0
    signal_scale: float = 1.0
    time_grids: dict[str, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.schedule, dict):
            self.schedule = ScheduleConfig.from_dict(self.schedule)
        check_parameterization(self.parameterization)
        check_weighting(self.weighting)
        check_sampler(self.sampler)
        if not self.min_snr_gamma > 0:
            raise ConfigError(f"diffusion.min_snr_gamma must be > 0, got {self.min_snr_gamma}")
        if not 0 <= self.cond_dropout < 1:
            raise ConfigError(f"diffusion.cond_dropout must be in [0, 1), got {self.cond_dropout}")
        if self.sampler_steps < 1:
            raise ConfigError(f"diffusion.sampler_steps must be >= 1, got {self.sampler_steps}")
        if not 0 <= self.eta <= 1:
            raise ConfigError(f"diffusion.eta must be in [0, 1], got {self.eta}")
        if self.ddpm_variance not in DDPM_VARIANCES:
            raise ConfigError(f"diffusion.ddpm_variance must be one of "
                              f"{', '.join(DDPM_VARIANCES)}, got {self.ddpm_variance!r}")
        check_spacing(self.spacing)
        if not (math.isfinite(self.signal_scale) and self.signal_scale > 0):
            raise ConfigError(f"diffusion.signal_scale must be a finite number > 0, got "
                              f"{self.signal_scale}")
        if not math.isfinite(self.guidance_scale) or self.guidance_scale < 0:
            raise ConfigError(f"diffusion.guidance_scale must be >= 0, got {self.guidance_scale}")
        if self.spacing in FIXED_STEPS and self.sampler_steps != FIXED_STEPS[self.spacing]:
            raise ConfigError(f"diffusion.spacing {self.spacing} takes "
                              f"{FIXED_STEPS[self.spacing]} steps; set diffusion.sampler_steps "
                              f"to {FIXED_STEPS[self.spacing]}, got {self.sampler_steps}")
        self.time_grids = self._checked_grids(self.time_grids)
        self._schedule: NoiseSchedule | None = None

    @staticmethod
    def _checked_grids(grids: Any) -> dict[str, list[float]]:
        if not isinstance(grids, dict):
            raise ConfigError(f"diffusion.time_grids must be a mapping of steps to times, "
                              f"got {type(grids).__name__}")
        checked = {}
        for key, times in grids.items():
            where = f"diffusion.time_grids[{key!r}]"
            steps = key if isinstance(key, int) and not isinstance(key, bool) else None
            if isinstance(key, str) and key.isdigit():
                steps = int(key)
            if steps is None or steps < 1:
                raise ConfigError(f"diffusion.time_grids keys must be step counts >= 1, "
                                  f"got {key!r}")
            if isinstance(times, (str, bytes)) or not isinstance(times, (list, tuple)):
                raise ConfigError(f"{where} must be a list of times, got {type(times).__name__}")
            grid = check_time_grid(times, where)
            if len(grid) != steps + 1:
                raise ConfigError(f"{where} makes {len(grid) - 1} steps, not {steps}")
            checked[str(steps)] = grid
        return dict(sorted(checked.items(), key=lambda item: int(item[0])))

    def with_time_grid(self, times: list[float]) -> "DiffusionProcess":
        """A copy of this process with ``times`` stored under its number of steps."""
        grid = check_time_grid(times)
        return dataclasses.replace(self, time_grids={**self.time_grids,
                                                     str(len(grid) - 1): grid})

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "diffusion") -> "DiffusionProcess":
        """From plain values; unknown keys and wrong types are ConfigErrors naming the key."""
        return from_dict(cls, data, where)

    def make_schedule(self) -> NoiseSchedule:
        """The noise schedule (built once)."""
        if self._schedule is None or self._schedule.config != self.schedule:
            self._schedule = make_schedule(self.schedule)
        return self._schedule

    def loss(self, denoise: Denoiser, x0: torch.Tensor, **kwargs) -> LossTerms:
        """:func:`~wavegen.diffusion.losses.denoising_loss` with this process's settings
        (``x0`` is the audio as it is; :attr:`signal_scale` is applied here)."""
        if self.signal_scale != 1:
            x0 = x0 * self.signal_scale
        return denoising_loss(denoise, x0, self.make_schedule(), self.parameterization,
                              self.weighting, min_snr_gamma=self.min_snr_gamma, **kwargs)

    def sample(self, denoise: Denoiser, shape: tuple[int, ...] | None = None,
               **kwargs) -> torch.Tensor:
        """:func:`~wavegen.diffusion.samplers.sample` with this process's defaults;
        keyword arguments (``sampler``, ``steps``, ``eta``, ``generator``, ...) override.

        The times: explicit ``times`` if given (their count sets the steps unless ``steps``
        is given too, which must then agree); else the grid stored in :attr:`time_grids` for
        the number of steps, unless the caller names a ``spacing``; else the spacing.
        """
        # Fewer CPU threads on a busy machine (wavegen.utils.threads).
        with shared_machine_threads():
            return self._sample(denoise, shape, kwargs)

    def _sample(self, denoise: Denoiser, shape: tuple[int, ...] | None,
                kwargs: dict) -> torch.Tensor:
        options = {"sampler": self.sampler, "eta": self.eta, "variance": self.ddpm_variance,
                   "spacing": self.spacing, **kwargs}
        if options.get("times") is None:
            options.pop("times", None)
            steps = options.setdefault("steps", self.sampler_steps)
            if "spacing" not in kwargs and str(steps) in self.time_grids:
                options["times"] = self.time_grids[str(steps)]
            elif "spacing" in kwargs and options["spacing"] in FIXED_STEPS \
                    and "steps" not in kwargs:
                options["steps"] = FIXED_STEPS[options["spacing"]]
        if self.signal_scale == 1:
            return sample(denoise, self.make_schedule(), self.parameterization, shape, **options)
        if options.get("known") is not None:
            options["known"] = options["known"] * self.signal_scale
        out = sample(denoise, self.make_schedule(), self.parameterization, shape, **options)
        return out / self.signal_scale
