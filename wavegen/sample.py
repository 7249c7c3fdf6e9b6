"""`wavegen sample`: audio from a trained sample-level model bundle.

The conditioning a bundle needs is read from the recipe stored in it:

* ``roll`` (MIDI-conditioned): ``--midi FILE`` is turned into the same piano roll the
  model was trained on (rate, hop, channels);
* ``mel``: ``--wav FILE`` (copy synthesis: analysed with the bundle's own FeatureConfig) or
  ``--mel FILE.npy`` (``[n_mels, frames]``, checked against the bundle's features);
* none: ``--seconds`` of free-running audio, optionally continuing ``--prompt WAV``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from wavegen.audio.io import load_audio
from wavegen.audio.mel_file import log_mel_of_audio, read_log_mel
from wavegen.checkpoint import BundleInfo, load_bundle
from wavegen.errors import FeatureMismatchError, UsageError
from wavegen.models.registry import get_family
from wavegen.sampling import GenerationResult, SamplingOptions, generate


@dataclass
class SampleRequest:
    """What to generate (paths and seconds as the user gave them)."""

    seconds: float | None = None
    midi: str | None = None
    wav: str | None = None
    mel: str | None = None
    prompt: str | None = None


def conditioning_kind(info: BundleInfo) -> str:
    """``none``, ``mel`` or ``roll``, from the recipe stored in the bundle."""
    recipe = info.extra.get("recipe") or {}
    kind = (recipe.get("data") or {}).get("conditioning")
    if kind is None:
        kind = "none" if not getattr(info.model_config, "local_channels", 0) else "unknown"
    return kind


def _frames_for(seconds: float | None, available: int, hop: int, sample_rate: int) -> int:
    if seconds is None:
        return available
    return max(1, min(available, math.ceil(seconds * sample_rate / hop)))


def build_conditioning(info: BundleInfo, request: SampleRequest) -> tuple[torch.Tensor | None, int | None]:
    """(local conditioning ``[1, C, frames]`` or None, samples to generate or None)."""
    kind = conditioning_kind(info)
    config = info.model_config
    given = [name for name in ("midi", "wav", "mel") if getattr(request, name)]
    wanted = {"none": [], "roll": ["midi"], "mel": ["wav", "mel"]}.get(kind)
    if wanted is None:
        raise UsageError(f"{info.path}: cannot tell what this model is conditioned on")
    if kind == "none":
        if given:
            raise UsageError(f"this model is unconditional: --{given[0]} is not used")
        if request.seconds is None:
            raise UsageError("give --seconds for an unconditional model")
        return None, max(1, round(request.seconds * info.sample_rate))
    if len(given) != 1 or given[0] not in wanted:
        raise UsageError(f"this model is {kind}-conditioned: give "
                         f"{' or '.join('--' + w for w in wanted)}")
    hop = config.hop_length
    if kind == "roll":
        from wavegen.data.midi import PianoRollConfig, load_midi, performance_end, piano_roll

        roll_config = PianoRollConfig(info.sample_rate, hop)
        if roll_config.num_channels != config.local_channels:
            raise FeatureMismatchError(f"the model expects {config.local_channels} conditioning "
                                       f"channels, the piano roll has {roll_config.num_channels}")
        midi = load_midi(request.midi)
        available = max(1, math.ceil(performance_end(midi) * info.sample_rate / hop))
        frames = _frames_for(request.seconds, available, hop, info.sample_rate)
        return piano_roll(midi, roll_config, num_frames=frames)[None], None
    features = info.features
    if features is None:
        raise UsageError(f"{info.path}: a mel-conditioned bundle without a FeatureConfig")
    if request.mel:
        mel = read_log_mel(request.mel, features)
    else:
        mel = log_mel_of_audio(request.wav, features)
    frames = _frames_for(request.seconds, mel.shape[-1], hop, info.sample_rate)
    return mel[None, :, :frames], None


def sample_bundle(bundle: str | Path, request: SampleRequest, options: SamplingOptions,
                  use_ema: bool = True, backend: str = "auto",
                  warn: Callable[[str], None] | None = None) -> tuple[GenerationResult, BundleInfo]:
    """Load ``bundle`` and generate according to ``request`` on sampling ``backend``.

    ``warn`` receives one-line warnings (default: ``warnings.warn``), e.g. guidance asked of
    a model that was never trained without its conditioning."""
    model, info = load_bundle(bundle, use_ema=use_ema)
    if not hasattr(model, "step"):
        hint = ("; it is a mel -> waveform vocoder: use `wavegen vocode`"
                if get_family(info.family).vocoder else "")
        raise UsageError(f"{bundle}: family {info.family} is not a sample-level model{hint}")
    local, length = build_conditioning(info, request)
    if options.cfg_gamma is not None and not getattr(info.model_config, "cond_dropout", 0):
        (warn or warnings.warn)(
            f"--cfg {options.cfg_gamma:g}: this model was trained without conditioning dropout "
            f"(cond_dropout 0), so its unconditional branch is untrained and guidance will "
            f"likely make the audio worse")
    prompt = None
    if request.prompt:
        audio, _ = load_audio(request.prompt, sample_rate=info.sample_rate, mono=True)
        prompt = audio[None]
        if local is not None:
            raise UsageError("--prompt is only for unconditional models")
    result = generate(model, length, local=local, prompt=prompt, options=options, backend=backend)
    return result, info
