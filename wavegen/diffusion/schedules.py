"""Noise schedules over continuous time ``t`` in [0, 1].

A schedule gives ``x_t = alpha(t) * x0 + sigma(t) * eps`` (Kingma et al. 2021 notation) and
the log signal-to-noise ratio ``log_snr(t) = log(alpha^2 / sigma^2)``, which decreases
strictly with ``t``; :meth:`NoiseSchedule.t_from_log_snr` inverts it. ``t = 0`` is (nearly)
clean data, ``t = 1`` (nearly) pure noise.

Kinds:

* ``"linear"`` (VP): the DDPM / DiffWave schedule. ``num_steps`` betas evenly spaced from
  ``beta_start`` to ``beta_end``; discrete step ``n`` sits at ``t = n / num_steps`` with
  ``alpha_bar_n = prod_{i <= n} (1 - beta_i)``, and ``log alpha_bar`` is interpolated
  linearly in between (so it equals the discrete cumulative product at the step times).
* ``"cosine"`` (VP): Nichol & Dhariwal 2021, ``alpha_bar(t) = f(t) / f(0)`` with
  ``f(t) = cos^2((t + s) / (1 + s) * pi / 2)``, ``s = 0.008``. Clipped: time is rescaled so
  that ``t = 1`` lands on ``log_snr = COSINE_LOG_SNR_MIN`` instead of the singular
  ``alpha = 0`` (which would make eps -> x0 conversions divide by zero); the schedule stays
  strictly monotone and exactly invertible.
* ``"ve"`` (variance exploding): ``alpha = 1``, ``sigma`` geometric from ``sigma_min`` at
  ``t = 0`` to ``sigma_max`` at ``t = 1``.

VP schedules satisfy ``alpha^2 + sigma^2 = 1``. All computations run in float64 and are
returned in the dtype of ``t`` (float64 stays float64); shapes are those of ``t``
(typically ``[B]``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from wavegen.errors import ConfigError
from wavegen.utils.config import from_dict, to_dict

SCHEDULE_KINDS = ("linear", "cosine", "ve")
#: Offset ``s`` of the cosine schedule (Nichol & Dhariwal 2021).
COSINE_OFFSET = 0.008
#: Log-SNR of the cosine schedule at ``t = 1`` (alpha ~ 5.5e-4: negligible signal, finite x0).
COSINE_LOG_SNR_MIN = -15.0
#: The smallest time networks are trained on (training draws t from U(T_MIN, 1)) and that
#: Karras-spaced samplers evaluate: at t = 0 a VP schedule has sigma = 0, where x0 -> eps
#: conversions and SNR weights are infinite.
T_MIN = 1e-3


@dataclass
class ScheduleConfig:
    """Which noise schedule, and its constants.

    Attributes:
        kind: ``"linear"`` (DDPM betas), ``"cosine"`` (Nichol & Dhariwal) or ``"ve"``.
        num_steps: discrete DDPM steps the linear betas are defined over (linear only).
        beta_start, beta_end: first and last beta of the linear schedule (DiffWave:
            1e-4 .. 0.05 over 50 steps; DDPM: 1e-4 .. 0.02 over 1000).
        sigma_min, sigma_max: noise level of the VE schedule at ``t = 0`` and ``t = 1``.
    """

    kind: str = "linear"
    num_steps: int = 50
    beta_start: float = 1e-4
    beta_end: float = 0.05
    sigma_min: float = 0.002
    sigma_max: float = 80.0

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULE_KINDS:
            raise ConfigError(f"schedule.kind must be one of {', '.join(SCHEDULE_KINDS)}, "
                              f"got {self.kind!r}")
        if self.num_steps < 1:
            raise ConfigError(f"schedule.num_steps must be >= 1, got {self.num_steps}")
        if not 0 < self.beta_start <= self.beta_end < 1:
            raise ConfigError(f"schedule betas must satisfy 0 < beta_start <= beta_end < 1, "
                              f"got {self.beta_start} .. {self.beta_end}")
        if not 0 < self.sigma_min < self.sigma_max or not math.isfinite(self.sigma_max):
            raise ConfigError(f"schedule sigmas must satisfy 0 < sigma_min < sigma_max, "
                              f"got {self.sigma_min} .. {self.sigma_max}")

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "schedule") -> "ScheduleConfig":
        """From plain values; unknown keys and wrong types are ConfigErrors naming the key."""
        return from_dict(cls, data, where)


def _as64(t: torch.Tensor | float) -> torch.Tensor:
    return torch.as_tensor(t).to(torch.float64)


class NoiseSchedule:
    """``alpha(t)``, ``sigma(t)`` and ``log_snr(t)`` for ``t`` in [0, 1] (any shape).

    ``t`` is not range-checked (that would synchronise with the GPU on every call); values
    outside [0, 1] give meaningless results.
    """

    #: alpha^2 + sigma^2 == 1 (variance preserving).
    variance_preserving: bool = True

    def __init__(self, config: ScheduleConfig):
        self.config = config

    # Subclasses implement these three on float64 tensors.
    def _alpha_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _log_snr(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _t_from_log_snr(self, log_snr: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def alpha_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(alpha(t), sigma(t))``, each shaped like ``t``."""
        t = torch.as_tensor(t)
        alpha, sigma = self._alpha_sigma(_as64(t))
        dtype = t.dtype if t.is_floating_point() else torch.get_default_dtype()
        return alpha.to(dtype), sigma.to(dtype)

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """Signal scale ``alpha(t)``, shaped like ``t``."""
        return self.alpha_sigma(t)[0]

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """Noise scale ``sigma(t)``, shaped like ``t``."""
        return self.alpha_sigma(t)[1]

    def log_snr(self, t: torch.Tensor) -> torch.Tensor:
        """``log(alpha^2 / sigma^2)``, strictly decreasing in ``t`` (``+inf`` where sigma = 0)."""
        t = torch.as_tensor(t)
        dtype = t.dtype if t.is_floating_point() else torch.get_default_dtype()
        return self._log_snr(_as64(t)).to(dtype)

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """``alpha^2 / sigma^2``."""
        return self.log_snr(t).exp()

    def t_from_log_snr(self, log_snr: torch.Tensor) -> torch.Tensor:
        """The time whose log-SNR is ``log_snr`` (clamped to [0, 1] outside the range)."""
        log_snr = torch.as_tensor(log_snr)
        dtype = log_snr.dtype if log_snr.is_floating_point() else torch.get_default_dtype()
        return self._t_from_log_snr(_as64(log_snr)).clamp(0, 1).to(dtype)

    @property
    def prior_std(self) -> float:
        """Std of the Gaussian the samplers start from at ``t = 1``.

        1 for VP schedules, ``sigma_max`` for VE (the data's share ``alpha(1) * x0`` is
        ignored, as in DDPM / DiffWave / Karras et al.).
        """
        return 1.0


class LinearSchedule(NoiseSchedule):
    """DDPM betas over ``num_steps`` steps, ``log alpha_bar`` interpolated between steps."""

    def __init__(self, config: ScheduleConfig):
        super().__init__(config)
        betas = torch.linspace(config.beta_start, config.beta_end, config.num_steps,
                               dtype=torch.float64)
        # log_alpha_bar[n] at t = n / N, n = 0..N (log_alpha_bar[0] = 0: clean data).
        self.log_alpha_bar = torch.cat([torch.zeros(1, dtype=torch.float64),
                                        torch.cumsum(torch.log1p(-betas), 0)])
        self.betas = betas
        self._tables: dict[torch.device, torch.Tensor] = {}

    def _table(self, device: torch.device) -> torch.Tensor:
        # One copy per device, not a host-to-device copy per training step.
        if device not in self._tables:
            self._tables[device] = self.log_alpha_bar.to(device)
        return self._tables[device]

    def _log_alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        table = self._table(t.device)
        n = self.config.num_steps
        position = t * n
        index = position.floor().clamp(0, n - 1).long()
        frac = position - index
        return table[index] + frac * (table[index + 1] - table[index])

    def _alpha_sigma(self, t):
        log_ab = self._log_alpha_bar(t)
        return (0.5 * log_ab).exp(), (-torch.expm1(log_ab)).abs().sqrt()

    def _log_snr(self, t):
        log_ab = self._log_alpha_bar(t)
        return log_ab - torch.log(-torch.expm1(log_ab))

    def _t_from_log_snr(self, log_snr):
        # alpha_bar = sigmoid(log_snr); invert the piecewise-linear log alpha_bar(t).
        log_ab = torch.nn.functional.logsigmoid(log_snr)
        table = -self._table(log_snr.device)  # increasing
        n = self.config.num_steps
        index = (torch.searchsorted(table, (-log_ab).contiguous()) - 1).clamp(0, n - 1)
        low, high = table[index], table[index + 1]
        frac = (-log_ab - low) / (high - low)
        return (index + frac) / n


class CosineSchedule(NoiseSchedule):
    """Nichol & Dhariwal's cosine schedule, time rescaled to end at ``COSINE_LOG_SNR_MIN``."""

    def __init__(self, config: ScheduleConfig):
        super().__init__(config)
        s = COSINE_OFFSET
        self.phi0 = s / (1 + s) * math.pi / 2
        # The angle where log_snr = COSINE_LOG_SNR_MIN (see _t_from_log_snr for the algebra).
        self.phi1 = self._phi_from_log_snr(torch.tensor(COSINE_LOG_SNR_MIN, dtype=torch.float64)).item()

    def _phi(self, t: torch.Tensor) -> torch.Tensor:
        return self.phi0 + t * (self.phi1 - self.phi0)

    def _alpha_sigma(self, t):
        phi = self._phi(t)
        c0 = math.cos(self.phi0)
        # 1 - cos^2(phi)/cos^2(phi0) = sin(phi - phi0) sin(phi + phi0) / cos^2(phi0), which
        # stays accurate near t = 0 where the difference form cancels.
        sigma2 = (torch.sin(phi - self.phi0) * torch.sin(phi + self.phi0)).clamp_min(0)
        return torch.cos(phi) / c0, sigma2.sqrt() / c0

    def _log_snr(self, t):
        phi = self._phi(t)
        return 2 * torch.log(torch.cos(phi)) - torch.log(torch.sin(phi - self.phi0)
                                                        * torch.sin(phi + self.phi0))

    def _phi_from_log_snr(self, log_snr: torch.Tensor) -> torch.Tensor:
        # e^l = cos^2 phi / (sin^2 phi - sin^2 phi0)  =>  sin^2 phi = sig(-l) + sig(l) sin^2 phi0
        sin2 = torch.sigmoid(-log_snr) + torch.sigmoid(log_snr) * math.sin(self.phi0) ** 2
        return torch.asin(sin2.clamp(0, 1).sqrt())

    def _t_from_log_snr(self, log_snr):
        return (self._phi_from_log_snr(log_snr) - self.phi0) / (self.phi1 - self.phi0)


class VESchedule(NoiseSchedule):
    """``alpha = 1``, ``sigma = sigma_min * (sigma_max / sigma_min) ** t``."""

    variance_preserving = False

    def __init__(self, config: ScheduleConfig):
        super().__init__(config)
        self.log_min = math.log(config.sigma_min)
        self.log_max = math.log(config.sigma_max)

    def _log_sigma(self, t):
        return self.log_min + t * (self.log_max - self.log_min)

    def _alpha_sigma(self, t):
        return torch.ones_like(t), self._log_sigma(t).exp()

    def _log_snr(self, t):
        return -2 * self._log_sigma(t)

    def _t_from_log_snr(self, log_snr):
        return (-0.5 * log_snr - self.log_min) / (self.log_max - self.log_min)

    @property
    def prior_std(self) -> float:
        return self.config.sigma_max


def make_schedule(config: ScheduleConfig | dict[str, Any]) -> NoiseSchedule:
    """The schedule ``config`` describes (a ScheduleConfig or its dict)."""
    if isinstance(config, dict):
        config = ScheduleConfig.from_dict(config)
    kinds = {"linear": LinearSchedule, "cosine": CosineSchedule, "ve": VESchedule}
    return kinds[config.kind](config)
