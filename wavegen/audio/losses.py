"""Spectral training losses for waveform generators (GAN vocoders, VQ-VAE decoders).

* :class:`STFTLoss`: spectral convergence and log-magnitude L1 at one STFT resolution
  (Yamamoto et al. 2020, Parallel WaveGAN, eqs. 2-4).
* :class:`MultiResolutionSTFTLoss`: the same terms averaged over several resolutions
  (Parallel WaveGAN's three by default).
* :class:`MelL1Loss`: L1 distance between log-mel spectrograms (HiFi-GAN's mel loss; the
  weight of 45 used there is left to the caller).

Conventions shared by all of them:

* ``forward(estimate, target)`` in that order, like ``torch.nn.L1Loss``: the generator output
  first, the ground truth second. Only the spectral-convergence term is asymmetric (it is
  normalised by the target's energy).
* Waveforms are ``[batch, 1, time]`` or ``[batch, time]``; both arguments must have the same
  shape, otherwise :class:`~wavegen.errors.UsageError`.
* Everything is computed in float32 with autocast switched off, whatever the surrounding
  ``torch.autocast`` region says: a bf16/fp16 STFT loses the low-energy bins that the log
  terms are most sensitive to. The result is a float32 scalar; gradients flow back to
  inputs of any floating dtype.
* Silence is safe: all-zero audio on either or both sides gives finite values and finite,
  NaN-free gradients, and identical inputs give exactly zero.
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple, Sequence

import torch
from torch import nn

from wavegen.audio.features import FeatureConfig
from wavegen.audio.spectral import STFT, LogMelSpectrogram
from wavegen.errors import UsageError

#: Parallel WaveGAN's default ``(fft_size, hop, win)`` triples.
PWG_RESOLUTIONS: tuple[tuple[int, int, int], ...] = ((1024, 120, 600), (2048, 240, 1200),
                                                     (512, 50, 240))

#: Floor on ``|X|^2`` before the square root, as in Parallel WaveGAN: it bounds log|X| from
#: below (silence gives log(sqrt(1e-7)) ~ -8.06 instead of -inf) and keeps d sqrt finite.
POWER_FLOOR = 1e-7


class SpectralLoss(NamedTuple):
    """Result of the STFT losses (and, per item, of the STFT distance metric).

    ``total`` is the (weighted) sum of the two parts; the parts are unweighted. For the loss
    modules each field is a float32 scalar; for metrics each is a ``[batch]`` tensor.
    Being a NamedTuple it unpacks: ``total, sc, mag = loss(estimate, target)``.
    """

    total: torch.Tensor
    spectral_convergence: torch.Tensor
    log_magnitude: torch.Tensor


def check_waveform_pair(estimate: torch.Tensor, target: torch.Tensor,
                        allow_unbatched: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate two mono waveforms and return them as float32 ``[batch, time]``.

    Accepts ``[batch, 1, time]`` or ``[batch, time]`` (and ``[time]``, seen as a batch of one,
    when ``allow_unbatched``). Raises UsageError for unequal shapes or several channels.
    """
    if not (isinstance(estimate, torch.Tensor) and isinstance(target, torch.Tensor)):
        raise UsageError("expected two waveform tensors")
    if estimate.shape != target.shape:
        raise UsageError(f"waveforms must have equal shapes, got {tuple(estimate.shape)} "
                         f"and {tuple(target.shape)}")
    if not (estimate.is_floating_point() and target.is_floating_point()):
        raise UsageError(f"waveforms must be floating point, got {estimate.dtype} "
                         f"and {target.dtype}")
    shape = tuple(estimate.shape)
    if len(shape) == 3 and shape[1] == 1:
        estimate, target = estimate[:, 0], target[:, 0]
    elif len(shape) == 1 and allow_unbatched:
        estimate, target = estimate[None], target[None]
    elif len(shape) != 2:
        allowed = "[batch, 1, time], [batch, time] or [time]" if allow_unbatched \
            else "[batch, 1, time] or [batch, time]"
        raise UsageError(f"expected mono waveforms shaped {allowed}, got {shape}")
    return estimate.float(), target.float()


def autocast_disabled(*tensors: torch.Tensor) -> contextlib.ExitStack:
    """A context that switches autocast off on the CPU and on every device of ``tensors``."""
    stack = contextlib.ExitStack()
    # torch < 2.4 has no is_autocast_available; autocast there knows only cpu and cuda.
    available = getattr(torch.amp, "is_autocast_available", lambda d: d in ("cpu", "cuda"))
    for device_type in sorted({"cpu", *(t.device.type for t in tensors)}):
        if available(device_type):
            stack.enter_context(torch.autocast(device_type=device_type, enabled=False))
    return stack


def safe_sqrt(x: torch.Tensor) -> torch.Tensor:
    """``sqrt(x)`` for ``x >= 0`` whose gradient at exactly 0 is 0 rather than inf/NaN."""
    positive = x > 0
    # Both branches of torch.where get gradients; the dummy 1 keeps the unused one finite.
    return torch.where(positive, torch.where(positive, x, torch.ones_like(x)).sqrt(),
                       torch.zeros_like(x))


def stft_loss_config(fft_size: int, hop: int, win: int, window: str = "hann") -> FeatureConfig:
    """FeatureConfig for a loss STFT: centred frames with reflect padding (torch.stft's and
    Parallel WaveGAN's defaults). The mel fields are unused."""
    return FeatureConfig(n_fft=fft_size, hop_length=hop, win_length=win, window=window,
                         padding="center", pad_mode="reflect", fmax=None,
                         name=f"stft-loss-{fft_size}-{hop}-{win}")


def floored_magnitude(stft: STFT, wave: torch.Tensor) -> torch.Tensor:
    """``sqrt(max(|X|^2, POWER_FLOOR))``: ``[batch, time]`` -> ``[batch, freq, frames]``."""
    power = torch.view_as_real(stft(wave)).pow(2).sum(-1)
    return power.clamp_min(POWER_FLOOR).sqrt()


def spectral_terms(est_mag: torch.Tensor, ref_mag: torch.Tensor,
                   per_item: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Spectral convergence and log-magnitude L1 of ``[batch, freq, frames]`` magnitudes.

    With ``per_item`` each returns ``[batch]``; otherwise scalars where, as in Parallel
    WaveGAN, the Frobenius norms run over the whole batch (louder items weigh more).
    """
    dims = (-2, -1) if per_item else tuple(range(est_mag.dim()))
    # The numerator is exactly 0 for identical inputs, where a plain norm's gradient is 0/0.
    numerator = safe_sqrt((est_mag - ref_mag).pow(2).sum(dims))
    # The floor makes every bin of ref_mag >= sqrt(POWER_FLOOR), so this is never 0.
    denominator = ref_mag.pow(2).sum(dims).sqrt()
    sc = numerator / denominator
    log_mag = (est_mag.log() - ref_mag.log()).abs().mean(dims)
    return sc, log_mag


class STFTLoss(nn.Module):
    """Spectral convergence + log-magnitude L1 at one resolution (Yamamoto et al. 2020).

    With ``S = sqrt(max(|STFT(target)|^2, 1e-7))`` and ``Ŝ`` the same for the estimate:

    * spectral convergence ``||S - Ŝ||_F / ||S||_F`` (norms over the whole batch),
    * log-magnitude ``mean |log S - log Ŝ|`` over batch, bins and frames.

    ``forward(estimate, target)``: ``[batch, 1, time]`` or ``[batch, time]`` ->
    :class:`SpectralLoss` of float32 scalars with ``total = sc + log_mag``.
    """

    def __init__(self, fft_size: int, hop: int, win: int, window: str = "hann"):
        super().__init__()
        self.config = stft_loss_config(fft_size, hop, win, window)
        self.stft = STFT(self.config)

    def magnitudes(self, estimate: torch.Tensor,
                   target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Floored magnitudes ``[batch, freq, frames]`` of ``[batch, time]`` float32 waves."""
        return floored_magnitude(self.stft, estimate), floored_magnitude(self.stft, target)

    def forward(self, estimate: torch.Tensor, target: torch.Tensor) -> SpectralLoss:
        with autocast_disabled(estimate, target):
            estimate, target = check_waveform_pair(estimate, target)
            sc, log_mag = spectral_terms(*self.magnitudes(estimate, target), per_item=False)
            return SpectralLoss(sc + log_mag, sc, log_mag)

    def extra_repr(self) -> str:
        c = self.config
        return f"fft_size={c.n_fft}, hop={c.hop_length}, win={c.win_length}, window={c.window!r}"


class MultiResolutionSTFTLoss(nn.Module):
    """:class:`STFTLoss` averaged over several ``(fft_size, hop, win)`` resolutions.

    ``forward(estimate, target)`` -> :class:`SpectralLoss` (float32 scalars) where
    ``spectral_convergence`` and ``log_magnitude`` are the unweighted means over resolutions
    and ``total = sc_weight * spectral_convergence + mag_weight * log_magnitude``.
    Signals must be longer than ``fft_size // 2`` samples for every resolution (reflect
    padding), otherwise UsageError.
    """

    def __init__(self, resolutions: Sequence[Sequence[int]] = PWG_RESOLUTIONS,
                 sc_weight: float = 1.0, mag_weight: float = 1.0, window: str = "hann"):
        super().__init__()
        resolutions = [tuple(r) for r in resolutions]
        if not resolutions or any(len(r) != 3 for r in resolutions):
            raise UsageError("resolutions must be a non-empty list of (fft_size, hop, win)")
        self.resolutions = resolutions
        self.sc_weight = float(sc_weight)
        self.mag_weight = float(mag_weight)
        self.losses = nn.ModuleList(STFTLoss(*r, window=window) for r in resolutions)

    def forward(self, estimate: torch.Tensor, target: torch.Tensor) -> SpectralLoss:
        with autocast_disabled(estimate, target):
            estimate, target = check_waveform_pair(estimate, target)
            sc = log_mag = 0.0
            for loss in self.losses:
                _, sc_r, mag_r = loss(estimate, target)
                sc = sc + sc_r
                log_mag = log_mag + mag_r
            sc = sc / len(self.losses)
            log_mag = log_mag / len(self.losses)
            return SpectralLoss(self.sc_weight * sc + self.mag_weight * log_mag, sc, log_mag)

    def extra_repr(self) -> str:
        return f"sc_weight={self.sc_weight}, mag_weight={self.mag_weight}"


class MelL1Loss(nn.Module):
    """Mean absolute difference of log-mel spectrograms (HiFi-GAN's mel loss).

    The features are exactly :class:`~wavegen.audio.spectral.LogMelSpectrogram` of ``config``;
    its magnitude has a zero (not NaN) gradient on digital silence, whatever the preset.

    ``forward(estimate, target)``: ``[batch, 1, time]`` or ``[batch, time]`` -> float32 scalar.
    """

    def __init__(self, config: FeatureConfig):
        super().__init__()
        self.config = config
        self.logmel = LogMelSpectrogram(config)

    def features(self, wave: torch.Tensor) -> torch.Tensor:
        """Log-mel ``[batch, n_mels, frames]`` of a float32 ``[batch, time]`` waveform."""
        # Both sides through the same (differentiable) path, so identical inputs give 0
        # exactly even when only the estimate needs gradients.
        return self.logmel.reference(wave)

    def forward(self, estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with autocast_disabled(estimate, target):
            estimate, target = check_waveform_pair(estimate, target)
            return (self.features(estimate) - self.features(target)).abs().mean()
