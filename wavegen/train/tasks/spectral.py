"""Spectral regression: train a frame-rate model to predict a log-spectrogram of the audio.

The model (a :class:`~wavegen.models.spectrogram_predictor.SpectrogramPredictor`, or any
``nn.Module`` with a ``config`` that has ``target`` and ``log_floor``) maps the batch's
local conditioning ``[B, C, F]`` (``"mel"`` or ``"roll"``) to ``[B, C_out, F]`` in natural
log units; the target is computed from the batch's audio crop with the recipe's front-end:

* ``target: mel``: the log-mel (:class:`~wavegen.audio.spectral.LogMelSpectrogram`);
* ``target: magnitude``: ``ln(max(|STFT|, log_floor))`` (:class:`~wavegen.audio.spectral.Spectrogram`).

The loss is ``log_weight * mean|pred - target| + convergence_weight * SC``, where ``SC``
is the spectral convergence ``||exp(pred) - exp(target)||_F / ||exp(target)||_F`` per
example, averaged (the linear-domain term that weighs the loud partials; the log term
weighs every bin alike). Validation reports both and the loss; the listening samples are
audio rendered the way the model is used: a magnitude through the model's own inference
path (NNLS refinement + Griffin-Lim), a predicted mel through the Griffin-Lim baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wavegen.errors import ConfigError
from wavegen.models.protocols import FEED_FORWARD
from wavegen.train.listening import conditioning_window, finish_listening, sample_length
from wavegen.train.tasks.base import Objective, Task
from wavegen.train.tasks.registry import Section, TaskSpec
from wavegen.utils.config import from_dict, to_dict


@dataclass
class SpectralConfig:
    """The ``spectral:`` section of a recipe: the weights of :class:`SpectralTask`'s loss.

    Attributes:
        log_weight: weight of the L1 distance of the log-spectrograms.
        convergence_weight: weight of the spectral convergence (linear domain).
    """

    log_weight: float = 1.0
    convergence_weight: float = 1.0

    def __post_init__(self) -> None:
        for key in ("log_weight", "convergence_weight"):
            value = getattr(self, key)
            if not value >= 0 or value == float("inf"):
                raise ConfigError(f"spectral.{key} must be a finite number >= 0, got {value}")
        if self.log_weight == 0 and self.convergence_weight == 0:
            raise ConfigError("spectral: log_weight and convergence_weight are both 0; the "
                              "loss would be empty")

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "spectral") -> "SpectralConfig":
        return from_dict(cls, data, where)


class SpectralTarget(nn.Module):
    """``audio [B, 1, T]`` -> the log-spectrogram a model with ``target`` predicts:
    ``[B, n_mels, F]`` (mel) or ``[B, n_fft / 2 + 1, F]`` (magnitude), natural log units.
    Built once per task (the front-end's window and filterbank), run every step."""

    def __init__(self, features, target: str, log_floor: float):
        super().__init__()
        from wavegen.audio.spectral import LogMelSpectrogram, Spectrogram

        self.features = features
        self.target = target
        self.log_floor = log_floor
        self.analysis = LogMelSpectrogram(features) if target == "mel" else Spectrogram(features)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        from wavegen.audio.griffinlim import to_magnitude

        out = self.analysis(audio.float())
        out = out.reshape(audio.shape[0], -1, out.shape[-1])
        if self.target == "mel":
            return out
        return torch.log(to_magnitude(out, self.features).clamp_min(self.log_floor))


def spectral_target(audio: torch.Tensor, features, target: str, log_floor: float) -> torch.Tensor:
    """:class:`SpectralTarget` of ``audio`` in one call."""
    return SpectralTarget(features, target, log_floor).to(audio.device)(audio)


class _SpectralLoss(nn.Module):
    """``forward(batch) -> (loss, metrics)``: see the module docstring."""

    def __init__(self, model: nn.Module, features, local_key: str, config: SpectralConfig):
        super().__init__()
        self.model = model
        self.local_key = local_key
        self.config = config
        self.target = SpectralTarget(features, model.config.target, model.config.log_floor)

    def terms(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """float32 scalars ``loss``, ``log_l1`` and ``convergence`` of ``model`` on ``batch``."""
        local = batch[self.local_key]
        with torch.no_grad():
            target = self.target.to(batch["audio"].device)(batch["audio"])
        frames = min(local.shape[-1], target.shape[-1])
        prediction = model(local[..., :frames]).float()
        target = target[..., :frames]
        log_l1 = (prediction - target).abs().mean()
        linear = target.exp()
        difference = (prediction.exp() - linear).flatten(1).norm(dim=1)
        convergence = (difference / linear.flatten(1).norm(dim=1).clamp_min(1e-8)).mean()
        loss = self.config.log_weight * log_l1 + self.config.convergence_weight * convergence
        return {"loss": loss, "log_l1": log_l1, "convergence": convergence}

    def forward(self, batch: dict[str, torch.Tensor]):
        values = self.terms(self.model, batch)
        return values["loss"], {k: float(v.detach()) for k, v in values.items()}


class SpectralTask(Task):
    """Trains a spectrogram predictor; the ``best`` checkpoint has the lowest validation loss.

    Args:
        model: the predictor (``model.config.target`` and ``log_floor``).
        features: the recipe's FeatureConfig (the target's front-end).
        local_key: the batch key of the input (``"mel"`` or ``"roll"``).
        config: the loss weights (:class:`SpectralConfig`).
    """

    def __init__(self, model: nn.Module, features, local_key: str,
                 config: SpectralConfig | None = None):
        self.model = model
        self.features = features
        self.local_key = local_key
        self.config = config or SpectralConfig()
        self.objective = _SpectralLoss(model, features, local_key, self.config)
        self.validation_key = "loss"

    def objectives(self) -> dict[str, Objective]:
        return {"model": Objective(self.objective, list(self.model.parameters()))}

    @torch.no_grad()
    def validation_metrics(self, model: nn.Module, batch: dict[str, torch.Tensor]):
        was_training = model.training
        model.eval()
        try:
            values = self.objective.terms(model, batch)
        finally:
            model.train(was_training)
        return {k: float(v) for k, v in values.items()}

    @torch.no_grad()
    def make_samples(self, model: nn.Module, batch: dict[str, torch.Tensor], out_dir: Path,
                     seconds: float, sample_rate: int) -> dict[str, float]:
        """Render the first example as audio (module docstring) into ``sample.wav`` beside
        ``reference.wav``; returns its log-mel L1 distance to the reference."""
        from wavegen.audio.griffinlim import mel_to_audio
        from wavegen.inference.magnitude_vocoder import vocode_magnitude

        hop = self.features.hop_length
        length = sample_length(seconds, sample_rate)
        local, total = conditioning_window(batch[self.local_key], length, hop)
        was_training = model.training
        model.eval()
        try:
            generator = torch.Generator(local.device).manual_seed(0)
            if model.config.target == "mel":
                mel = model(local).float()
                audio = mel_to_audio(mel, self.features, length=total, generator=generator)
                audio = audio.reshape(1, 1, -1)[..., :total].clamp(-1.0, 1.0)
            else:
                audio = vocode_magnitude(model, local, self.features, total, generator)
        finally:
            model.train(was_training)
        return finish_listening(out_dir, "sample", audio[..., :length],
                                batch["audio"][:1, :, :length], sample_rate, {},
                                features=self.features, mel_features=self.features)


def _build(recipe, model: nn.Module) -> SpectralTask:
    from wavegen.train.tasks.likelihood import local_key_of

    return SpectralTask(model, recipe.feature_config, local_key_of(recipe),
                        recipe.section("spectral"))


def _check(recipe) -> None:
    config = recipe.model_config
    if not callable(getattr(config, "check_features", None)) or not hasattr(config, "target"):
        raise ConfigError(f"task spectral trains spectrogram predictors (a model config with "
                          f"target and check_features); {recipe.family.name} is not one")
    config.check_features(recipe.feature_config, "task spectral")


#: Recipes: ``task: spectral`` (the ``spectrogram`` family's default) with an optional
#: ``spectral:`` section (:class:`SpectralConfig`); the input is a mel or a piano roll and
#: the recipe's ``features:`` define the target.
TASK_SPEC = TaskSpec("spectral", _build, sections=(Section.of("spectral", SpectralConfig),),
                     check=_check, kinds=(FEED_FORWARD,), conditionings=("mel", "roll"))
