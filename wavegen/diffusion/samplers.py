"""Samplers, chosen at inference time, over any denoiser, schedule and parameterisation.

A sampler integrates from ``t = 1`` (Gaussian noise of std ``schedule.prior_std``) to
clean audio over ``steps`` times ``1 = t_N > ... > t_1 > t_0 = 0``, equally spaced,
spaced in ``sigma / alpha`` as Karras et al. (2022) do, aligned to DiffWave's 6-step fast
schedule (``"diffwave_fast"``), or given explicitly as ``times`` (a few-step grid from
:mod:`wavegen.diffusion.fast_schedules`, whose ``t_N`` may be below 1); see
:func:`time_grid`. The last step
always lands on clean data (``alpha = 1, sigma = 0``), which for VE schedules means going
below ``sigma_min`` to zero, as Karras et al. do. Each step evaluates
``denoise(x_t [B, 1, T], t [B]) -> prediction`` and converts the prediction to
``(x0_hat, eps_hat)`` (:mod:`wavegen.diffusion.parameterization`).

With ``r = SNR(t) / SNR(s)`` for a step from ``t`` to the cleaner ``s``:

* ``"ddpm"``: ancestral sampling from the Gaussian posterior ``q(x_s | x_t, x0 = x0_hat)``:
  mean ``r (alpha_s / alpha_t) x_t + alpha_s (1 - r) x0_hat``; variance ``(1 - r) sigma_s^2``
  (``"posterior"``, DDPM's beta tilde) or ``(1 - r) sigma_t^2`` (``"beta"``, DDPM's beta).
* ``"ddim"``: ``x_s = alpha_s x0_hat + sqrt(sigma_s^2 - c^2) eps_hat + c z`` with
  ``c = eta sqrt(1 - r) sigma_s``: ``eta = 0`` is the deterministic probability-flow
  ODE (first order), ``eta = 1`` is exactly the DDPM posterior step.
* ``"heun"``: Karras et al.'s second-order Heun method on the probability-flow ODE written
  in ``x / alpha`` against ``sigma / alpha``, where its derivative is ``eps_hat``; two
  network evaluations per step, except the last one (Euler to ``sigma = 0``).

Randomness comes from ``generator`` (the global RNG when None) or explicitly: ``noise`` is
the standard-normal initial noise ``[B, 1, T]`` and ``step_noise`` the per-step normals
(``[steps, B, 1, T]`` or a function of the step index). Same noise, same audio. Noise is
drawn on the generator's device and then moved, so a CPU generator gives the same noise
whichever device samples.

Inpainting / continuation (the replacement method, a light RePaint without resampling):
with ``known`` audio and a ``mask`` (1 = known, broadcastable to ``[B, 1, T]``), after every
step the known region is overwritten with the forward-noised known audio at the new time,
``alpha_s known + sigma_s z0``, where ``z0`` is the initial noise (fixed noise keeps the
deterministic samplers deterministic and matches the trajectory the ODE would follow on
those samples). The final step has ``sigma = 0``, so the result equals ``known`` there.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from tqdm import tqdm

from wavegen.diffusion.fast_schedules import (DIFFWAVE_FAST_BETAS, check_time_grid,
                                              diffwave_fast_times)
from wavegen.diffusion.parameterization import check_parameterization, to_x0_eps
from wavegen.diffusion.schedules import T_MIN, NoiseSchedule
from wavegen.errors import ConfigError, UsageError

SAMPLERS = ("ddpm", "ddim", "heun")
DDPM_VARIANCES = ("posterior", "beta")
SPACINGS = ("uniform", "karras", "diffwave_fast")
#: Spacings that fix the number of steps.
FIXED_STEPS = {"diffwave_fast": len(DIFFWAVE_FAST_BETAS)}
#: Steps of :func:`sample` (and ddpm / ddim) when neither ``steps`` nor ``times`` is given.
DEFAULT_STEPS = 50
#: Karras et al.'s exponent for the spacing of sigma / alpha.
KARRAS_RHO = 7.0

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
StepNoise = torch.Tensor | Callable[[int], torch.Tensor]


def check_sampler(name: str) -> str:
    """``name`` if it names a sampler, else a ConfigError."""
    if name not in SAMPLERS:
        raise ConfigError(f"sampler must be one of {', '.join(SAMPLERS)}, got {name!r}")
    return name


def time_grid(schedule: NoiseSchedule, steps: int, spacing: str = "uniform",
              times: list[float] | None = None) -> tuple[list[float], list[float], list[float]]:
    """``steps + 1`` times from 1 to 0 and their ``alpha``, ``sigma`` (float64 scalars).

    ``"uniform"`` spaces the times evenly. ``"karras"`` spaces ``sigma / alpha`` as Karras
    et al. (2022) do, ``(s_max^(1/7) + i / (steps - 1) (s_min^(1/7) - s_max^(1/7)))^7``
    from ``t = 1`` down to the time ``T_MIN`` (the smallest that networks are trained on),
    mapped back to times through the log-SNR. Which is better depends on the schedule and
    the data (on Gaussian data, uniform times suit the VP schedules better once there are
    enough steps, because ``sigma / alpha`` spans six decades on the clipped cosine
    schedule). ``"diffwave_fast"`` is DiffWave's 6-step fast schedule aligned to
    ``schedule`` (:func:`~wavegen.diffusion.fast_schedules.diffwave_fast_times`; ``steps``
    must be 6), and explicit ``times`` (strictly decreasing in [0, 1], a final 0 appended
    if missing, ``steps + 1`` of them) replace the spacing. Either way the final entry is
    ``(t, alpha, sigma) = (0, 1, 0)``.
    """
    if steps < 1:
        raise UsageError(f"a sampler needs steps >= 1, got {steps}")
    check_spacing(spacing)
    if times is not None or spacing in FIXED_STEPS:
        if times is not None:
            grid, what = check_time_grid(times), "the given times"
        else:
            grid, what = diffwave_fast_times(schedule), f"spacing {spacing}"
        if len(grid) != steps + 1:
            raise UsageError(f"{what} make {len(grid) - 1} steps, but steps={steps} was asked")
        times = torch.tensor(grid, dtype=torch.float64)
    elif spacing == "uniform" or steps == 1:
        times = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    else:
        ends = torch.tensor([1.0, T_MIN], dtype=torch.float64)
        rho = KARRAS_RHO
        high, low = (-0.5 * schedule.log_snr(ends) / rho).exp().tolist()  # (sigma/alpha)^(1/rho)
        ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
        ratios = (high + ramp * (low - high)) ** rho
        times = torch.cat([schedule.t_from_log_snr(-2 * ratios.log()), torch.zeros(1, dtype=torch.float64)])
        times[0] = 1.0
    alpha, sigma = schedule.alpha_sigma(times)
    alphas, sigmas = alpha.tolist(), sigma.tolist()
    alphas[-1], sigmas[-1] = 1.0, 0.0
    return times.tolist(), alphas, sigmas


def check_spacing(spacing: str) -> str:
    """``spacing`` if it names a time spacing, else a ConfigError."""
    if spacing not in SPACINGS:
        raise ConfigError(f"spacing must be one of {', '.join(SPACINGS)}, got {spacing!r}")
    return spacing


class _Noise:
    """Initial and per-step standard normals, from a generator or given explicitly."""

    def __init__(self, shape, device, dtype, generator, noise, step_noise):
        self.shape, self.device, self.dtype = tuple(shape), device, dtype
        self.generator = generator
        self.step_noise = step_noise
        self.initial = self._draw() if noise is None else self._check(noise, "noise")

    def _draw(self) -> torch.Tensor:
        where = self.generator.device if self.generator is not None else self.device
        z = torch.randn(self.shape, generator=self.generator, device=where, dtype=self.dtype)
        return z.to(self.device)

    def _check(self, z: torch.Tensor, what: str) -> torch.Tensor:
        if tuple(z.shape) != self.shape:
            raise UsageError(f"{what} has shape {tuple(z.shape)}, expected {self.shape}")
        return z.to(device=self.device, dtype=self.dtype)

    def step(self, index: int) -> torch.Tensor:
        if self.step_noise is None:
            return self._draw()
        z = self.step_noise(index) if callable(self.step_noise) else self.step_noise[index]
        return self._check(z, f"step_noise[{index}]")


@torch.no_grad()
def sample(denoise: Denoiser, schedule: NoiseSchedule, parameterization: str,
           shape: tuple[int, ...] | None = None, *, sampler: str = "ddim",
           steps: int | None = None, eta: float = 0.0, variance: str = "posterior",
           spacing: str = "uniform", times: list[float] | None = None,
           generator: torch.Generator | None = None, noise: torch.Tensor | None = None,
           step_noise: StepNoise | None = None, known: torch.Tensor | None = None,
           mask: torch.Tensor | None = None, progress: bool = False,
           device: torch.device | str | None = None,
           dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Audio ``[B, 1, T]`` drawn by ``sampler`` (see the module doc).

    Args:
        denoise: ``denoise(x_t [B, 1, T], t [B]) -> prediction [B, 1, T]``.
        schedule: the noise schedule the denoiser was trained with.
        parameterization: what ``denoise`` predicts: ``"eps"``, ``"x0"``, ``"v"``, ``"score"``.
        shape: output shape ``(B, 1, T)``; optional when ``noise`` or ``known`` gives it.
        sampler: ``"ddpm"``, ``"ddim"`` or ``"heun"``.
        steps: number of steps (Heun makes ``2 steps - 1`` network evaluations); None:
            as many as ``times`` or ``spacing`` fix, else ``DEFAULT_STEPS``.
        eta: DDIM stochasticity (0 = deterministic ODE, 1 = DDPM posterior).
        variance: DDPM step variance, ``"posterior"`` (beta tilde) or ``"beta"``.
        spacing: the times visited, ``"uniform"``, ``"karras"`` or ``"diffwave_fast"``
            (see :func:`time_grid`).
        times: an explicit grid ``[t_N, ..., t_1(, 0)]`` replacing ``spacing``.
        generator: source of all noise not given explicitly.
        noise: standard-normal initial noise ``[B, 1, T]`` (scaled by ``prior_std`` here).
        step_noise: standard normals for the stochastic steps: ``[steps, B, 1, T]`` or a
            function ``index -> [B, 1, T]``.
        known, mask: inpainting / continuation: known audio ``[B, 1, T]`` and where it is
            known (1) or to be generated (0).
        progress: show a tqdm bar.
        device, dtype: where and in which precision to sample (default: the device of
            ``noise`` or ``known``, else the CPU).
    """
    check_parameterization(parameterization)
    check_sampler(sampler)
    if variance not in DDPM_VARIANCES:
        raise ConfigError(f"variance must be one of {', '.join(DDPM_VARIANCES)}, got {variance!r}")
    if not 0 <= eta <= 1 or not math.isfinite(eta):
        raise ConfigError(f"eta must be in [0, 1], got {eta}")
    if (known is None) != (mask is None):
        raise UsageError("inpainting needs both known audio and a mask")
    reference = noise if noise is not None else known
    if shape is None:
        if reference is None:
            raise UsageError("sample() needs a shape, initial noise or known audio")
        shape = tuple(reference.shape)
    if device is None:
        device = reference.device if reference is not None else torch.device("cpu")
    source = _Noise(shape, device, dtype, generator, noise, step_noise)
    if known is not None:
        known = known.to(device=device, dtype=dtype).expand(shape)
        mask = mask.to(device=device, dtype=dtype)

    def replace_known(x: torch.Tensor, alpha: float, sigma: float) -> torch.Tensor:
        if known is None:
            return x
        # mask * a + (1 - mask) * b is exact where the mask is 0 or 1.
        return mask * (alpha * known + sigma * source.initial) + (1 - mask) * x

    if steps is None:
        steps = (len(check_time_grid(times)) - 1 if times is not None
                 else FIXED_STEPS.get(spacing, DEFAULT_STEPS))
    times, alphas, sigmas = time_grid(schedule, steps, spacing, times)
    batch = shape[0]

    def predict(x: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.full((batch,), times[i], device=device, dtype=dtype)
        prediction = denoise(x, t).to(dtype)
        return to_x0_eps(parameterization, prediction, x, alphas[i], sigmas[i])

    x = replace_known(schedule.prior_std * source.initial, alphas[0], sigmas[0])
    for i in tqdm(range(steps), disable=not progress, unit="step", desc=sampler, leave=False):
        a_t, s_t, a_s, s_s = alphas[i], sigmas[i], alphas[i + 1], sigmas[i + 1]
        last = i == steps - 1
        x0, eps = predict(x, i)
        # r = SNR(t) / SNR(s) in (0, 1); 0 when s is the clean end.
        r = 0.0 if s_s == 0 else (a_t * s_s / (a_s * s_t)) ** 2
        if sampler == "ddpm":
            x = (r * a_s / a_t) * x + a_s * (1 - r) * x0
            if not last:
                std = math.sqrt(1 - r) * (s_s if variance == "posterior" else s_t)
                x = x + std * source.step(i)
        elif sampler == "ddim":
            c = eta * math.sqrt(1 - r) * s_s
            x = a_s * x0 + math.sqrt(max(s_s * s_s - c * c, 0.0)) * eps
            if c > 0:
                x = x + c * source.step(i)
        else:
            euler = a_s * x0 + s_s * eps
            if last:
                x = euler
            else:
                # Heun's correction of the Euler step, in x (not x / alpha) to avoid large
                # intermediate values when alpha(1) is tiny.
                euler = replace_known(euler, a_s, s_s)
                _, eps2 = predict(euler, i + 1)
                x = euler + 0.5 * (s_s - a_s * s_t / a_t) * (eps2 - eps)
        x = replace_known(x, a_s, s_s)
    return x


def ddpm_sample(denoise: Denoiser, schedule: NoiseSchedule, parameterization: str,
                shape: tuple[int, ...] | None = None, *, steps: int | None = None,
                variance: str = "posterior", **kwargs) -> torch.Tensor:
    """Ancestral DDPM sampling; see :func:`sample` for the arguments."""
    return sample(denoise, schedule, parameterization, shape, sampler="ddpm", steps=steps,
                  variance=variance, **kwargs)


def ddim_sample(denoise: Denoiser, schedule: NoiseSchedule, parameterization: str,
                shape: tuple[int, ...] | None = None, *, steps: int | None = None, eta: float = 0.0,
                **kwargs) -> torch.Tensor:
    """DDIM sampling (``eta = 0``: deterministic); see :func:`sample` for the arguments."""
    return sample(denoise, schedule, parameterization, shape, sampler="ddim", steps=steps,
                  eta=eta, **kwargs)


def heun_sample(denoise: Denoiser, schedule: NoiseSchedule, parameterization: str,
                shape: tuple[int, ...] | None = None, *, steps: int | None = None,
                **kwargs) -> torch.Tensor:
    """Heun's second-order probability-flow ODE sampler; see :func:`sample` (25 steps
    unless ``steps``, ``times`` or the spacing say otherwise)."""
    if steps is None and kwargs.get("times") is None \
            and kwargs.get("spacing", "uniform") not in FIXED_STEPS:
        steps = 25
    return sample(denoise, schedule, parameterization, shape, sampler="heun", steps=steps,
                  **kwargs)
