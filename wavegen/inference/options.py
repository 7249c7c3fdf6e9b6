"""InferenceOptions: how to run a model, for every model kind in one dataclass.

Each adapter reads the fields that concern its kind and ignores the others; the optional
kind-specific fields (``sigma``, ``sampler``, ...) default to None, and setting one that no
stage of the bundle or pipeline uses is refused (:meth:`InferenceOptions.set_optional`),
so a typo'd intent never passes silently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from wavegen.errors import UsageError
from wavegen.vocoder import CHUNK_FRAMES, OVERLAP_FRAMES

#: Optional fields that only some adapters use: field -> what uses it (for error messages).
OPTIONAL_FIELDS = {
    "top_p": "sample-level models with a categorical head",
    "typical": "sample-level models with a categorical head",
    "guidance": "sample-level models and diffusion models",
    "sigma": "flows (noise-driven models without a diffusion process)",
    "sampler": "diffusion models",
    "steps": "diffusion models",
    "eta": "diffusion models (the ddim sampler)",
    "label": "diffusion models trained on a labelled corpus",
}


@dataclass
class InferenceOptions:
    """How to run inference.

    Attributes:
        device: where the models run (``cpu``, ``cuda``, ``cuda:N``).
        use_ema: load the EMA weights when a bundle has them.
        seed: seeds every random draw (the same seed gives the same audio); None draws a
            fresh seed.
        progress: show a progress bar (sample-level and diffusion loops).
        warn: receives one-line warnings (default: :func:`warnings.warn`).
        guidance: classifier-free guidance scale ``uncond + g (cond - uncond)``: on the
            log-probabilities of a sample-level model (None = off), on the predictions of a
            diffusion model (None = the process's default).
        temperature, top_p, typical, backend: sample-level sampling (see
            :class:`wavegen.sampling.SamplingOptions` and :mod:`wavegen.kernels`).
        bf16, compile, chunk_frames, overlap_frames: feed-forward generators (see
            :class:`wavegen.vocoder.Vocoder`): bfloat16 autocast, ``torch.compile``, mel
            frames per chunk and context frames on each side of a chunk.
        sigma: std of a flow's latent noise (None = the model's default).
        sampler, steps, eta: diffusion sampler (``ddpm``, ``ddim``, ``heun``), its number of
            steps and DDIM's eta (None = the bundle's process defaults).
        label: the class to generate, by name (or index) among the bundle's labels
            (``extra.labels``, from a ``data.labels`` corpus); None = no label.
    """

    device: str = "cpu"
    use_ema: bool = True
    seed: int | None = 0
    progress: bool = False
    warn: Callable[[str], None] | None = None
    guidance: float | None = None
    # sample-level
    temperature: float = 1.0
    top_p: float | None = None
    typical: float | None = None
    backend: str = "auto"
    # feed-forward
    bf16: bool = False
    compile: bool = False
    chunk_frames: int = CHUNK_FRAMES
    overlap_frames: int = OVERLAP_FRAMES
    # noise-driven
    sigma: float | None = None
    sampler: str | None = None
    steps: int | None = None
    eta: float | None = None
    label: str | None = None

    def __post_init__(self) -> None:
        if self.chunk_frames < 1 or self.overlap_frames < 0:
            raise UsageError("chunk_frames must be >= 1 and overlap_frames >= 0")
        if self.sigma is not None and not (math.isfinite(self.sigma) and self.sigma >= 0):
            raise UsageError(f"sigma must be a finite number >= 0, got {self.sigma}")
        if self.steps is not None and self.steps < 1:
            raise UsageError(f"steps must be >= 1, got {self.steps}")
        if self.eta is not None and not 0 <= self.eta <= 1:
            raise UsageError(f"eta must be in [0, 1], got {self.eta}")

    def set_optional(self) -> list[str]:
        """The optional kind-specific fields that are set (not None)."""
        return [name for name in OPTIONAL_FIELDS if getattr(self, name) is not None]


__all__ = ["InferenceOptions", "OPTIONAL_FIELDS"]
