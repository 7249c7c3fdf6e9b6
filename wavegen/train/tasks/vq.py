"""VQ-autoencoder training: reconstruction + spectral + commitment losses (VQ-VAE, Jukebox).

The model is any ``nn.Module`` with

    ``autoencode(audio [B, 1, T]) -> (reconstruction [B, 1, T], [VQOutput, ...])``

(one :class:`~wavegen.nn.vector_quantizer.VQOutput` per quantiser / level). The loss is

    ``recon(x_hat, x) + spectral_weight * MR-STFT(x_hat, x) + sum_levels commitment``

where ``recon`` is the mean squared (``"l2"``) or absolute (``"l1"``) sample error and the
multi-resolution STFT loss is :class:`~wavegen.audio.losses.MultiResolutionSTFTLoss`
(Jukebox adds a spectral loss because a sample-level L2 alone ignores high frequencies).

A hierarchy whose levels each decode the audio on their own and train together (Jukebox)
returns a list of reconstructions instead, one per level, finest first: each is scored
against the audio and the reconstruction and spectral terms are summed over them. Validation
then reports the mean ``mr_stft`` and each level's ``mr_stft_level{i}``, and the samples are
the finest level's ``reconstruction.wav`` and each coarser one's
``reconstruction-level{i}.wav``.

The codebooks are learned by their own EMA updates inside the forward pass, so they take no
optimiser; note that with gradient accumulation each micro-batch makes one EMA update.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from wavegen.audio.losses import PWG_RESOLUTIONS, MultiResolutionSTFTLoss, stft_loss_config
from wavegen.audio.metrics import multi_resolution_stft_distance, snr_db
from wavegen.errors import ConfigError, UsageError
from wavegen.models.protocols import DISCRETE_AUTOENCODER
from wavegen.train.listening import finish_listening, sample_length
from wavegen.train.tasks.base import Objective, Task
from wavegen.train.tasks.registry import Section, TaskSpec
from wavegen.utils.config import from_dict, to_dict

RECONSTRUCTION_LOSSES = ("l2", "l1")


@dataclass
class VQConfig:
    """The ``vq:`` section of a recipe: the loss of :class:`VQTask`.

    Attributes:
        spectral_weight: weight of the multi-resolution STFT loss (0 = off).
        reconstruction: ``"l2"`` (mean squared error, Jukebox) or ``"l1"``.
        resolutions: ``(fft_size, hop, win)`` triples of the STFT loss and of the validation
            MR-STFT distance (Parallel WaveGAN's three by default); crops must be longer
            than half the largest ``fft_size``.
    """

    spectral_weight: float = 1.0
    reconstruction: str = "l2"
    resolutions: tuple[tuple[int, int, int], ...] = PWG_RESOLUTIONS

    def __post_init__(self) -> None:
        if self.reconstruction not in RECONSTRUCTION_LOSSES:
            raise ConfigError(f"vq.reconstruction must be one of {RECONSTRUCTION_LOSSES}, "
                              f"got {self.reconstruction!r}")
        if not self.spectral_weight >= 0:
            raise ConfigError(f"vq.spectral_weight must be >= 0, got {self.spectral_weight}")
        self.resolutions = tuple(tuple(int(v) for v in r) for r in self.resolutions)
        if not self.resolutions or any(len(r) != 3 for r in self.resolutions):
            raise ConfigError("vq.resolutions must be a non-empty list of (fft_size, hop, win)")
        for index, resolution in enumerate(self.resolutions):
            try:
                stft_loss_config(*resolution)
            except ConfigError as exc:
                raise ConfigError(f"vq.resolutions[{index}] {list(resolution)}: {exc}") from None

    @property
    def longest_fft(self) -> int:
        return max(r[0] for r in self.resolutions)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "vq") -> "VQConfig":
        """From plain values; unknown keys and wrong types are ConfigErrors naming the key."""
        return from_dict(cls, data, where)



def _autoencode(model: nn.Module, audio: torch.Tensor):
    """Run ``model.autoencode`` and check what it returns: ``(recon [B, 1, T], outputs)``
    or ``([recon [B, 1, T] per level], outputs)``; returns ``([recon, ...], outputs)``."""
    reconstruction, outputs = model.autoencode(audio)
    estimates = (list(reconstruction) if isinstance(reconstruction, (list, tuple))
                 else [reconstruction])
    if not estimates:
        raise UsageError("autoencode returned an empty list of reconstructions")
    for estimate in estimates:
        if not torch.is_tensor(estimate) or estimate.shape != audio.shape:
            shape = tuple(estimate.shape) if torch.is_tensor(estimate) else type(estimate).__name__
            raise UsageError(f"autoencode returned {shape} for audio {tuple(audio.shape)}; the "
                             f"shapes must be equal")
    outputs = list(outputs)
    if not outputs:
        raise UsageError("autoencode returned no VQOutput")
    return estimates, outputs


class _VQLoss(nn.Module):
    """``forward(batch) -> (loss, metrics)`` for a model with ``autoencode``."""

    def __init__(self, model: nn.Module, reconstruction: str, spectral_weight: float,
                 resolutions: Sequence[Sequence[int]]):
        super().__init__()
        self.model = model
        self.reconstruction = reconstruction
        self.spectral_weight = spectral_weight
        self.spectral = MultiResolutionSTFTLoss(resolutions)

    def terms(self, model: nn.Module, audio: torch.Tensor):
        """Loss terms of ``model`` on ``audio`` ``[B, 1, T]``: ``([reconstruction, ...],
        {name: tensor})`` with float32 scalars ``loss``, ``recon`` and ``spectral`` (summed
        over the reconstructions), ``commit``, ``perplexity`` (mean over levels), ``used``
        (mean over levels) and ``restarted`` (sum over levels)."""
        estimates, outputs = _autoencode(model, audio)
        recon = spectral = torch.zeros((), device=audio.device)
        for estimate in estimates:
            difference = estimate.float() - audio.float()
            recon = recon + (difference.pow(2).mean() if self.reconstruction == "l2"
                             else difference.abs().mean())
            if self.spectral_weight > 0:
                spectral = spectral + self.spectral.to(audio.device)(estimate, audio).total
        commit = torch.stack([o.commitment_loss.float() for o in outputs]).sum()
        loss = recon + self.spectral_weight * spectral + commit
        values = {
            "loss": loss, "recon": recon, "spectral": spectral, "commit": commit,
            "perplexity": torch.stack([o.perplexity.float() for o in outputs]).mean(),
            "used": torch.stack([o.used_fraction.float() for o in outputs]).mean(),
            "restarted": torch.stack([o.restarted.float() for o in outputs]).sum(),
        }
        return estimates, values

    def forward(self, batch: dict[str, torch.Tensor]):
        _, values = self.terms(self.model, batch["audio"])
        return values["loss"], {k: float(v.detach()) for k, v in values.items()}


class VQTask(Task):
    """Trains a VQ autoencoder; the ``best`` checkpoint has the lowest validation loss.

    Args:
        model: an ``nn.Module`` with ``autoencode(audio) -> (reconstruction, [VQOutput])``.
        features: FeatureConfig for the log-mel error and the plot of validation samples
            (optional).
        spectral_weight: weight of the multi-resolution STFT loss (0 = off).
        reconstruction: ``"l2"`` (mean squared error, Jukebox) or ``"l1"``.
        resolutions: ``(fft_size, hop, win)`` triples of the STFT loss and the validation
            MR-STFT distance; Parallel WaveGAN's three when None. Crops must be longer than
            half the largest ``fft_size``.

    Validation (eval mode: deterministic, no codebook updates) reports ``loss``, ``recon``,
    ``mr_stft`` (mean per-item multi-resolution STFT distance), ``perplexity`` and ``used``
    (and ``mr_stft_level{i}`` for a model that returns one reconstruction per level).
    """

    def __init__(self, model: nn.Module, features=None, spectral_weight: float = 1.0,
                 reconstruction: str = "l2", resolutions: Sequence[Sequence[int]] | None = None):
        self.config = VQConfig(float(spectral_weight), reconstruction,
                               tuple(resolutions or PWG_RESOLUTIONS))
        if not callable(getattr(model, "autoencode", None)):
            raise ConfigError(f"{type(model).__name__} has no autoencode(); VQTask needs one")
        self.model = model
        self.features = features
        self.resolutions = self.config.resolutions
        self.objective = _VQLoss(model, reconstruction, self.config.spectral_weight,
                                 self.resolutions)
        self.validation_key = "loss"

    def objectives(self) -> dict[str, Objective]:
        return {"model": Objective(self.objective, list(self.model.parameters()))}

    @torch.no_grad()
    def _evaluate(self, model: nn.Module, audio: torch.Tensor):
        was_training = model.training
        model.eval()
        try:
            return self.objective.terms(model, audio)
        finally:
            model.train(was_training)

    def validation_metrics(self, model, batch):
        audio = batch["audio"]
        estimates, values = self._evaluate(model, audio)
        distances = [float(multi_resolution_stft_distance(audio, estimate,
                                                          self.resolutions).total.mean())
                     for estimate in estimates]
        metrics = {"loss": float(values["loss"]), "recon": float(values["recon"]),
                   "mr_stft": sum(distances) / len(distances),
                   "perplexity": float(values["perplexity"]), "used": float(values["used"])}
        if len(distances) > 1:
            metrics.update({f"mr_stft_level{i}": d for i, d in enumerate(distances)})
        return metrics

    def make_samples(self, model, batch, out_dir: Path, seconds: float, sample_rate: int):
        """Reconstruct the batch's first example; save ``seconds`` of it as
        ``reconstruction.wav`` + ``reconstruction.png`` with ``reference.wav`` (see
        :mod:`wavegen.train.listening`); return the example's SNR and MR-STFT distance.
        A model with one reconstruction per level also gets ``reconstruction-level{i}``
        files and ``_level{i}``-suffixed metrics for its levels after the first."""
        audio = batch["audio"][:1]
        length = sample_length(seconds, sample_rate)
        if audio.shape[-1] < length:
            raise UsageError(f"the batch's audio has {audio.shape[-1]} samples; a "
                             f"{length}-sample reconstruction needs that many")
        estimates, _ = self._evaluate(model, audio)
        metrics: dict[str, float] = {}
        for index, estimate in enumerate(estimates):
            stem, suffix = ("reconstruction", "") if index == 0 else \
                (f"reconstruction-level{index}", f"_level{index}")
            level = {"sample_snr_db": float(snr_db(audio, estimate)[0]),
                     "sample_mr_stft": float(multi_resolution_stft_distance(
                         audio, estimate, self.resolutions).total[0])}
            level = finish_listening(out_dir, stem, estimate, audio, sample_rate, level,
                                     length=length, features=self.features,
                                     mel_features=self.features)
            metrics.update({f"{name}{suffix}": value for name, value in level.items()})
        return metrics


def _build(recipe, model: nn.Module) -> VQTask:
    config: VQConfig = recipe.section("vq")
    return VQTask(model, features=recipe.feature_config, spectral_weight=config.spectral_weight,
                  reconstruction=config.reconstruction, resolutions=config.resolutions)


def _check(recipe) -> None:
    longest = recipe.section("vq").longest_fft
    if recipe.data.crop_samples <= longest // 2:
        raise ConfigError(f"data.crop_samples ({recipe.data.crop_samples}) must be longer than "
                          f"half the largest vq.resolutions FFT size ({longest}): the STFT "
                          f"loss pads each side by that much")
    # A config that states its levels' samples per code (``hop_lengths``) needs whole codes.
    hops = getattr(recipe.model_config, "hop_lengths", None) or ()
    step = math.lcm(*hops) if hops else 1
    if recipe.data.crop_samples % step:
        raise ConfigError(f"data.crop_samples ({recipe.data.crop_samples}) must be a multiple of "
                          f"{step}, the samples per code of every level (model hops "
                          f"{', '.join(map(str, hops))})")


#: Recipes: ``task: vq`` with an optional ``vq:`` section (:class:`VQConfig`); the model
#: autoencodes unconditioned audio.
TASK_SPEC = TaskSpec("vq", _build, sections=(Section.of("vq", VQConfig),), check=_check,
                     kinds=(DISCRETE_AUTOENCODER,), conditionings=("none",))
