"""Few-step sampling schedules: DiffWave's fixed fast schedule and a WaveGrad-style search.

Both are expressed in the core's terms: a *time grid* ``1 >= t_N > ... > t_1 > t_0 = 0``
(``N + 1`` floats) over the training schedule, which every sampler of
:mod:`wavegen.diffusion.samplers` follows (``sample(..., times=grid)``). No network is
retrained: a few-step schedule only chooses which noise levels the sampler visits.

* **DiffWave's fast schedule** (Kong et al. 2021, "fast sampling"): a short sequence of
  betas ``gamma_1 .. gamma_S`` (the paper's 6-step ``1e-4, 1e-3, 1e-2, 5e-2, 0.2, 0.5``)
  defines ``alpha_bar_s = prod_{i <= s} (1 - gamma_i)``; each fast step ``s`` is *aligned*
  to the continuous training time whose cumulative alpha equals ``alpha_bar_s``
  (:func:`times_from_betas`). Matching is done on the log-SNR,
  ``log(alpha_bar / (1 - alpha_bar))``, through the schedule's exact inverse
  :meth:`~wavegen.diffusion.schedules.NoiseSchedule.t_from_log_snr`: for VP schedules this
  is matching ``alpha^2 = alpha_bar``; for VE schedules it matches ``sigma / alpha``. A DDPM
  step (posterior variance) between two aligned times is then exactly DiffWave's fast
  update with ``gamma_s`` as the step's beta.
* **WaveGrad's schedule search** (Chen et al. 2021, section 4): for a step budget, try a
  small grid of candidate schedules on a validation clip and keep the one whose sample is
  closest to the clip (:func:`search_time_grid`). The candidates here are time grids
  warped by a power, ``t_i = (i / N) ** p`` (``p = 1`` is the uniform grid, always tried
  first), and geometric beta sequences from ``beta_first`` to ``beta_last`` mapped like
  DiffWave's (those reaching more noise than the training schedule are skipped). The
  winner can be stored in :attr:`DiffusionProcess.time_grids
  <wavegen.diffusion.process.DiffusionProcess.time_grids>`, which ``--steps N`` then uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

import torch

from wavegen.diffusion.schedules import NoiseSchedule
from wavegen.errors import ConfigError, UsageError

if TYPE_CHECKING:  # annotations only: process.py imports the samplers, which import this
    from wavegen.audio.features import FeatureConfig
    from wavegen.diffusion.process import DiffusionProcess

#: DiffWave's 6-step fast inference betas (Kong et al. 2021, appendix / table of T_infer).
DIFFWAVE_FAST_BETAS = (1e-4, 1e-3, 1e-2, 5e-2, 2e-1, 5e-1)
#: Exponents of the power-warped candidate grids ``t_i = (i / N) ** p`` (1 = uniform).
POWER_WARPS = (1.0, 0.5, 0.7, 1.4, 2.0, 3.0)
#: ``beta_first`` and ``beta_last`` of the geometric candidate beta sequences.
GEOMETRIC_FIRST = (1e-6, 1e-5, 1e-4, 1e-3)
GEOMETRIC_LAST = (0.05, 0.1, 0.2, 0.35, 0.5, 0.7)
#: Distances :func:`search_time_grid` can rank candidates by.
SEARCH_METRICS = ("log_mel_l1", "mrstft")


def check_time_grid(times: Sequence[float], where: str = "times") -> list[float]:
    """``times`` as a valid grid: floats in [0, 1], strictly decreasing, ending in 0.

    A grid without its final 0 gets one appended (the last step always lands on clean
    data); at least one step (``t_1 > 0``) is required. Returns a new list.
    """
    try:
        grid = [float(t) for t in times]
    except (TypeError, ValueError):
        raise ConfigError(f"{where} must be a list of times in [0, 1]") from None
    if grid and grid[-1] != 0.0:
        grid.append(0.0)
    if len(grid) < 2:
        raise ConfigError(f"{where} needs at least one time above 0, got {list(times)}")
    if not all(math.isfinite(t) and 0.0 <= t <= 1.0 for t in grid):
        raise ConfigError(f"{where} must lie in [0, 1], got {grid}")
    if any(a <= b for a, b in zip(grid, grid[1:])):
        raise ConfigError(f"{where} must be strictly decreasing (noisiest first), got {grid}")
    return grid


def times_from_betas(schedule: NoiseSchedule, betas: Sequence[float]) -> list[float]:
    """The grid ``[t_S, ..., t_1, 0]`` aligned to the fast ``betas`` (``S + 1`` floats).

    ``t_s`` is the training time with ``log_snr(t_s) = log(alpha_bar_s / (1 - alpha_bar_s))``,
    ``alpha_bar_s = prod_{i <= s} (1 - betas_i)`` (module doc), so for VP schedules
    ``alpha(t_s)^2 = alpha_bar_s`` up to float64 rounding. A UsageError if some
    ``alpha_bar_s`` is noisier than the schedule's ``t = 1`` (no training time matches it).
    """
    beta = torch.as_tensor([float(b) for b in betas], dtype=torch.float64)
    if beta.numel() < 1 or not bool(((beta > 0) & (beta < 1)).all()):
        raise UsageError(f"fast betas must be a non-empty list in (0, 1), got {list(betas)}")
    log_alpha_bar = torch.cumsum(torch.log1p(-beta), 0)
    log_snr = log_alpha_bar - torch.log(-torch.expm1(log_alpha_bar))
    floor = schedule.log_snr(torch.tensor(1.0, dtype=torch.float64)).item()
    if log_snr[-1].item() < floor - 1e-9:
        reached = math.exp(log_alpha_bar[-1].item())
        raise UsageError(f"fast betas reach alpha_bar {reached:.3g}, noisier than the training "
                         f"schedule's t = 1 (log-SNR {floor:.3g}); no training time matches")
    times = schedule.t_from_log_snr(log_snr).tolist()
    return [min(t, 1.0) for t in reversed(times)] + [0.0]


def diffwave_fast_times(schedule: NoiseSchedule,
                        betas: Sequence[float] = DIFFWAVE_FAST_BETAS) -> list[float]:
    """DiffWave's aligned fast-sampling grid over ``schedule`` (7 times for the 6 steps)."""
    return check_time_grid(times_from_betas(schedule, betas), "diffwave_fast times")


def power_times(steps: int, power: float) -> list[float]:
    """``t_i = (i / steps) ** power`` for ``i = steps .. 0`` (``power = 1``: uniform)."""
    if steps < 1 or not power > 0:
        raise UsageError(f"power_times needs steps >= 1 and power > 0, got {steps}, {power}")
    return [(i / steps) ** power for i in range(steps, -1, -1)]


def geometric_betas(steps: int, first: float, last: float) -> list[float]:
    """``steps`` betas growing geometrically from ``first`` to ``last``."""
    if steps == 1:
        return [last]
    ratio = (last / first) ** (1.0 / (steps - 1))
    return [first * ratio ** i for i in range(steps)]


def candidate_grids(schedule: NoiseSchedule, steps: int) -> dict[str, list[float]]:
    """The search's candidates by name, uniform first (see the module doc).

    Geometric sequences that no training time can match, or whose aligned times collide
    after rounding, are left out.
    """
    candidates = {f"power(p={p:g})": power_times(steps, p) for p in POWER_WARPS}
    for first in GEOMETRIC_FIRST:
        for last in GEOMETRIC_LAST:
            if first >= last:
                continue
            try:
                betas = geometric_betas(steps, first, last)
                grid = check_time_grid(times_from_betas(schedule, betas))
            except (UsageError, ConfigError):
                continue
            candidates[f"geometric({first:g}, {last:g})"] = grid
    return candidates


@dataclass
class SearchResult:
    """What :func:`search_time_grid` found.

    Attributes:
        steps: the step budget (network evaluations of ddpm / ddim).
        times: the winning grid, ``steps + 1`` floats from the noisiest time down to 0.
        name: the winning candidate (``"power(p=1)"`` is the uniform grid).
        score: its distance to the clip (lower is better).
        scores: every candidate's distance, by name, in the order tried.
    """

    steps: int
    times: list[float]
    name: str
    score: float
    scores: dict[str, float] = field(default_factory=dict)


def _distance(metric: str, features: "FeatureConfig | None"
              ) -> Callable[[torch.Tensor, torch.Tensor], float]:
    from wavegen.audio import metrics

    if metric not in SEARCH_METRICS:
        raise UsageError(f"metric must be one of {', '.join(SEARCH_METRICS)}, got {metric!r}")
    if metric == "log_mel_l1":
        if features is None:
            raise UsageError("metric log_mel_l1 needs the model's FeatureConfig (features=...)")
        return lambda ref, est: float(metrics.log_mel_l1(ref, est, features).mean())
    return lambda ref, est: float(metrics.multi_resolution_stft_distance(ref, est).total.mean())


@torch.no_grad()
def search_time_grid(process: "DiffusionProcess", model: torch.nn.Module, audio: torch.Tensor,
                     steps: int, local: torch.Tensor | None = None, *,
                     features: "FeatureConfig | None" = None, metric: str = "log_mel_l1",
                     seed: int = 0, sampler: str | None = None,
                     candidates: dict[str, Sequence[float]] | None = None) -> SearchResult:
    """The candidate grid of ``steps`` steps whose sample is closest to ``audio``.

    Each candidate samples ``audio``'s shape with ``process.sample`` (``sampler``, default
    the process's) from the same seeded noise, ``model(x_t, t, local=local)`` as denoiser,
    and is scored by ``metric`` against ``audio``: ``"log_mel_l1"``
    (:func:`~wavegen.audio.metrics.log_mel_l1` with ``features``) or ``"mrstft"``
    (:func:`~wavegen.audio.metrics.multi_resolution_stft_distance`). Ties keep the earlier
    candidate, and the uniform grid comes first, so the winner never scores worse than
    uniform on the clip. Deterministic for a given ``seed`` (on a deterministic device).

    Args:
        process: the model's diffusion process (schedule, parameterisation, sampler).
        model: the denoiser ``model(x_t [B, 1, T], t [B], local=None) -> [B, 1, T]``.
        audio: the validation clip ``[B, 1, T]`` in [-1, 1].
        steps: the step budget (e.g. 6, 12, 25).
        local: the clip's conditioning ``[B, C, frames]`` or None.
        features: the front-end for ``"log_mel_l1"``.
        candidates: name -> grid, replacing :func:`candidate_grids`.
    """
    if audio.ndim != 3 or audio.shape[1] != 1:
        raise UsageError(f"audio must be [B, 1, T], got {tuple(audio.shape)}")
    distance = _distance(metric, features)
    schedule = process.make_schedule()
    grids = candidate_grids(schedule, steps) if candidates is None else dict(candidates)
    if not grids:
        raise UsageError("search_time_grid needs at least one candidate grid")

    def denoise(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return model(x_t, t, local=local)

    scores: dict[str, float] = {}
    best: tuple[float, str, list[float]] | None = None
    for name, raw in grids.items():
        grid = check_time_grid(raw, f"candidate {name}")
        if len(grid) != steps + 1:
            raise UsageError(f"candidate {name} has {len(grid) - 1} steps, expected {steps}")
        generator = torch.Generator(device=audio.device).manual_seed(seed)
        out = process.sample(denoise, tuple(audio.shape), times=grid, generator=generator,
                             device=audio.device, dtype=audio.dtype,
                             **({} if sampler is None else {"sampler": sampler}))
        score = distance(audio, out.clamp(-1, 1))
        if not math.isfinite(score):
            score = math.inf
        scores[name] = score
        if best is None or score < best[0]:
            best = (score, name, grid)
    score, name, grid = best
    return SearchResult(steps, grid, name, score, scores)


__all__ = ["DIFFWAVE_FAST_BETAS", "SEARCH_METRICS", "SearchResult", "candidate_grids",
           "check_time_grid", "diffwave_fast_times", "geometric_betas", "power_times",
           "search_time_grid", "times_from_betas"]
