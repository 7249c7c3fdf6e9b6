"""Transformations of categorical logits applied before sampling.

Every function takes logits ``[..., K]`` (classes on the last axis) and returns a new tensor
of the same shape; a removed class gets the logit ``-inf`` (probability 0) and a kept class
keeps its logit unchanged, so the filters compose in any order and the result goes straight
into :meth:`wavegen.nn.distributions.Categorical.sample` (or any softmax). Probabilities are
computed in float32 at least (float64 stays float64).

* :func:`apply_temperature` — ``logits / T``; ``T = 0`` keeps only the argmax.
* :func:`top_p_filter` — nucleus sampling (Holtzman et al. 2020).
* :func:`typical_filter` — locally typical sampling (Meister et al. 2022).
* :func:`cfg_logits` — classifier-free guidance on log-probabilities (Ho & Salimans 2022).

Guidance should come first (it needs the raw, finite network outputs of both passes), then
temperature, then a truncation filter.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from wavegen.errors import UsageError

__all__ = ["apply_temperature", "top_p_filter", "typical_filter", "cfg_logits"]


def _check_logits(logits: torch.Tensor) -> None:
    if not logits.is_floating_point() or logits.dim() < 1 or logits.shape[-1] < 1:
        raise UsageError(f"logits must be a floating tensor [..., K], got {logits.dtype} "
                         f"{tuple(logits.shape)}")


def _check_fraction(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise UsageError(f"{name} must be in [0, 1], got {value}")
    return value


def _work_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _keep_sorted_prefix(logits: torch.Tensor, order: torch.Tensor, probs_sorted: torch.Tensor,
                        mass: float) -> torch.Tensor:
    """Keep the shortest prefix of ``order`` whose probability reaches ``mass`` (at least one).

    Class ``order[j]`` is kept when the mass of the classes *before* it is still below
    ``mass``; that is the smallest prefix with cumulative mass >= ``mass``.
    """
    cumulative = torch.cumsum(probs_sorted, dim=-1)
    # Exclusive prefix sum by shifting, not ``cumsum - p``, which would add a rounding step.
    before = F.pad(cumulative[..., :-1], (1, 0))
    keep_sorted = before < mass
    keep_sorted[..., 0] = True
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    return logits.masked_fill(~keep, -math.inf)


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``logits / temperature`` ``[..., K]``; ``temperature = 0`` gives the greedy limit.

    At ``temperature = 0`` the first argmax keeps logit 0 and every other class gets ``-inf``,
    so sampling from the result returns the argmax whatever the uniform.
    """
    _check_logits(logits)
    temperature = float(temperature)
    if not (math.isfinite(temperature) and temperature >= 0.0):
        raise UsageError(f"temperature must be finite and >= 0, got {temperature}")
    if temperature == 0.0:
        top = logits.argmax(dim=-1, keepdim=True)
        out = torch.full_like(logits, -math.inf)
        return out.scatter(-1, top, 0.0)
    return logits / temperature


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of classes whose probability sum is >= ``p``.

    Classes are taken in order of decreasing probability (ties: lower index first); the
    argmax is always kept, so ``p = 0`` is greedy, and ``p = 1`` returns ``logits`` unchanged.
    ``logits`` ``[..., K]`` -> ``[..., K]``.
    """
    _check_logits(logits)
    p = _check_fraction("p", p)
    if p >= 1.0:
        return logits.clone()
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True, stable=True)
    probs_sorted = torch.softmax(sorted_logits.to(_work_dtype(logits)), dim=-1)
    return _keep_sorted_prefix(logits, order, probs_sorted, p)


def typical_filter(logits: torch.Tensor, mass: float) -> torch.Tensor:
    """Locally typical filter (Meister et al. 2022), ``[..., K]`` -> ``[..., K]``.

    With ``H = -sum p log p`` the entropy of ``softmax(logits)``, classes are ranked by how far
    their surprisal is from it, ``|(-log p_k) - H|`` (closest first, ties: lower index), and
    the shortest prefix of that ranking with probability sum >= ``mass`` is kept (at least
    one class). ``mass = 1`` returns ``logits`` unchanged. Classes that already have
    probability 0 rank last and stay at ``-inf``.
    """
    _check_logits(logits)
    mass = _check_fraction("mass", mass)
    if mass >= 1.0:
        return logits.clone()
    log_p = torch.log_softmax(logits.to(_work_dtype(logits)), dim=-1)
    p = log_p.exp()
    # 0 * log 0 is 0 in the entropy, not NaN.
    entropy = -torch.where(p > 0, p * log_p, torch.zeros_like(p)).sum(-1, keepdim=True)
    distance = (-log_p - entropy).abs()
    _, order = torch.sort(distance, dim=-1, stable=True)
    return _keep_sorted_prefix(logits, order, p.gather(-1, order), mass)


def cfg_logits(cond: torch.Tensor, uncond: torch.Tensor, gamma: float) -> torch.Tensor:
    """Classifier-free guidance on categorical outputs, ``[..., K]`` twice -> ``[..., K]``.

    Returns ``log_softmax(uncond) + gamma * (log_softmax(cond) - log_softmax(uncond))``, i.e.
    ``p_guided ∝ p_uncond^(1 - gamma) * p_cond^gamma``. In Ho & Salimans' form
    ``(1 + w) * cond - w * uncond`` this is ``gamma = 1 + w``: ``gamma = 0`` is the
    unconditional model, ``gamma = 1`` the conditional one, ``gamma > 1`` amplifies the
    conditioning. The result is unnormalised for other ``gamma`` (sampling normalises).
    Both inputs must be finite (raw network logits); filter *after* guidance.
    """
    _check_logits(cond)
    if cond.shape != uncond.shape:
        raise UsageError(f"cond and uncond logits differ in shape: {tuple(cond.shape)} vs "
                         f"{tuple(uncond.shape)}")
    gamma = float(gamma)
    if not math.isfinite(gamma):
        raise UsageError(f"gamma must be finite, got {gamma}")
    log_cond = torch.log_softmax(cond, dim=-1)
    log_uncond = torch.log_softmax(uncond, dim=-1)
    return log_uncond + gamma * (log_cond - log_uncond)
