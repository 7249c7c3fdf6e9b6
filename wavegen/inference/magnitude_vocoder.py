"""Spectrogram predictors at inference: a MIDI -> mel stage, or a mel vocoder by phase
reconstruction.

:func:`spectrogram_adapter` is the ``Family.inference`` of the ``spectrogram`` family
(:mod:`wavegen.models.spectrogram_predictor`):

* a ``mel`` target runs as a feed-forward stage whose output is a log-mel
  (:class:`~wavegen.inference.feed_forward.FeedForwardAdapter` with a mel
  :class:`~wavegen.inference.signals.Signal`), so a pipeline can hand it to any vocoder;
* a ``magnitude`` target is a vocoder, :class:`MagnitudeVocoderAdapter`::

      log-mel [B, n_mels, F] --model--> ln|X| [B, n_fft/2+1, F] --exp--> |X|_0
          --mel_to_linear(mel, init=|X|_0), nnls_iterations--> |X| (its mel = the input's)
          --griffin_lim(phase_iterations, phase_momentum, random phase from the seed)-->
          audio [B, 1, F * hop]

The whole input is processed in one pass: Griffin-Lim's phase is a global solution, and
cutting it into chunks would leave phase jumps at the joins. Memory grows linearly with the
input (about 30 MB per minute of 16 kHz audio at n_fft 1024), so an hour of audio needs a
few GB; the chunking options of the GAN vocoders are accepted and have no effect here.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from wavegen.checkpoint import BundleInfo
from wavegen.errors import UsageError
from wavegen.inference.base import Adapter, Sink, SynthesisResult, deliver, generator_for
from wavegen.inference.conditioning import Conditioning
from wavegen.inference.feed_forward import FeedForwardAdapter
from wavegen.inference.options import InferenceOptions
from wavegen.inference.signals import Signal
from wavegen.models.protocols import FEED_FORWARD


def predicted_magnitude(model: nn.Module, mel: torch.Tensor, features) -> torch.Tensor:
    """``|X|`` ``[B, n_fft/2+1, F]`` for the log-mel ``mel`` ``[B, n_mels, F]``: the model's
    prediction refined by ``model.config.nnls_iterations`` of the non-negative mel inversion
    started from it (so its mel equals ``mel``)."""
    from wavegen.audio.griffinlim import mel_to_linear, to_magnitude
    from wavegen.audio.spectral import decompress

    config = model.config
    device = next(model.parameters()).device
    with torch.inference_mode():
        guess = model(mel.to(device, torch.float32)).float().exp()
        if config.nnls_iterations == 0:
            return guess
        power = guess if features.power == 1.0 else guess ** features.power
        linear = mel_to_linear(decompress(mel.to(device, torch.float32), features), features,
                               n_iter=config.nnls_iterations, init=power)
        return to_magnitude(linear, features)


def vocode_magnitude(model: nn.Module, mel: torch.Tensor, features, length: int,
                     generator: torch.Generator) -> torch.Tensor:
    """Audio ``[B, 1, length]`` in [-1, 1] for the log-mel ``mel`` ``[B, n_mels, F]``:
    :func:`predicted_magnitude`, then ``model.config.phase_iterations`` of fast Griffin-Lim
    (``phase_momentum``) from a random phase drawn with ``generator`` (on the model's
    device). The adapter and the spectral task's listening samples both render this way."""
    from wavegen.audio.griffinlim import griffin_lim

    config = model.config
    magnitude = predicted_magnitude(model, mel, features)
    with torch.inference_mode():
        audio = griffin_lim(magnitude, features, n_iter=config.phase_iterations,
                            momentum=config.phase_momentum, length=length, generator=generator)
    return audio.reshape(mel.shape[0], 1, -1)[..., :length].clamp(-1.0, 1.0)


class MagnitudeVocoderAdapter(Adapter):
    """log-mel -> audio through a predicted magnitude and Griffin-Lim (module docstring).

    Args:
        model: a :class:`~wavegen.models.spectrogram_predictor.SpectrogramPredictor` with
            the ``magnitude`` target.
        info: its bundle (``info.features`` is the front-end of input and output).
    """

    kind = FEED_FORWARD

    def __init__(self, model: nn.Module, info: BundleInfo):
        super().__init__(model, info)
        if info.features is None:
            raise UsageError(f"{self.name}: a magnitude vocoder bundle without a FeatureConfig")
        model.config.check_features(info.features, self.name)

    def run(self, conditioning: Conditioning, options: InferenceOptions,
            sink: Sink | None = None) -> SynthesisResult:
        if conditioning.local is None:
            raise UsageError(f"{self.name}: a vocoder needs a mel ({self.input.describe()})")
        mel = conditioning.local
        generator = torch.Generator(self.device())
        seed = generator_for(options.seed).initial_seed()  # a fresh one when seed is None
        generator.manual_seed(seed)
        start = time.perf_counter()
        audio = vocode_magnitude(self.model, mel, self.info.features,
                                 mel.shape[-1] * self.info.features.hop_length, generator)
        if audio.device.type == "cuda":
            torch.cuda.synchronize(audio.device)
        seconds = time.perf_counter() - start
        return deliver(audio.float().cpu(), self.output, seconds, sink)


def spectrogram_adapter(model: nn.Module, info: BundleInfo) -> Adapter:
    """The adapter of a spectrogram predictor bundle: a mel stage or a vocoder (module doc)."""
    if model.config.target == "mel":
        if info.features is None:
            raise UsageError(f"{info.path or info.family}: a MIDI -> mel bundle without a "
                             f"FeatureConfig")
        model.config.check_features(info.features, str(info.path or info.family))
        return FeedForwardAdapter(model, info, output=Signal.mel(info.features))
    return MagnitudeVocoderAdapter(model, info)


__all__ = ["MagnitudeVocoderAdapter", "predicted_magnitude", "spectrogram_adapter",
           "vocode_magnitude"]
