"""What :func:`wavegen.sampling.generate` returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class GenerationResult:
    """Output of :func:`~wavegen.sampling.generate`.

    Attributes:
        audio: ``[B, 1, N]`` waveform of the generated samples (prompt excluded).
        samples: ``[B, N]`` head samples (class indices, or values on the 16-bit grid).
        mean_nll: ``[B]`` mean NLL (nats) of the drawn samples under the model's (guided)
            predictive distribution at temperature 1, before filtering.
        mean_entropy: ``[B]`` mean entropy (nats) of that distribution (for the 16-bit
            heads, whose exact entropy sums 65536 bins, over every 256th step).
        seconds: wall time of the loop.
    """

    audio: torch.Tensor
    samples: torch.Tensor
    mean_nll: torch.Tensor
    mean_entropy: torch.Tensor
    seconds: float

    @property
    def samples_per_second(self) -> float:
        """Aggregate throughput: batch x length / seconds."""
        return self.samples.numel() / max(self.seconds, 1e-9)


__all__ = ["GenerationResult"]
