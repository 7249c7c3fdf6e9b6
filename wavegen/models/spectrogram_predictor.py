"""Spectrogram predictors: frame-rate networks from a conditioning to a log-spectrogram.

A non-causal stack of dilated residual 1-D convolutions over frames maps one frame-rate
signal to another of the same length::

    local [B, C_in, F] --(local + offset) * scale--> conv k_in --> [B, channels, F]
        --ResBlock(d_1) ... ResBlock(d_L)--> GELU --> conv k_out --> [B, C_out, F]  (ln units)

    ResBlock(d): x + conv1x1(GELU(conv_k,dilation d(GELU(x))))

Two targets make two pieces of a music pipeline (``target`` in the config):

* ``"mel"``: the log-mel of the bundle's front-end (``C_out = n_mels``), from a piano roll.
  This is the MIDI -> mel stage of a MIDI -> mel -> vocoder pipeline; its output is a mel
  :class:`~wavegen.inference.signals.Signal` that any mel vocoder takes.
* ``"magnitude"``: the natural log of the STFT magnitude ``|X|`` (``C_out = n_fft / 2 + 1``,
  floored at ``log_floor``), from a log-mel: a mel vocoder. At inference
  (:class:`~wavegen.inference.magnitude_vocoder.MagnitudeVocoderAdapter`) the predicted
  magnitude starts the non-negative least-squares mel inversion
  (:func:`~wavegen.audio.griffinlim.mel_to_linear` with ``init``), which makes it agree
  exactly with the input mel while keeping the detail the mel leaves free, and
  ``phase_iterations`` of fast Griffin-Lim give it a phase. This is the classic two-step
  vocoder (Tacotron's post-net + Griffin-Lim) with the learned magnitude as a prior for the
  exact inversion; on rendered piano it beats the untrained NNLS + Griffin-Lim baseline
  because the NNLS solution spreads each band's energy over its bins, where a learned model
  puts it back on the partials (docs/RESULTS.md, "Music out of the box").

Both are trained by the ``spectral`` task (:mod:`wavegen.train.tasks.spectral`): L1 on
the log-spectrogram plus, for magnitudes, spectral convergence. The receptive field is
``1 + sum over blocks of d (k - 1) + (k_in - 1) + (k_out - 1)`` frames; a piano note's
decay lasts seconds, so the MIDI preset reaches about 4 s (261 frames at 62.5 Hz) to know
how long ago each note was struck.

Every output frame depends on the input frames within half the receptive field on either
side only, so long inputs can be processed in one pass (memory grows linearly with frames;
``[B, channels, F]`` activations) or in overlapping chunks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from wavegen.errors import ConfigError, UsageError
from wavegen.models.size import SizeEstimate, check_config_size, conv
from wavegen.nn.input_level import apply_input_level, check_input_level
from wavegen.utils.config import DictConfig, from_dict, from_preset

#: What a predictor can output: a log-mel, or the log-magnitude of the STFT.
TARGETS = ("mel", "magnitude")


@dataclass
class SpectrogramPredictorConfig(DictConfig):
    """Hyperparameters of a :class:`SpectrogramPredictor`.

    Attributes:
        in_channels: channels of the conditioning (mel bands, or piano-roll rows).
        target: ``"mel"`` (a log-mel, ``out_channels = n_mels``) or ``"magnitude"``
            (``ln |X|``, ``out_channels = n_fft // 2 + 1``); see the module docstring.
        out_channels: channels of the predicted log-spectrogram.
        channels: width of the residual stack.
        kernel_size: taps of each block's dilated convolution (odd).
        dilations: one residual block per entry, its dilation.
        input_kernel, output_kernel: taps of the first and last convolutions (odd).
        hop_length: audio samples per frame (the front-end's hop).
        sample_rate: audio rate in Hz.
        local_offset, local_scale: the input enters as ``(local + offset) * scale``
            (:mod:`wavegen.nn.input_level`; e.g. 6 and 0.25 for natural-log mels).
        log_floor: magnitudes are compared as ``ln(max(|X|, log_floor))``.
        nnls_iterations: mel-inversion iterations started from the prediction at inference
            (magnitude target; 0 keeps the raw prediction).
        phase_iterations: fast Griffin-Lim iterations at inference (magnitude target).
        phase_momentum: Griffin-Lim momentum (0.99: fast Griffin-Lim).
    """

    in_channels: int = 80
    target: str = "magnitude"
    out_channels: int = 513
    channels: int = 128
    kernel_size: int = 3
    dilations: tuple[int, ...] = (1, 2, 4, 8, 1, 2, 4, 8)
    input_kernel: int = 5
    output_kernel: int = 1
    hop_length: int = 256
    sample_rate: int = 16000
    local_offset: float = 0.0
    local_scale: float = 1.0
    log_floor: float = 1e-5
    nnls_iterations: int = 100
    phase_iterations: int = 32
    phase_momentum: float = 0.99

    def __post_init__(self) -> None:
        def bad(message: str) -> ConfigError:
            return ConfigError(f"SpectrogramPredictorConfig: {message}")

        if self.target not in TARGETS:
            raise bad(f"target must be one of {', '.join(TARGETS)}, got {self.target!r}")
        for key in ("in_channels", "out_channels", "channels", "hop_length", "sample_rate"):
            if getattr(self, key) < 1:
                raise bad(f"{key} must be >= 1, got {getattr(self, key)}")
        for key in ("kernel_size", "input_kernel", "output_kernel"):
            value = getattr(self, key)
            if value < 1 or value % 2 == 0:
                raise bad(f"{key} must be odd and >= 1 (\"same\" padding), got {value}")
        self.dilations = tuple(self.dilations)
        if not self.dilations or any(d < 1 for d in self.dilations):
            raise bad(f"dilations must be a non-empty list of integers >= 1, got "
                      f"{list(self.dilations)}")
        check_input_level("SpectrogramPredictorConfig", self.local_offset, self.local_scale)
        if not self.log_floor > 0:
            raise bad(f"log_floor must be > 0, got {self.log_floor}")
        for key in ("nnls_iterations", "phase_iterations"):
            if getattr(self, key) < 0:
                raise bad(f"{key} must be >= 0, got {getattr(self, key)}")
        if not 0 <= self.phase_momentum < 1:
            raise bad(f"phase_momentum must be in [0, 1), got {self.phase_momentum}")

    # ---- model config contract (wavegen.models.protocols)
    @property
    def conditioning_channels(self) -> int:
        """Model config contract: the input's channels."""
        return self.in_channels

    @property
    def receptive_field(self) -> int:
        """Input frames that one output frame depends on (centred on it)."""
        return (1 + sum(d * (self.kernel_size - 1) for d in self.dilations)
                + self.input_kernel - 1 + self.output_kernel - 1)

    def estimate_size(self) -> SizeEstimate:
        """Parameters and weight layers of the model this config builds (exact)."""
        c = self.channels
        block = conv(c, c, self.kernel_size) + conv(c, c, 1)
        return (conv(self.in_channels, c, self.input_kernel) + len(self.dilations) * block
                + conv(c, self.out_channels, self.output_kernel))

    def check_features(self, features, where: str) -> None:
        """ConfigError unless ``features`` (a FeatureConfig) is the front-end of the target:
        its rate and hop, and ``n_mels`` (mel) or ``n_fft // 2 + 1`` bins (magnitude)."""
        if features is None:
            raise ConfigError(f"{where}: a spectrogram predictor needs a feature front-end "
                              f"(the recipe's features:) to define its {self.target} target")
        expected = features.n_mels if self.target == "mel" else features.n_fft // 2 + 1
        what = "n_mels" if self.target == "mel" else "n_fft / 2 + 1 frequency bins"
        if self.out_channels != expected:
            raise ConfigError(f"{where}: out_channels {self.out_channels} must equal the "
                              f"features' {what} ({expected}) for target {self.target}")
        if (self.hop_length, self.sample_rate) != (features.hop_length, features.sample_rate):
            raise ConfigError(f"{where}: hop_length/sample_rate {self.hop_length}/"
                              f"{self.sample_rate} must equal the features' "
                              f"{features.hop_length}/{features.sample_rate}")

    @classmethod
    def from_dict(cls, data: dict[str, Any],
                  where: str = "SpectrogramPredictorConfig") -> "SpectrogramPredictorConfig":
        """From plain values; unknown keys and wrong types are ConfigErrors naming the key."""
        return from_dict(cls, data, where)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "SpectrogramPredictorConfig":
        """A named configuration (:data:`SPECTROGRAM_PRESETS`) with fields overridden."""
        return from_preset(cls, SPECTROGRAM_PRESETS, name, overrides, "spectrogram predictor")


#: Presets on the hifigan-16k front-end (16 kHz, 80 mels, n_fft 1024, hop 256).
SPECTROGRAM_PRESETS: dict[str, dict[str, Any]] = {
    # log-mel -> ln |X| (a mel vocoder with the NNLS + Griffin-Lim back end): 0.64 M
    # parameters, receptive field 65 frames (1.0 s).
    "vocoder": {"in_channels": 80, "target": "magnitude", "out_channels": 513,
                "channels": 128, "dilations": (1, 2, 4, 8, 1, 2, 4, 8),
                "local_offset": 6.0, "local_scale": 0.25},
    # piano roll (88 onsets, 88 frames, 88 velocities, pedal) -> log-mel: 1.01 M parameters,
    # receptive field 261 frames (4.2 s) for the notes' decay.
    "midi": {"in_channels": 265, "target": "mel", "out_channels": 80, "channels": 128,
             "dilations": (1, 2, 4, 8, 16, 32, 1, 2, 4, 8, 16, 32), "output_kernel": 5},
}


class _ResidualBlock(nn.Module):
    """``x + conv1x1(GELU(conv_k,d(GELU(x))))`` with "same" padding."""

    def __init__(self, channels: int, kernel_size: int, dilation: int):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel_size, dilation=dilation,
                              padding=dilation * (kernel_size - 1) // 2)
        self.mix = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mix(F.gelu(self.conv(F.gelu(x))))


class SpectrogramPredictor(nn.Module):
    """``forward(local [B, in_channels, F]) -> ln-spectrogram [B, out_channels, F]``.

    See the module docstring for the network and its two targets.
    """

    def __init__(self, config: SpectrogramPredictorConfig):
        super().__init__()
        check_config_size(config, "spectrogram predictor")
        self.config = config
        c = config.channels
        self.input = nn.Conv1d(config.in_channels, c, config.input_kernel,
                               padding=config.input_kernel // 2)
        self.blocks = nn.ModuleList(_ResidualBlock(c, config.kernel_size, d)
                                    for d in config.dilations)
        self.output = nn.Conv1d(c, config.out_channels, config.output_kernel,
                                padding=config.output_kernel // 2)

    def forward(self, local: torch.Tensor) -> torch.Tensor:
        config = self.config
        if local.dim() != 3 or local.shape[1] != config.in_channels:
            raise UsageError(f"spectrogram predictor: input must be [batch, "
                             f"{config.in_channels}, frames], got {tuple(local.shape)}")
        x = self.input(apply_input_level(local, config.local_offset, config.local_scale))
        for block in self.blocks:
            x = block(x)
        return self.output(F.gelu(x))


def spectrogram_adapter(model: SpectrogramPredictor, info):
    """The family's inference adapter
    (:func:`wavegen.inference.magnitude_vocoder.spectrogram_adapter`), imported when first
    used."""
    from wavegen.inference.magnitude_vocoder import spectrogram_adapter as make

    return make(model, info)


__all__ = ["SPECTROGRAM_PRESETS", "SpectrogramPredictor", "SpectrogramPredictorConfig",
           "TARGETS", "spectrogram_adapter"]
