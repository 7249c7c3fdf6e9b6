"""The typicality diagnostic of generated samples, from a teacher-forced pass.

The reference loop accumulates, while it samples, the mean negative log-likelihood of the
drawn samples and the mean entropy of the model's predictive distribution (:class:`Draw`).
The fast backends draw inside their kernels, so :func:`teacher_forced_diagnostics` computes
the same two numbers afterwards from the head parameters of a teacher-forced pass over the
result: the prediction at position ``t`` given the samples before ``t`` is what the model
predicted while sampling (up to float rounding).

Where those parameters come from is a :data:`ParamWindows` function. The default is one
``forward`` pass of the sample-level contract over the whole sequence; a backend that knows
its model better supplies windows of bounded memory (the WaveNet backends: passes over
chunks with one receptive field of context, see
:meth:`wavegen.kernels.base.WaveNetSession.teacher_forced_windows`).
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch

from wavegen.models.wavenet import shift_right
from wavegen.nn.distributions import Categorical
from wavegen.sampling.draw import GRID_ENTROPY_EVERY

#: ``(inputs [B, T], first) -> iterable of (t0, params [B, P, n])``: the head parameters of
#: a teacher-forced pass at positions ``t0 .. t0 + n - 1``, in order, covering ``first .. T - 1``
#: (``inputs`` are the targets shifted right by one, a silent input first).
ParamWindows = Callable[[torch.Tensor, int], Iterable[tuple[int, torch.Tensor]]]


def full_pass_windows(model, local: torch.Tensor | None,
                      global_cond: torch.Tensor | None) -> ParamWindows:
    """One ``forward(inputs, local, global_cond)`` over the whole sequence: any sample-level
    model (memory grows with the length)."""

    def windows(inputs: torch.Tensor, first: int) -> Iterable[tuple[int, torch.Tensor]]:
        yield first, model(inputs, local, global_cond)[..., first:]

    return windows


@torch.no_grad()
def teacher_forced_diagnostics(model, samples: torch.Tensor, local: torch.Tensor | None,
                               global_cond: torch.Tensor | None,
                               prompt_targets: torch.Tensor | None = None,
                               windows: ParamWindows | None = None
                               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean NLL and entropy ``[B]`` (nats) of generated ``samples`` ``[B, N]`` under the model.

    The same quantities the reference loop accumulates while sampling (temperature 1, no
    filtering or guidance; for heads other than the categorical, the entropy at every
    :data:`~wavegen.sampling.draw.GRID_ENTROPY_EVERY`-th new sample).

    Args:
        model: a sample-level model (:mod:`wavegen.sampling.contract`).
        samples: ``[B, N]`` generated head samples.
        local, global_cond: the conditioning they were generated with.
        prompt_targets: ``[B, P]`` head targets that preceded them (not scored), or None.
        windows: where the head parameters come from (default :func:`full_pass_windows`).
    """
    head = model.head
    batch, count = samples.shape
    known = prompt_targets.shape[-1] if prompt_targets is not None else 0
    full = samples if prompt_targets is None else torch.cat(
        [prompt_targets.to(samples.dtype), samples], dim=1)
    inputs = shift_right(full, model.silence_input())
    windows = windows or full_pass_windows(model, local, global_cond)
    nll_sum = torch.zeros(batch, dtype=torch.float64)
    entropy_sum = torch.zeros(batch, dtype=torch.float64)
    entropy_steps = 0
    grid = not isinstance(head, Categorical)
    for t0, params in windows(inputs, known):
        t1 = t0 + params.shape[-1]
        nll_sum -= head.log_prob(params, full[:, t0:t1]).double().sum(-1).cpu()
        if not grid:
            log_p = torch.log_softmax(params.float(), dim=1)
            entropy = -torch.where(log_p > -float("inf"), log_p.exp() * log_p,
                                   torch.zeros_like(log_p)).sum(1)
            entropy_sum += entropy.double().sum(-1).cpu()
            entropy_steps += t1 - t0
            continue
        first = -(-(t0 - known) // GRID_ENTROPY_EVERY) * GRID_ENTROPY_EVERY
        for g in range(first, t1 - known, GRID_ENTROPY_EVERY):
            entropy_sum += head.entropy(params[..., g + known - t0].float()).double().cpu()
            entropy_steps += 1
    return (nll_sum / count).float(), (entropy_sum / max(entropy_steps, 1)).float()


__all__ = ["ParamWindows", "full_pass_windows", "teacher_forced_diagnostics"]
