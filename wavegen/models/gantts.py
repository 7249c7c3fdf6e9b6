"""GAN-TTS random window discriminators (Bińkowski et al. 2020).

An ensemble of small critics, each looking at one random window of the waveform: at 24 kHz
window sizes 240, 480, 960, 1920 and 3600 samples (10 to 150 ms), one *conditional* critic
(which also sees the mel frames of its window) and one *unconditional* critic per size, ten
in all. Random windows act as data augmentation and let the critics run on short crops.

Window sizes at other rates (:func:`gantts_window_sizes`). The 24 kHz sizes are kept in
milliseconds, scaled to ``sample_rate``, and rounded to a whole number of hops (at least one,
and each at least one hop longer than the previous), so that a conditional window covers
whole mel frames and starts on a frame boundary. At 22.05 kHz with hop 256 the sizes are
256, 512, 768, 1792 and 3328 samples; at 24 kHz with GAN-TTS's hop of 120 they are the
paper's.

One critic (:class:`WindowCritic`):

1. *Reshape to a common length.* A window of ``w`` samples becomes ``k = w / L`` channels of
   ``L`` steps, ``L`` the greatest common divisor of the window sizes (240 in the paper), by
   moving ``k`` consecutive samples into channels (space-to-depth, as TensorFlow's reshape of
   ``[w, 1]`` into ``[L, k]`` does). Every critic then works on the same length and costs
   about the same, and step ``t`` still covers samples ``[t k, (t + 1) k)`` of the window.
2. *DBlocks* (residual downsampling blocks): ``avgpool(f) -> ReLU -> conv3 -> ReLU -> conv3
   (dilation 2)`` plus a shortcut ``1x1 conv -> avgpool(f)``. A stem block with ``f = 1``,
   one block per downsampling factor, then two more with ``f = 1``. Unconditional critics
   downsample by the largest divisor of ``L`` up to 15 (the paper's 5 x 3 for ``L = 240``).
3. *Conditioning* (conditional critics): the block with the last downsampling factor is a
   CondDBlock, which adds a 1x1 projection of the window's mel frames after its first conv.
   The downsampling before and in it is chosen so that a step covers about one hop (exactly
   one when ``hop / k`` divides ``L``, as in the paper: 5 x 3 x 2 x 2 x 2 for the 240-sample
   window at hop 120); the projected frames are brought to that resolution by averaging each
   step's samples, i.e. each frame is repeated over its ``hop`` samples and pooled.
4. Global average pooling over time and a linear layer give the score ``[B, 1]``; the
   outputs of all blocks are the feature maps.

Windows are drawn per example, once per call, from torch's default generator or a
``generator`` argument, and the same windows are used for ``real`` and ``fake`` (they go
through the critics as one batch, :func:`wavegen.nn.adversarial.run_real_fake`, and must
have the same shape), so the two sets of feature maps are comparable. A window always lies
inside the signal; a conditional one starts at a multiple of the hop.

Normalisation: spectral normalisation (Miyato et al. 2018) on every layer by default, as in
BigGAN-style discriminators; ``norm="weight"`` or ``"none"`` for the alternatives.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from wavegen.errors import ConfigError, UsageError
from wavegen.models.size import SizeEstimate, check_arguments_size, conv, layer
from wavegen.nn.adversarial import DiscriminatorOutput, check_real_fake, run_real_fake
from wavegen.nn.weight_norm import weight_norm

#: GAN-TTS window sizes in samples at :data:`GANTTS_SAMPLE_RATE`.
GANTTS_WINDOWS = (240, 480, 960, 1920, 3600)
GANTTS_SAMPLE_RATE = 24000
#: Total downsampling of an unconditional critic is at most this (the paper's 5 x 3).
UNCONDITIONAL_DOWNSAMPLING = 15
NORMS = ("spectral", "weight", "none")


def gantts_window_sizes(sample_rate: int, hop_length: int,
                        sizes: Sequence[int] = GANTTS_WINDOWS,
                        reference_rate: int = GANTTS_SAMPLE_RATE) -> tuple[int, ...]:
    """GAN-TTS window sizes (given at ``reference_rate``) scaled to ``sample_rate`` and rounded
    to whole hops: at least one hop each, strictly increasing."""
    if sample_rate < 1 or hop_length < 1:
        raise ConfigError(f"sample_rate and hop_length must be >= 1, got {sample_rate}, {hop_length}")
    out: list[int] = []
    for size in sizes:
        hops = max(1, math.floor(size * sample_rate / reference_rate / hop_length + 0.5))
        if out and hops * hop_length <= out[-1]:
            hops = out[-1] // hop_length + 1
        out.append(hops * hop_length)
    return tuple(out)


def _largest_divisor_at_most(n: int, limit: float) -> int:
    """The largest divisor of ``n`` that is ``<= max(1, limit)``, in O(min(limit, sqrt n))."""
    limit = max(1, math.floor(limit))
    if n <= limit:
        return n
    best, d = 1, 1
    while d * d <= n and d <= limit:
        if n % d == 0:
            best = max(best, d)
            if n // d <= limit:
                return n // d  # the largest cofactor in range; later ones are smaller
        d += 1
    return best


def _factors(n: int) -> list[int]:
    """``n`` as downsampling factors, largest first: its primes, with the smallest merged
    (while the product stays <= 8) until there are at most four."""
    primes: list[int] = []
    p = 2
    while n > 1:
        while n % p == 0:
            primes.append(p)
            n //= p
        p += 1
    primes.sort()
    while len(primes) > 4 and primes[0] * primes[1] <= 8:
        primes = sorted([primes[0] * primes[1]] + primes[2:])
    return sorted(primes, reverse=True)


def _normed(module: nn.Module, norm: str) -> nn.Module:
    if norm == "spectral":
        return spectral_norm(module)
    if norm == "weight":
        return weight_norm(module)
    return module


class DBlock(nn.Module):
    """Residual downsampling block ``[B, C_in, L] -> [B, C_out, L / factor]``; a CondDBlock
    when ``cond_channels > 0`` (conditioning ``[B, cond_channels, L / factor]`` is added after
    the first conv)."""

    def __init__(self, in_channels: int, out_channels: int, factor: int, norm: str,
                 cond_channels: int = 0):
        super().__init__()
        self.factor = factor
        self.conv1 = _normed(nn.Conv1d(in_channels, out_channels, 3, padding=1), norm)
        self.conv2 = _normed(nn.Conv1d(out_channels, out_channels, 3, padding=2, dilation=2), norm)
        # 1x1 conv and average pooling commute; pooling first is cheaper.
        self.shortcut = _normed(nn.Conv1d(in_channels, out_channels, 1), norm)
        self.cond = (_normed(nn.Conv1d(cond_channels, out_channels, 1), norm)
                     if cond_channels else None)

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.factor == 1 else F.avg_pool1d(x, self.factor)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        x = self._pool(x)
        h = self.conv1(F.relu(x))
        if self.cond is not None:
            h = h + cond
        h = self.conv2(F.relu(h))
        return h + self.shortcut(x)


class WindowSpec(NamedTuple):
    """Layout of one critic: window size (samples), conditional or not, channels after the
    reshape (``k``), downsampling factors, and samples per step where the conditioning enters
    (conditional critics; 0 otherwise)."""

    window: int
    conditional: bool
    reshape: int
    factors: tuple[int, ...]
    cond_step: int


def _resample_frames(frames: torch.Tensor, hop: int, step: int) -> torch.Tensor:
    """Frame-rate ``[B, C, n]`` (a frame = ``hop`` samples) averaged over steps of ``step``
    samples: ``[B, C, n * hop / step]``."""
    if step == hop:
        return frames
    g = math.gcd(hop, step)
    if hop // g > 1:
        frames = frames.repeat_interleave(hop // g, dim=-1)
    return frames if step // g == 1 else F.avg_pool1d(frames, step // g)


def _block_widths(spec: WindowSpec, channels: Sequence[int],
                  num_mels: int) -> list[tuple[int, int, int, int]]:
    """``(in, out, factor, cond_channels)`` of each DBlock of a critic with layout ``spec``."""
    widths = list(channels)
    blocks = [(spec.reshape, widths[0], 1, 0)]
    width = widths[0]
    for i, factor in enumerate(spec.factors):
        out = widths[min(i + 1, len(widths) - 1)]
        last = i == len(spec.factors) - 1
        blocks.append((width, out, factor, num_mels if spec.conditional and last else 0))
        width = out
    if spec.conditional and not spec.factors:
        blocks.append((width, width, 1, num_mels))
    return blocks + [(width, width, 1, 0), (width, width, 1, 0)]


def _critic_size(spec: WindowSpec, channels: Sequence[int], num_mels: int,
                 norm: str) -> SizeEstimate:
    """Parameters and weight layers of one :class:`WindowCritic`."""
    wn = norm == "weight"  # spectral norm keeps its vectors as buffers, not parameters
    layout = _block_widths(spec, channels, num_mels)
    size = SizeEstimate()
    for cin, out, _, cond in layout:
        size += (conv(cin, out, 3, weight_norm=wn) + conv(out, out, 3, weight_norm=wn)
                 + conv(cin, out, 1, weight_norm=wn))
        if cond:
            size += conv(cond, out, 1, weight_norm=wn)
    return size + layer(layout[-1][1], 1, 1 if wn else 0)  # the final Linear(width, 1)


def window_specs(hop_length: int, window_sizes: Sequence[int], conditional: bool = True,
                 unconditional: bool = True) -> tuple[int, list[WindowSpec]]:
    """The common length ``L`` (gcd of the sizes) and the layout of every critic, in the
    order of :attr:`RandomWindowDiscriminators.specs`."""
    base_length = math.gcd(*window_sizes)
    specs = []
    for w in window_sizes:
        k = w // base_length
        if conditional:
            down = _largest_divisor_at_most(base_length, hop_length / k)
            specs.append(WindowSpec(w, True, k, tuple(_factors(down)), k * down))
        if unconditional:
            down = _largest_divisor_at_most(base_length, UNCONDITIONAL_DOWNSAMPLING)
            specs.append(WindowSpec(w, False, k, tuple(_factors(down)), 0))
    return base_length, specs


class WindowCritic(nn.Module):
    """One random-window critic on a window already cut out: ``[B, 1, w]`` (+ mel frames
    ``[B, n_mels, w / hop]`` if conditional) -> (score ``[B, 1]``, block outputs)."""

    def __init__(self, spec: WindowSpec, base_length: int, channels: Sequence[int],
                 num_mels: int, hop_length: int, norm: str):
        super().__init__()
        self.spec = spec
        self.base_length = base_length
        self.hop_length = hop_length
        layout = _block_widths(spec, channels, num_mels)
        self.blocks = nn.ModuleList(DBlock(cin, out, factor, norm, cond_channels=cond)
                                    for cin, out, factor, cond in layout)
        self.out = _normed(nn.Linear(layout[-1][1], 1), norm)

    def forward(self, window: torch.Tensor,
                mel: torch.Tensor | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        batch = window.shape[0]
        k = self.spec.reshape
        # Space-to-depth: step t holds samples t k ... t k + k - 1.
        x = window.reshape(batch, self.base_length, k).transpose(1, 2)
        features = []
        for block in self.blocks:
            if block.cond is not None:
                cond = _resample_frames(block.cond(mel), self.hop_length, self.spec.cond_step)
                x = block(x, cond)
            else:
                x = block(x)
            features.append(x)
        return self.out(x.mean(dim=-1)), features


class RandomWindowDiscriminators(nn.Module):
    """GAN-TTS's ensemble of random-window critics, following :mod:`wavegen.nn.adversarial`.

    ``disc(real, fake, mel=None)`` returns, for each input given, one
    :class:`DiscriminatorOutput` per critic in the order of :attr:`specs` (per window size:
    the conditional critic, then the unconditional one). ``mel`` ``[B, num_mels, frames]``
    (``frames * hop`` within one hop of the audio length) is required when there are
    conditional critics. Keyword arguments ``offsets`` (from :meth:`sample_offsets`) and
    ``generator`` fix or seed the windows; the offsets used are kept in :attr:`last_offsets`.

    Args:
        num_mels, hop_length, sample_rate: the conditioning front-end and the audio rate.
        window_sizes: sizes in samples, multiples of ``hop_length``; default
            :func:`gantts_window_sizes` ``(sample_rate, hop_length)``.
        conditional, unconditional: which kinds of critic to build for each size.
        channels: widths of the stem block, then of each downsampling block (the last width
            repeats); GAN-TTS uses (64, 128, 256). Small values make test-sized critics.
        norm: ``"spectral"``, ``"weight"`` or ``"none"``.
    """

    def __init__(self, num_mels: int, hop_length: int, sample_rate: int,
                 window_sizes: Sequence[int] | None = None, conditional: bool = True,
                 unconditional: bool = True, channels: Sequence[int] = (64, 128, 256),
                 norm: str = "spectral"):
        super().__init__()
        if num_mels < 1 or hop_length < 1 or sample_rate < 1:
            raise ConfigError("random window discriminators: num_mels, hop_length and "
                              "sample_rate must be >= 1")
        if not (conditional or unconditional):
            raise ConfigError("random window discriminators: need conditional or "
                              "unconditional critics (both are off)")
        if norm not in NORMS:
            raise ConfigError(f"random window discriminators: norm must be one of {NORMS}, "
                              f"got {norm!r}")
        channels = tuple(int(c) for c in channels)
        if not channels or min(channels) < 1:
            raise ConfigError(f"random window discriminators: channels must be positive, "
                              f"got {list(channels)}")
        if window_sizes is None:
            window_sizes = gantts_window_sizes(sample_rate, hop_length)
        sizes = tuple(int(w) for w in window_sizes)
        if not sizes or any(w < hop_length or w % hop_length for w in sizes):
            raise ConfigError(f"random window discriminators: window sizes {list(sizes)} must be "
                              f"positive multiples of the hop length ({hop_length})")
        check_arguments_size(RandomWindowDiscriminators, {
            "num_mels": num_mels, "hop_length": hop_length, "sample_rate": sample_rate,
            "window_sizes": sizes, "conditional": conditional, "unconditional": unconditional,
            "channels": channels, "norm": norm}, "RandomWindowDiscriminators")
        self.num_mels = num_mels
        self.hop_length = hop_length
        self.sample_rate = sample_rate
        self.window_sizes = sizes
        self.base_length, specs = window_specs(hop_length, sizes, conditional, unconditional)
        self.specs: list[WindowSpec] = specs
        self.critics = nn.ModuleList(WindowCritic(s, self.base_length, channels, num_mels,
                                                  hop_length, norm) for s in specs)
        self.last_offsets: list[torch.Tensor] | None = None

    @staticmethod
    def estimate_size(num_mels: int, hop_length: int, sample_rate: int,
                      window_sizes: Sequence[int] | None = None, conditional: bool = True,
                      unconditional: bool = True, channels: Sequence[int] = (64, 128, 256),
                      norm: str = "spectral") -> SizeEstimate:
        """Parameters and weight layers of ``RandomWindowDiscriminators(...)`` (valid
        arguments), from the window layouts alone."""
        if window_sizes is None:
            window_sizes = gantts_window_sizes(sample_rate, hop_length)
        _, specs = window_specs(hop_length, window_sizes, conditional, unconditional)
        return sum((_critic_size(spec, channels, num_mels, norm) for spec in specs),
                   SizeEstimate())

    @property
    def has_conditional(self) -> bool:
        return any(s.conditional for s in self.specs)

    def sample_offsets(self, batch: int, num_samples: int, num_frames: int | None = None,
                       generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Random window starts, one int64 tensor ``[batch]`` per critic (on the generator's
        device, else the CPU). A window always fits in ``num_samples``; a conditional one
        starts on a frame boundary and fits in ``min(num_frames, num_samples // hop)`` frames."""
        frames = num_samples // self.hop_length
        if num_frames is not None:
            frames = min(frames, num_frames)
        device = generator.device if generator is not None else torch.device("cpu")
        offsets = []
        for spec in self.specs:
            if spec.conditional:
                n = spec.window // self.hop_length
                if frames < n:
                    raise UsageError(f"a {spec.window}-sample conditional window needs {n} mel "
                                     f"frames, the input has {frames}")
                start = torch.randint(0, frames - n + 1, (batch,), generator=generator,
                                      device=device) * self.hop_length
            else:
                if num_samples < spec.window:
                    raise UsageError(f"a {spec.window}-sample window does not fit in "
                                     f"{num_samples} samples")
                start = torch.randint(0, num_samples - spec.window + 1, (batch,),
                                      generator=generator, device=device)
            offsets.append(start)
        return offsets

    def _check_offsets(self, offsets: Sequence[torch.Tensor], batch: int, num_samples: int,
                       num_frames: int | None) -> None:
        if len(offsets) != len(self.specs):
            raise UsageError(f"need {len(self.specs)} offset tensors (one per critic), "
                             f"got {len(offsets)}")
        for spec, off in zip(self.specs, offsets):
            if off.shape != (batch,):
                raise UsageError(f"window offsets must have shape [{batch}], got {list(off.shape)}")
            end = num_samples if not spec.conditional or num_frames is None \
                else min(num_samples, num_frames * self.hop_length)
            if bool((off < 0).any()) or bool((off + spec.window > end).any()):
                raise UsageError(f"a {spec.window}-sample window offset lies outside the "
                                 f"{end} samples available")
            if spec.conditional and bool((off % self.hop_length != 0).any()):
                raise UsageError(f"conditional window offsets must be multiples of the hop "
                                 f"({self.hop_length})")

    def forward(self, real: torch.Tensor | None, fake: torch.Tensor | None,
                mel: torch.Tensor | None = None, *, offsets: Sequence[torch.Tensor] | None = None,
                generator: torch.Generator | None = None,
                ) -> tuple[list[DiscriminatorOutput], list[DiscriminatorOutput]]:
        batch, _, num_samples = check_real_fake(real, fake)
        num_frames = None
        if self.has_conditional:
            if mel is None:
                raise UsageError("the conditional random window discriminators need the mel "
                                 "(got mel=None)")
            if mel.dim() != 3 or mel.shape[0] != batch or mel.shape[1] != self.num_mels:
                raise UsageError(f"mel must be [{batch}, {self.num_mels}, frames], got "
                                 f"{list(mel.shape)}")
            num_frames = mel.shape[-1]
            if abs(num_frames * self.hop_length - num_samples) > self.hop_length:
                raise UsageError(f"{num_frames} mel frames x hop {self.hop_length} do not match "
                                 f"{num_samples} audio samples")
        if offsets is None:
            offsets = self.sample_offsets(batch, num_samples, num_frames, generator)
        else:
            self._check_offsets(offsets, batch, num_samples, num_frames)
        self.last_offsets = list(offsets)
        use_mel = mel if num_frames is not None else None
        return run_real_fake(lambda x: self._run_critics(x, offsets, use_mel), real, fake)

    def _run_critics(self, x: torch.Tensor, offsets: Sequence[torch.Tensor],
                     mel: torch.Tensor | None) -> list[DiscriminatorOutput]:
        """Every critic on its window of ``x`` ``[copies * B, 1, T]`` (real and fake stacked:
        the ``[B]`` offsets and ``mel`` ``[B, n_mels, frames]`` are repeated per copy)."""
        copies = x.shape[0] // offsets[0].shape[0]
        device = x.device
        mel_all = None if mel is None else (mel.repeat(copies, 1, 1) if copies > 1 else mel)
        outputs = []
        for spec, critic, off in zip(self.specs, self.critics, offsets):
            off = off.to(device).repeat(copies)
            index = off[:, None] + torch.arange(spec.window, device=device)
            window = x[:, 0].gather(1, index)
            cond = None
            if spec.conditional:
                n = spec.window // self.hop_length
                frame_index = off[:, None] // self.hop_length + torch.arange(n, device=device)
                cond = mel_all.gather(2, frame_index[:, None, :].expand(-1, self.num_mels, -1))
            score, features = critic(window, cond)
            outputs.append(DiscriminatorOutput(score, features))
        return outputs


__all__ = [
    "GANTTS_SAMPLE_RATE",
    "GANTTS_WINDOWS",
    "DBlock",
    "RandomWindowDiscriminators",
    "WindowCritic",
    "WindowSpec",
    "gantts_window_sizes",
    "window_specs",
]
