"""WaveGrad (Chen et al. 2021): a mel-conditioned waveform denoiser.

A noise-driven model of the diffusion kind (:class:`~wavegen.models.protocols.DenoiserModel`):
``model(x_t [B, 1, T], t [B], local=mel [B, n_mels, F]) -> prediction [B, 1, T]`` with
``T = F * hop``, trained by the ``diffusion`` task and sampled by the bundle's
:class:`~wavegen.diffusion.process.DiffusionProcess` (the network does not know which
parameterisation it predicts; the process does).

Two paths meet at every resolution::

    x_t [B, 1, T] --conv k5--> h_0 [B, d_0, T] --DBlock(/u_S)--> h_1 [B, d_1, T / u_S]
        --DBlock(/u_{S-1})--> ... --> h_{S-1} [B, d_{S-1}, F * u_1]
    each h_j + PE(t) --FiLM_j--> (scale_j, shift_j) [B, c_{S-1-j}, T_j]
    mel [B, n_mels, F] --conv k3--> [B, c_in, F] --UBlock(x u_1, FiLM_{S-1})--> [B, c_1, F u_1]
        --UBlock(x u_2, ...)--> ... --UBlock(x u_S, FiLM_0)--> [B, c_S, T] --conv k3--> [B, 1, T]

with ``u_1 .. u_S`` the upsampling factors (coarse first, product = hop), ``c`` the UBlock
channels and ``d`` the DBlock channels (``d_0`` is the input convolution's width, the
resolution of the last UBlock).

* **UBlock** (``c_in -> c_out``, factor ``u``, the FiLM of its output resolution)::

      shortcut = conv1x1(upsample(h))
      y = conv(d=2)(lrelu(film(conv(d=1)(upsample(lrelu(h)))))) + shortcut
      out = y + conv(d=8)(lrelu(film(conv(d=4)(lrelu(film(y))))))

  where ``film(x) = scale * x + shift``, upsampling repeats samples (nearest) and every
  conv has kernel 3 and "same" padding.
* **DBlock** (``d_in -> d_out``, factor ``u``): on the shortcut ``conv1x1`` then average
  pooling by ``u`` (interpolation); on the main branch a strided kernel-3 conv (stride
  ``u``) downsamples, then three ``lrelu -> conv`` (dilations 1, 2, 4); their sum.
* **FiLM** (``d -> c``): ``g = lrelu(conv(h)) + PE(t)``; ``scale = conv(g)``,
  ``shift = conv(g)``.

Noise-level conditioning. The paper conditions on the continuous noise level
``sqrt(alpha_bar)`` through a sinusoidal positional encoding at linear scale 5000. The
diffusion core hands the network the continuous time ``t`` in [0, 1] instead (the schedule
lives in the bundle's process, not in the network), so here the encoding is of ``t``:
``PE(t)_i = sin(5000 t w_i)`` for the first half of the channels and ``cos`` for the second,
``w_i = 10000 ** (-i / (half - 1))``. ``t`` is a strictly monotone function of the noise
level under every schedule of :mod:`wavegen.diffusion.schedules`, so the network sees the
same information; the encoding merely does not follow a change of schedule after training.

Conditioning. WaveGrad is a vocoder: the paper has no unconditional model, and this module
refuses one (``n_mels`` >= 1; ``local=None`` is a UsageError). Classifier-free guidance
still works: the diffusion task's ``cond_dropout`` trains the all-zero mel as the
unconditional branch.

Upsampling factors. ``upsample_factors`` may be given (their product must be the hop) or
left None: then :func:`derive_upsample_factors` splits the hop into one factor in [2, 8]
per UBlock, as even as possible and coarse first (hop 300 -> (5, 5, 3, 2, 2), the paper's;
hop 256 -> (4, 4, 4, 2, 2)). A hop with no such split is a ConfigError naming it.

Sizes. The ``base`` preset is the paper's WaveGrad Base: 24 kHz, 128 mel bands, hop 300,
UBlock channels 512, 512, 256, 128, 128 after an input conv to 768, DBlock channels
32 (input conv), 128, 128, 256, 512: about 16.2M parameters (the paper reports 15M and
leaves the downsampling layers unspecified).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from wavegen.errors import ConfigError, UsageError
from wavegen.models.size import SizeEstimate, check_config_size, conv
from wavegen.nn.input_level import apply_input_level, check_input_level
from wavegen.utils.config import DictConfig, from_dict, from_preset

LRELU_SLOPE = 0.2
#: Range of each derived upsampling factor.
MIN_FACTOR, MAX_FACTOR = 2, 8
#: Dilations of the UBlock's four convolutions (two per residual half).
UBLOCK_DILATIONS = (1, 2, 4, 8)
#: Dilations of the DBlock's three convolutions.
DBLOCK_DILATIONS = (1, 2, 4)
#: Linear scale of the time before the positional encoding (the paper's 5000).
NOISE_SCALE = 5000.0
#: Kernel of the input conv on the noisy waveform and of the mel input conv.
WAVE_KERNEL, MEL_KERNEL = 5, 3


def derive_upsample_factors(hop_length: int, stages: int) -> tuple[int, ...]:
    """``stages`` factors in [2, 8] multiplying to ``hop_length``, largest first.

    Of all such splits the most even one is taken (smallest largest factor, then the
    smallest second factor, ...). A hop without a split is a ConfigError naming it.
    """
    def fail() -> ConfigError:
        return ConfigError(f"WaveGradConfig: hop_length {hop_length} cannot be split into "
                           f"{stages} upsampling factors in [{MIN_FACTOR}, {MAX_FACTOR}]; "
                           f"pass upsample_factors (product = hop) or change the UBlock count")

    if stages < 1 or hop_length < MIN_FACTOR ** stages or hop_length > MAX_FACTOR ** stages:
        raise fail()
    best: tuple[int, ...] | None = None

    def search(rest: int, left: int, cap: int, chosen: tuple[int, ...]) -> None:
        nonlocal best
        if left == 0:
            if rest == 1 and (best is None or chosen < best):
                best = chosen
            return
        for factor in range(MIN_FACTOR, min(cap, MAX_FACTOR) + 1):
            if rest % factor == 0 and rest // factor >= MIN_FACTOR ** (left - 1):
                search(rest // factor, left - 1, factor, chosen + (factor,))

    # Factors are chosen in non-increasing order; comparing the tuples lexicographically
    # picks the smallest largest factor first, i.e. the most even split.
    search(hop_length, stages, MAX_FACTOR, ())
    if best is None:
        raise fail()
    return best


@dataclass
class WaveGradConfig(DictConfig):
    """Hyperparameters of a WaveGrad denoiser (defaults: the paper's Base, 24 kHz, hop 300).

    Attributes:
        n_mels: mel bands of the conditioning (>= 1: WaveGrad is always conditioned).
        hop_length: audio samples per mel frame.
        sample_rate: audio rate in Hz (stored for bundles and sampling).
        upsample_factors: one factor per UBlock, coarse first, product ``hop_length``; None
            derives them from the hop (:func:`derive_upsample_factors`).
        input_channels: width of the mel input conv.
        ublock_channels: output channels of each UBlock, coarse first.
        dblock_channels: channels of the waveform path at each UBlock's output resolution,
            fine first: the input conv's width, then each DBlock's output (as many entries
            as UBlocks).
        local_offset, local_scale: the mel enters as ``(mel + local_offset) * local_scale``
            (:mod:`wavegen.nn.input_level`; e.g. 6.0 and 0.25 for natural-log mels); the
            defaults leave it as it is.
    """

    n_mels: int = 128
    hop_length: int = 300
    sample_rate: int = 24000
    upsample_factors: tuple[int, ...] | None = None
    input_channels: int = 768
    ublock_channels: tuple[int, ...] = (512, 512, 256, 128, 128)
    dblock_channels: tuple[int, ...] = (32, 128, 128, 256, 512)
    local_offset: float = 0.0
    local_scale: float = 1.0

    def __post_init__(self) -> None:
        def bad(message: str) -> ConfigError:
            return ConfigError(f"WaveGradConfig: {message}")

        if self.n_mels < 1:
            raise bad(f"n_mels must be >= 1, got {self.n_mels} (WaveGrad is a mel-conditioned "
                      f"vocoder; the paper has no unconditional model)")
        for key in ("hop_length", "sample_rate", "input_channels"):
            if getattr(self, key) < 1:
                raise bad(f"{key} must be >= 1, got {getattr(self, key)}")
        check_input_level("WaveGradConfig", self.local_offset, self.local_scale)
        self.ublock_channels = tuple(self.ublock_channels)
        self.dblock_channels = tuple(self.dblock_channels)
        if not self.ublock_channels or any(c < 1 for c in self.ublock_channels):
            raise bad(f"ublock_channels must be positive, got {list(self.ublock_channels)}")
        if len(self.dblock_channels) != len(self.ublock_channels) \
                or any(c < 2 or c % 2 for c in self.dblock_channels):
            raise bad(f"dblock_channels must hold {len(self.ublock_channels)} even widths >= 2 "
                      f"(one per UBlock), got {list(self.dblock_channels)}")
        if self.upsample_factors is not None:
            self.upsample_factors = tuple(self.upsample_factors)
            factors = self.upsample_factors
            if len(factors) != len(self.ublock_channels) or any(u < 1 for u in factors):
                raise bad(f"upsample_factors must hold {len(self.ublock_channels)} positive "
                          f"factors (one per UBlock), got {list(factors)}")
            if math.prod(factors) != self.hop_length:
                raise bad(f"upsample_factors {' x '.join(map(str, factors))} = "
                          f"{math.prod(factors)} must equal hop_length ({self.hop_length})")
        else:
            derive_upsample_factors(self.hop_length, self.num_stages)  # fails on a bad hop

    # ---- model config contract (wavegen.models.protocols)
    @property
    def conditioning_channels(self) -> int:
        """Model config contract: the mel bands."""
        return self.n_mels

    @property
    def num_stages(self) -> int:
        return len(self.ublock_channels)

    @property
    def factors(self) -> tuple[int, ...]:
        """The upsampling factors in use, coarse first (given or derived from the hop)."""
        if self.upsample_factors is not None:
            return tuple(self.upsample_factors)
        return derive_upsample_factors(self.hop_length, self.num_stages)

    def estimate_size(self) -> SizeEstimate:
        """Parameters and weight layers of the :class:`WaveGrad` this config builds (exact),
        from the hyperparameters alone (independent of the factors)."""
        ups, downs = self.ublock_channels, self.dblock_channels
        size = conv(self.n_mels, self.input_channels, MEL_KERNEL)
        cin = self.input_channels
        for cout in ups:
            size += _ublock_size(cin, cout)
            cin = cout
        size += conv(cin, 1, 3)
        size += conv(1, downs[0], WAVE_KERNEL)
        for din, dout in zip(downs[:-1], downs[1:]):
            size += _dblock_size(din, dout)
        # FiLM j sits at DBlock resolution j and modulates UBlock S - 1 - j.
        for d, c in zip(downs, reversed(ups)):
            size += conv(d, d, 3) + 2 * conv(d, c, 3)
        return size

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "WaveGradConfig") -> "WaveGradConfig":
        """From plain values; unknown keys and wrong types are ConfigErrors naming the key."""
        return from_dict(cls, data, where)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "WaveGradConfig":
        """A named configuration (``"base"``: the paper's; ``"tiny"``: CPU tests and recipes)
        with fields overridden. Changing the hop re-derives the factors unless
        ``upsample_factors`` is passed."""
        return from_preset(cls, WAVEGRAD_PRESETS, name, overrides, "WaveGrad")


def _ublock_size(cin: int, cout: int) -> SizeEstimate:
    return conv(cin, cout, 1) + conv(cin, cout, 3) + 3 * conv(cout, cout, 3)


def _dblock_size(din: int, dout: int) -> SizeEstimate:
    return conv(din, dout, 1) + conv(din, din, 3) + conv(din, dout, 3) + 2 * conv(dout, dout, 3)


#: Presets as plain values (``upsample_factors`` None: derived from the hop).
WAVEGRAD_PRESETS: dict[str, dict[str, Any]] = {
    # WaveGrad Base (Chen et al. 2021, Table / Fig. 3): 24 kHz, 128-band mel, hop 300.
    "base": {"n_mels": 128, "hop_length": 300, "sample_rate": 24000, "upsample_factors": None,
             "input_channels": 768, "ublock_channels": (512, 512, 256, 128, 128),
             "dblock_channels": (32, 128, 128, 256, 512)},
    # A narrow CPU model on 16 kHz, 80-band, hop-256 features (hifigan-16k).
    "tiny": {"n_mels": 80, "hop_length": 256, "sample_rate": 16000, "upsample_factors": None,
             "input_channels": 32, "ublock_channels": (32, 32, 16, 16, 8),
             "dblock_channels": (8, 8, 16, 16, 32)},
}


def _conv(cin: int, cout: int, kernel: int = 3, dilation: int = 1, stride: int = 1) -> nn.Conv1d:
    """A 1-D conv with "same" padding (``T -> T / stride`` when ``stride`` divides ``T``)."""
    return nn.Conv1d(cin, cout, kernel, stride=stride, dilation=dilation,
                     padding=dilation * (kernel - 1) // 2)


def noise_level_encoding(t: torch.Tensor, channels: int) -> torch.Tensor:
    """Sinusoidal encoding of ``t`` ``[B]`` at scale :data:`NOISE_SCALE` -> ``[B, channels, 1]``
    (sines in the first half of the channels, cosines in the second; ``channels`` even)."""
    half = channels // 2
    steps = torch.arange(half, device=t.device, dtype=torch.float32)
    freqs = torch.exp(-math.log(10000.0) * steps / max(half - 1, 1))
    angles = NOISE_SCALE * t.float()[:, None] * freqs
    return torch.cat([angles.sin(), angles.cos()], dim=1)[:, :, None]


class FiLM(nn.Module):
    """DBlock features ``[B, d, T_j]`` and ``t`` -> ``(scale, shift)``, each ``[B, c, T_j]``."""

    def __init__(self, d: int, c: int):
        super().__init__()
        self.inp = _conv(d, d)
        self.scale = _conv(d, c)
        self.shift = _conv(d, c)

    def forward(self, h: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g = F.leaky_relu(self.inp(h), LRELU_SLOPE)
        g = g + noise_level_encoding(t, g.shape[1]).to(g.dtype)
        return self.scale(g), self.shift(g)


class UBlock(nn.Module):
    """``[B, cin, L]`` -> ``[B, cout, L * factor]``, FiLM-modulated (module docstring)."""

    def __init__(self, cin: int, cout: int, factor: int):
        super().__init__()
        self.factor = factor
        self.shortcut = _conv(cin, cout, 1)
        self.convs = nn.ModuleList([_conv(cin, cout, 3, UBLOCK_DILATIONS[0])] +
                                   [_conv(cout, cout, 3, d) for d in UBLOCK_DILATIONS[1:]])

    def _up(self, x: torch.Tensor) -> torch.Tensor:
        return x.repeat_interleave(self.factor, dim=-1) if self.factor > 1 else x

    def forward(self, h: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        c = self.convs
        x = c[0](self._up(F.leaky_relu(h, LRELU_SLOPE)))
        x = c[1](F.leaky_relu(scale * x + shift, LRELU_SLOPE))
        y = x + self.shortcut(self._up(h))
        x = c[2](F.leaky_relu(scale * y + shift, LRELU_SLOPE))
        x = c[3](F.leaky_relu(scale * x + shift, LRELU_SLOPE))
        return y + x


class DBlock(nn.Module):
    """``[B, din, L]`` -> ``[B, dout, L / factor]`` (``L`` a multiple of ``factor``)."""

    def __init__(self, din: int, dout: int, factor: int):
        super().__init__()
        self.factor = factor
        self.shortcut = _conv(din, dout, 1)
        self.down = _conv(din, din, 3, stride=factor)
        self.convs = nn.ModuleList([_conv(din, dout, 3, DBLOCK_DILATIONS[0])] +
                                   [_conv(dout, dout, 3, d) for d in DBLOCK_DILATIONS[1:]])

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x = self.down(h)
        for layer in self.convs:
            x = layer(F.leaky_relu(x, LRELU_SLOPE))
        return x + F.avg_pool1d(self.shortcut(h), self.factor)


class WaveGrad(nn.Module):
    """The WaveGrad denoiser: ``forward(x_t [B, 1, F * hop], t [B], local=mel [B, n_mels, F])
    -> [B, 1, F * hop]`` (see the module docstring)."""

    def __init__(self, config: WaveGradConfig):
        super().__init__()
        check_config_size(config, "wavegrad")
        self.config = config
        factors = config.factors
        ups, downs = config.ublock_channels, config.dblock_channels
        self.mel_in = _conv(config.n_mels, config.input_channels, MEL_KERNEL)
        cins = (config.input_channels,) + ups[:-1]
        self.ublocks = nn.ModuleList(UBlock(cin, cout, u) for cin, cout, u in zip(cins, ups, factors))
        self.out = _conv(ups[-1], 1, 3)
        self.wave_in = _conv(1, downs[0], WAVE_KERNEL)
        # DBlock j goes from resolution j - 1 to j, dividing by the factor of UBlock S - j.
        self.dblocks = nn.ModuleList(DBlock(din, dout, u) for din, dout, u in
                                     zip(downs[:-1], downs[1:], reversed(factors[1:])))
        self.films = nn.ModuleList(FiLM(d, c) for d, c in zip(downs, reversed(ups)))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor,
                local: torch.Tensor | None = None) -> torch.Tensor:
        """The prediction ``[B, 1, T]`` for the noisy waveform ``x_t`` ``[B, 1, T]`` at times
        ``t`` ``[B]`` given the log-mel ``local`` ``[B, n_mels, T / hop]``."""
        config = self.config
        if local is None:
            raise UsageError("WaveGrad is mel-conditioned: pass local=mel [B, n_mels, frames] "
                             "(zeros for the unconditional branch of guidance)")
        if x_t.ndim != 3 or x_t.shape[1] != 1 or local.ndim != 3 \
                or local.shape[1] != config.n_mels or local.shape[0] != x_t.shape[0] \
                or x_t.shape[-1] != local.shape[-1] * config.hop_length:
            raise UsageError(f"WaveGrad takes x_t [B, 1, frames * {config.hop_length}] and mel "
                             f"[B, {config.n_mels}, frames], got {list(x_t.shape)} and "
                             f"{list(local.shape)}")
        t = torch.as_tensor(t, device=x_t.device).reshape(-1).expand(x_t.shape[0])
        h = self.wave_in(x_t)
        features = [h]
        for block in self.dblocks:
            h = block(h)
            features.append(h)
        films = [film(f, t) for film, f in zip(self.films, features)]
        y = self.mel_in(apply_input_level(local, self.config.local_offset,
                                          self.config.local_scale))
        for i, block in enumerate(self.ublocks):
            scale, shift = films[len(films) - 1 - i]
            y = block(y, scale, shift)
        return self.out(F.leaky_relu(y, LRELU_SLOPE))


__all__ = ["DBlock", "FiLM", "UBlock", "WAVEGRAD_PRESETS", "WaveGrad", "WaveGradConfig",
           "derive_upsample_factors", "noise_level_encoding"]
