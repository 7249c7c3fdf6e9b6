"""How to draw samples: :class:`SamplingOptions`, shared by the reference loop and the backends."""

from __future__ import annotations

from dataclasses import dataclass

from wavegen.errors import UsageError
from wavegen.nn.distributions import Categorical, OutputDistribution

#: Options that act on categorical log-probabilities (filters and guidance): they need a
#: categorical head, and only the reference loop implements them.
LOGIT_OPTIONS = ("top_p", "typical", "cfg_gamma")


@dataclass
class SamplingOptions:
    """How to draw samples.

    Attributes:
        temperature: divides the logits (categorical) or scales the scales (continuous
            heads); 0 is greedy.
        top_p: nucleus sampling mass (categorical heads), None = off.
        typical: locally typical sampling mass (categorical heads), None = off.
        cfg_gamma: classifier-free guidance ``uncond + gamma * (cond - uncond)`` on log-probs
            (categorical heads). None = plain conditional sampling; 0 = unconditional;
            1 = conditional; > 1 amplified. In Ho & Salimans' form ``(1 + w) cond - w uncond``,
            ``gamma = 1 + w``.
        seed: seeds the uniforms when none are given (same seed, same audio).
        progress: show a tqdm progress bar.
    """

    temperature: float = 1.0
    top_p: float | None = None
    typical: float | None = None
    cfg_gamma: float | None = None
    seed: int | None = None
    progress: bool = False

    def check(self, head: OutputDistribution) -> None:
        """UsageError (one line) for options the ``head`` cannot honour."""
        if not isinstance(head, Categorical):
            for name in LOGIT_OPTIONS:
                if getattr(self, name) is not None:
                    raise UsageError(f"{name} needs a categorical head; this model's head is "
                                     f"{type(head).__name__}")
        if self.temperature < 0:
            raise UsageError(f"temperature must be >= 0, got {self.temperature}")

    @property
    def guided(self) -> bool:
        """Whether classifier-free guidance is on (an unconditional branch runs beside)."""
        return self.cfg_gamma is not None


__all__ = ["LOGIT_OPTIONS", "SamplingOptions"]
