"""MelGAN (Kumar et al. 2019): a feed-forward mel -> waveform generator and its critics.

Generator (descriptinc/melgan-neurips ``mel2wav/modules.py``, with the same module layout so
that the official checkpoints load by name; see :mod:`wavegen.importers.melgan_official`):

* ``ReflectionPad1d(3) -> WNConv1d(num_mels, 2^S ngf, 7)`` with ``S = len(ratios)``;
* per ratio ``r``: ``LeakyReLU(0.2) -> WNConvTranspose1d(C, C / 2, 2r, stride r,
  padding r // 2 + r % 2, output_padding r % 2)`` then ``n_residual_layers`` residual blocks
  with dilations ``1, 3, 9, ...`` (``LeakyReLU -> pad d -> conv3 dil d -> LeakyReLU -> conv1``
  plus a 1x1 shortcut conv);
* ``LeakyReLU(0.2) -> ReflectionPad1d(3) -> WNConv1d(ngf, 1, 7) -> tanh``.

Output length. A transposed conv gives ``(L - 1) r - 2 p + (2r - 1) + op + 1`` samples;
with ``p = r // 2 + r % 2`` and ``op = r % 2`` that is exactly ``L r`` for every ratio
``r >= 2``, even or odd, so the generator maps ``F`` frames to exactly ``F * prod(ratios)``
samples (``hop_length``) for any ratios, e.g. 5 x 5 x 3 x 4 = 300 or 8 x 5 x 3 x 2 = 240.
A ratio of 1 is refused: ``output_padding`` must be smaller than the stride.

Multi-scale discriminator (:class:`MelGANMultiScaleDiscriminator`): ``num_D`` identical
``NLayerDiscriminator`` s on the waveform average-pooled by 1, 2, 4, ... (``AvgPool1d(4, 2,
padding 1, count_include_pad=False)`` between scales); grouped strided convolutions
(kernel ``10 s + 1``, stride ``s``, groups ``C / 4``) keep them cheap. Every layer's output is
a feature map for feature matching; the last (one channel) is the score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from wavegen.errors import ConfigError, UsageError
from wavegen.models.size import (SizeEstimate, check_arguments_size, check_config_size, conv,
                                 layer)
from wavegen.nn.adversarial import DiscriminatorOutput, Pair, run_real_fake
from wavegen.nn.weight_norm import fold_weight_norm, weight_norm
from wavegen.utils.config import from_dict, to_dict


@dataclass
class MelGANConfig:
    """Hyperparameters of a MelGAN generator (defaults: the official 22.05 kHz model).

    Attributes:
        num_mels: mel bands of the conditioning.
        ratios: upsampling factor of each stage (each >= 2); their product is the hop.
        ngf: channels of the last stage; the first has ``ngf * 2^len(ratios)``.
        n_residual_layers: residual blocks per stage (dilations ``3^j``).
        hop_length: audio samples per mel frame; must equal ``prod(ratios)``.
        sample_rate: audio sample rate in Hz.
    """

    num_mels: int = 80
    ratios: tuple[int, ...] = (8, 8, 2, 2)
    ngf: int = 32
    n_residual_layers: int = 3
    hop_length: int = 256
    sample_rate: int = 22050

    def __post_init__(self) -> None:
        self.ratios = tuple(self.ratios)
        for key in ("num_mels", "ngf", "hop_length", "sample_rate"):
            if getattr(self, key) < 1:
                raise ConfigError(f"MelGANConfig.{key} must be >= 1, got {getattr(self, key)}")
        if self.n_residual_layers < 0:
            raise ConfigError(f"MelGANConfig.n_residual_layers must be >= 0, "
                              f"got {self.n_residual_layers}")
        if not self.ratios or any(r < 2 for r in self.ratios):
            raise ConfigError(f"MelGANConfig.ratios must be integers >= 2, got {list(self.ratios)}")
        if math.prod(self.ratios) != self.hop_length:
            shown = " x ".join(map(str, self.ratios))
            raise ConfigError(f"MelGANConfig.ratios {shown} = {math.prod(self.ratios)} must "
                              f"multiply to hop_length ({self.hop_length})")

    @property
    def conditioning_channels(self) -> int:
        """Model config contract (:mod:`wavegen.models.protocols`): the mel bands."""
        return self.num_mels

    @property
    def min_frames(self) -> int:
        """Fewest mel frames the generator accepts (each reflection pad must be shorter than
        its input: 3 on the frames, ``3^j`` after each upsampling stage)."""
        need = 4
        length = 1
        biggest = 3 ** (self.n_residual_layers - 1) if self.n_residual_layers else 0
        for r in self.ratios:
            length *= r
            need = max(need, biggest // length + 1)
        return need

    def estimate_size(self) -> SizeEstimate:
        """Parameters (weight norm in place) and weight layers of the :class:`MelGANGenerator`
        this config builds (exact), from the hyperparameters alone."""
        width = 2 ** len(self.ratios) * self.ngf
        size = conv(self.num_mels, width, 7, weight_norm=True)
        for r in self.ratios:
            # ConvTranspose1d weights are [in, out, k]: weight norm along dim 0 has ``in`` g's.
            size += layer(width * (width // 2) * 2 * r, width // 2, width)
            width //= 2
            block = (conv(width, width, 3, weight_norm=True)           # dilated conv
                     + conv(width, width, 1, weight_norm=True)         # 1x1 conv
                     + conv(width, width, 1, weight_norm=True))        # shortcut
            size += self.n_residual_layers * block
        return size + conv(self.ngf, 1, 7, weight_norm=True)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "MelGANConfig") -> MelGANConfig:
        """From plain values; unknown keys and wrong types are ConfigErrors naming the key."""
        return from_dict(cls, data, where)


def _init_conv(module: nn.Module) -> nn.Module:
    # The official weights_init draws conv weights from N(0, 0.02). It runs after weight_norm,
    # where it only touches a cached copy of the weight that the next forward recomputes from
    # (g, v); here it is applied to the weight before normalisation, so that (g, v) describe
    # an N(0, 0.02) weight, which is what the paper's initialisation means.
    nn.init.normal_(module.weight, 0.0, 0.02)
    return module


def WNConv1d(*args: Any, **kwargs: Any) -> nn.Conv1d:
    """A weight-normalised ``nn.Conv1d`` (weights N(0, 0.02) before normalisation)."""
    return weight_norm(_init_conv(nn.Conv1d(*args, **kwargs)))


def WNConvTranspose1d(*args: Any, **kwargs: Any) -> nn.ConvTranspose1d:
    """A weight-normalised ``nn.ConvTranspose1d`` (weights N(0, 0.02) before normalisation)."""
    return weight_norm(_init_conv(nn.ConvTranspose1d(*args, **kwargs)))


class ResnetBlock(nn.Module):
    """``x + f(x)`` at constant length: ``shortcut(x) + block(x)``, dilated conv of width 3."""

    def __init__(self, dim: int, dilation: int = 1):
        super().__init__()
        self.block = nn.Sequential(
            nn.LeakyReLU(0.2),
            nn.ReflectionPad1d(dilation),
            WNConv1d(dim, dim, kernel_size=3, dilation=dilation),
            nn.LeakyReLU(0.2),
            WNConv1d(dim, dim, kernel_size=1),
        )
        self.shortcut = WNConv1d(dim, dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.block(x)


class MelGANGenerator(nn.Module):
    """Mel ``[B, num_mels, F]`` -> waveform ``[B, 1, F * hop_length]`` in (-1, 1)."""

    def __init__(self, config: MelGANConfig):
        super().__init__()
        check_config_size(config, "MelGAN generator")
        self.config = config
        self.hop_length = config.hop_length
        ngf = config.ngf
        mult = 2 ** len(config.ratios)
        layers: list[nn.Module] = [
            nn.ReflectionPad1d(3),
            WNConv1d(config.num_mels, mult * ngf, kernel_size=7),
        ]
        for r in config.ratios:
            layers += [
                nn.LeakyReLU(0.2),
                WNConvTranspose1d(mult * ngf, mult * ngf // 2, kernel_size=2 * r, stride=r,
                                  padding=r // 2 + r % 2, output_padding=r % 2),
            ]
            layers += [ResnetBlock(mult * ngf // 2, dilation=3 ** j)
                       for j in range(config.n_residual_layers)]
            mult //= 2
        layers += [
            nn.LeakyReLU(0.2),
            nn.ReflectionPad1d(3),
            WNConv1d(ngf, 1, kernel_size=7),
            nn.Tanh(),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        if mel.dim() != 3 or mel.shape[1] != self.config.num_mels:
            raise UsageError(f"MelGAN expects a mel [batch, {self.config.num_mels}, frames], "
                             f"got shape {list(mel.shape)}")
        if mel.shape[-1] < self.config.min_frames:
            raise UsageError(f"MelGAN needs at least {self.config.min_frames} mel frames, "
                             f"got {mel.shape[-1]}")
        return self.model(mel)

    def inference(self) -> MelGANGenerator:
        """Fold weight norm into plain weights and switch to eval mode (returns self)."""
        fold_weight_norm(self)
        return self.eval()


#: Channel cap of the MelGAN critics' convolutions.
_MAX_CRITIC_WIDTH = 1024


class NLayerDiscriminator(nn.Module):
    """One MelGAN critic: waveform ``[B, 1, T]`` -> list of ``n_layers + 3`` maps (last = score)."""

    def __init__(self, ndf: int = 16, n_layers: int = 4, downsampling_factor: int = 4):
        super().__init__()
        model = nn.ModuleDict()
        model["layer_0"] = nn.Sequential(
            nn.ReflectionPad1d(7),
            WNConv1d(1, ndf, kernel_size=15),
            nn.LeakyReLU(0.2),
        )
        nf = ndf
        stride = downsampling_factor
        for n in range(1, n_layers + 1):
            nf_prev = nf
            nf = min(nf * stride, _MAX_CRITIC_WIDTH)
            groups = max(1, nf_prev // 4)
            if nf_prev % groups or nf % groups:
                raise ConfigError(f"MelGAN discriminator layer {n}: {nf_prev} -> {nf} channels "
                                  f"are not divisible into {groups} groups (choose ndf = 4 * 2^k)")
            model[f"layer_{n}"] = nn.Sequential(
                WNConv1d(nf_prev, nf, kernel_size=stride * 10 + 1, stride=stride,
                         padding=stride * 5, groups=groups),
                nn.LeakyReLU(0.2),
            )
        # The official code passes nf_prev as the input width here, which equals nf only when
        # the widths have reached the 1024 cap (as with the defaults); nf is what arrives.
        nf_out = min(nf * 2, _MAX_CRITIC_WIDTH)
        model[f"layer_{n_layers + 1}"] = nn.Sequential(
            WNConv1d(nf, nf_out, kernel_size=5, stride=1, padding=2),
            nn.LeakyReLU(0.2),
        )
        model[f"layer_{n_layers + 2}"] = WNConv1d(nf_out, 1, kernel_size=3, stride=1, padding=1)
        self.model = model

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        results = []
        for layer in self.model.values():
            x = layer(x)
            results.append(x)
        return results


class MelGANMultiScaleDiscriminator(nn.Module):
    """``num_D`` critics on the waveform at rates 1, 1/2, 1/4, ... (MelGAN's multi-scale set).

    Follows the protocol of :mod:`wavegen.nn.adversarial`: ``disc(real, fake, mel=None)``
    returns one :class:`DiscriminatorOutput` per scale for each input given; ``mel`` is
    ignored. Scores are ``[B, 1, T_s]`` maps; features are the ``n_layers + 2`` hidden maps.
    """

    def __init__(self, num_D: int = 3, ndf: int = 16, n_layers: int = 4,
                 downsampling_factor: int = 4):
        super().__init__()
        if num_D < 1 or ndf < 1 or n_layers < 1 or downsampling_factor < 1:
            raise ConfigError("MelGAN discriminator: num_D, ndf, n_layers and "
                              "downsampling_factor must all be >= 1")
        check_arguments_size(MelGANMultiScaleDiscriminator,
                             {"num_D": num_D, "ndf": ndf, "n_layers": n_layers,
                              "downsampling_factor": downsampling_factor},
                             "MelGANMultiScaleDiscriminator")
        self.model = nn.ModuleDict({f"disc_{i}": NLayerDiscriminator(ndf, n_layers,
                                                                     downsampling_factor)
                                    for i in range(num_D)})
        self.downsample = nn.AvgPool1d(4, stride=2, padding=1, count_include_pad=False)

    @staticmethod
    def estimate_size(num_D: int = 3, ndf: int = 16, n_layers: int = 4,
                      downsampling_factor: int = 4) -> SizeEstimate:
        """Parameters and weight layers of ``MelGANMultiScaleDiscriminator(...)``, in time
        independent of ``n_layers`` (the widths stop changing at the 1024 cap)."""
        stride = downsampling_factor
        size = conv(1, ndf, 15, weight_norm=True)
        nf, n = ndf, 1
        while n <= n_layers:
            nf_prev, nf = nf, min(nf * stride, _MAX_CRITIC_WIDTH)
            block = conv(nf_prev, nf, stride * 10 + 1, groups=max(1, nf_prev // 4),
                         weight_norm=True)
            if nf == nf_prev:  # every remaining layer is the same
                size += (n_layers - n + 1) * block
                break
            size += block
            n += 1
        nf_out = min(nf * 2, _MAX_CRITIC_WIDTH)
        size += conv(nf, nf_out, 5, weight_norm=True) + conv(nf_out, 1, 3, weight_norm=True)
        return num_D * size

    def _all(self, x: torch.Tensor) -> list[DiscriminatorOutput]:
        """``[N, 1, T]`` -> one output per scale (the last map of each critic is its score)."""
        outputs = []
        for i, disc in enumerate(self.model.values()):
            if i:
                x = self.downsample(x)
            maps = disc(x)
            outputs.append(DiscriminatorOutput(maps[-1], maps[:-1]))
        return outputs

    def forward(self, real: torch.Tensor | None, fake: torch.Tensor | None,
                mel: torch.Tensor | None = None) -> Pair:
        """Waveforms ``[B, 1, T]`` (same shape; either may be None) -> one output per scale
        for each, in one joint pass (:func:`~wavegen.nn.adversarial.run_real_fake`)."""
        return run_real_fake(self._all, real, fake)


__all__ = ["MelGANConfig", "MelGANGenerator", "MelGANMultiScaleDiscriminator",
           "NLayerDiscriminator", "ResnetBlock", "WNConv1d", "WNConvTranspose1d"]
