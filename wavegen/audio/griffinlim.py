"""Griffin-Lim phase reconstruction and the mel -> audio baseline vocoder, in torch.

* :func:`griffin_lim`: fast Griffin-Lim (Perraudin, Balazs & Søndergaard 2013), the same
  iteration as ``librosa.griffinlim`` (momentum 0.99 by default), batched over any leading
  axes and running wherever the input lives (no numpy in the loop).
* :func:`mel_to_linear`: non-negative least-squares inversion of the mel filterbank, the
  torch counterpart of ``librosa.feature.inverse.mel_to_stft`` (without the final root).
* :func:`mel_to_audio`: log-mel -> waveform by the two steps above. Every learned vocoder
  in wavegen is expected to beat this.

All of them take the front-end as a :class:`~wavegen.audio.features.FeatureConfig`, so the
STFT used for reconstruction is the one that made the features.
"""

from __future__ import annotations

import functools

import torch

from wavegen.audio.features import FeatureConfig
from wavegen.audio.phase import stft_for, to_waveform_layout
from wavegen.audio.spectral import decompress, mel_filterbank
from wavegen.errors import UsageError
from wavegen.utils.threads import shared_machine_threads

__all__ = ["griffin_lim", "to_magnitude", "mel_to_linear", "mel_to_audio"]


def to_magnitude(spectrogram: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """``|X|^power`` (the config's ``power``) -> ``|X|``; any shape, same shape back."""
    if config.power == 1.0:
        return spectrogram
    return spectrogram.clamp_min(0) ** (1.0 / config.power)


def _initial_phase(magnitude: torch.Tensor, init: str | None | torch.Tensor,
                   generator: torch.Generator | None) -> torch.Tensor:
    """Unit-modulus complex starting point, shaped like ``magnitude``."""
    if isinstance(init, torch.Tensor):
        if init.is_complex() or init.shape != magnitude.shape:
            raise UsageError(f"init must be real phases (radians) shaped like the magnitude "
                             f"{tuple(magnitude.shape)}, got {init.dtype} {tuple(init.shape)}")
        phase = init.to(device=magnitude.device, dtype=magnitude.dtype)
    elif init == "random":
        phase = torch.rand(magnitude.shape, generator=generator, device=magnitude.device,
                           dtype=magnitude.dtype) * (2 * torch.pi)
    elif init is None or init == "zeros":
        phase = torch.zeros_like(magnitude)
    else:
        raise UsageError(f"init must be 'random', 'zeros', None or a phase tensor, got {init!r}")
    return torch.polar(torch.ones_like(phase), phase)


def griffin_lim(magnitude: torch.Tensor, config: FeatureConfig, n_iter: int = 32,
                momentum: float = 0.99, length: int | None = None,
                init: str | None | torch.Tensor = "random",
                generator: torch.Generator | None = None, return_convergence: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Estimate a waveform whose STFT magnitude is ``magnitude`` (fast Griffin-Lim).

    Args:
        magnitude: ``|X|``, ``[..., n_freq, frames]``, non-negative. This is the *magnitude*
            even when ``config.power != 1``: convert a ``|X|^power`` spectrogram with
            :func:`to_magnitude` first.
        config: the front-end whose STFT / ISTFT is used (window, hop, padding).
        n_iter: number of projection iterations.
        momentum: the "fast" in fast Griffin-Lim; 0 gives the classic algorithm. librosa's
            update ``c_n = t_n - momentum / (1 + momentum) * t_{n-1}`` is used verbatim.
        length: output length in samples (default: what the frames imply).
        init: ``"random"`` (uniform phase from ``generator``, which must live on the
            magnitude's device), ``"zeros"`` / ``None`` (zero phase, deterministic, as
            librosa's ``init=None``), or a real tensor of initial phases shaped like
            ``magnitude``.
        generator: random generator for ``init="random"``.
        return_convergence: also return the spectral convergence
            ``||S - |STFT(x_i)||| / ||S||`` of each iteration's estimate, ``[..., n_iter]``
            (``[n_iter]`` for an unbatched ``[n_freq, frames]`` input).

    Returns:
        The waveform: ``[batch, 1, time]`` for a ``[batch, n_freq, frames]`` magnitude,
        ``[..., time]`` otherwise; and the convergence curve when asked for. Autograd is not
        disabled: wrap the call in ``torch.no_grad()`` unless gradients are wanted.
    """
    if magnitude.is_complex() or magnitude.dim() < 2 or magnitude.shape[-2] != config.n_freq:
        raise UsageError(f"magnitude must be real [..., {config.n_freq}, frames] for n_fft="
                         f"{config.n_fft}, got {magnitude.dtype} {tuple(magnitude.shape)}")
    if n_iter < 0:
        raise UsageError(f"n_iter must be >= 0, got {n_iter}")
    if momentum < 0:
        raise UsageError(f"momentum must be >= 0, got {momentum}")
    frames = magnitude.shape[-1]
    if length is not None and config.num_frames(length) != frames:
        raise UsageError(f"length={length} gives {config.num_frames(length)} frames but the "
                         f"magnitude has {frames}")
    with shared_machine_threads(magnitude.device):  # fewer threads on a busy CPU
        return _griffin_lim(magnitude, config, n_iter, momentum, length, init, generator,
                            return_convergence)


def _griffin_lim(magnitude, config, n_iter, momentum, length, init, generator,
                 return_convergence):
    frames = magnitude.shape[-1]
    stft = stft_for(config)
    lead = magnitude.shape[:-2]
    target = magnitude.float().reshape(-1, config.n_freq, frames)
    angles = _initial_phase(magnitude.float(), init, generator).reshape(target.shape)
    # librosa divides by |c| + tiny: keeps zero bins at zero instead of producing NaN.
    tiny = torch.finfo(target.dtype).tiny
    decay = momentum / (1.0 + momentum)
    target_norm = torch.linalg.vector_norm(target, dim=(-2, -1)).clamp_min(tiny)
    previous = None
    curve = []
    spec = target * angles  # the current estimate: target magnitudes, current phases
    for _ in range(n_iter):
        rebuilt = stft(stft.inverse(spec, length))
        if return_convergence:
            error = torch.linalg.vector_norm(target - rebuilt.abs(), dim=(-2, -1))
            curve.append(error / target_norm)
        update = rebuilt if previous is None else torch.add(rebuilt, previous, alpha=-decay)
        # target * update / (|update| + tiny), with |.| and the scale on real views (torch's
        # complex elementwise kernels are several times slower on the CPU).
        parts = torch.view_as_real(update)
        scale = parts[..., 0].square() + parts[..., 1].square()
        scale = target / (scale.sqrt_().add_(tiny))
        spec = update * scale
        previous = rebuilt
    wave = stft.inverse(spec, length)
    wave = to_waveform_layout(wave.reshape(*lead, wave.shape[-1]), magnitude.dim())
    if not return_convergence:
        return wave
    if curve:
        convergence = torch.stack(curve, dim=-1)
    else:
        convergence = target_norm.new_zeros(target.shape[0], 0)
    return wave, convergence.reshape(*lead, n_iter)


@functools.lru_cache(maxsize=16)
def _nnls_operators(config: FeatureConfig) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(filterbank, its pseudo-inverse, 1 / Lipschitz constant of the gradient), float64."""
    basis = mel_filterbank(config).double()
    step = 1.0 / float(torch.linalg.matrix_norm(basis, ord=2)) ** 2
    return basis, torch.linalg.pinv(basis), step


def mel_to_linear(mel: torch.Tensor, config: FeatureConfig, n_iter: int = 100,
                  init: torch.Tensor | None = None) -> torch.Tensor:
    """Non-negative least-squares inversion of the mel filterbank.

    Solves ``min_{S >= 0} ||M S - mel||^2`` for every frame, with ``M`` the config's mel
    filterbank, by accelerated projected gradient (FISTA, step ``1 / ||M||_2^2``)
    warm-started from the clamped pseudo-inverse solution, the start librosa's L-BFGS-B
    solver uses too, or from ``init``: a guess of ``S`` (e.g. a learned model's), which the
    iterations pull onto the set of spectra with this mel while keeping what the mel leaves
    free (the gradient only moves ``S`` within the filterbank's row space). With fewer bands than bins the problem is underdetermined: the fitted
    mel ``M S`` is unique but ``S`` is not, so solvers agree closely on ``M S`` and only
    approximately on ``S``. 100 iterations fit the mel of a real spectrogram to ~1e-7
    (relative) with Slaney-normalised filters; unnormalised HTK filters whose lowest bands
    are narrower than a bin (the Vocos preset) are ill-conditioned and reach ~3e-3.

    Args:
        mel: linear-amplitude mel (``config.power`` applied, no log), ``[..., n_mels, frames]``.
        config: the front-end that made the mel.
        n_iter: gradient iterations (fixed, so no host synchronisation on a GPU).
        init: None (the pseudo-inverse start) or ``|X|^power`` ``[..., n_freq, frames]``
            (non-negative) to start from.

    Returns:
        ``S`` ~ ``|X|^power``, ``[..., n_freq, frames]``, non-negative, in ``mel``'s float dtype
        (float32 for integer input). Use :func:`to_magnitude` to get ``|X|``.
    """
    if mel.is_complex() or mel.dim() < 2 or mel.shape[-2] != config.n_mels:
        raise UsageError(f"mel must be real [..., {config.n_mels}, frames], "
                         f"got {mel.dtype} {tuple(mel.shape)}")
    if n_iter < 0:
        raise UsageError(f"n_iter must be >= 0, got {n_iter}")
    dtype = mel.dtype if mel.is_floating_point() else torch.float32
    basis, pinv, step = _nnls_operators(config)
    basis = basis.to(device=mel.device, dtype=dtype)
    pinv = pinv.to(device=mel.device, dtype=dtype)
    target = mel.to(dtype)
    if init is None:
        solution = (pinv @ target).clamp_min(0)
    else:
        expected = (*mel.shape[:-2], basis.shape[1], mel.shape[-1])
        if tuple(init.shape) != expected or init.is_complex():
            raise UsageError(f"init must be real {list(expected)} (the spectrum of this mel), "
                             f"got {init.dtype} {tuple(init.shape)}")
        solution = init.to(device=mel.device, dtype=dtype).clamp_min(0)
    point = solution
    t = 1.0
    for _ in range(n_iter):
        gradient = basis.mT @ (basis @ point - target)
        new = (point - step * gradient).clamp_min(0)
        t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
        point = new + ((t - 1) / t_next) * (new - solution)
        solution, t = new, t_next
    return solution


def mel_to_audio(logmel: torch.Tensor, config: FeatureConfig, n_iter: int = 32,
                 momentum: float = 0.99, length: int | None = None,
                 init: str | None | torch.Tensor = "random",
                 generator: torch.Generator | None = None, nnls_iter: int = 100) -> torch.Tensor:
    """The baseline vocoder: log-mel features -> waveform, with no learned parameters.

    ``logmel``: ``[batch, n_mels, frames]`` (or ``[..., n_mels, frames]``) made with
    ``config`` (e.g. by ``spectral.LogMelSpectrogram(config)``). Steps:
    :func:`~wavegen.audio.spectral.decompress`, :func:`mel_to_linear`, :func:`to_magnitude`,
    :func:`griffin_lim` (``n_iter``, ``momentum``, ``length``, ``init``, ``generator`` are
    passed on). Returns float32 ``[batch, 1, time]`` (``[..., time]`` for other ranks).
    """
    linear = mel_to_linear(decompress(logmel, config), config, n_iter=nnls_iter)
    return griffin_lim(to_magnitude(linear, config), config, n_iter=n_iter, momentum=momentum,
                       length=length, init=init, generator=generator)
