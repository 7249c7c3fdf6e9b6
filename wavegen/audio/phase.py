"""Phase unwrapping and instantaneous frequency (GANSynth-style), exactly invertible.

GANSynth (Engel et al. 2019) represents an STFT by its magnitude and its *instantaneous
frequency* (IF): the frame-to-frame advance of the unwrapped phase of each bin, divided by
pi so that it lies in [-1, 1]. A stationary partial then has a constant IF instead of a
phase that wraps around every few frames, which is far easier for a network to model.

Conventions (shared by every function here):

* the time (frames) axis is ``dim`` (default the last one, as in ``[batch, freq, frames]``);
* frame 0 of an IF tensor carries the wrapped phase of frame 0 divided by pi, so that
  :func:`phase_from_if` recovers the phase itself and not only its increments;
* an IF value ``v`` means a phase advance of ``pi * v`` radians per hop.

``magnitude_and_if`` / ``waveform_from_magnitude_and_if`` form an exact pair (up to float
rounding: more than 100 dB SNR on chords, noise and clicks). The mel-scaled variant
("IF-mel") is lossy wherever the mel bands are coarser than the STFT bins (see
:func:`linear_from_mel_magnitude_and_if`).
"""

from __future__ import annotations

import functools
import math

import torch

from wavegen.audio.features import FeatureConfig
from wavegen.audio.spectral import STFT, mel_filterbank
from wavegen.errors import UsageError

__all__ = [
    "wrap_phase",
    "unwrap",
    "instantaneous_frequency",
    "phase_from_if",
    "magnitude_and_if",
    "waveform_from_magnitude_and_if",
    "mel_from_magnitude_and_if",
    "mel_magnitude_and_if",
    "linear_from_mel_magnitude_and_if",
]

_PI = math.pi
_TWO_PI = 2.0 * math.pi


def wrap_phase(phase: torch.Tensor) -> torch.Tensor:
    """Fold angles (radians, any shape) into ``[-pi, pi)``."""
    return torch.remainder(phase + _PI, _TWO_PI) - _PI


def _wrapped_steps(phase: torch.Tensor, dim: int) -> torch.Tensor:
    """``diff(unwrap(phase))`` along ``dim`` computed without forming the unwrapped phase.

    Follows numpy.unwrap's rules exactly: a step smaller than pi in magnitude is kept, any
    other step is folded into [-pi, pi), except that a positive step landing on -pi becomes
    +pi. Shape: one less than ``phase`` along ``dim``.
    """
    steps = torch.diff(phase, dim=dim)
    folded = wrap_phase(steps)
    folded = torch.where((folded == -_PI) & (steps > 0), folded + _TWO_PI, folded)
    return torch.where(steps.abs() < _PI, steps, folded)


def unwrap(phase: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Unwrap angles along ``dim`` like ``numpy.unwrap`` (period 2*pi, discont pi).

    ``phase``: any shape, real. Returns the same shape and dtype. The added multiples of
    2*pi are piecewise constant in the input, so the gradient is the identity wherever the
    unwrapping does not jump.
    """
    if phase.is_complex():
        raise UsageError("unwrap expects real angles in radians, got a complex tensor")
    if phase.dim() == 0 or phase.shape[dim] < 2:
        return phase.clone()
    with torch.no_grad():
        steps = torch.diff(phase, dim=dim)
        correction = _wrapped_steps(phase, dim) - steps
        # The corrections are summed in float64: a float32 running sum of multiples of 2*pi
        # drifts by whole ulps of a large number after a few thousand frames.
        offset = torch.cumsum(correction.double(), dim=dim).to(phase.dtype)
        zero = torch.zeros_like(phase.narrow(dim, 0, 1))
        offset = torch.cat([zero, offset], dim=dim)
    return phase + offset


def instantaneous_frequency(phase: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """IF of a phase tensor: ``diff(unwrap(phase)) / pi`` along ``dim``, in [-1, 1].

    ``phase``: any shape, radians (wrapped or not). Returns the same shape and dtype; index 0
    along ``dim`` holds ``wrap_phase(phase[0]) / pi`` so that :func:`phase_from_if` inverts
    this exactly (modulo 2*pi for frame 0).
    """
    if phase.is_complex():
        raise UsageError("instantaneous_frequency expects real angles, got a complex tensor")
    if phase.dim() == 0:
        raise UsageError("instantaneous_frequency needs a tensor with a time axis")
    first = wrap_phase(phase.narrow(dim, 0, 1))
    # Folding each step is the same as differencing numpy's unwrapped phase, but keeps the
    # precision of the input: a float32 unwrapped phase grows past 1e4 rad on long signals
    # and its differences would lose three decimal digits.
    steps = _wrapped_steps(phase, dim)
    return torch.cat([first, steps], dim=dim) / _PI


def phase_from_if(ifreq: torch.Tensor, dim: int = -1, wrap: bool = False) -> torch.Tensor:
    """Inverse of :func:`instantaneous_frequency`: ``cumsum(ifreq * pi)`` along ``dim``.

    ``ifreq``: any shape. Returns the unwrapped phase (or, with ``wrap=True``, the phase
    folded into [-pi, pi)), same shape, **float64**: the running sum grows by up to pi per
    frame and float32 would hold it to only ~1e-3 rad after ten thousand frames.
    """
    if ifreq.is_complex():
        raise UsageError("phase_from_if expects a real IF tensor, got a complex tensor")
    phase = torch.cumsum(ifreq.double() * _PI, dim=dim)
    return wrap_phase(phase) if wrap else phase


@functools.lru_cache(maxsize=32)
def stft_for(config: FeatureConfig) -> STFT:
    """A shared :class:`STFT` module for ``config`` (its window follows the input's device)."""
    return STFT(config)


def to_waveform_layout(wave: torch.Tensor, spec_ndim: int) -> torch.Tensor:
    """Give an ISTFT output ``[..., time]`` the layout the spectrogram came from.

    Mirrors spectral.py's forward rules: a ``[batch, freq, frames]`` spectrogram comes from a
    ``[batch, 1, time]`` waveform, so that case gets its channel axis back; every other rank
    maps ``[..., freq, frames]`` to ``[..., time]``.
    """
    return wave.unsqueeze(1) if spec_ndim == 3 else wave


def _check_spectrogram(spec: torch.Tensor, n_rows: int, what: str, rows: str) -> None:
    if spec.dim() < 2:
        raise UsageError(f"{what} must be [..., {rows}, frames], got shape {tuple(spec.shape)}")
    if spec.shape[-2] != n_rows:
        raise UsageError(f"{what} has {spec.shape[-2]} rows on the {rows} axis but the "
                         f"feature config implies {n_rows}")


def magnitude_and_if(wave: torch.Tensor,
                     config: FeatureConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Magnitude ``|STFT|`` and instantaneous frequency of a waveform.

    ``wave``: ``[batch, 1, time]`` (or any layout spectral.STFT accepts). Returns two float32
    tensors ``[batch, freq, frames]`` (``freq = config.n_freq``). The magnitude is plain
    ``|X|``: ``config.power`` and ``config.magnitude_eps`` are not applied, because they
    would make the representation inexact. IF is taken along the frames axis.
    """
    spec = stft_for(config)(wave)
    magnitude = spec.abs()
    # The phase differences are formed in float64 from the float32 angles, so the only
    # rounding is that of storing the IF in float32 (< 1e-7 rad per frame).
    phase = torch.angle(spec).double()
    ifreq = instantaneous_frequency(phase, dim=-1).to(magnitude.dtype)
    return magnitude, ifreq


def waveform_from_magnitude_and_if(magnitude: torch.Tensor, ifreq: torch.Tensor,
                                   config: FeatureConfig,
                                   length: int | None = None) -> torch.Tensor:
    """Exact inverse of :func:`magnitude_and_if`.

    ``magnitude``, ``ifreq``: ``[batch, freq, frames]`` (or ``[..., freq, frames]``). Returns a
    float32 waveform ``[batch, 1, length]`` (``[..., length]`` for other ranks); ``length``
    defaults to what the frames imply (``frames * hop`` for hop-aligned padding).
    """
    _check_spectrogram(magnitude, config.n_freq, "magnitude", "freq")
    if ifreq.shape != magnitude.shape:
        raise UsageError(f"magnitude {tuple(magnitude.shape)} and IF {tuple(ifreq.shape)} "
                         "must have the same shape")
    phase = phase_from_if(ifreq, dim=-1)
    # polar() in float64 keeps the large unwrapped phase exact; only the result is rounded.
    spec = torch.polar(magnitude.double(), phase).to(torch.complex64)
    wave = stft_for(config).inverse(spec, length)
    return to_waveform_layout(wave, magnitude.dim())


# --------------------------------------------------------------------------- IF-mel

@functools.lru_cache(maxsize=16)
def _default_mel_operators(config: FeatureConfig) -> tuple[torch.Tensor, ...]:
    return _mel_operators(mel_filterbank(config))


def _mel_operators(filterbank: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(power map, phase map, their pseudo-inverses), float64 on the filterbank's device.

    The phase map is the filterbank with each row scaled to sum to one, so a mel band's
    phase is a weighted *mean* of its bins' phases: a partial's IF passes through unscaled,
    and a frame-0 mean of wrapped phases stays within [-pi, pi], which keeps the inverse exact
    when the filterbank is invertible. Empty filters (all-zero rows) stay zero.
    """
    power_map = filterbank.double()
    sums = power_map.sum(dim=-1, keepdim=True)
    phase_map = power_map / torch.where(sums > 0, sums, torch.ones_like(sums))
    return (power_map, phase_map, _pseudo_inverse(power_map), _pseudo_inverse(phase_map))


#: Singular values below this fraction of the largest are treated as zero. A mel filterbank's
#: genuine singular values stay above ~1e-2 of the largest while its null space comes out of
#: the SVD at ~1e-16: a cut at 1e-9 sits far from both, so the inverse does not depend on the
#: LAPACK build's rounding (the default cut, ~6e-14 for 257 bins, is only ~200x above it).
PINV_RTOL = 1e-9


def _pseudo_inverse(matrix: torch.Tensor) -> torch.Tensor:
    """Moore-Penrose inverse (float64) with the fixed relative cut :data:`PINV_RTOL`."""
    return torch.linalg.pinv(matrix, rtol=PINV_RTOL, hermitian=False)


def _operators(config: FeatureConfig, filterbank: torch.Tensor | None,
               device: torch.device) -> tuple[torch.Tensor, ...]:
    if filterbank is None:
        ops = _default_mel_operators(config)
    else:
        if filterbank.dim() != 2 or filterbank.shape[-1] != config.n_freq:
            raise UsageError(f"filterbank must be [bands, {config.n_freq}], "
                             f"got shape {tuple(filterbank.shape)}")
        ops = _mel_operators(filterbank)
    return tuple(op.to(device) for op in ops)


def mel_from_magnitude_and_if(magnitude: torch.Tensor, ifreq: torch.Tensor, config: FeatureConfig,
                              filterbank: torch.Tensor | None = None
                              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Map a linear ``(magnitude, IF)`` pair ``[..., n_freq, frames]`` to IF-mel.

    Returns float32 ``(mel_magnitude, mel_if)``, each ``[..., n_mels, frames]``, where with
    ``M`` the filterbank (``[n_mels, n_freq]``, default ``spectral.mel_filterbank(config)``)
    and ``P`` the same rows normalised to sum 1:

    * ``mel_magnitude = sqrt(M @ magnitude^2)`` (the power spectrum is mapped, then
      square-rooted so it is an amplitude again; ``config.power`` is not applied);
    * ``mel_if = P @ ifreq``: each band's IF is the weighted mean of its bins' IFs, which
      is the IF of the band's mean unwrapped phase ``P @ phase_from_if(ifreq)`` (the two
      are linear and commute) without ever re-wrapping it. A convex combination of IFs in
      [-1, 1] stays in [-1, 1], and keeping the map linear is what makes the inverse exact
      where the filterbank is invertible: re-wrapping a band's mean phase step would add
      multiples of 2 pi per band that no bin's phase can carry back, and whether a step
      wraps can hinge on the phase of a near-silent bin, i.e. on float rounding.

    For a partial that dominates a band, the band's IF equals the partial's IF.
    """
    power_map, phase_map, _, _ = _operators(config, filterbank, magnitude.device)
    _check_spectrogram(magnitude, config.n_freq, "magnitude", "freq")
    if ifreq.shape != magnitude.shape:
        raise UsageError(f"magnitude {tuple(magnitude.shape)} and IF {tuple(ifreq.shape)} "
                         "must have the same shape")
    mel_magnitude = (power_map @ magnitude.double() ** 2).clamp_min(0).sqrt()
    mel_if = phase_map @ ifreq.double()
    return mel_magnitude.float(), mel_if.float()


def mel_magnitude_and_if(wave: torch.Tensor, config: FeatureConfig,
                         filterbank: torch.Tensor | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """GANSynth "IF-mel" of a waveform: :func:`magnitude_and_if` then
    :func:`mel_from_magnitude_and_if`.

    ``wave``: ``[batch, 1, time]``. Returns float32 ``(mel_magnitude, mel_if)``, each
    ``[batch, n_mels, frames]``.
    """
    magnitude, ifreq = magnitude_and_if(wave, config)
    return mel_from_magnitude_and_if(magnitude, ifreq, config, filterbank)


def linear_from_mel_magnitude_and_if(
        mel_magnitude: torch.Tensor, mel_if: torch.Tensor, config: FeatureConfig,
        filterbank: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Approximate inverse of :func:`mel_magnitude_and_if`, via pseudo-inverses.

    ``mel_magnitude``, ``mel_if``: ``[..., n_mels, frames]``. Returns float32
    ``(magnitude, ifreq)`` ``[..., n_freq, frames]`` ready for
    :func:`waveform_from_magnitude_and_if`.

    This is **lossy** wherever the bands are coarser than the bins: the filterbank then has a
    null space, the minimum-norm power is smeared over each band's bins (negative values are
    clipped to zero) and the bins of a band share a blend of the neighbouring bands' phase
    trajectories. It is exact (up to rounding) where the filterbank is invertible: for a
    square invertible ``filterbank``, or for content in the low-frequency range where a dense
    mel scale has more bands than bins (e.g. a chord below 1 kHz with 128 HTK bands on a
    512-point STFT comes back at > 60 dB SNR; with 32 bands it does not). The returned IF is
    wrapped into [-1, 1] like any IF, which changes nothing in the audio.
    """
    power_map, phase_map, power_pinv, phase_pinv = _operators(config, filterbank,
                                                              mel_magnitude.device)
    _check_spectrogram(mel_magnitude, power_map.shape[0], "mel magnitude", "mel")
    if mel_if.shape != mel_magnitude.shape:
        raise UsageError(f"mel magnitude {tuple(mel_magnitude.shape)} and mel IF "
                         f"{tuple(mel_if.shape)} must have the same shape")
    power = (power_pinv @ mel_magnitude.double() ** 2).clamp_min(0)
    ifreq = wrap_phase(_PI * (phase_pinv @ mel_if.double())) / _PI
    return power.sqrt().float(), ifreq.float()
