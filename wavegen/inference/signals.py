"""Signal: what an inference stage takes in or gives out, precisely enough to chain stages.

A model's input is its conditioning (nothing, a log-mel, a piano roll, discrete codes) and
its output is usually audio, but a stage of a pipeline may also produce a mel (a MIDI ->
mel model feeding a vocoder) or codes (a prior feeding a VQ-VAE decoder). Two stages chain
when the first one's output :class:`Signal` is the second one's input
(:meth:`Signal.mismatch`).
"""

from __future__ import annotations

from dataclasses import dataclass

from wavegen.audio.features import FeatureConfig

#: Signal kinds. ``none``: no input (unconditional); ``audio``: ``[B, 1, T]`` waveform;
#: ``mel``: ``[B, n_mels, frames]`` log-mel of ``features``; ``roll``: ``[B, C, frames]``
#: piano roll; ``codes``: ``[B, frames]`` discrete indices.
SIGNAL_KINDS = ("none", "audio", "mel", "roll", "codes")


@dataclass(frozen=True)
class Signal:
    """One input or output of a stage.

    Attributes:
        kind: one of :data:`SIGNAL_KINDS`.
        channels: mel bands, piano-roll channels or codebook size (0 for ``none``, 1 for
            ``audio``).
        sample_rate: the audio rate the signal belongs to (None for ``none``).
        hop_length: audio samples per frame (1 for ``audio``, None for ``none``).
        features: the front-end of a ``mel`` (None otherwise).
    """

    kind: str
    channels: int = 0
    sample_rate: int | None = None
    hop_length: int | None = None
    features: FeatureConfig | None = None

    def __post_init__(self) -> None:
        if self.kind not in SIGNAL_KINDS:
            raise ValueError(f"signal kind must be one of {SIGNAL_KINDS}, got {self.kind!r}")

    @classmethod
    def audio(cls, sample_rate: int) -> "Signal":
        """Mono audio at ``sample_rate``."""
        return cls("audio", 1, sample_rate, 1)

    @classmethod
    def mel(cls, features: FeatureConfig) -> "Signal":
        """A log-mel made with ``features``."""
        return cls("mel", features.n_mels, features.sample_rate, features.hop_length, features)

    def describe(self) -> str:
        """Short human description, e.g. ``mel (80 bands, hop 256, 22050 Hz, hifigan-22k)``."""
        if self.kind == "none":
            return "nothing (unconditional)"
        if self.kind == "audio":
            return f"audio ({self.sample_rate} Hz)"
        unit = {"mel": "bands", "roll": "channels", "codes": "codes"}[self.kind]
        text = f"{self.kind} ({self.channels} {unit}, hop {self.hop_length}, {self.sample_rate} Hz"
        if self.features is not None:
            text += f", {self.features.name}"
        return text + ")"

    def mismatch(self, consumer: "Signal") -> str | None:
        """Why a stage taking ``consumer`` cannot be fed this signal (None when it can)."""
        if self.kind != consumer.kind:
            return f"gives {self.describe()} but the next takes {consumer.describe()}"
        if self.kind == "mel" and self.features is not None and consumer.features is not None:
            diffs = self.features.differences(consumer.features)
            if diffs:
                return (f"gives a mel of front-end {self.features.name} but the next takes "
                        f"{consumer.features.name} ({'; '.join(diffs)})")
            return None
        for name in ("channels", "sample_rate", "hop_length"):
            if getattr(self, name) != getattr(consumer, name):
                return f"gives {self.describe()} but the next takes {consumer.describe()}"
        return None


__all__ = ["SIGNAL_KINDS", "Signal"]
