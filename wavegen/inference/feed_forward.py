"""Feed-forward models (GAN vocoders and any one-pass conditioning -> output network).

A mel -> audio generator runs through :class:`wavegen.vocoder.Vocoder`: weight norm folded,
inference mode, optional bf16 and ``torch.compile``, and overlapping chunks so memory stays
flat however long the mel, each chunk streamed to the sink as it is made. Any other
feed-forward stage (a MIDI -> mel model in a pipeline, say) is one pass of
``model(local [B, C, frames]) -> [B, C', N]``; its :class:`Signal` output is given when
the adapter is made (``Family.inference``), audio at the bundle's rate by default.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from wavegen.checkpoint import BundleInfo
from wavegen.errors import UsageError
from wavegen.inference.base import Adapter, Sink, SynthesisResult, deliver
from wavegen.inference.conditioning import Conditioning
from wavegen.inference.options import InferenceOptions
from wavegen.inference.signals import Signal
from wavegen.models.protocols import FEED_FORWARD
from wavegen.vocoder import Vocoder


class FeedForwardAdapter(Adapter):
    """One pass of a feed-forward model; chunked and streamed for mel -> audio.

    Args:
        model, info: the loaded bundle.
        output: what the model produces (default: audio at ``info.sample_rate``).
    """

    kind = FEED_FORWARD

    def __init__(self, model: nn.Module, info: BundleInfo, output: Signal | None = None):
        super().__init__(model, info)
        self._output = output
        self._vocoders: dict[tuple, Vocoder] = {}

    @property
    def output(self) -> Signal:
        return self._output if self._output is not None else super().output

    @property
    def chunked(self) -> bool:
        """Whether runs go through :class:`Vocoder` (a mel -> audio generator)."""
        return self.input.kind == "mel" and self.output.kind == "audio"

    def vocoder(self, options: InferenceOptions) -> Vocoder:
        """The model wrapped for inference with ``options``' device, bf16 and compile
        (made once per setting; folding weight norm changes the model in place)."""
        if self.info.features is None:
            raise UsageError(f"{self.name}: a vocoder bundle without a FeatureConfig")
        key = (str(options.device), options.bf16, options.compile)
        if key not in self._vocoders:
            self._vocoders[key] = Vocoder(self.model, self.info.features, options.device,
                                          options.bf16, options.compile)
        return self._vocoders[key]

    def run(self, conditioning: Conditioning, options: InferenceOptions,
            sink: Sink | None = None) -> SynthesisResult:
        if conditioning.local is None:
            raise UsageError(f"{self.name}: a feed-forward model needs its input "
                             f"({self.input.describe()})")
        if self.chunked:
            vocoder = self.vocoder(options)
            mel = conditioning.local
            result = vocoder(mel, options.chunk_frames, options.overlap_frames, sink=sink)
            length = mel.shape[-1] * vocoder.hop
            return SynthesisResult(result.audio, self.output, length, result.seconds)
        device = self.device()
        start = time.perf_counter()
        with torch.inference_mode():
            output = self.model(conditioning.local.to(device, torch.float32)).float()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
        if self.output.kind == "audio":
            output = output.clamp(-1.0, 1.0)
        return deliver(output.cpu(), self.output, seconds, sink)


__all__ = ["FeedForwardAdapter"]
