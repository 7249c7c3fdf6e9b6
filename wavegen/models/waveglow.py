"""WaveGlow (Prenger et al. 2019): a mel-conditioned normalising flow over waveforms.

A noise-driven model of the flow kind (:class:`~wavegen.models.protocols.FlowModel`): an
invertible map from audio to Gaussian latents with an exact log-likelihood, trained by the
``likelihood`` task on ``loss`` (negative log-likelihood in nats per sample) and sampled by
running the map backwards on noise of standard deviation ``sigma`` (``infer``).

::

    audio [B, 1, T] --x signal_scale--> squeeze (n_group g) --> x [B, g, T / g]
    mel [B, M, F] --(mel + offset) * scale--> ConvTranspose1d(M, M, K, stride hop)[:F hop]
        --> squeeze_frames --> cond [B, M g, T / g]
    for flow k = 0 .. n_flows - 1:
        every n_early_every flows (k > 0): the first n_early_size channels leave as latents
        x = W_k x                       (invertible 1x1 conv; LU-decomposed if ``lu``)
        x = [x_a, x_b exp(log_s) + b]   ((b, log_s) = WN_k(x_a, cond): affine coupling)
    z = [early_1, early_2, ..., x]  [B, g, T / g]
    log p(audio) = log N(z; 0, sigma^2 I) + sum_k (T / g) log|det W_k| + sum log_s
                   + T log(signal_scale)

The coupling network ``WN`` (:class:`CouplingWaveNet`) is a non-causal WaveNet: a 1x1
"start" conv, ``wn_layers`` :class:`~wavegen.nn.gated_residual.GatedResidualBlock` s with
kernel ``wn_kernel`` and dilations 1, 2, 4, ..., the conditioning of all layers projected by
one 1x1 conv, the skip outputs summed, and a zero-initialised 1x1 "end" conv (so every
coupling starts as the identity). Weight normalisation on all but the end conv, as in the
paper; :func:`wavegen.nn.weight_norm.fold_weight_norm` folds it for inference.

Precision. ``infer(..., dtype=torch.bfloat16 / float16)`` runs the upsampler and the
coupling networks under autocast; the invertible parts (the 1x1 convs, inverted in float64,
and the affine updates) stay in float32, which is where fp16 WaveGlow inference usually
overflows.

Sizes. The ``paper`` preset is the published model (12 flows, n_group 8, 2 channels out
every 4 flows, WN 8 layers x 256 channels, 80 mels, 22.05 kHz, hop 256): about 87.9M
parameters with weight norm (the official checkpoints' count). ``small`` (WN 256 -> 128
channels) and ``tiny`` (16 kHz, 8 flows, WN 6 x 32, nearest mel upsampling: 0.5M
parameters, a CPU model) are smaller ones.

Chunking. The map is shift-equivariant by ``n_group`` samples and every latent belongs to a
sample position, so a long mel can be rendered in chunks with noise tied to positions
(:mod:`wavegen.inference.chunked_noise`); the result equals one pass when the overlap covers
the receptive field (:attr:`WaveGlowConfig.receptive_field`), which for the paper's model is
about 49k samples on each side; with the default 32-frame overlap the joins differ from one
pass by a little (measured in docs/RESULTS.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from wavegen.errors import ConfigError, UsageError
from wavegen.models.size import SizeEstimate, check_config_size, conv, layer
from wavegen.nn.flows import (AffineCoupling, Invertible1x1Conv, gaussian_nll, squeeze,
                              squeeze_frames, unsqueeze)
from wavegen.nn.gated_residual import GatedResidualBlock
from wavegen.nn.input_level import apply_input_level, check_input_level
from wavegen.nn.weight_norm import weight_norm as apply_weight_norm
from wavegen.utils.config import DictConfig, from_preset

#: Ways of bringing mels to the audio rate (WaveGlowConfig.upsample).
UPSAMPLERS = ("transposed", "nearest")
#: Autocast dtypes ``infer`` accepts besides float32.
HALF_DTYPES = (torch.bfloat16, torch.float16)


@dataclass
class WaveGlowConfig(DictConfig):
    """Hyperparameters of a WaveGlow (defaults: the paper's, 22.05 kHz, 80 mels, hop 256).

    Attributes:
        n_mels: mel bands of the conditioning.
        hop_length: audio samples per mel frame (a multiple of ``n_group``).
        sample_rate: audio rate in Hz.
        n_flows: flow steps (1x1 conv + affine coupling).
        n_group: samples squeezed into the channels of one column (even).
        n_early_every: every this many flows, ``n_early_size`` channels leave as latents.
        n_early_size: channels per early output (even).
        wn_layers, wn_channels, wn_kernel: the coupling WaveNet (layers with dilations
            ``2^i``, residual = gate = skip width, odd kernel).
        upsample: how mels reach the audio rate: ``"transposed"`` (the paper's learned
            ``ConvTranspose1d(M, M, upsample_kernel, stride hop)``, 6.5M parameters for 80
            mels and kernel 1024) or ``"nearest"`` (each frame repeated ``hop`` times, no
            parameters: the couplings' conditioning convs still mix it; small models).
        upsample_kernel: taps of the transposed conv (>= hop; the paper's 1024 = 4 hops).
        lu: LU-decomposed 1x1 convs (O(C) log-determinant) instead of free matrices.
        weight_norm: weight-normalise the coupling WaveNets (the paper does).
        sigma: std of the Gaussian prior the likelihood is computed under (the paper's 1.0).
        infer_sigma: the default std of the noise at inference (the paper samples at 0.6).
        signal_scale: audio is multiplied by this before the flow (quiet corpora: piano at
            RMS 0.01 would otherwise need every coupling to learn a large scale); the
            log-likelihood includes its log-determinant, so it stays that of the waveform.
        local_offset, local_scale: the mel enters as ``(mel + local_offset) * local_scale``
            (:mod:`wavegen.nn.input_level`).
    """

    n_mels: int = 80
    hop_length: int = 256
    sample_rate: int = 22050
    n_flows: int = 12
    n_group: int = 8
    n_early_every: int = 4
    n_early_size: int = 2
    wn_layers: int = 8
    wn_channels: int = 256
    wn_kernel: int = 3
    upsample: str = "transposed"
    upsample_kernel: int = 1024
    lu: bool = False
    weight_norm: bool = True
    sigma: float = 1.0
    infer_sigma: float = 0.6
    signal_scale: float = 1.0
    local_offset: float = 0.0
    local_scale: float = 1.0

    def __post_init__(self) -> None:
        def bad(message: str) -> ConfigError:
            return ConfigError(f"WaveGlowConfig: {message}")

        for key in ("n_mels", "hop_length", "sample_rate", "n_flows", "n_group",
                    "n_early_every", "wn_layers", "wn_channels", "wn_kernel"):
            if getattr(self, key) < 1:
                raise bad(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.n_group < 2 or self.n_group % 2:
            raise bad(f"n_group must be even and >= 2, got {self.n_group}")
        if self.n_early_size < 0 or self.n_early_size % 2:
            raise bad(f"n_early_size must be even and >= 0, got {self.n_early_size}")
        if self.hop_length % self.n_group:
            raise bad(f"hop_length {self.hop_length} must be a multiple of n_group "
                      f"{self.n_group} (a mel frame must hold whole groups)")
        if self.wn_kernel % 2 == 0:
            raise bad(f"wn_kernel must be odd (centred convs), got {self.wn_kernel}")
        if self.wn_channels % 2:
            raise bad(f"wn_channels must be even, got {self.wn_channels}")
        if self.wn_layers > 30:
            raise bad(f"wn_layers must be <= 30 (dilation 2^29), got {self.wn_layers}")
        if self.upsample not in UPSAMPLERS:
            raise bad(f"upsample must be one of {', '.join(UPSAMPLERS)}, got {self.upsample!r}")
        if self.upsample == "transposed" and self.upsample_kernel < self.hop_length:
            raise bad(f"upsample_kernel ({self.upsample_kernel}) must be >= hop_length "
                      f"({self.hop_length})")
        if self.remaining_channels < 2:
            raise bad(f"{self.n_flows} flows with {self.n_early_size} channels out every "
                      f"{self.n_early_every} leave {self.remaining_channels} of n_group "
                      f"{self.n_group} channels; at least 2 must remain")
        for key in ("sigma", "signal_scale"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value > 0):
                raise bad(f"{key} must be a finite number > 0, got {value}")
        if not (math.isfinite(self.infer_sigma) and self.infer_sigma >= 0):
            raise bad(f"infer_sigma must be a finite number >= 0, got {self.infer_sigma}")
        check_input_level("WaveGlowConfig", self.local_offset, self.local_scale)

    # ------------------------------------------------------------------ contract
    @property
    def conditioning_channels(self) -> int:
        """Model config contract: the mel bands."""
        return self.n_mels

    # ------------------------------------------------------------------ structure
    def early_exit(self, k: int) -> bool:
        """Whether ``n_early_size`` channels leave before flow ``k``."""
        return k > 0 and k % self.n_early_every == 0 and self.n_early_size > 0

    def flow_channels(self) -> list[int]:
        """Channels each flow works on, flow 0 first."""
        channels, out = self.n_group, []
        for k in range(self.n_flows):
            if self.early_exit(k):
                channels -= self.n_early_size
            out.append(channels)
        return out

    @property
    def remaining_channels(self) -> int:
        """Channels left after the last early output."""
        exits = sum(1 for k in range(self.n_flows) if self.early_exit(k))
        return self.n_group - exits * self.n_early_size

    @property
    def receptive_field(self) -> int:
        """Samples on each side of a sample that its latent (or, inverted, its audio) can
        depend on: every coupling reaches ``(k - 1) / 2 * sum(dilations)`` columns."""
        reach = (self.wn_kernel - 1) // 2 * (2 ** self.wn_layers - 1)
        upsampler = self.upsample_kernel if self.upsample == "transposed" else self.hop_length
        return self.n_flows * reach * self.n_group + upsampler

    # ------------------------------------------------------------------ size
    def estimate_size(self) -> SizeEstimate:
        """Parameters and weight layers of the :class:`WaveGlow` this config builds (exact)."""
        c, n, wn = self.wn_channels, self.wn_layers, self.weight_norm
        size = SizeEstimate()
        if self.upsample == "transposed":
            size += layer(self.n_mels * self.n_mels * self.upsample_kernel, self.n_mels)
        for channels in self.flow_channels():
            half = channels // 2
            # a free matrix, or the LU factors' lower + upper matrices and log-scales
            size += layer(2 * channels * channels, channels) if self.lu \
                else layer(channels * channels)
            size += conv(half, c, 1, weight_norm=wn)
            size += conv(self.n_mels * self.n_group, 2 * c * n, 1, weight_norm=wn)
            size += n * (conv(c, 2 * c, self.wn_kernel, weight_norm=wn) + conv(c, c, 1, weight_norm=wn))
            size += (n - 1) * conv(c, c, 1, weight_norm=wn)
            size += conv(c, 2 * (channels - half), 1)
        return size

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> "WaveGlowConfig":
        """A named configuration (``paper``, ``small``, ``tiny``) with fields overridden."""
        return from_preset(cls, WAVEGLOW_PRESETS, name, overrides, "WaveGlow")


#: The paper's model and smaller ones.
WAVEGLOW_PRESETS: dict[str, WaveGlowConfig] = {
    "paper": WaveGlowConfig(),
    "small": WaveGlowConfig(wn_channels=128),
    "tiny": WaveGlowConfig(n_mels=80, hop_length=256, sample_rate=16000, n_flows=8,
                           n_group=8, n_early_every=4, n_early_size=2, wn_layers=6,
                           wn_channels=32, upsample="nearest"),
}


class CouplingWaveNet(nn.Module):
    """WaveGlow's ``WN``: ``(x_a [B, C_a, N], cond [B, K, N]) -> [B, 2 C_b, N]`` (module doc).

    Args:
        in_channels: ``C_a``.
        out_channels: ``2 C_b`` (shift then log-scale).
        cond_channels: ``K`` (mel bands x n_group).
        layers, channels, kernel: the gated stack (dilation ``2^i`` at layer ``i``).
        weight_norm: weight-normalise start, conditioning and every block's convs.
    """

    def __init__(self, in_channels: int, out_channels: int, cond_channels: int, layers: int,
                 channels: int, kernel: int, weight_norm: bool = True):
        super().__init__()
        wn = apply_weight_norm if weight_norm else (lambda m: m)
        self.channels = channels
        self.start = wn(nn.Conv1d(in_channels, channels, 1))
        self.cond = wn(nn.Conv1d(cond_channels, 2 * channels * layers, 1))
        self.blocks = nn.ModuleList()
        for i in range(layers):
            block = GatedResidualBlock(channels, channels, channels, kernel, 2 ** i,
                                       causal=False, has_residual=i < layers - 1)
            block.conv = wn(block.conv)
            block.skip = wn(block.skip)
            if block.residual is not None:
                block.residual = wn(block.residual)
            self.blocks.append(block)
        self.end = nn.Conv1d(channels, out_channels, 1)
        nn.init.zeros_(self.end.weight)
        nn.init.zeros_(self.end.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        h = self.start(x)
        gates = self.cond(cond)
        width = 2 * self.channels
        skips = None
        for i, block in enumerate(self.blocks):
            h, skip = block(h, gate_bias=gates[:, i * width:(i + 1) * width])
            skips = skip if skips is None else skips + skip
        return self.end(skips)


class FlowStep(nn.Module):
    """One flow: ``invertible`` (1x1 conv) then ``coupling`` (affine, WN-conditioned)."""

    def __init__(self, channels: int, config: WaveGlowConfig, generator: torch.Generator):
        super().__init__()
        half = channels // 2
        self.invertible = Invertible1x1Conv(channels, lu=config.lu, generator=generator)
        net = CouplingWaveNet(half, 2 * (channels - half), config.n_mels * config.n_group,
                              config.wn_layers, config.wn_channels, config.wn_kernel,
                              config.weight_norm)
        self.coupling = AffineCoupling(channels, net)


class WaveGlow(nn.Module):
    """The WaveGlow flow (module docstring): ``loss(audio, mel)``, ``forward`` (audio ->
    latents, log-determinant), ``inverse`` and ``infer`` (mel -> audio)."""

    def __init__(self, config: WaveGlowConfig):
        super().__init__()
        check_config_size(config, "waveglow")
        self.config = config
        self.upsample = (nn.ConvTranspose1d(config.n_mels, config.n_mels,
                                            config.upsample_kernel, stride=config.hop_length)
                         if config.upsample == "transposed" else None)
        # The rotations' seed follows torch's global RNG, as every other init does.
        generator = torch.Generator().manual_seed(int(torch.randint(0, 2 ** 31, ()).item()))
        self.flows = nn.ModuleList(FlowStep(c, config, generator) for c in config.flow_channels())

    # ------------------------------------------------------------------ conditioning
    def conditioning(self, mel: torch.Tensor) -> torch.Tensor:
        """``mel`` ``[B, M, F]`` -> the couplings' conditioning ``[B, M g, F hop / g]``."""
        config = self.config
        if mel is None or mel.ndim != 3 or mel.shape[1] != config.n_mels or mel.shape[-1] < 1:
            got = None if mel is None else list(mel.shape)
            raise UsageError(f"WaveGlow takes a mel [B, {config.n_mels}, frames], got {got}")
        mel = apply_input_level(mel, config.local_offset, config.local_scale)
        if self.upsample is None:
            up = mel.float().repeat_interleave(config.hop_length, dim=-1)
        else:
            up = self.upsample(mel.float())[..., :mel.shape[-1] * config.hop_length]
        return squeeze_frames(up, config.n_group)

    def _check_pair(self, audio: torch.Tensor, mel: torch.Tensor) -> None:
        hop = self.config.hop_length
        if audio.ndim != 3 or audio.shape[1] != 1 or mel is None or mel.ndim != 3 \
                or audio.shape[0] != mel.shape[0] or audio.shape[-1] != mel.shape[-1] * hop:
            raise UsageError(f"WaveGlow takes audio [B, 1, frames * {hop}] and mel "
                             f"[B, {self.config.n_mels}, frames], got {list(audio.shape)} and "
                             f"{None if mel is None else list(mel.shape)}")

    # ------------------------------------------------------------------ the map
    def forward(self, audio: torch.Tensor, mel: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``audio`` ``[B, 1, T]``, ``mel`` ``[B, M, T / hop]`` -> (latents ``z`` ``[B, g, T / g]``,
        ``log_det`` ``[B]``: log |det d z / d audio| in nats)."""
        self._check_pair(audio, mel)
        config = self.config
        cond = self.conditioning(mel)
        x = squeeze(audio.float() * config.signal_scale, config.n_group)
        log_det = torch.full((audio.shape[0],), audio.shape[-1] * math.log(config.signal_scale),
                             device=audio.device)
        exits = []
        for k, step in enumerate(self.flows):
            if config.early_exit(k):
                exits.append(x[:, :config.n_early_size])
                x = x[:, config.n_early_size:]
            x, det = step.invertible(x)
            log_det = log_det + det
            x, det = step.coupling(x, cond)
            log_det = log_det + det
        return torch.cat(exits + [x], dim=1), log_det

    def inverse(self, z: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        """Latents ``z`` ``[B, g, F hop / g]`` and ``mel`` ``[B, M, F]`` -> audio
        ``[B, 1, F hop]`` (the exact inverse of :meth:`forward`)."""
        config = self.config
        cond = self.conditioning(mel)
        if z.ndim != 3 or z.shape[0] != mel.shape[0] or z.shape[1] != config.n_group \
                or z.shape[-1] != cond.shape[-1]:
            raise UsageError(f"WaveGlow latents must be [{mel.shape[0]}, {config.n_group}, "
                             f"{cond.shape[-1]}] for this mel, got {list(z.shape)}")
        early = config.n_early_size
        x = z[:, config.n_group - config.remaining_channels:].float()
        for k in reversed(range(config.n_flows)):
            step = self.flows[k]
            x = step.coupling.inverse(x, cond)
            x = step.invertible.inverse(x)
            if config.early_exit(k):
                j = k // config.n_early_every - 1
                x = torch.cat([z[:, j * early:(j + 1) * early].float(), x], dim=1)
        return unsqueeze(x) / config.signal_scale

    # ------------------------------------------------------------------ protocol
    def loss(self, wave: torch.Tensor, local: torch.Tensor | None = None,
             global_cond: torch.Tensor | None = None) -> torch.Tensor:
        """Negative log-likelihood of ``wave`` ``[B, 1, T]`` given the mel ``local``, in nats
        per sample (the density of the waveform in [-1, 1] units; a scalar)."""
        if global_cond is not None:
            raise UsageError("WaveGlow has no global conditioning")
        z, log_det = self(wave, local)
        nll = gaussian_nll(z, self.config.sigma) - log_det
        return (nll / wave.shape[-1]).mean()

    def latent_shape(self, mel: torch.Tensor) -> tuple[int, int, int]:
        """The latents' shape ``(B, g, F hop / g)`` for ``mel`` ``[B, M, F]``."""
        return (mel.shape[0], self.config.n_group,
                mel.shape[-1] * self.config.hop_length // self.config.n_group)

    def infer(self, mel: torch.Tensor, sigma: float | None = None,
              noise: torch.Tensor | None = None, dtype: torch.dtype | None = None
              ) -> torch.Tensor:
        """``mel`` ``[B, M, F]`` -> audio ``[B, 1, F hop]`` (not clamped).

        Args:
            sigma: std of the latents (None: ``config.infer_sigma``).
            noise: standard normals ``[B, 1, F hop]`` (one per sample, e.g. positional noise
                for chunked rendering) or None to draw them from torch's generator.
            dtype: None / float32, or bfloat16 / float16 for the upsampler and the coupling
                nets under autocast (module docstring).
        """
        sigma = self.config.infer_sigma if sigma is None else float(sigma)
        if not (math.isfinite(sigma) and sigma >= 0):
            raise UsageError(f"sigma must be a finite number >= 0, got {sigma}")
        if dtype not in (None, torch.float32) + HALF_DTYPES:
            raise UsageError(f"WaveGlow infers in float32, bfloat16 or float16, not {dtype}")
        shape = self.latent_shape(mel)
        if noise is None:
            z = torch.randn(shape, device=mel.device)
        else:
            if tuple(noise.shape) != (shape[0], 1, shape[1] * shape[2]):
                raise UsageError(f"noise must be [{shape[0]}, 1, {shape[1] * shape[2]}], "
                                 f"got {list(noise.shape)}")
            z = squeeze(noise.to(mel.device, torch.float32), self.config.n_group)
        half = dtype in HALF_DTYPES
        with torch.autocast(mel.device.type, dtype=dtype if half else torch.bfloat16,
                            enabled=half):
            return self.inverse(sigma * z, mel.float())


__all__ = ["CouplingWaveNet", "FlowStep", "HALF_DTYPES", "UPSAMPLERS", "WAVEGLOW_PRESETS", "WaveGlow",
           "WaveGlowConfig"]
