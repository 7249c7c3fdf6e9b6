"""Adversarial training of a mel -> waveform generator (MelGAN, HiFi-GAN, GAN-TTS critics).

Two objectives stepped in this order every optimiser step, each with its own AdamW:

1. ``discriminator``: the discriminator loss on real audio and on generated audio (made
   without gradients); it trains from ``discriminator_start`` on, every
   ``discriminator_every`` steps (Parallel WaveGAN lets the generator warm up on spectral
   losses alone for its first 100k steps).
2. ``generator``: ``mel_weight`` x mel L1 + ``stft_weight`` x multi-resolution STFT loss, plus,
   once the discriminator has started, ``adversarial_weight`` x the adversarial loss and
   ``feature_matching_weight`` x the feature-matching loss. The discriminator's parameters
   are frozen during this objective, so its backward pass computes no weight gradients.

The generator is the bundle's model; the discriminator is saved beside it in every
checkpoint (``discriminator.safetensors``) with both optimisers' states, so a run resumes
exactly and a published checkpoint can be fine-tuned.

Model protocols: ``generator(mel [B, n_mels, F]) -> audio [B, 1, F * hop]``; the
discriminator follows :mod:`wavegen.nn.adversarial`. Batches carry ``"audio"`` ``[B, 1, T]``
and ``"mel"`` ``[B, n_mels, T // hop]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wavegen.audio.features import FeatureConfig
from wavegen.audio.losses import PWG_RESOLUTIONS, MelL1Loss, MultiResolutionSTFTLoss
from wavegen.audio.metrics import log_mel_l1, multi_resolution_stft_distance
from wavegen.errors import ConfigError, UsageError
from wavegen.nn.adversarial import (check_adversarial_loss, discriminator_loss,
                                    feature_matching_loss, generator_adversarial_loss)
from wavegen.models.protocols import FEED_FORWARD
from wavegen.train.listening import conditioning_window, finish_listening, sample_length
from wavegen.train.tasks.base import Objective, Phase, Task
from wavegen.train.tasks.registry import Section, TaskSpec
from wavegen.utils.config import from_dict, to_dict


@dataclass
class AdversarialConfig:
    """Loss weights and update schedule of GAN vocoder training (defaults: HiFi-GAN V1).

    Attributes:
        loss: ``"lsgan"`` (HiFi-GAN) or ``"hinge"`` (MelGAN, GAN-TTS).
        adversarial_weight: weight of the generator's adversarial term.
        feature_matching_weight: 2 in HiFi-GAN; MelGAN's 10 (per-layer weights
            ``4 / (layers + 1)`` and ``1 / scales``) becomes about 10 x 4 / 5 / 3 here, as this
            loss sums over layers and discriminators.
        mel_weight: weight of the mel L1 term (45 in HiFi-GAN, 0 in MelGAN).
        stft_weight: weight of the multi-resolution STFT loss (Parallel WaveGAN; 0 = off).
        stft_resolutions: ``(fft, hop, win)`` triples of that loss (and of the validation
            metric ``mr_stft``).
        discriminator_start: first optimiser step the discriminator trains (and the
            adversarial terms switch on).
        discriminator_every: discriminator updates every n-th step.
        generator_lr, discriminator_lr: learning rates (None: ``train.lr``).
        betas: AdamW betas of both optimisers ((0.8, 0.99) in HiFi-GAN; None: ``train.betas``).
    """

    loss: str = "lsgan"
    adversarial_weight: float = 1.0
    feature_matching_weight: float = 2.0
    mel_weight: float = 45.0
    stft_weight: float = 0.0
    stft_resolutions: tuple[tuple[int, int, int], ...] = PWG_RESOLUTIONS
    discriminator_start: int = 0
    discriminator_every: int = 1
    generator_lr: float | None = None
    discriminator_lr: float | None = None
    betas: tuple[float, float] | None = (0.8, 0.99)
    loss_features: dict[str, Any] | None = field(default=None)

    def __post_init__(self) -> None:
        check_adversarial_loss(self.loss)
        self.stft_resolutions = tuple(tuple(r) for r in self.stft_resolutions)
        for name in ("adversarial_weight", "feature_matching_weight", "mel_weight", "stft_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"AdversarialConfig.{name} must be >= 0")
        if self.discriminator_start < 0 or self.discriminator_every < 1:
            raise ConfigError("AdversarialConfig needs discriminator_start >= 0 and "
                              "discriminator_every >= 1")
        if self.mel_weight == 0 and self.stft_weight == 0 and self.adversarial_weight == 0:
            raise ConfigError("AdversarialConfig: every generator loss weight is 0")

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "adversarial") -> "AdversarialConfig":
        return from_dict(cls, data, where)


def _set_trainable(module: nn.Module, trainable: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(trainable)


def _match_length(audio: torch.Tensor, mel: torch.Tensor, hop: int) -> torch.Tensor:
    """Real audio cropped to the generator's output length ``frames * hop``."""
    length = mel.shape[-1] * hop
    if audio.shape[-1] < length:
        raise UsageError(f"batch audio has {audio.shape[-1]} samples but its {mel.shape[-1]} "
                         f"mel frames x hop {hop} need {length}")
    return audio[..., :length]


class _DiscriminatorObjective(nn.Module):
    def __init__(self, task: "AdversarialTask"):
        super().__init__()
        self.generator = task.model
        self.discriminator = task.discriminator
        self.task = task

    def forward(self, batch):
        _set_trainable(self.discriminator, True)
        mel = batch["mel"]
        real = _match_length(batch["audio"], mel, self.task.hop)
        with torch.no_grad():
            fake = self.generator(mel)
        real_out, fake_out = self.discriminator(real, fake.detach(), mel)
        loss = discriminator_loss(real_out, fake_out, self.task.config.loss)
        return loss, {"d_loss": float(loss.detach())}


class _GeneratorObjective(nn.Module):
    def __init__(self, task: "AdversarialTask"):
        super().__init__()
        self.generator = task.model
        self.discriminator = task.discriminator
        self.mel_loss = task.mel_loss
        self.stft_loss = task.stft_loss
        self.task = task

    def forward(self, batch):
        c = self.task.config
        mel = batch["mel"]
        real = _match_length(batch["audio"], mel, self.task.hop)
        fake = self.generator(mel)
        metrics = {}
        loss = fake.new_zeros((), dtype=torch.float32)
        if c.mel_weight > 0:
            mel_term = self.mel_loss(fake, real)
            loss = loss + c.mel_weight * mel_term
            metrics["mel_l1"] = float(mel_term.detach())
        if c.stft_weight > 0:
            stft_term = self.stft_loss(fake, real).total
            loss = loss + c.stft_weight * stft_term
            metrics["stft"] = float(stft_term.detach())
        if self.task.adversarial_active:
            _set_trainable(self.discriminator, False)
            real_out, fake_out = self.discriminator(real, fake, mel)
            adv = generator_adversarial_loss(fake_out, c.loss)
            fm = feature_matching_loss(real_out, fake_out)
            loss = loss + c.adversarial_weight * adv + c.feature_matching_weight * fm
            metrics.update(g_adv=float(adv.detach()), feature_matching=float(fm.detach()))
        metrics["g_loss"] = float(loss.detach())
        return loss, metrics


class AdversarialTask(Task):
    """GAN training of ``generator`` against ``discriminator``; see the module docstring.

    Args:
        generator: mel -> waveform model (saved as the bundle's model).
        discriminator: a discriminator or :class:`~wavegen.nn.adversarial.DiscriminatorSet`.
        features: the FeatureConfig of the conditioning mels (its hop sets the audio length;
            the mel loss uses it too unless ``config.loss_features`` overrides it, e.g.
            HiFi-GAN's loss mel with ``fmax`` at Nyquist).
        config: weights and schedule.
    """

    validation_key = "mel_l1"
    #: Until steps with the discriminator have been timed, the ETA assumes each takes this
    #: many warm-up steps' time (measured: 4.4 for hifigan-tiny on a CPU; the discriminator
    #: pass and the generator's adversarial terms come on top of the spectral losses).
    adversarial_step_cost = 4.0

    def __init__(self, generator: nn.Module, discriminator: nn.Module, features: FeatureConfig,
                 config: AdversarialConfig | None = None):
        self.model = generator
        self.discriminator = discriminator
        self.features = features
        self.config = config or AdversarialConfig()
        self.hop = features.hop_length
        self.step = 0
        loss_features = features if self.config.loss_features is None else \
            FeatureConfig.from_dict({**features.to_dict(), **self.config.loss_features})
        self.loss_features = loss_features
        self.mel_loss = MelL1Loss(loss_features)
        self.stft_loss = MultiResolutionSTFTLoss(self.config.stft_resolutions)
        self.d_objective = _DiscriminatorObjective(self)
        self.g_objective = _GeneratorObjective(self)

    @property
    def adversarial_active(self) -> bool:
        return self.step >= self.config.discriminator_start

    def auxiliary_modules(self) -> dict[str, nn.Module]:
        return {"discriminator": self.discriminator}

    def phases(self) -> list[Phase]:
        """A spectral-loss warm-up (when ``discriminator_start`` > 0), then the slower
        adversarial steps."""
        start = self.config.discriminator_start
        if start == 0:
            return [Phase(0, "adversarial")]
        return [Phase(0, "warm-up"), Phase(start, "adversarial", self.adversarial_step_cost)]

    def objectives(self) -> dict[str, Objective]:
        c = self.config
        return {
            "discriminator": Objective(self.d_objective, list(self.discriminator.parameters()),
                                       start_step=c.discriminator_start,
                                       every=c.discriminator_every, lr=c.discriminator_lr,
                                       betas=c.betas),
            "generator": Objective(self.g_objective, list(self.model.parameters()),
                                   lr=c.generator_lr, betas=c.betas),
        }

    @torch.no_grad()
    def validation_metrics(self, model, batch):
        mel = batch["mel"]
        real = _match_length(batch["audio"], mel, self.hop)
        fake = model(mel)
        return {"mel_l1": float(log_mel_l1(real, fake, self.loss_features).mean()),
                "mr_stft": float(multi_resolution_stft_distance(
                    real, fake, self.config.stft_resolutions).total.mean())}

    @torch.no_grad()
    def make_samples(self, model, batch, out_dir: Path, seconds: float, sample_rate: int):
        """Vocode ``seconds`` of the batch's first example: ``generated.wav`` +
        ``generated.png`` and ``reference.wav`` (see :mod:`wavegen.train.listening`)."""
        length = sample_length(seconds, sample_rate)
        mel, _ = conditioning_window(batch["mel"], length, self.hop)
        real = _match_length(batch["audio"][:1], mel, self.hop)[..., :length]
        fake = model(mel).float().clamp(-1.0, 1.0)[..., :length]
        return finish_listening(out_dir, "generated", fake, real, sample_rate, {},
                                features=self.features, mel_features=self.loss_features,
                                mel_metric="sample_mel_l1")


def _build(recipe, model: nn.Module) -> AdversarialTask:
    from wavegen.models.discriminators import build_discriminators

    discriminators = build_discriminators(recipe.section("discriminators"), recipe.feature_config)
    return AdversarialTask(model, discriminators, recipe.feature_config,
                           recipe.section("adversarial"))


def _check(recipe) -> None:
    """The discriminators exist and fit the size limits (nothing is built)."""
    from wavegen.models.discriminators import check_discriminators

    check_discriminators(recipe.section("discriminators"), recipe.feature_config)


def _discriminators(raw: dict[str, Any], where: str) -> dict[str, Any]:
    # Kinds and arguments need the features: _check validates them with the whole recipe.
    return dict(raw)


#: Recipes: ``task: adversarial`` with a ``discriminators:`` section (kind -> arguments,
#: :mod:`wavegen.models.discriminators`) and an optional ``adversarial:`` section
#: (:class:`AdversarialConfig`); the recipe's data must be mel-conditioned.
TASK_SPEC = TaskSpec(
    "adversarial", _build,
    sections=(Section("discriminators", _discriminators, dict, required=True),
              Section.of("adversarial", AdversarialConfig)),
    check=_check, kinds=(FEED_FORWARD,), conditionings=("mel",))
