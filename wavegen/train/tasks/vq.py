"""VQ-autoencoder training: reconstruction + spectral + commitment losses (VQ-VAE, Jukebox).

The model is any ``nn.Module`` with

    ``autoencode(audio [B, 1, T]) -> (reconstruction [B, 1, T], [VQOutput, ...])``

(one :class:`~wavegen.nn.vector_quantizer.VQOutput` per quantiser / level). The loss is

    ``recon(x_hat, x) + spectral_weight * MR-STFT(x_hat, x) + sum_levels commitment``

where ``recon`` is the mean squared (``"l2"``) or absolute (``"l1"``) sample error and the
multi-resolution STFT loss is :class:`~wavegen.audio.losses.MultiResolutionSTFTLoss`
(Jukebox adds a spectral loss because a sample-level L2 alone ignores high frequencies).
The codebooks are learned by their own EMA updates inside the forward pass, so they take no
optimiser; note that with gradient accumulation each micro-batch makes one EMA update.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from wavegen.audio.losses import PWG_RESOLUTIONS, MultiResolutionSTFTLoss
from wavegen.audio.metrics import log_mel_l1, multi_resolution_stft_distance, snr_db
from wavegen.errors import ConfigError, UsageError
from wavegen.train.listening import sample_length, save_listening_pair
from wavegen.train.tasks.base import Objective, Task

RECONSTRUCTION_LOSSES = ("l2", "l1")


def _autoencode(model: nn.Module, audio: torch.Tensor):
    """Run ``model.autoencode`` and check what it returns: ``(recon [B, 1, T], outputs)``."""
    reconstruction, outputs = model.autoencode(audio)
    if reconstruction.shape != audio.shape:
        raise UsageError(f"autoencode returned {tuple(reconstruction.shape)} for audio "
                         f"{tuple(audio.shape)}; the shapes must be equal")
    outputs = list(outputs)
    if not outputs:
        raise UsageError("autoencode returned no VQOutput")
    return reconstruction, outputs


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
        """Loss terms of ``model`` on ``audio`` ``[B, 1, T]``: ``(reconstruction, {name: tensor})``
        with float32 scalars ``loss``, ``recon``, ``spectral``, ``commit``, ``perplexity``
        (mean over levels), ``used`` (mean over levels) and ``restarted`` (sum over levels)."""
        estimate, outputs = _autoencode(model, audio)
        difference = estimate.float() - audio.float()
        recon = difference.pow(2).mean() if self.reconstruction == "l2" else difference.abs().mean()
        spectral = (self.spectral.to(audio.device)(estimate, audio).total
                    if self.spectral_weight > 0 else torch.zeros((), device=audio.device))
        commit = torch.stack([o.commitment_loss.float() for o in outputs]).sum()
        loss = recon + self.spectral_weight * spectral + commit
        values = {
            "loss": loss, "recon": recon, "spectral": spectral, "commit": commit,
            "perplexity": torch.stack([o.perplexity.float() for o in outputs]).mean(),
            "used": torch.stack([o.used_fraction.float() for o in outputs]).mean(),
            "restarted": torch.stack([o.restarted.float() for o in outputs]).sum(),
        }
        return estimate, values

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
    ``mr_stft`` (mean per-item multi-resolution STFT distance), ``perplexity`` and ``used``.
    """

    def __init__(self, model: nn.Module, features=None, spectral_weight: float = 1.0,
                 reconstruction: str = "l2", resolutions: Sequence[Sequence[int]] | None = None):
        if reconstruction not in RECONSTRUCTION_LOSSES:
            raise ConfigError(f"reconstruction must be one of {RECONSTRUCTION_LOSSES}, "
                              f"got {reconstruction!r}")
        if not spectral_weight >= 0:
            raise ConfigError(f"spectral_weight must be >= 0, got {spectral_weight}")
        if not callable(getattr(model, "autoencode", None)):
            raise ConfigError(f"{type(model).__name__} has no autoencode(); VQTask needs one")
        self.model = model
        self.features = features
        self.resolutions = tuple(tuple(int(v) for v in r) for r in (resolutions or PWG_RESOLUTIONS))
        self.objective = _VQLoss(model, reconstruction, float(spectral_weight), self.resolutions)
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
        estimate, values = self._evaluate(model, audio)
        mr_stft = multi_resolution_stft_distance(audio, estimate, self.resolutions).total.mean()
        return {"loss": float(values["loss"]), "recon": float(values["recon"]),
                "mr_stft": float(mr_stft), "perplexity": float(values["perplexity"]),
                "used": float(values["used"])}

    def make_samples(self, model, batch, out_dir: Path, seconds: float, sample_rate: int):
        """Reconstruct the batch's first example; save ``seconds`` of it as
        ``reconstruction.wav`` + ``reconstruction.png`` with ``reference.wav`` (see
        :mod:`wavegen.train.listening`); return the example's SNR and MR-STFT distance."""
        audio = batch["audio"][:1]
        length = sample_length(seconds, sample_rate)
        if audio.shape[-1] < length:
            raise UsageError(f"the batch's audio has {audio.shape[-1]} samples; a "
                             f"{length}-sample reconstruction needs that many")
        estimate, _ = self._evaluate(model, audio)
        save_listening_pair(out_dir, "reconstruction", estimate[0, :, :length],
                            audio[0, :, :length], sample_rate, self.features)
        metrics = {"sample_snr_db": float(snr_db(audio, estimate)[0]),
                   "sample_mr_stft": float(multi_resolution_stft_distance(
                       audio, estimate, self.resolutions).total[0])}
        if self.features is not None and audio.shape[-1] >= self.features.n_fft:
            metrics["sample_log_mel_l1"] = float(log_mel_l1(audio, estimate, self.features)[0])
        return {k: v for k, v in metrics.items() if math.isfinite(v)}
