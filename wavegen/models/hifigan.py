"""HiFi-GAN (Kong et al. 2020): generator, multi-period and multi-scale discriminators.

The modules reproduce jik876/hifi-gan ``models.py`` layer for layer, with the same module
attribute names (``conv_pre``, ``ups``, ``resblocks``, ``conv_post``; ``convs1``/``convs2``
or ``convs`` inside the residual blocks; ``discriminators``, ``convs``, ``conv_post``,
``meanpools`` in the discriminators), so official checkpoints map onto them key for key
(see :mod:`wavegen.importers.hifigan_official`).

Generator: ``mel [B, num_mels, F] -> audio [B, 1, F * hop]``::

    conv_pre (k7) -> per stage i: leaky_relu(0.1) -> ConvTranspose1d(C/2^i -> C/2^(i+1),
    kernel k_i, stride u_i) -> mean of the multi-receptive-field (MRF) residual blocks ->
    leaky_relu(0.01) -> conv_post (k7, 1 channel) -> tanh

The final leaky ReLU has PyTorch's default slope 0.01, as in the official code (every other
one has 0.1). All convolutions are weight-normalised (dim 0, also for the transposed convs,
as ``torch.nn.utils.weight_norm`` does by default); :meth:`HiFiGANGenerator.inference`
folds the normalisation away for deployment.

Upsampling and the hop. The product of ``upsample_rates`` must equal the hop of the
features (``hop_length``); a mismatch is a ConfigError at construction, not a shape error in
the middle of training. The presets are for hop 256 (22.05 kHz, the published models); for
another hop pass ``upsample_rates`` and ``upsample_kernel_sizes`` yourself, by convention
kernel = 2 x rate, e.g. hop 300 (24 kHz, 12.5 ms)::

    HiFiGANConfig.preset("v1", hop_length=300, sample_rate=24000,
                         upsample_rates=(5, 5, 4, 3), upsample_kernel_sizes=(10, 10, 8, 6))

(:func:`suggest_upsampling` proposes such a split, and the ConfigError for a mismatched hop
quotes it.)

Exact lengths. A transposed conv with stride ``u``, kernel ``k`` and the official padding
``(k - u) // 2`` turns ``L`` frames into ``L u`` samples when ``k - u`` is even (all the
official configs) but ``L u + 1`` when it is odd; that extra last sample is trimmed, so the
output is ``F * hop`` samples for every configuration. Kernels must be at least the stride.

Initialisation. The official code draws the generator's transposed and residual convs (and
``conv_post``) from N(0, 0.01), but calls ``init_weights`` *after* wrapping them in weight
norm, where it only touches a recomputed copy of the weight, so the published models
actually start from PyTorch's default init. Here N(0, 0.01) is applied before the weight
norm, i.e. as intended (the magnitude ``g`` starts at the drawn weight's norm).

Discriminators (both follow :mod:`wavegen.nn.adversarial`'s protocol, ``mel`` is ignored):

* :class:`MultiPeriodDiscriminator`: for each period ``p`` the waveform is reflect-padded to
  a multiple of ``p`` and folded to ``[B, 1, T / p, p]``; 2-D convs with ``(5, 1)`` kernels
  then see samples ``p`` apart. Feature maps: every conv's activation and the final score
  map (6 per period).
* :class:`MultiScaleDiscriminator`: MelGAN-style grouped strided 1-D convs on the raw,
  2x and 4x average-pooled waveform; the first scale uses spectral norm, the others weight
  norm. Feature maps: 7 activations + the score map per scale.

Real and fake waveforms (of the same shape) go through the discriminators as one batch,
:func:`wavegen.nn.adversarial.run_real_fake` (the official code makes two calls); the outputs are identical except that a spectrally
normalised layer does one power iteration per call instead of two in training mode.
Channel widths default to the official ones and can be narrowed for tests and CPU recipes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from wavegen.errors import ConfigError, UsageError
from wavegen.models.size import (SizeEstimate, check_arguments_size, check_config_size, conv,
                                 layer)
from wavegen.nn.conv_layout import PLAIN, ChannelsLast, PlainLayout, inference_layout
from wavegen.nn.adversarial import DiscriminatorOutput, DiscriminatorSet, Pair, run_real_fake
from wavegen.nn.upsample import prime_factors
from wavegen.nn.weight_norm import fold_weight_norm, weight_norm
from wavegen.utils.config import from_dict, from_preset, to_dict

LRELU_SLOPE = 0.1
RESBLOCK_TYPES = ("1", "2")
#: Largest hop :func:`suggest_upsampling` factors (a second of audio at 1 MHz).
MAX_SUGGESTED_HOP = 1_000_000


def suggest_upsampling(hop_length: int, stages: int = 4) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Upsample rates (largest first) multiplying to ``hop_length``, and kernels = 2 x rate.

    The prime factors are dealt, largest first, onto the stage with the smallest product, so
    ``300 -> (5, 5, 4, 3)``, ``240 -> (5, 4, 4, 3)``, ``256 -> (4, 4, 4, 4)``; fewer stages
    when the hop has fewer prime factors than ``stages``.
    """
    if hop_length < 1 or stages < 1:
        raise ConfigError(f"suggest_upsampling needs hop_length >= 1 and stages >= 1, "
                          f"got {hop_length}, {stages}")
    if hop_length > MAX_SUGGESTED_HOP:  # trial division would take minutes on a huge prime
        raise ConfigError(f"hop_length {hop_length} is over {MAX_SUGGESTED_HOP} samples")
    primes = prime_factors(hop_length)
    bins = [1] * min(stages, max(len(primes), 1))
    for p in sorted(primes, reverse=True):
        bins[bins.index(min(bins))] *= p
    rates = tuple(sorted(bins, reverse=True))
    return rates, tuple(2 * r for r in rates)


@dataclass
class HiFiGANConfig:
    """Hyperparameters of a HiFi-GAN generator (defaults: V1 at 22.05 kHz, hop 256).

    Attributes:
        num_mels: mel bands of the conditioning.
        upsample_rates: stride of each transposed conv; their product is ``hop_length``.
        upsample_kernel_sizes: kernel of each transposed conv (>= its rate; 2 x rate by
            convention).
        upsample_initial_channel: width after ``conv_pre``; halved by every stage.
        resblock: ``"1"`` (two convs per dilation, V1/V2) or ``"2"`` (one conv per
            dilation, V3).
        resblock_kernel_sizes: kernel of each MRF residual block (one block per kernel
            and stage).
        resblock_dilation_sizes: dilations of each block (``[[1, 3, 5]] * 3`` for V1).
        hop_length: audio samples per mel frame (must equal the product of the rates).
        sample_rate: audio sample rate in Hz (stored for bundles and sampling).
    """

    num_mels: int = 80
    upsample_rates: tuple[int, ...] = (8, 8, 2, 2)
    upsample_kernel_sizes: tuple[int, ...] = (16, 16, 4, 4)
    upsample_initial_channel: int = 512
    resblock: str = "1"
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    hop_length: int = 256
    sample_rate: int = 22050

    def __post_init__(self) -> None:
        def bad(message: str) -> ConfigError:
            return ConfigError(f"HiFiGANConfig: {message}")

        self.resblock = str(self.resblock)
        self.upsample_rates = tuple(self.upsample_rates)
        self.upsample_kernel_sizes = tuple(self.upsample_kernel_sizes)
        self.resblock_kernel_sizes = tuple(self.resblock_kernel_sizes)
        self.resblock_dilation_sizes = tuple(tuple(d) for d in self.resblock_dilation_sizes)
        for key in ("num_mels", "upsample_initial_channel", "hop_length", "sample_rate"):
            if getattr(self, key) < 1:
                raise bad(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.resblock not in RESBLOCK_TYPES:
            raise bad(f"resblock must be one of {RESBLOCK_TYPES}, got {self.resblock!r}")
        rates, kernels = self.upsample_rates, self.upsample_kernel_sizes
        if not rates or any(u < 1 for u in rates):
            raise bad(f"upsample_rates must be positive integers, got {list(rates)}")
        if len(kernels) != len(rates):
            raise bad(f"upsample_kernel_sizes has {len(kernels)} entries but upsample_rates "
                      f"has {len(rates)}")
        for u, k in zip(rates, kernels):
            if k < u:
                raise bad(f"upsample kernel {k} is smaller than its rate {u} "
                          f"(kernels {list(kernels)}, rates {list(rates)})")
        if math.prod(rates) != self.hop_length:
            if self.hop_length > MAX_SUGGESTED_HOP:
                raise bad(f"upsample_rates {' x '.join(map(str, rates))} = {math.prod(rates)} "
                          f"must equal hop_length ({self.hop_length})")
            sug_rates, sug_kernels = suggest_upsampling(self.hop_length, len(rates))
            raise bad(f"upsample_rates {' x '.join(map(str, rates))} = {math.prod(rates)} must "
                      f"equal hop_length ({self.hop_length}); for hop {self.hop_length} pass e.g. "
                      f"upsample_rates={list(sug_rates)}, upsample_kernel_sizes={list(sug_kernels)}")
        if self.upsample_initial_channel < 2 ** len(rates):
            raise bad(f"upsample_initial_channel ({self.upsample_initial_channel}) is halved "
                      f"{len(rates)} times and must be >= {2 ** len(rates)}")
        if not self.resblock_kernel_sizes or any(k < 1 for k in self.resblock_kernel_sizes):
            raise bad(f"resblock_kernel_sizes must be positive, got {list(self.resblock_kernel_sizes)}")
        if len(self.resblock_dilation_sizes) != len(self.resblock_kernel_sizes):
            raise bad(f"resblock_dilation_sizes has {len(self.resblock_dilation_sizes)} entries "
                      f"but resblock_kernel_sizes has {len(self.resblock_kernel_sizes)}")
        for dil in self.resblock_dilation_sizes:
            if not dil or any(d < 1 for d in dil):
                raise bad(f"resblock dilations must be positive, got {list(dil)}")

    @property
    def conditioning_channels(self) -> int:
        """Model config contract (:mod:`wavegen.models.protocols`): the mel bands."""
        return self.num_mels

    @property
    def num_stages(self) -> int:
        return len(self.upsample_rates)

    def stage_channels(self, i: int) -> int:
        """Channels after upsampling stage ``i`` (0-based)."""
        return self.upsample_initial_channel // 2 ** (i + 1)

    def num_parameters(self) -> int:
        """Parameters of the generator after folding weight norm (what inference runs)."""
        return self._size(weight_norm=False).parameters

    def estimate_size(self) -> SizeEstimate:
        """Parameters (weight norm in place, as trained and saved) and weight layers of the
        :class:`HiFiGANGenerator` this config builds (exact), from the hyperparameters alone."""
        return self._size(weight_norm=True)

    def _size(self, weight_norm: bool) -> SizeEstimate:
        wn = weight_norm
        size = conv(self.num_mels, self.upsample_initial_channel, 7, weight_norm=wn)
        per_dilation = 2 if self.resblock == "1" else 1
        for i, k in enumerate(self.upsample_kernel_sizes):
            cin, cout = self.upsample_initial_channel // 2 ** i, self.stage_channels(i)
            # ConvTranspose1d weights are [in, out, k]: weight norm along dim 0 has ``in`` g's.
            size += layer(cin * cout * k, cout, cin if wn else 0)
            for rk, dil in zip(self.resblock_kernel_sizes, self.resblock_dilation_sizes):
                size += per_dilation * len(dil) * conv(cout, cout, rk, weight_norm=wn)
        last = self.stage_channels(self.num_stages - 1)
        return size + conv(last, 1, 7, weight_norm=wn)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "HiFiGANConfig") -> "HiFiGANConfig":
        """From plain values; unknown keys and wrong types are ConfigErrors naming the key."""
        return from_dict(cls, data, where)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "HiFiGANConfig":
        """A published configuration (``"v1"``, ``"v2"``, ``"v3"``) with fields overridden.

        Changing ``hop_length`` needs matching ``upsample_rates`` / ``upsample_kernel_sizes``
        (see the module docstring); otherwise the ConfigError suggests some.
        """
        return from_preset(cls, HIFIGAN_PRESETS, name, overrides, "HiFi-GAN")


#: The configurations of the paper and of jik876/hifi-gan's config_v1/v2/v3.json (22.05 kHz).
HIFIGAN_PRESETS: dict[str, HiFiGANConfig] = {
    "v1": HiFiGANConfig(),
    "v2": HiFiGANConfig(upsample_initial_channel=128),
    "v3": HiFiGANConfig(upsample_rates=(8, 8, 4), upsample_kernel_sizes=(16, 16, 8),
                        upsample_initial_channel=256, resblock="2",
                        resblock_kernel_sizes=(3, 5, 7),
                        resblock_dilation_sizes=((1, 2), (2, 6), (3, 12))),
}


def describe(config: HiFiGANConfig) -> str:
    """One line: resblock type, widths, upsampling, MRF kernels, parameter count."""
    def arch(c: HiFiGANConfig) -> tuple:
        return (c.upsample_rates, c.upsample_kernel_sizes, c.upsample_initial_channel,
                c.resblock, c.resblock_kernel_sizes, c.resblock_dilation_sizes)

    name = next((n for n, p in HIFIGAN_PRESETS.items() if arch(p) == arch(config)), None)
    kind = f"HiFi-GAN {name.upper()}" if name else "HiFi-GAN"
    rates = "x".join(map(str, config.upsample_rates))
    return (f"{kind} generator: {config.num_mels} mels -> audio at {config.sample_rate} Hz, "
            f"upsampling {rates} = hop {config.hop_length}, {config.upsample_initial_channel} "
            f"channels, ResBlock{config.resblock} kernels "
            f"{'/'.join(map(str, config.resblock_kernel_sizes))}, "
            f"{config.num_parameters() / 1e6:.2f}M parameters")


# --------------------------------------------------------------------------- generator
def _padding(kernel_size: int, dilation: int = 1) -> int:
    """'Same' padding of an odd kernel (the official ``get_padding``)."""
    return (kernel_size * dilation - dilation) // 2


def _init_normal(module: nn.Module, std: float = 0.01) -> nn.Module:
    nn.init.normal_(module.weight, 0.0, std)
    return module


def _conv(cin: int, cout: int, kernel_size: int, dilation: int = 1,
          init: bool = True) -> nn.Module:
    conv = nn.Conv1d(cin, cout, kernel_size, dilation=dilation,
                     padding=_padding(kernel_size, dilation))
    return weight_norm(_init_normal(conv) if init else conv)


class ResBlock1(nn.Module):
    """Per dilation ``d``: ``x + conv(lrelu(conv_d(lrelu(x))))`` (two convs, V1/V2)."""

    def __init__(self, channels: int, kernel_size: int = 3, dilation: Sequence[int] = (1, 3, 5)):
        super().__init__()
        self.convs1 = nn.ModuleList([_conv(channels, channels, kernel_size, d) for d in dilation])
        self.convs2 = nn.ModuleList([_conv(channels, channels, kernel_size, 1) for _ in dilation])

    def forward(self, x: torch.Tensor, layout: PlainLayout = PLAIN,
                activated: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, C, T] -> [B, C, T]`` (or ``[B, C, 1, T]`` in a channels-last ``layout``).

        ``activated``: ``leaky_relu(x)`` when the caller has it (the MRF blocks of a stage
        share their input). An in-place ``layout`` activates and sums in place.
        """
        inplace = layout.inplace
        for i, (c1, c2) in enumerate(zip(self.convs1, self.convs2)):
            a = activated if i == 0 and activated is not None else F.leaky_relu(x, LRELU_SLOPE)
            xt = F.leaky_relu(layout.conv(c1, a), LRELU_SLOPE, inplace=inplace)
            y = layout.conv(c2, xt)
            x = y.add_(x) if inplace else x + y
        return x


class ResBlock2(nn.Module):
    """Per dilation ``d``: ``x + conv_d(lrelu(x))`` (one conv, V3)."""

    def __init__(self, channels: int, kernel_size: int = 3, dilation: Sequence[int] = (1, 3)):
        super().__init__()
        self.convs = nn.ModuleList([_conv(channels, channels, kernel_size, d) for d in dilation])

    def forward(self, x: torch.Tensor, layout: PlainLayout = PLAIN,
                activated: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, C, T] -> [B, C, T]`` (or ``[B, C, 1, T]`` in a channels-last ``layout``);
        ``activated`` and in-place layouts as in :meth:`ResBlock1.forward`."""
        for i, c in enumerate(self.convs):
            a = activated if i == 0 and activated is not None else F.leaky_relu(x, LRELU_SLOPE)
            y = layout.conv(c, a)
            x = y.add_(x) if layout.inplace else x + y
        return x


class HiFiGANGenerator(nn.Module):
    """Mel-spectrogram ``[B, num_mels, F]`` -> waveform ``[B, 1, F * hop]`` in [-1, 1]."""

    def __init__(self, config: HiFiGANConfig):
        super().__init__()
        check_config_size(config, "HiFi-GAN generator")
        self.config = config
        self.num_kernels = len(config.resblock_kernel_sizes)
        self.num_upsamples = config.num_stages
        self.conv_pre = _conv(config.num_mels, config.upsample_initial_channel, 7, init=False)
        block = ResBlock1 if config.resblock == "1" else ResBlock2
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for i, (u, k) in enumerate(zip(config.upsample_rates, config.upsample_kernel_sizes)):
            cin, cout = config.upsample_initial_channel // 2 ** i, config.stage_channels(i)
            up = nn.ConvTranspose1d(cin, cout, k, stride=u, padding=(k - u) // 2)
            self.ups.append(weight_norm(_init_normal(up), dim=0))
            for rk, dil in zip(config.resblock_kernel_sizes, config.resblock_dilation_sizes):
                self.resblocks.append(block(cout, rk, dil))
        self.conv_post = _conv(config.stage_channels(self.num_upsamples - 1), 1, 7)
        self._channels_last = ChannelsLast()

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """``mel [B, num_mels, F]`` -> ``audio [B, 1, F * hop]``."""
        if mel.dim() != 3 or mel.shape[1] != self.config.num_mels:
            raise UsageError(f"HiFi-GAN expects mels shaped [batch, {self.config.num_mels}, "
                             f"frames], got {list(mel.shape)}")
        # Inference on the CPU runs channels-last (wavegen.nn.conv_layout): the same sums.
        # Inference on the CPU runs channels-last, activating in place
        # (wavegen.nn.conv_layout): the same sums.
        layout = inference_layout(self, mel, self._channels_last)
        inplace = layout.inplace
        x = layout.conv(self.conv_pre, layout.enter(mel))
        for i, (up, rate) in enumerate(zip(self.ups, self.config.upsample_rates)):
            length = x.shape[-1] * rate
            # k - u odd: the official padding leaves one extra sample at the end.
            x = layout.conv(up, F.leaky_relu(x, LRELU_SLOPE, inplace=inplace))[..., :length]
            activated = F.leaky_relu(x, LRELU_SLOPE)  # every MRF block's first activation
            blocks = self.resblocks[i * self.num_kernels:(i + 1) * self.num_kernels]
            xs = blocks[0](x, layout, activated)
            for block in blocks[1:]:
                xs += block(x, layout, activated)
            x = xs.div_(self.num_kernels)
        # Slope 0.01, as in the official code.
        x = layout.conv(self.conv_post, F.leaky_relu(x, inplace=inplace))
        return torch.tanh(layout.leave(x))

    def inference(self) -> "HiFiGANGenerator":
        """Fold weight norm into plain weights and switch to eval mode (in place; returns self).

        Outputs are unchanged up to float rounding. The state dict then has plain ``weight``
        keys: save bundles from the unfolded model.
        """
        fold_weight_norm(self)
        return self.eval()


def prepare_for_inference(model: nn.Module) -> nn.Module:
    """Fold every weight norm of ``model`` and set eval mode (in place; returns ``model``)."""
    fold_weight_norm(model)
    return model.eval()


# --------------------------------------------------------------------------- discriminators
def _check_widths(channels: Sequence[int], count: int, what: str) -> tuple[int, ...]:
    channels = tuple(int(c) for c in channels)
    if len(channels) != count or any(c < 1 for c in channels):
        raise ConfigError(f"{what} needs {count} positive channel counts, got {list(channels)}")
    return channels


class PeriodDiscriminator(nn.Module):
    """One MPD branch: waveform folded by ``period`` into ``[B, 1, T / p, p]``, 2-D convs."""

    def __init__(self, period: int, channels: Sequence[int] = (32, 128, 512, 1024, 1024),
                 kernel_size: int = 5, stride: int = 3, use_spectral_norm: bool = False):
        super().__init__()
        self.period = period
        norm = spectral_norm if use_spectral_norm else weight_norm
        pad = (_padding(kernel_size), 0)
        widths = (1, *channels)
        self.convs = nn.ModuleList([
            norm(nn.Conv2d(cin, cout, (kernel_size, 1),
                           (stride if i < len(channels) - 1 else 1, 1), padding=pad))
            for i, (cin, cout) in enumerate(zip(widths[:-1], widths[1:]))])
        self.conv_post = norm(nn.Conv2d(widths[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, x: torch.Tensor) -> DiscriminatorOutput:
        """``[B, 1, T]`` -> score ``[B, H * p]`` and 6 feature maps ``[B, C_i, H_i, p]``."""
        b, c, t = x.shape
        if t % self.period:
            x = F.pad(x, (0, self.period - t % self.period), mode="reflect")
        return _conv_stack(self.convs, self.conv_post, x.view(b, c, -1, self.period))


def _conv_stack(convs: nn.ModuleList, conv_post: nn.Module, x: torch.Tensor) -> DiscriminatorOutput:
    """leaky-ReLU conv stack + ``conv_post``: every activation and the score map are features."""
    features = []
    for conv in convs:
        x = F.leaky_relu(conv(x), LRELU_SLOPE)
        features.append(x)
    x = conv_post(x)
    features.append(x)
    return DiscriminatorOutput(torch.flatten(x, 1, -1), features)


class MultiPeriodDiscriminator(nn.Module):
    """HiFi-GAN's MPD: one :class:`PeriodDiscriminator` per period (2, 3, 5, 7, 11)."""

    def __init__(self, periods: Sequence[int] = (2, 3, 5, 7, 11),
                 channels: Sequence[int] = (32, 128, 512, 1024, 1024)):
        super().__init__()
        periods = tuple(int(p) for p in periods)
        if not periods or any(p < 1 for p in periods):
            raise ConfigError(f"MultiPeriodDiscriminator periods must be positive, got {list(periods)}")
        channels = _check_widths(channels, 5, "MultiPeriodDiscriminator")
        check_arguments_size(MultiPeriodDiscriminator, {"periods": periods, "channels": channels},
                             "MultiPeriodDiscriminator")
        self.periods = periods
        self.discriminators = nn.ModuleList([PeriodDiscriminator(p, channels) for p in periods])

    @staticmethod
    def estimate_size(periods: Sequence[int] = (2, 3, 5, 7, 11),
                      channels: Sequence[int] = (32, 128, 512, 1024, 1024)) -> SizeEstimate:
        """Parameters and weight layers of ``MultiPeriodDiscriminator(periods, channels)``."""
        widths = (1, *channels)
        branch = sum((conv(cin, cout, 5, weight_norm=True)
                      for cin, cout in zip(widths[:-1], widths[1:])), SizeEstimate())
        return len(periods) * (branch + conv(widths[-1], 1, 3, weight_norm=True))

    def _all(self, x: torch.Tensor) -> list[DiscriminatorOutput]:
        return [d(x) for d in self.discriminators]

    def forward(self, real: torch.Tensor | None, fake: torch.Tensor | None,
                mel: torch.Tensor | None = None) -> Pair:
        """Waveforms ``[B, 1, T]`` (either may be None) -> one output per period for each."""
        return run_real_fake(self._all, real, fake)


MSD_CHANNELS = (128, 128, 256, 512, 1024, 1024, 1024)
MSD_GROUPS = (1, 4, 16, 16, 16, 16, 1)
# (kernel, stride) of the seven convs before conv_post (padding: kernel // 2).
_MSD_LAYOUT = ((15, 1), (41, 2), (41, 2), (41, 4), (41, 4), (41, 1), (5, 1))


class ScaleDiscriminator(nn.Module):
    """One MSD branch: grouped strided 1-D convs (MelGAN's discriminator block)."""

    def __init__(self, channels: Sequence[int] = MSD_CHANNELS, groups: Sequence[int] = MSD_GROUPS,
                 use_spectral_norm: bool = False):
        super().__init__()
        norm = spectral_norm if use_spectral_norm else weight_norm
        widths = (1, *channels)
        convs = []
        for (k, s), cin, cout, g in zip(_MSD_LAYOUT, widths[:-1], widths[1:], groups):
            convs.append(norm(nn.Conv1d(cin, cout, k, s, groups=g, padding=k // 2)))
        self.convs = nn.ModuleList(convs)
        self.conv_post = norm(nn.Conv1d(widths[-1], 1, 3, 1, padding=1))

    def forward(self, x: torch.Tensor) -> DiscriminatorOutput:
        """``[B, 1, T]`` -> score ``[B, T / 64]`` and 8 feature maps ``[B, C, T_i]``."""
        return _conv_stack(self.convs, self.conv_post, x)


class MultiScaleDiscriminator(nn.Module):
    """HiFi-GAN's MSD: ``scales`` :class:`ScaleDiscriminator` on the waveform pooled 1x, 2x, 4x.

    Args:
        scales: number of scales (3 in HiFi-GAN and MelGAN).
        channels: output channels of the seven convs before ``conv_post``.
        groups: their groups (each must divide the convolution's input and output widths).
    """

    def __init__(self, scales: int = 3, channels: Sequence[int] = MSD_CHANNELS,
                 groups: Sequence[int] = MSD_GROUPS):
        super().__init__()
        if scales < 1:
            raise ConfigError(f"MultiScaleDiscriminator needs scales >= 1, got {scales}")
        channels = _check_widths(channels, 7, "MultiScaleDiscriminator")
        groups = _check_widths(groups, 7, "MultiScaleDiscriminator groups")
        for cin, cout, g in zip((1, *channels[:-1]), channels, groups):
            if cin % g or cout % g:
                raise ConfigError(f"MultiScaleDiscriminator: groups {g} must divide the conv's "
                                  f"{cin} input and {cout} output channels (channels "
                                  f"{list(channels)}, groups {list(groups)})")
        check_arguments_size(MultiScaleDiscriminator,
                             {"scales": scales, "channels": channels, "groups": groups},
                             "MultiScaleDiscriminator")
        self.scales = scales
        self.discriminators = nn.ModuleList([
            ScaleDiscriminator(channels, groups, use_spectral_norm=(i == 0)) for i in range(scales)])
        self.meanpools = nn.ModuleList([nn.AvgPool1d(4, 2, padding=2) for _ in range(scales - 1)])

    @staticmethod
    def estimate_size(scales: int = 3, channels: Sequence[int] = MSD_CHANNELS,
                      groups: Sequence[int] = MSD_GROUPS) -> SizeEstimate:
        """Parameters and weight layers of ``MultiScaleDiscriminator(scales, channels, groups)``
        (the first scale is spectrally normalised: no magnitudes g)."""
        widths = (1, *channels)

        def branch(weight_norm: bool) -> SizeEstimate:
            size = SizeEstimate()
            for (k, _), cin, cout, g in zip(_MSD_LAYOUT, widths[:-1], widths[1:], groups):
                size += conv(cin, cout, k, groups=g, weight_norm=weight_norm)
            return size + conv(widths[-1], 1, 3, weight_norm=weight_norm)

        return branch(False) + max(scales - 1, 0) * branch(True) if scales > 0 else SizeEstimate()

    def _all(self, x: torch.Tensor) -> list[DiscriminatorOutput]:
        outs = []
        for i, d in enumerate(self.discriminators):
            if i:
                x = self.meanpools[i - 1](x)
            outs.append(d(x))
        return outs

    def forward(self, real: torch.Tensor | None, fake: torch.Tensor | None,
                mel: torch.Tensor | None = None) -> Pair:
        """Waveforms ``[B, 1, T]`` (either may be None) -> one output per scale for each."""
        return run_real_fake(self._all, real, fake)


def hifigan_discriminator(periods: Sequence[int] = (2, 3, 5, 7, 11), scales: int = 3,
                          mpd_channels: Sequence[int] = (32, 128, 512, 1024, 1024),
                          msd_channels: Sequence[int] = MSD_CHANNELS,
                          msd_groups: Sequence[int] = MSD_GROUPS) -> DiscriminatorSet:
    """HiFi-GAN's pair as one discriminator: ``{"mpd": ..., "msd": ...}`` (official widths)."""
    return DiscriminatorSet({"mpd": MultiPeriodDiscriminator(periods, mpd_channels),
                             "msd": MultiScaleDiscriminator(scales, msd_channels, msd_groups)})


__all__ = ["HiFiGANConfig", "HIFIGAN_PRESETS", "HiFiGANGenerator", "ResBlock1", "ResBlock2",
           "MultiPeriodDiscriminator", "MultiScaleDiscriminator", "PeriodDiscriminator",
           "ScaleDiscriminator", "hifigan_discriminator", "describe", "prepare_for_inference",
           "suggest_upsampling", "MSD_CHANNELS", "MSD_GROUPS"]
