"""Fused magnitude -> mel filterbank in C, for the CPU inference path of the log-mel.

:class:`~wavegen.audio.spectral.MelSpectrogram` computes, block by block, window -> rfft ->
``|X|`` (or ``|X|^2``) -> filterbank. The last two steps in PyTorch cost about as much as
the FFT itself (a magnitude tensor and a sparse product per block). :file:`mel_kernel.c`
does them in one pass over each frame's spectrum, using that every mel band is a triangle
on a contiguous run of bins, with frames split across threads. The values are those of the
PyTorch path up to float32 summation order (``tests/audio/test_spectral.py`` checks both against
``torch.stft`` and librosa).

The library is built on first use by :mod:`wavegen.native` (cached per machine). Where it
cannot be built (no C compiler) or is switched off with ``WAVEGEN_DISABLE_NATIVE=1``,
:func:`fused_mel` returns False and the caller keeps its PyTorch path; :func:`status` says
which (``wavegen doctor`` prints it).
"""

from __future__ import annotations

import ctypes
import os
import threading
from pathlib import Path

import torch

from wavegen.native import CLibrary, NativeUnavailable

__all__ = ["BandedFilterbank", "available", "fused_mel", "load", "status"]

SOURCE = Path(__file__).with_name("mel_kernel.c")
ABI_VERSION = 1
FLAG_SETS = (
    ["-O3", "-march=native", "-std=c99", "-fPIC", "-shared", "-fno-math-errno", "-fopenmp"],
    ["-O3", "-march=native", "-std=c99", "-fPIC", "-shared", "-fno-math-errno"],
)
LIBRARY = CLibrary(SOURCE, ABI_VERSION, "wg_mel_abi_version", FLAG_SETS, "fused mel kernel")

_I64 = ctypes.c_int64
_PTR = ctypes.c_void_p
#: Threads the kernel splits frames across; None: ``torch.get_num_threads()``.
THREADS: int | None = None
_lock = threading.Lock()
_loaded: dict[tuple, ctypes.CDLL | str] = {}


def _disabled() -> bool:
    return os.environ.get("WAVEGEN_DISABLE_NATIVE", "") not in ("", "0")


def load() -> ctypes.CDLL:
    """The built library; :class:`~wavegen.native.NativeUnavailable` when it cannot be had.

    Outcomes are remembered per setting of the variables that choose the compiler and the
    cache directory, so a process pays for at most one build attempt per setting, and a
    repeated call (one per block of frames) costs a few dictionary lookups.
    """
    if _disabled():
        raise NativeUnavailable("fused mel kernel: disabled by WAVEGEN_DISABLE_NATIVE")
    key = tuple(os.environ.get(name) for name in ("CC", "PATH", "WAVEGEN_KERNEL_CACHE", "HOME"))
    outcome = _loaded.get(key)
    if outcome is not None and not isinstance(outcome, str):
        return outcome
    with _lock:
        if key not in _loaded:
            try:
                lib = LIBRARY.load()
                lib.wg_mel_frames.restype = ctypes.c_int
                lib.wg_mel_frames.argtypes = [_PTR, _I64, _I64, _I64, _I64, _PTR, _PTR, _PTR,
                                              _PTR, _I64, _I64, ctypes.c_float, _PTR, _I64, _I64]
                lib.wg_mel_max_bins.restype = ctypes.c_int
                _loaded[key] = lib
            except NativeUnavailable as error:
                _loaded[key] = str(error)
        outcome = _loaded[key]
    if isinstance(outcome, str):
        raise NativeUnavailable(outcome)
    return outcome


def available() -> bool:
    """Whether :func:`fused_mel` can run here (builds the library on the first call)."""
    try:
        load()
    except NativeUnavailable:
        return False
    return True


def status() -> str:
    """One line for ``wavegen doctor``: whether the fused kernel is in use, and why not."""
    try:
        load()
    except NativeUnavailable as error:
        return f"not used ({error}); the PyTorch path computes the same values"
    return "in use (built and cached by wavegen.native)"


class BandedFilterbank:
    """A ``[n_mels, bins]`` filterbank stored as one contiguous run of weights per band.

    ``filterbank``: float ``[n_mels, n]`` whose column ``j`` is FFT bin ``first_bin + j``.
    Band ``m``'s non-zero weights span bins ``start[m] .. start[m] + length[m] - 1``
    (absolute bin numbers); zeros inside a run are kept, so any filterbank is exact.
    """

    def __init__(self, filterbank: torch.Tensor, first_bin: int):
        weights = filterbank.detach().to("cpu", torch.float32)
        starts, lengths, runs = [], [], []
        for row in weights:
            nonzero = torch.nonzero(row).flatten()
            if nonzero.numel() == 0:
                starts.append(first_bin)
                lengths.append(0)
                continue
            a, b = int(nonzero[0]), int(nonzero[-1]) + 1
            starts.append(first_bin + a)
            lengths.append(b - a)
            runs.append(row[a:b])
        self.start = torch.tensor(starts, dtype=torch.int64)
        self.length = torch.tensor(lengths, dtype=torch.int64)
        self.offset = torch.cat([torch.zeros(1, dtype=torch.int64),
                                 self.length.cumsum(0)[:-1]])
        self.weights = torch.cat(runs).contiguous() if runs else torch.zeros(1)
        self.n_mels = weights.shape[0]
        self.lo = first_bin
        self.hi = first_bin + weights.shape[1]


def fused_mel(spec: torch.Tensor, bank: BandedFilterbank, power: float, eps: float,
              out: torch.Tensor) -> bool:
    """``out[m, t] = sum_k bank[m, k] * (|spec[t, k]|^2 + eps)^(power / 2)``, in C.

    ``spec``: complex64 ``[frames, n_freq]`` (e.g. ``torch.fft.rfft(frames, dim=1)``), rows
    contiguous. ``out``: float32 ``[n_mels, frames]`` whose last dimension is contiguous (a
    column slice of a larger buffer is fine). Returns False, touching nothing, where the
    kernel does not apply (unavailable, another dtype, layout or power); the caller then
    computes the same values in PyTorch.
    """
    if (power not in (1.0, 2.0) or spec.dtype != torch.complex64 or spec.dim() != 2
            or spec.device.type != "cpu" or out.dtype != torch.float32
            or out.shape != (bank.n_mels, spec.shape[0]) or out.stride(-1) != 1
            or bank.hi > spec.shape[1]):
        return False
    try:
        lib = load()
    except NativeUnavailable:
        return False
    if bank.hi - bank.lo > lib.wg_mel_max_bins():
        return False
    rows = torch.view_as_real(spec)
    if rows.stride(1) != 2 or rows.stride(2) != 1:
        return False
    code = lib.wg_mel_frames(rows.data_ptr(), spec.shape[0], rows.stride(0), bank.lo, bank.hi,
                             bank.start.data_ptr(), bank.length.data_ptr(),
                             bank.offset.data_ptr(), bank.weights.data_ptr(), bank.n_mels,
                             int(power), float(eps), out.data_ptr(), out.stride(0),
                             THREADS or torch.get_num_threads())
    if code != 0:
        raise RuntimeError(f"fused mel kernel: wg_mel_frames returned {code}")
    return True
