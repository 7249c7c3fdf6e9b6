"""From what a user gives (``--wav`` / ``--mel`` / ``--midi`` / ``--seconds`` / ``--prompt``)
to the conditioning a bundle takes, in one place for every verb and model kind.

A bundle records its conditioning in ``config.json`` (:attr:`BundleInfo.conditioning`:
``none``, ``mel`` or ``roll``). :func:`bundle_conditioning` returns it, checked against the
model config's contract (``conditioning_channels``, ``hop_length``), and infers it for
bundles written before it was recorded (:func:`legacy_conditioning`); the training recipe
stored in ``extra`` is never read. :func:`input_signal` turns it into the
:class:`~wavegen.inference.signals.Signal` a stage takes, and :func:`read_conditioning`
turns a user's :class:`InputRequest` into a :class:`Conditioning` for that signal:

* ``roll``: ``--midi FILE`` becomes the piano roll the model was trained on (rate, hop,
  channels), as long as the performance sounds (or ``--seconds``);
* ``mel``: ``--wav FILE`` is analysed with the bundle's own FeatureConfig (copy synthesis),
  ``--mel FILE.npy`` (``[n_mels, frames]``) is checked against it
  (:func:`wavegen.audio.mel_file.read_log_mel`); ``--seconds`` limits the frames;
* ``none``: ``--seconds`` of free-running audio, optionally continuing ``--prompt WAV``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch

from wavegen.checkpoint import CONDITIONINGS, CONFIG_FILE, BundleInfo
from wavegen.errors import CheckpointError, FeatureMismatchError, UsageError
from wavegen.inference.signals import Signal
from wavegen.models.protocols import contract_of


@dataclass
class InputRequest:
    """What to generate from, as the user gave it (paths and seconds)."""

    seconds: float | None = None
    midi: str | os.PathLike | None = None
    wav: str | os.PathLike | None = None
    mel: str | os.PathLike | None = None
    prompt: str | os.PathLike | None = None


@dataclass
class Conditioning:
    """The input of one stage.

    Attributes:
        kind: the :class:`~wavegen.inference.signals.Signal` kind it is (``none``, ``mel``,
            ``roll``, ``codes``, ``audio``).
        local: ``[B, C, frames]`` (mel, roll), ``[B, frames]`` (codes) or ``[B, 1, T]``
            (audio); None for ``none``.
        num_samples: samples to generate when ``kind`` is ``none`` (else None: the
            conditioning sets the length).
        prompt: ``[B, 1, P]`` audio that an unconditional model continues, or None.
    """

    kind: str
    local: torch.Tensor | None = None
    num_samples: int | None = None
    prompt: torch.Tensor | None = None

    @classmethod
    def of(cls, signal: Signal, value: torch.Tensor) -> "Conditioning":
        """The output ``value`` of a stage that produces ``signal``, as the next one's input."""
        return cls(signal.kind, value)


def contract(config) -> tuple[int, int | None, int | None]:
    """``(conditioning_channels, hop_length, sample_rate)`` of a model config, checked
    (:func:`wavegen.models.protocols.contract_of`; the hop is None when unconditional)."""
    checked = contract_of(config)
    return checked.conditioning_channels, checked.hop_length, checked.sample_rate


def legacy_conditioning(info: BundleInfo) -> str:
    """What the model of a bundle written before ``conditioning`` was recorded is
    conditioned on, from its config alone.

    The config's ``conditioning_channels`` decide: 0 is ``none``; the bundle's
    ``features.n_mels`` (at the features' hop) is ``mel``; the channel count of the piano
    roll at the model's rate and hop (:class:`~wavegen.data.midi.PianoRollConfig`) is
    ``roll``. Anything else is a CheckpointError: the bundle does not say, and guessing
    would feed the model the wrong input.
    """
    channels, hop, _ = contract(info.model_config)
    if channels == 0:
        return "none"
    features = info.features
    if features is not None and channels == features.n_mels and hop in (None, features.hop_length):
        return "mel"
    if hop:
        from wavegen.data.midi import PianoRollConfig

        if channels == PianoRollConfig(info.sample_rate, hop).num_channels:
            return "roll"
    raise CheckpointError(f"{info.path}: cannot tell what this model is conditioned on "
                          f"({channels} conditioning channels, and config.json records no "
                          f"'conditioning')")


def bundle_conditioning(info: BundleInfo) -> str:
    """``none``, ``mel`` or ``roll``: what the bundle records (checked against its model
    config), or for a legacy bundle :func:`legacy_conditioning`."""
    if info.conditioning is None:
        return legacy_conditioning(info)
    kind = info.conditioning
    where = f"{info.path / CONFIG_FILE}" if info.path is not None else f"bundle of {info.family}"
    if kind not in CONDITIONINGS:
        raise CheckpointError(f"{where}: unknown conditioning {kind!r}")
    channels, hop, _ = contract(info.model_config)
    if (kind == "none") != (channels == 0):
        raise CheckpointError(f"{where}: conditioning {kind!r} but the model has {channels} "
                              f"conditioning channels")
    if kind == "mel":
        features = info.features
        if features is None:
            raise CheckpointError(f"{where}: a mel-conditioned bundle without a FeatureConfig")
        if channels != features.n_mels:
            raise CheckpointError(f"{where}: the model takes {channels} mel bands but its "
                                  f"features have {features.n_mels}")
    if kind == "roll" and not hop:
        raise CheckpointError(f"{where}: a roll-conditioned model without a hop_length")
    return kind


def input_signal(info: BundleInfo) -> Signal:
    """The :class:`Signal` the bundle's model takes as conditioning."""
    kind = bundle_conditioning(info)
    if kind == "none":
        return Signal("none")
    if kind == "mel":
        return Signal.mel(info.features)
    channels, hop, _ = contract(info.model_config)
    return Signal("roll", channels, info.sample_rate, hop)


def _frames_for(seconds: float | None, available: int, hop: int, sample_rate: int) -> int:
    if seconds is None:
        return available
    return max(1, min(available, math.ceil(seconds * sample_rate / hop)))


def read_conditioning(signal: Signal, request: InputRequest, produces: Signal) -> Conditioning:
    """The :class:`Conditioning` for a stage taking ``signal``, from the user's ``request``.

    ``produces`` is what that stage makes: an unconditional stage generates
    ``--seconds`` of it (``seconds * rate / hop`` positions) and continues a ``--prompt``
    only when it makes audio. Inputs that the model does not take, or a missing one, are
    one-line UsageErrors naming the options that would work.
    """
    given = [name for name in ("midi", "wav", "mel") if getattr(request, name)]
    if signal.kind == "none":
        if given:
            raise UsageError(f"this model is unconditional: --{given[0]} is not used")
        if request.seconds is None:
            raise UsageError("give --seconds for an unconditional model")
        rate, hop = produces.sample_rate, produces.hop_length or 1
        prompt = None
        if request.prompt:
            if produces.kind != "audio":
                raise UsageError(f"--prompt is audio, but this model makes {produces.describe()}")
            from wavegen.audio.io import load_audio

            audio, _ = load_audio(request.prompt, sample_rate=rate, mono=True)
            prompt = audio[None]
        positions = max(1, round(request.seconds * rate / hop))
        return Conditioning("none", None, positions, prompt)
    wanted = {"roll": ["midi"], "mel": ["wav", "mel"]}.get(signal.kind)
    if wanted is None:
        raise UsageError(f"this model takes {signal.describe()}, which no --midi, --wav or --mel "
                         f"gives: run it behind the stage that makes them (a pipeline manifest, "
                         f"see wavegen.inference.manifest)")
    if len(given) != 1 or given[0] not in wanted:
        raise UsageError(f"this model is {signal.kind}-conditioned: give "
                         f"{' or '.join('--' + w for w in wanted)}")
    if request.prompt:
        raise UsageError("--prompt is only for unconditional models")
    if signal.kind == "roll":
        return Conditioning("roll", piano_roll_input(signal, request)[None])
    return Conditioning("mel", read_mel_input(signal, request)[None])


def piano_roll_input(signal: Signal, request: InputRequest) -> torch.Tensor:
    """``[C, frames]`` piano roll of ``request.midi`` on the signal's grid."""
    from wavegen.data.midi import PianoRollConfig, load_midi, performance_end, piano_roll

    rate, hop = signal.sample_rate, signal.hop_length
    roll_config = PianoRollConfig(rate, hop)
    if roll_config.num_channels != signal.channels:
        raise FeatureMismatchError(f"the model expects {signal.channels} conditioning "
                                   f"channels, the piano roll has {roll_config.num_channels}")
    midi = load_midi(request.midi)
    available = max(1, math.ceil(performance_end(midi) * rate / hop))
    frames = _frames_for(request.seconds, available, hop, rate)
    return piano_roll(midi, roll_config, num_frames=frames)


def read_mel_input(signal: Signal, request: InputRequest) -> torch.Tensor:
    """``[n_mels, frames]``: ``request.mel`` checked against the signal's features, or the
    log-mel of ``request.wav`` made with them; at most ``request.seconds`` long."""
    from wavegen.audio.mel_file import log_mel_of_audio, read_log_mel

    features = signal.features
    if request.mel:
        mel = read_log_mel(request.mel, features)
    else:
        mel = log_mel_of_audio(request.wav, features)
    frames = _frames_for(request.seconds, mel.shape[-1], features.hop_length,
                         features.sample_rate)
    return mel[:, :frames]


__all__ = ["InputRequest", "Conditioning", "contract", "legacy_conditioning",
           "bundle_conditioning", "input_signal", "piano_roll_input", "read_conditioning",
           "read_mel_input"]
