"""Model families defined only in the tests: what a new family looks like from outside.

Nothing in wavegen knows these; the tests register them (``register_family``) or drive
them directly, to prove that the registry, the task registry, the sampling loop and the
inference layer are open to families wavegen has never heard of:

* :class:`TinyGRU`: a sample-level model (GRU over mu-law classes);
* :class:`TinyDenoiser`: a non-causal conv denoiser (noise-driven, trained by ``diffusion``),
  optionally conditioned on a log-mel;
* :class:`TinyVQAutoencoder`: a one-level conv VQ autoencoder (trained by ``vq``);

and tiny recipes for them on generated tones; plus :func:`diffwave_bundle`, an untrained
tiny DiffWave vocoder bundle for the verbs' tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from wavegen.errors import UsageError
from wavegen.models.size import SizeEstimate, check_config_size, conv, layer
from wavegen.models.wavenet import shift_right
from wavegen.nn.distributions import Categorical
from wavegen.nn.vector_quantizer import VectorQuantizer
from wavegen.utils.config import DictConfig, from_dict, to_dict


# --------------------------------------------------------------------------- sample-level
@dataclass(frozen=True)
class GRUConfig(DictConfig):
    """An unconditional GRU over mu-law classes, with the model config contract."""

    classes: int = 16
    hidden: int = 24
    conditioning_channels: int = 0
    hop_length: int | None = None
    sample_rate: int = 16000

    def estimate_size(self) -> SizeEstimate:
        h, k = self.hidden, self.classes
        return layer(k * h, 0) + layer(6 * h * h, 6 * h) + layer(h * k, k)


class TinyGRU(nn.Module):
    """mu-law classes -> embedding -> GRU -> logits of the next class."""

    receptive_field = None  # recurrent: unbounded (the loop never needs it)

    def __init__(self, config: GRUConfig = GRUConfig()):
        super().__init__()
        self.config, self.head = config, Categorical(config.classes)
        self.embed = nn.Embedding(config.classes, config.hidden)
        self.gru = nn.GRU(config.hidden, config.hidden, batch_first=True)
        self.out = nn.Linear(config.hidden, config.classes)

    def silence_input(self) -> int:
        return self.config.classes // 2

    def targets_from_waveform(self, wave: torch.Tensor) -> torch.Tensor:
        return self.head.targets_from_waveform(wave.reshape(wave.shape[0], -1))

    def forward(self, inputs, local=None, global_cond=None):
        """``[B, T]`` previous classes -> logits ``[B, K, T]``."""
        return self.out(self.gru(self.embed(inputs))[0]).transpose(1, 2)

    def loss(self, wave, local=None, global_cond=None):
        targets = self.targets_from_waveform(wave)
        inputs = shift_right(targets, self.silence_input())
        return -self.head.log_prob(self(inputs), targets).mean()

    def start(self, batch, length, local=None, global_cond=None, unconditional=False,
              prompt=None):
        h = torch.zeros(1, batch, self.config.hidden)
        if prompt is not None and prompt.shape[-1]:
            h = self.gru(self.embed(shift_right(prompt, self.silence_input())))[1]
        return {"h": h}

    def step(self, previous, state):
        """``[B]`` previous class -> logits ``[B, K]``."""
        out, state["h"] = self.gru(self.embed(previous)[:, None], state["h"])
        return self.out(out[:, 0])


def gru(seed: int = 0) -> TinyGRU:
    torch.manual_seed(seed)
    model = TinyGRU()
    with torch.no_grad():  # peakier than the default init, so draws are not all alike
        model.out.weight.mul_(6.0)
    return model.eval()


DENOISER, VQ_AE = "test-denoiser", "test-vq"


# --------------------------------------------------------------------------- test families
@dataclass
class DenoiserConfig(DictConfig):
    """A tiny non-causal denoiser; ``n_mels`` > 0 conditions it on a log-mel."""

    channels: int = 16
    n_mels: int = 0
    hop_length: int = 64
    sample_rate: int = 8000

    @property
    def conditioning_channels(self) -> int:
        return self.n_mels

    def estimate_size(self) -> SizeEstimate:
        c = self.channels
        size = (conv(1, c, 3) + layer(16 * c, c) + layer(c * c, c) + 3 * conv(c, c, 3)
                + conv(c, 1, 3))
        return size + (conv(self.n_mels, c, 1) if self.n_mels else SizeEstimate())



class TinyDenoiser(nn.Module):
    """``x_t [B, 1, T]``, ``t [B]``, mel ``[B, n_mels, T / hop]`` -> ``[B, 1, T]``: dilated
    non-causal convs, ``t`` through a sinusoidal embedding, each mel frame repeated ``hop``
    times."""

    def __init__(self, config: DenoiserConfig):
        super().__init__()
        check_config_size(config, "tiny denoiser")
        self.config = config
        c = config.channels
        self.register_buffer("freqs", torch.exp(torch.linspace(0, math.log(100.0), 8)),
                             persistent=False)
        self.inp = nn.Conv1d(1, c, 3, padding=1)
        self.time = nn.Sequential(nn.Linear(16, c), nn.SiLU(), nn.Linear(c, c))
        self.cond = nn.Conv1d(config.n_mels, c, 1) if config.n_mels else None
        self.body = nn.ModuleList(nn.Conv1d(c, c, 3, padding=d, dilation=d) for d in (1, 2, 4))
        self.out = nn.Conv1d(c, 1, 3, padding=1)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor,
                local: torch.Tensor | None = None) -> torch.Tensor:
        angles = t[:, None].to(self.freqs.dtype) * self.freqs
        h = self.inp(x_t) + self.time(torch.cat([angles.sin(), angles.cos()], 1))[:, :, None]
        if local is not None:
            h = h + self.cond(local).repeat_interleave(self.config.hop_length, -1)
        for layer_ in self.body:
            h = h + layer_(F.silu(h))
        return self.out(F.silu(h))


@dataclass
class AutoencoderConfig:
    """A tiny one-level VQ autoencoder (8x down in time), unconditional."""

    channels: int = 16
    codebook_size: int = 32
    dim: int = 8
    sample_rate: int = 8000

    @property
    def conditioning_channels(self) -> int:
        return 0

    @property
    def hop_length(self) -> int | None:
        return None

    def estimate_size(self) -> SizeEstimate:
        c, d = self.channels, self.dim
        encoder = conv(1, c, 4) + 2 * conv(c, c, 4) + conv(c, d, 1)
        decoder = conv(d, c, 3) + 2 * conv(c, c, 4) + conv(c, 1, 4)  # transposed: same counts
        return encoder + decoder  # the codebook is EMA buffers, not parameters

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any],
                  where: str = "AutoencoderConfig") -> "AutoencoderConfig":
        return from_dict(cls, data, where)


class TinyVQAutoencoder(nn.Module):
    """Strided convs (8x down) -> VQ -> transposed convs; codes ``[B, T / 8]``."""

    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        check_config_size(config, "tiny VQ autoencoder")
        self.config = config
        c = config.channels
        self.encoder = nn.Sequential(
            nn.Conv1d(1, c, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(c, c, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(c, c, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(c, config.dim, 1))
        self.quantizer = VectorQuantizer(config.codebook_size, config.dim)
        self.decoder = nn.Sequential(
            nn.Conv1d(config.dim, c, 3, padding=1), nn.ReLU(),
            nn.ConvTranspose1d(c, c, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose1d(c, c, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose1d(c, 1, 4, stride=2, padding=1))

    @property
    def num_levels(self) -> int:
        return 1

    def _check_level(self, level: int) -> None:
        if level != 0:
            raise UsageError(f"this autoencoder has one level, got level {level}")

    def autoencode(self, audio: torch.Tensor):
        out = self.quantizer(self.encoder(audio))
        return self.decoder(out.quantized), [out]

    def encode(self, audio: torch.Tensor, level: int = 0) -> torch.Tensor:
        self._check_level(level)
        return self.quantizer.encode(self.encoder(audio))

    def decode(self, codes: torch.Tensor, level: int = 0) -> torch.Tensor:
        self._check_level(level)
        return self.decoder(self.quantizer.decode(codes))

# --------------------------------------------------------------------------- recipes
FEATURES = {"sample_rate": 8000, "n_fft": 256, "hop_length": 64, "win_length": 256,
            "n_mels": 16, "fmax": 4000.0}
TRAIN = {"steps": 4, "batch_size": 4, "lr": 0.01, "log_every": 2, "val_every": 2,
         "val_batches": 1, "checkpoint_every": 2, "keep_last": 4, "sample_seconds": 0.064,
         "device": "cpu"}


def diffusion_recipe() -> dict[str, Any]:
    """Mel-conditioned denoiser on tones; no ``task:`` (the family's own, diffusion)."""
    return {"name": "tiny-diffusion",
            "model": {"family": DENOISER, "channels": 16, "n_mels": 16, "hop_length": 64},
            "features": dict(FEATURES),
            "data": {"kind": "tones", "sample_rate": 8000, "crop_samples": 512, "size": 32,
                     "validation_size": 4, "conditioning": "mel"},
            "diffusion": {"schedule": {"kind": "linear"}, "cond_dropout": 0.1,
                          "sampler_steps": 4},
            "train": dict(TRAIN)}


def vq_recipe() -> dict[str, Any]:
    return {"name": "tiny-vq", "task": "vq",
            "model": {"family": VQ_AE, "channels": 16, "codebook_size": 32, "dim": 8},
            "features": dict(FEATURES),
            "data": {"kind": "tones", "sample_rate": 8000, "crop_samples": 512, "size": 32,
                     "validation_size": 4},
            "vq": {"spectral_weight": 0.5, "reconstruction": "l1",
                   "resolutions": [[256, 64, 256], [128, 32, 128]]},
            "train": {**TRAIN, "lr": 0.003}}


def without(recipe: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in recipe.items() if k != key}


def write(tmp_path: Path, recipe: dict[str, Any]) -> Path:
    path = tmp_path / f"{recipe['name']}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


# --------------------------------------------------------------------------- real families
DIFFWAVE_TINY = dict(residual_layers=6, residual_channels=16, dilation_cycle=3,
                     embedding_hidden=32, sample_rate=16000, n_mels=16, hop_length=64)
DIFFWAVE_FEATURES = {"preset": "hifigan-16k", "n_fft": 256, "win_length": 256,
                     "hop_length": 64, "n_mels": 16}


def tiny_diffwave(seed: int = 0, **overrides):
    """A tiny DiffWave with a random (not zero) output layer, so gradients reach the input."""
    from wavegen.models.diffwave import DiffWave, DiffWaveConfig

    torch.manual_seed(seed)
    model = DiffWave(DiffWaveConfig(**{**DIFFWAVE_TINY, **overrides}))
    nn.init.normal_(model.output_projection.weight, std=0.5)
    return model


def diffwave_bundle(folder: Path, **process: Any) -> tuple[nn.Module, str]:
    """An untrained tiny mel DiffWave bundle (16 kHz, 16 mels, hop 64) at ``folder``."""
    from wavegen.checkpoint import BundleInfo, save_bundle
    from wavegen.diffusion.process import DiffusionProcess
    from wavegen.train.recipe import resolve_features

    model = tiny_diffwave().eval()
    settings = {"sampler": "ddim", "sampler_steps": 4, **process}
    info = BundleInfo("diffwave", model.config, 16000,
                      features=resolve_features(dict(DIFFWAVE_FEATURES)), conditioning="mel",
                      process=DiffusionProcess(**settings).to_dict())
    return model, str(save_bundle(folder, model, info))


WAVEGLOW_TINY = dict(n_mels=16, hop_length=64, sample_rate=16000, n_flows=4, n_group=8,
                     n_early_every=2, n_early_size=2, wn_layers=2, wn_channels=8,
                     upsample="nearest")


def tiny_waveglow(seed: int = 0, **overrides):
    """A tiny WaveGlow (16 mels, hop 64) whose couplings are not the identity (the end
    convs start at zero)."""
    from wavegen.models.waveglow import WaveGlow, WaveGlowConfig

    torch.manual_seed(seed)
    model = WaveGlow(WaveGlowConfig(**{**WAVEGLOW_TINY, **overrides}))
    with torch.no_grad():
        for step in model.flows:
            nn.init.normal_(step.coupling.net.end.weight, std=0.1)
    return model


def waveglow_bundle(folder: Path, **overrides: Any) -> tuple[nn.Module, str]:
    """An untrained tiny WaveGlow bundle (16 kHz, 16 mels, hop 64) at ``folder``."""
    from wavegen.checkpoint import BundleInfo, save_bundle
    from wavegen.train.recipe import resolve_features

    model = tiny_waveglow(**overrides).eval()
    info = BundleInfo("waveglow", model.config, 16000,
                      features=resolve_features(dict(DIFFWAVE_FEATURES)), conditioning="mel")
    return model, str(save_bundle(folder, model, info))
