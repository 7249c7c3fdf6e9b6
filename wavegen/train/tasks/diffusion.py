"""Diffusion training: the weighted denoising loss of a waveform denoiser (DiffWave-style).

The network protocol: ``model(x_t [B, 1, T], t [B] float in [0, 1], local=None) ->
prediction [B, 1, T]`` in the process's parameterisation, where ``local`` is the batch's
conditioning under ``local_key`` (e.g. a log-mel ``[B, n_mels, frames]``; the network does
its own upsampling) or None. A labelled corpus (``data.labels``) adds
``global_cond=labels [B]`` (int64 class indices); conditioning dropout then also replaces
labels by the "no label" index ``global_classes``, so guidance works on labels too. Everything else (schedule, parameterisation, weighting,
conditioning dropout, default sampler) comes from the
:class:`~wavegen.diffusion.process.DiffusionProcess`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from wavegen.diffusion.guidance import classifier_free_guidance
from wavegen.diffusion.process import DiffusionProcess
from wavegen.diffusion.schedules import T_MIN
from wavegen.models.protocols import NOISE_DRIVEN
from wavegen.train.listening import conditioning_window, finish_listening, sample_length
from wavegen.train.tasks.base import Objective, Task
from wavegen.train.tasks.likelihood import conditioning_of, local_key_of
from wavegen.train.tasks.registry import Section, TaskSpec

#: Validation averages the loss over this many fixed times (a midpoint rule on U(T_MIN, 1)).
VALIDATION_TIMES = 8
#: Seed of the validation noise and of the validation samples.
VALIDATION_SEED = 0


def drop_conditioning(local: torch.Tensor | None, probability: float) -> torch.Tensor | None:
    """``local`` ``[B, C, frames]`` with each example zeroed with ``probability`` (global RNG)."""
    if local is None or probability <= 0:
        return local
    keep = torch.rand(local.shape[0], device=local.device) >= probability
    return local * keep.to(local.dtype).reshape(-1, *([1] * (local.ndim - 1)))


def drop_labels(labels: torch.Tensor | None, no_label: int,
                probability: float) -> torch.Tensor | None:
    """``labels`` ``[B]`` with each replaced by ``no_label`` with ``probability``."""
    if labels is None or probability <= 0:
        return labels
    dropped = torch.rand(labels.shape[0], device=labels.device) < probability
    return torch.where(dropped, torch.full_like(labels, no_label), labels)


def _denoiser(model: nn.Module, local: torch.Tensor | None, labels: torch.Tensor | None = None):
    if labels is None:
        def denoise(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return model(x_t, t, local=local)
    else:
        def denoise(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return model(x_t, t, local=local, global_cond=labels)
    return denoise


def _no_label(model: nn.Module) -> int:
    return int(getattr(getattr(model, "config", None), "global_classes", 0))


class _DenoisingObjective(nn.Module):
    """``forward(batch) -> (weighted denoising loss, metrics)`` with conditioning dropout."""

    def __init__(self, model: nn.Module, process: DiffusionProcess, local_key: str | None):
        super().__init__()
        self.model = model
        self.process = process
        self.local_key = local_key

    def forward(self, batch: dict[str, torch.Tensor]):
        local = drop_conditioning(conditioning_of(batch, self.local_key), self.process.cond_dropout)
        labels = drop_labels(batch.get("label"), _no_label(self.model), self.process.cond_dropout)
        terms = self.process.loss(_denoiser(self.model, local, labels), batch["audio"])
        return terms.loss, {"loss": terms.loss.detach().item(),
                            "x0_mse": terms.x0_mse.mean().item()}


class DiffusionTask(Task):
    """Weighted denoising loss; validation reports a deterministic estimate of it.

    The ``best`` checkpoint is the one with the lowest validation ``loss``: the weighted
    loss averaged over ``VALIDATION_TIMES`` fixed times with fixed noise, so two
    validations of the same weights give the same number.

    Args:
        model: a denoiser ``model(x_t, t, local=None) -> prediction`` (module doc).
        process: schedule, parameterisation, weighting, conditioning dropout, sampler.
        local_key: batch key of the local conditioning (``"mel"``) or None.
        features: FeatureConfig used to score mel-conditioned samples (log-mel L1).
    """

    def __init__(self, model: nn.Module, process: DiffusionProcess, local_key: str | None = None,
                 features=None):
        self.model = model
        self.process = process
        self.local_key = local_key
        self.features = features
        self.objective = _DenoisingObjective(model, process, local_key)
        self.validation_key = "loss"

    def objectives(self) -> dict[str, Objective]:
        return {"model": Objective(self.objective, list(self.model.parameters()))}

    @torch.no_grad()
    def validation_metrics(self, model, batch):
        """The deterministic validation loss (class doc) and, for a model with local
        conditioning, ``cond_use``: ``1 - loss / loss_shifted`` where ``loss_shifted`` is the
        same loss with the conditioning rotated by half its frames (the right overall
        statistics at the wrong times). Near 0 the model uses only the conditioning's global
        statistics (an undertrained vocoder: docs/RESULTS.md); a vocoder that follows its mel
        frame by frame has it well above 0."""
        audio, local, labels = batch["audio"], conditioning_of(batch, self.local_key), \
            batch.get("label")
        loss, x0_mse = self._fixed_loss(model, audio, local, labels)
        metrics = {"loss": loss, "x0_mse": x0_mse}
        if local is not None and local.shape[-1] > 1:
            shifted, _ = self._fixed_loss(model, audio,
                                          local.roll(local.shape[-1] // 2, dims=-1), labels)
            metrics["cond_use"] = 1.0 - loss / max(shifted, 1e-12)
        return metrics

    def _fixed_loss(self, model, audio, local, labels) -> tuple[float, float]:
        """Loss and x0 MSE averaged over the fixed times with the fixed noise."""
        denoise = _denoiser(model, local, labels)
        generator = torch.Generator().manual_seed(VALIDATION_SEED)
        loss = x0_mse = 0.0
        for k in range(VALIDATION_TIMES):
            t = T_MIN + (1 - T_MIN) * (k + 0.5) / VALIDATION_TIMES
            times = torch.full((audio.shape[0],), t, device=audio.device, dtype=audio.dtype)
            noise = torch.randn(audio.shape, generator=generator).to(audio.device, audio.dtype)
            terms = self.process.loss(denoise, audio, t=times, noise=noise)
            loss += terms.loss.item() / VALIDATION_TIMES
            x0_mse += terms.x0_mse.mean().item() / VALIDATION_TIMES
        return loss, x0_mse

    @torch.no_grad()
    def make_samples(self, model, batch, out_dir: Path, seconds: float, sample_rate: int):
        """Sample ``seconds`` of audio (conditioned on the batch's first example) with the
        process's sampler and a fixed seed: ``sample.wav`` + ``sample.png`` and
        ``reference.wav`` (see :mod:`wavegen.train.listening`)."""
        audio = batch["audio"][:1]
        length = sample_length(seconds, sample_rate)
        generated = length
        local = conditioning_of(batch, self.local_key)
        if local is not None:
            # The batch pairs T samples with `frames` frames; generate whole frames.
            hop = max(1, audio.shape[-1] // local.shape[-1])
            local, generated = conditioning_window(local, length, hop)
        labels = batch.get("label")
        labels = None if labels is None else labels[:1]
        denoise = _denoiser(model, local, labels)
        if (local is not None or labels is not None) and self.process.guidance_scale != 1:
            unconditional = _denoiser(model, None if local is None else torch.zeros_like(local),
                                      None if labels is None else
                                      torch.full_like(labels, _no_label(model)))
            denoise = classifier_free_guidance(denoise, unconditional, self.process.guidance_scale)
        generator = torch.Generator().manual_seed(VALIDATION_SEED)
        result = self.process.sample(denoise, (1, 1, generated), generator=generator,
                                     device=audio.device).clamp(-1, 1)[..., :length]
        mel_conditioned = (self.features is not None and local is not None
                           and local.shape[-2] == self.features.n_mels)
        return finish_listening(out_dir, "sample", result, audio[..., :length], sample_rate,
                                {"sample_rms": float(result.pow(2).mean().sqrt())},
                                features=self.features,
                                mel_features=self.features if mel_conditioned else None)


def _build(recipe, model: nn.Module) -> DiffusionTask:
    return DiffusionTask(model, recipe.section("diffusion"),
                         local_key=local_key_of(recipe), features=recipe.feature_config)


#: Recipes: ``task: diffusion`` with an optional ``diffusion:`` section, the fields of
#: :class:`~wavegen.diffusion.process.DiffusionProcess` (``schedule:`` nested).
TASK_SPEC = TaskSpec("diffusion", _build, sections=(Section.of("diffusion", DiffusionProcess),),
                     kinds=(NOISE_DRIVEN,))
