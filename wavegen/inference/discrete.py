"""Discrete autoencoders (VQ-VAE): the decoder turns one level's codes into audio.

An autoencoder alone cannot generate: its codes come from a prior (a sample-level model
over codes) earlier in a pipeline (:mod:`wavegen.inference.manifest`), so this stage takes
``codes`` ``[B, frames]`` and gives audio through the model's ``decode(codes, level)``
(:class:`wavegen.models.protocols.DiscreteAutoencoder`). Its input
:class:`~wavegen.inference.signals.Signal` is what a prior must produce: the codebook size
(``codebook_size`` argument, else the config's ``codebook_size``) and the level's samples
per code, measured once by decoding a few codes (the protocol fixes the output to
``frames * h_level`` samples).
"""

from __future__ import annotations

import time

import torch
from torch import nn

from wavegen.checkpoint import BundleInfo
from wavegen.errors import CheckpointError, UsageError
from wavegen.inference.base import Adapter, Sink, SynthesisResult, deliver
from wavegen.inference.conditioning import Conditioning
from wavegen.inference.options import InferenceOptions
from wavegen.inference.signals import Signal
from wavegen.models.protocols import DISCRETE_AUTOENCODER

#: Codes decoded to measure a level's samples per code.
_PROBE_CODES = 8


class DiscreteDecoderAdapter(Adapter):
    """``decode(codes, level)`` of a discrete autoencoder.

    Args:
        model, info: the loaded bundle.
        level: which level's codes this stage decodes (0 = the finest).
        codebook_size: codes per level (default: ``info.model_config.codebook_size``).
    """

    kind = DISCRETE_AUTOENCODER

    def __init__(self, model: nn.Module, info: BundleInfo, level: int = 0,
                 codebook_size: int | None = None):
        super().__init__(model, info)
        self.level = level
        size = codebook_size if codebook_size is not None else getattr(
            info.model_config, "codebook_size", None)
        if not isinstance(size, int) or size < 1:
            raise CheckpointError(f"{self.name}: family {info.family} does not say its codebook "
                                  f"size (a config field codebook_size, or the adapter's "
                                  f"codebook_size argument)")
        self.codebook_size = size
        self._hop: int | None = None

    @property
    def hop_length(self) -> int:
        """Audio samples per code at :attr:`level` (measured on first use)."""
        if self._hop is None:
            codes = torch.zeros(1, _PROBE_CODES, dtype=torch.long, device=self.device())
            with torch.inference_mode():
                samples = self.model.decode(codes, self.level).shape[-1]
            if samples % _PROBE_CODES or samples == 0:
                raise CheckpointError(f"{self.name}: decode() of {_PROBE_CODES} codes gave "
                                      f"{samples} samples, not a whole number per code")
            self._hop = samples // _PROBE_CODES
        return self._hop

    @property
    def input(self) -> Signal:
        return Signal("codes", self.codebook_size, self.info.sample_rate, self.hop_length)

    def run(self, conditioning: Conditioning, options: InferenceOptions,
            sink: Sink | None = None) -> SynthesisResult:
        codes = conditioning.local
        if codes is None:
            raise UsageError(f"{self.name}: a discrete autoencoder decodes codes; give it a "
                             f"prior's output in a pipeline")
        if codes.dim() == 3 and codes.shape[1] == 1:
            codes = codes[:, 0]
        if codes.dim() != 2:
            raise UsageError(f"{self.name}: codes must be [batch, frames], got "
                             f"{tuple(codes.shape)}")
        codes = codes.long()
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise UsageError(f"{self.name}: codes must lie in [0, {self.codebook_size}), got "
                             f"[{int(codes.min())}, {int(codes.max())}]")
        device = self.device()
        start = time.perf_counter()
        with torch.inference_mode():
            audio = self.model.decode(codes.to(device), self.level).float()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
        return deliver(audio.clamp(-1.0, 1.0).cpu(), self.output, seconds, sink)


__all__ = ["DiscreteDecoderAdapter"]
