"""What a training run shows while it runs: a progress bar with a phase-aware ETA, a line per
validation and a closing summary.

The remaining time is not ``remaining steps / current rate``: runs have phases whose steps
cost differently (a GAN's warm-up on spectral losses, then the much slower steps with the
discriminator; see :meth:`wavegen.train.tasks.base.Task.phases`). :class:`PhaseClock` times
the steps of each phase separately (everything a step costs: data, objectives, validation,
checkpoints) and adds up, phase by phase, the steps left times that phase's seconds per step.
A phase not yet timed is estimated from the current one and the phases' ``relative_cost``.
"""

from __future__ import annotations

import math
from typing import Sequence

from tqdm import tqdm

from wavegen.train.tasks.base import Phase


class PhaseClock:
    """Seconds per step of each phase of a ``total_steps`` run, and the time left.

    The first step timed in each phase is left out of its average (start-up costs such as
    allocator warm-up or the first data loads) unless it is the only one.
    """

    def __init__(self, phases: Sequence[Phase], total_steps: int):
        if not phases or phases[0].start != 0:
            raise ValueError("phases must start with one at step 0")
        if any(b.start <= a.start for a, b in zip(phases, phases[1:])):
            raise ValueError("phases must be in increasing order of start")
        self.phases = list(phases)
        self.total_steps = total_steps
        self._first: dict[int, float] = {}
        self._sum: dict[int, float] = {}
        self._count: dict[int, int] = {}
        self._current = 0

    def phase_index(self, step: int) -> int:
        """Index of the phase that (0-based) step ``step`` belongs to."""
        return max(i for i, phase in enumerate(self.phases) if phase.start <= step)

    def record(self, step: int, seconds: float) -> None:
        """(0-based) step ``step`` took ``seconds`` in all."""
        index = self.phase_index(step)
        self._current = index
        if index not in self._first:
            self._first[index] = seconds
            return
        self._sum[index] = self._sum.get(index, 0.0) + seconds
        self._count[index] = self._count.get(index, 0) + 1

    def seconds_per_step(self, index: int) -> float | None:
        """Measured seconds per step of phase ``index`` (None if none of its steps ran)."""
        if self._count.get(index):
            return self._sum[index] / self._count[index]
        return self._first.get(index)

    def _estimate(self, index: int) -> float | None:
        measured = self.seconds_per_step(index)
        if measured is not None:
            return measured
        # Scale the latest timed phase (the current one, else any) by the relative costs.
        timed = [self._current] if self.seconds_per_step(self._current) is not None else []
        timed += [i for i in sorted(self._first) if i != self._current]
        if not timed:
            return None
        reference = timed[0]
        return (self.seconds_per_step(reference) * self.phases[index].relative_cost
                / self.phases[reference].relative_cost)

    def remaining(self, next_step: int) -> float | None:
        """Seconds until step ``total_steps``, ``next_step`` being the next to run (None
        before any step has been timed)."""
        total = 0.0
        for index, phase in enumerate(self.phases):
            end = self.phases[index + 1].start if index + 1 < len(self.phases) else self.total_steps
            steps = min(end, self.total_steps) - max(phase.start, next_step)
            if steps <= 0:
                continue
            per_step = self._estimate(index)
            if per_step is None:
                return None
            total += steps * per_step
        return total


class _PhasedTqdm(tqdm):
    """tqdm whose ``{remaining}`` shows :attr:`remaining_s` (set by the trainer) when known."""

    remaining_s: float | None = None

    @property
    def format_dict(self):
        values = super().format_dict
        if self.remaining_s is not None:
            values["remaining"] = self.format_interval(self.remaining_s)
            values["remaining_s"] = self.remaining_s
        return values


BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"


class TrainingBar:
    """The run's progress bar (drawn only when ``enabled``) and the lines printed above it.

    :meth:`write` prints a line whether or not the bar is drawn, through ``tqdm.write`` so
    that a drawn bar is not torn.
    """

    def __init__(self, total: int, initial: int, enabled: bool):
        self.bar = _PhasedTqdm(total=total, initial=initial, disable=not enabled, unit="step",
                               dynamic_ncols=True, bar_format=BAR_FORMAT)

    def advance(self, remaining_s: float | None) -> None:
        self.bar.remaining_s = remaining_s
        self.bar.update(1)

    def show(self, values: dict[str, float]) -> None:
        self.bar.set_postfix({k: f"{v:.3g}" for k, v in values.items()})

    def write(self, line: str) -> None:
        tqdm.write(line)

    def close(self) -> None:
        self.bar.close()


def validation_line(step: int, metrics: dict[str, float], key: str, best: bool) -> str:
    """``step 200: val nll 3.21 (best); bits 4.63, sample_nll 3.05``: the task's validation
    key first, marked when it is the lowest of the run so far."""
    head = f"step {step}: val"
    if key in metrics:
        head += f" {key} {_number(metrics[key])}" + (" (best)" if best else "")
    rest = ", ".join(f"{k} {_number(v)}" for k, v in sorted(metrics.items()) if k != key)
    return head + (("; " if key in metrics else " ") + rest if rest else "")


def summary_line(step: int, seconds: float, metrics: dict[str, float]) -> str:
    """The line printed when a run ends."""
    shown = ", ".join(f"{k} {_number(v)}" for k, v in sorted(metrics.items()))
    return f"trained to step {step} in {seconds:.1f} s; validation: {shown or 'none'}"


def _number(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else str(value)
