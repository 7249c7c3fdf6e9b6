"""STFT, magnitude, mel and log-mel front-ends as differentiable ``nn.Module``s.

Every module is built from one :class:`~wavegen.audio.features.FeatureConfig`, works on any
device, computes in float32 (float64 input stays float64, half precision is promoted), and
accepts batched waveforms:

* ``[time]`` -> ``[freq, frames]``
* ``[batch, time]`` or ``[batch, 1, time]`` -> ``[batch, freq, frames]``
* ``[batch, channels, time]`` (channels > 1) -> ``[batch, channels, freq, frames]``

so that a mono waveform in the package convention ``[batch, 1, time]`` yields the
spectrogram convention ``[batch, freq, frames]``.

Mel filterbanks come from :func:`librosa.filters.mel` (not re-derived), and windows from
:func:`librosa.filters.get_window`, so a FeatureConfig means exactly what librosa means.
"""

from __future__ import annotations

import math
import threading
import warnings

import librosa
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wavegen.audio import mel_kernel
from wavegen.audio.features import FeatureConfig
from wavegen.errors import UsageError
from wavegen.utils.threads import shared_machine_threads


def window_tensor(config: FeatureConfig) -> torch.Tensor:
    """The analysis window, length ``win_length`` (periodic, as librosa uses), float32."""
    window = librosa.filters.get_window(config.window, config.win_length, fftbins=True)
    return torch.from_numpy(np.asarray(window, dtype=np.float32))


def mel_filterbank(config: FeatureConfig) -> torch.Tensor:
    """Mel filterbank ``[n_mels, n_freq]`` from librosa with the config's scale and norm."""
    basis = librosa.filters.mel(
        sr=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_mels, fmin=config.fmin,
        fmax=config.fmax_hz, htk=config.mel_scale == "htk", norm=config.mel_norm,
        dtype=np.float32)
    return torch.from_numpy(basis)


def mel_frequencies(config: FeatureConfig) -> np.ndarray:
    """Centre frequency in Hz of each mel band, ``[n_mels]`` (for plots and metrics)."""
    edges = librosa.mel_frequencies(n_mels=config.n_mels + 2, fmin=config.fmin,
                                    fmax=config.fmax_hz, htk=config.mel_scale == "htk")
    return edges[1:-1]


def _flatten_waveform(wave: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Reshape a waveform to ``[n, time]``; return it and the leading shape to restore."""
    if wave.dim() == 0:
        raise UsageError("expected a waveform with a time axis, got a scalar")
    if wave.dim() == 3 and wave.shape[1] == 1:
        wave = wave[:, 0]
    lead = tuple(wave.shape[:-1])
    return wave.reshape(-1, wave.shape[-1]), lead


def _working_precision(x: torch.Tensor) -> torch.Tensor:
    """float64 stays float64 (for exact checks); everything else computes in float32."""
    return x if x.dtype == torch.float64 else x.float()


def _unflatten(spec: torch.Tensor, lead: tuple[int, ...]) -> torch.Tensor:
    return spec.reshape(*lead, *spec.shape[-2:])


def compress(mel: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """Apply the config's log compression (with its clamp) to a linear mel / spectrogram."""
    if config.log == "none":
        return mel
    clamped = mel.clamp_min(config.log_clamp)
    if config.log == "ln":
        level = torch.log(clamped)
    elif config.log == "log10":
        level = torch.log10(clamped)
    else:
        # Decibels of the amplitude: 20 log10 |X| whatever power the spectrum was raised to.
        level = (20.0 / config.power) * torch.log10(clamped)
    if not config.has_level_map:
        return level
    level = (level + config.level_offset) * config.level_scale
    return level.clamp(config.level_floor, config.level_ceiling)


def decompress(logmel: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """Inverse of :func:`compress` (values at the clamp floor come back as the floor, values
    clamped by ``level_floor`` / ``level_ceiling`` as those levels)."""
    if config.log == "none":
        return logmel
    if config.has_level_map:
        logmel = logmel / config.level_scale - config.level_offset
    if config.log == "ln":
        return torch.exp(logmel)
    if config.log == "log10":
        return torch.pow(10.0, logmel)
    return torch.pow(10.0, logmel * (config.power / 20.0))


class STFT(nn.Module):
    """Complex STFT with the config's window, padding and normalisation.

    ``forward(wave)`` maps ``[..., time]`` to complex ``[..., n_freq, frames]`` (see the module
    docstring for how a channel axis is handled). :meth:`inverse` is the matching ISTFT.
    """

    def __init__(self, config: FeatureConfig):
        super().__init__()
        self.config = config
        self.register_buffer("window", window_tensor(config), persistent=False)

    def _check_length(self, length: int) -> None:
        c = self.config
        if c.pad_mode == "reflect" and c.pad_amount >= length:
            raise UsageError(f"signal of {length} samples is too short for reflect padding of "
                             f"{c.pad_amount} samples (n_fft={c.n_fft})")
        if c.num_frames(length) < 1:
            raise UsageError(f"signal of {length} samples is shorter than one frame "
                             f"(n_fft={c.n_fft}, padding={c.padding!r})")

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        c = self.config
        flat, lead = _flatten_waveform(wave)
        self._check_length(flat.shape[-1])
        flat = _working_precision(flat)
        if c.padding == "hop_aligned" and c.pad_amount > 0:
            flat = F.pad(flat.unsqueeze(1), (c.pad_amount, c.pad_amount), mode=c.pad_mode).squeeze(1)
        spec = torch.stft(
            flat, n_fft=c.n_fft, hop_length=c.hop_length, win_length=c.win_length,
            window=self.window.to(flat.device, flat.dtype), center=c.padding == "center", pad_mode=c.pad_mode,
            normalized=c.stft_normalized, onesided=True, return_complex=True)
        return _unflatten(spec, lead)

    def inverse(self, spec: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """ISTFT: complex ``[..., n_freq, frames]`` -> ``[..., time]`` (float32).

        With ``padding="center"`` this is torch's exact least-squares ISTFT. With
        ``"hop_aligned"`` the frames are first overlap-added as if centred and the
        difference in padding is then trimmed, which is exact too.
        """
        c = self.config
        lead = tuple(spec.shape[:-2])
        flat = spec.reshape(-1, *spec.shape[-2:])
        frames = flat.shape[-1]
        window = self.window.to(flat.device, flat.real.dtype)
        if c.padding == "center":
            wave = torch.istft(flat, n_fft=c.n_fft, hop_length=c.hop_length,
                               win_length=c.win_length, window=window, center=True,
                               normalized=c.stft_normalized, onesided=True, length=length)
        else:
            # Overlap-add without centring gives the padded signal; drop the padding.
            full = c.n_fft + (frames - 1) * c.hop_length
            wave = _istft_uncentered(flat, c, window, full)
            wave = wave[..., c.pad_amount:]
            if length is not None:
                if wave.shape[-1] < length:
                    wave = F.pad(wave, (0, length - wave.shape[-1]))
                wave = wave[..., :length]
            else:
                wave = wave[..., : max(full - 2 * c.pad_amount, 0)]
        return wave.reshape(*lead, wave.shape[-1])


def _istft_uncentered(spec: torch.Tensor, c: FeatureConfig, window: torch.Tensor,
                      full_length: int) -> torch.Tensor:
    """Least-squares overlap-add of uncentred frames: ``[n, freq, frames]`` -> ``[n, full]``.

    torch.istft(center=False) rejects windows whose edge samples are zero (NOLA check at the
    borders), which a Hann window always has, so the overlap-add is done here directly.
    """
    win = _full_window(window, c.replace(stft_normalized=False))
    if c.stft_normalized:
        spec = spec * math.sqrt(c.n_fft)
    frames = torch.fft.irfft(spec, n=c.n_fft, dim=-2)  # [n, n_fft, frames]
    frames = frames.mul_(win[:, None]) if not frames.requires_grad else frames * win[:, None]
    wave = _overlap_add(frames, c.n_fft, c.hop_length, full_length)
    norm = _window_envelope(win, c.hop_length, frames.shape[-1], full_length)
    # Where the summed squared window is ~0 (the outermost samples) nothing can be recovered.
    return wave / norm


def _overlap_add(frames: torch.Tensor, n_fft: int, hop: int, full_length: int) -> torch.Tensor:
    """``out[t * hop + i] += frames[:, i, t]``: ``[n, n_fft, frames]`` -> ``[n, full_length]``.

    When the hop divides ``n_fft`` (every preset) the frames are cut into ``n_fft / hop``
    hop-long pieces and each piece is added to the output as one strided block, which is
    several times faster than ``F.fold``; otherwise ``F.fold``.
    """
    n, _, count = frames.shape
    if n_fft % hop != 0 or full_length != n_fft + (count - 1) * hop:
        return F.fold(frames, output_size=(1, full_length), kernel_size=(1, n_fft),
                      stride=(1, hop))[:, 0, 0]
    pieces = n_fft // hop
    out = frames.new_zeros(n, count + pieces - 1, hop)
    for j in range(pieces):
        # piece j of frame t lands on hop-block t + j
        block = frames[:, j * hop:(j + 1) * hop, :].transpose(1, 2)
        if frames.requires_grad:
            out = out + F.pad(block, (0, 0, j, pieces - 1 - j))
        else:
            out[:, j:j + count].add_(block)
    return out.reshape(n, -1)


def _window_envelope(win: torch.Tensor, hop: int, count: int, full_length: int) -> torch.Tensor:
    """Overlap-added squared window over ``count`` frames, floored to 1 where it is ~0.

    ``[full_length]``; cached per window, hop and length (Griffin-Lim asks for the same one
    every iteration).
    """
    key = (win.device, win.dtype, hop, count, full_length, win.shape[0])
    with _ENVELOPES_LOCK:  # feature extraction also runs in data-loading threads
        cached = _ENVELOPES.get(key)
    if cached is not None and torch.equal(cached[0], win):
        return cached[1]
    squared = (win ** 2)[None, :, None].expand(1, win.shape[0], count).contiguous()
    norm = _overlap_add(squared, win.shape[0], hop, full_length)[0]
    norm = torch.where(norm > 1e-11, norm, torch.ones_like(norm))
    with _ENVELOPES_LOCK:
        if len(_ENVELOPES) >= 8:
            _ENVELOPES.pop(next(iter(_ENVELOPES)))
        _ENVELOPES[key] = (win.detach().clone(), norm)
    return norm


_ENVELOPES: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
_ENVELOPES_LOCK = threading.Lock()


class Spectrogram(nn.Module):
    """``|STFT|^power`` as ``[..., n_freq, frames]`` float32."""

    def __init__(self, config: FeatureConfig):
        super().__init__()
        self.config = config
        self.stft = STFT(config)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return magnitude(self.stft(wave), self.config.power, self.config.magnitude_eps)


class _SafeAbs(torch.autograd.Function):
    """``sqrt(re^2 + im^2 + eps)`` whose gradient is 0 where the result is exactly 0 (not NaN)."""

    @staticmethod
    def forward(ctx, real: torch.Tensor, imag: torch.Tensor, eps: float) -> torch.Tensor:
        squared = real.square().add_(imag.square())
        out = (squared.add_(eps) if eps else squared).sqrt_()
        ctx.save_for_backward(real, imag, out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        real, imag, out = ctx.saved_tensors
        scale = torch.where(out > 0, grad / torch.where(out > 0, out, torch.ones_like(out)),
                            torch.zeros_like(out))
        return scale * real, scale * imag, None


def magnitude(spec: torch.Tensor, power: float = 1.0, eps: float = 0.0) -> torch.Tensor:
    """``(|spec|^2 + eps)^(power / 2)`` for a complex spectrogram ``[..., F, N]``; real.

    Differentiable everywhere: where ``|spec|^2 + eps`` is exactly 0 (digital silence with
    ``eps == 0``) the gradient is 0 rather than the NaN a plain square root gives. Values are
    bitwise the same with and without autograd, so identical inputs always compare equal.
    (``sqrt(re^2 + im^2)`` rather than ``hypot``: several times faster on cached blocks, and
    float32 audio spectra are nowhere near the range where hypot's rescaling matters.)
    """
    if power == 1.0:
        return _SafeAbs.apply(spec.real, spec.imag, float(eps))
    squared = spec.real.square() + spec.imag.square() + eps
    if power == 2.0:
        return squared
    positive = squared > 0
    # torch.where differentiates both branches: feed the unused one a harmless 1.
    safe = torch.where(positive, squared, torch.ones_like(squared))
    return torch.where(positive, safe.pow(power / 2.0), torch.zeros_like(squared))


class MelSpectrogram(nn.Module):
    """Linear-amplitude mel spectrogram ``[..., n_mels, frames]`` (``power`` applied).

    Two paths compute the same values. With autograd or on an accelerator, the reference:
    ``torch.stft`` of the whole signal, magnitude, filterbank. For inference on the CPU, a
    blocked path frames the signal itself and runs window -> rfft -> magnitude -> sparse
    filterbank on blocks of frames that stay in cache, skipping the FFT bins the filterbank
    ignores (above fmax); it is about three times as fast and never holds the full complex
    spectrogram.
    ``tests/audio/test_spectral.py`` checks that the two agree.
    """

    #: Frames per block of the CPU inference path (a block's FFT input is 2 MiB at n_fft 1024).
    block_frames = 512

    def __init__(self, config: FeatureConfig):
        super().__init__()
        self.config = config
        self.spectrogram = Spectrogram(config)
        filterbank = mel_filterbank(config)
        used = torch.nonzero(filterbank.abs().sum(0) > 0).flatten()
        # Only bins [lo, hi) reach any mel band; the rest need no magnitude at all.
        self.band = (int(used.min()), int(used.max()) + 1) if used.numel() else (0, 1)
        lo, hi = self.band
        self.register_buffer("filterbank", filterbank[:, lo:hi].contiguous(), persistent=False)

    @staticmethod
    def uses_blocked_path(wave: torch.Tensor) -> bool:
        """True for CPU inference (no gradient needed): the blocked path is faster there."""
        return wave.device.type == "cpu" and not (torch.is_grad_enabled() and wave.requires_grad)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if self.uses_blocked_path(wave):
            return self.blocked(wave)
        return self.reference(wave)

    def reference(self, wave: torch.Tensor) -> torch.Tensor:
        """The plain path: ``torch.stft`` of the whole signal, magnitude, filterbank."""
        c = self.config
        lo, hi = self.band
        spec = self.spectrogram.stft(wave)[..., lo:hi, :]
        mag = magnitude(spec, c.power, c.magnitude_eps)
        return self.filterbank.to(mag.dtype) @ mag

    def blocked(self, wave: torch.Tensor, post=None) -> torch.Tensor:
        """The CPU inference path: same values as :meth:`reference`, block by block.

        ``post`` (optional) is applied to each ``[n_mels, frames]`` block while it is in
        cache (LogMelSpectrogram passes its log compression).
        """
        with shared_machine_threads():  # fewer threads on a busy CPU (wavegen.utils.threads)
            return self._blocked(wave, post)

    def _blocked(self, wave: torch.Tensor, post) -> torch.Tensor:
        c = self.config
        stft = self.spectrogram.stft
        flat, lead = _flatten_waveform(wave)
        stft._check_length(flat.shape[-1])
        flat = _working_precision(flat)
        if self._fused_applies(flat):
            return _unflatten(self._blocked_fused(flat, post), lead)
        window = _full_window(stft.window, c).to(flat.dtype)[:, None]
        basis = self._sparse_filterbank(flat.dtype)  # CSR [n_mels, bins]
        lo, hi = self.band
        num_frames = c.num_frames(flat.shape[-1])
        out = torch.empty(flat.shape[0], c.n_mels, num_frames, dtype=flat.dtype)
        for i in range(flat.shape[0]):
            done = 0
            for frames in frame_pieces(flat[i], c):
                for start in range(0, frames.shape[0], self.block_frames):
                    block = frames[start:start + self.block_frames]
                    # FFT along dim 0 of [n_fft, frames]: the magnitude comes out [bins,
                    # frames], the layout the sparse filterbank product wants.
                    spec = torch.fft.rfft(block.t() * window, dim=0)[lo:hi]
                    mel = basis @ magnitude(spec, c.power, c.magnitude_eps)
                    out[i, :, done:done + block.shape[0]] = mel if post is None else post(mel)
                    done += block.shape[0]
        return _unflatten(out, lead)

    def _fused_applies(self, flat: torch.Tensor) -> bool:
        """Whether the C kernel (:mod:`wavegen.audio.mel_kernel`) can take this input."""
        return (flat.dtype == torch.float32 and self.config.power in (1.0, 2.0)
                and mel_kernel.available())

    def _blocked_fused(self, flat: torch.Tensor, post) -> torch.Tensor:
        """:meth:`blocked` with magnitude and filterbank fused in C: ``[batch, n_mels, frames]``.

        Frames are rows here (``[frames, n_fft]`` -> rfft along dim 1), the layout the kernel
        reads, so the window multiply also runs on contiguous rows.
        """
        c = self.config
        window = _full_window(self.spectrogram.stft.window, c).to(flat.dtype)
        bank = self.__dict__.get("_banded")
        if bank is None:
            bank = self.__dict__["_banded"] = mel_kernel.BandedFilterbank(self.filterbank,
                                                                          self.band[0])
        out = torch.empty(flat.shape[0], c.n_mels, c.num_frames(flat.shape[-1]),
                          dtype=flat.dtype)
        mel = torch.empty(c.n_mels, self.block_frames, dtype=flat.dtype)
        for i in range(flat.shape[0]):
            done = 0
            for frames in frame_pieces(flat[i], c):
                for start in range(0, frames.shape[0], self.block_frames):
                    block = frames[start:start + self.block_frames]
                    n = block.shape[0]
                    spec = torch.fft.rfft(block * window, dim=1)
                    target = out[i, :, done:done + n] if post is None else mel[:, :n]
                    if not mel_kernel.fused_mel(spec, bank, c.power, c.magnitude_eps, target):
                        raise RuntimeError("fused mel kernel refused a block it had accepted")
                    if post is not None:
                        out[i, :, done:done + n] = post(target)
                    done += n
        return out

    def _sparse_filterbank(self, dtype: torch.dtype) -> torch.Tensor:
        """The filterbank as a CSR matrix (about 3% of its entries are non-zero)."""
        cache = self.__dict__.setdefault("_csr", {})
        if dtype not in cache:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
                cache[dtype] = self.filterbank.to("cpu", dtype).to_sparse_csr()
        return cache[dtype]


def frame_pieces(x: torch.Tensor, c: FeatureConfig) -> list[torch.Tensor]:
    """The STFT frames of one signal ``x`` ``[time]`` as pieces ``[n_k, n_fft]``, in order.

    Equivalent to padding ``x`` as the config says and taking every ``hop``-th window, but
    only the few frames that reach into the padding are built from padded copies of the
    signal's ends; all others are views of ``x`` (padding a long signal is a full copy).
    """
    n, hop = c.n_fft, c.hop_length
    pad = c.n_fft // 2 if c.padding == "center" else c.pad_amount
    total = c.num_frames(x.shape[-1])

    def padded(segment: torch.Tensor, left: int, right: int) -> torch.Tensor:
        return F.pad(segment[None, None], (left, right), mode=c.pad_mode)[0, 0]

    length = x.shape[-1]
    first = -(-pad // hop)                 # first frame that starts inside the signal
    last = (length + pad - n) // hop       # last frame that ends inside the signal
    if pad == 0:
        return [x.unfold(-1, n, hop)]
    if last - first < 2 or length < 2 * n + 2 * pad:
        return [padded(x, pad, pad).unfold(-1, n, hop)]
    # Head: frames 0..first-1 cover x[-pad : (first - 1) * hop + n - pad].
    head_len = max((first - 1) * hop + n - pad, pad + 1)
    head = padded(x[:head_len], pad, 0).unfold(-1, n, hop)[:first]
    body = x[first * hop - pad:last * hop - pad + n].unfold(-1, n, hop)
    pieces = [head, body]
    tail_count = total - last - 1
    if tail_count > 0:
        start = (last + 1) * hop - pad
        back = 0
        while length - (start - back * hop) <= pad:  # reflect padding needs > pad samples
            back += 1
        tail = padded(x[start - back * hop:], 0, pad).unfold(-1, n, hop)[back:back + tail_count]
        pieces.append(tail)
    return pieces


def _full_window(window: torch.Tensor, c: FeatureConfig) -> torch.Tensor:
    """The analysis window zero-padded (centred) to n_fft, with the STFT normalisation."""
    if c.win_length < c.n_fft:
        left = (c.n_fft - c.win_length) // 2
        window = F.pad(window, (left, c.n_fft - c.win_length - left))
    return window * c.n_fft ** -0.5 if c.stft_normalized else window


class LogMelSpectrogram(nn.Module):
    """Log-compressed mel spectrogram ``[..., n_mels, frames]``: the vocoder features.

    The output carries no normalisation beyond the config's log and clamp; a vocoder given
    these features should be built from the same FeatureConfig (see ``check_compatible``).
    """

    def __init__(self, config: FeatureConfig):
        super().__init__()
        self.config = config
        self.mel = MelSpectrogram(config)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if self.mel.uses_blocked_path(wave):
            return self.mel.blocked(wave, post=lambda mel: compress(mel, self.config))
        return self.reference(wave)

    def reference(self, wave: torch.Tensor) -> torch.Tensor:
        """Always the ``torch.stft`` path (what a loss comparing two signals should use)."""
        return compress(self.mel.reference(wave), self.config)
