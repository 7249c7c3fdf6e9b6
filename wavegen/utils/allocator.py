"""Keep freed memory for reuse: glibc malloc tuned for tensor workloads (the CLI does this).

PyTorch's CPU tensors come from ``malloc``. glibc serves blocks of 32 MiB and more (and,
until its adaptive threshold has grown, smaller ones too) with a fresh ``mmap`` and returns
them to the system on ``free``, so every step of a training loop or vocoder chunk that
allocates a large activation pays page faults and the kernel's zeroing of those pages
again: for the reference WaveNet's training step (batch 4 x 8192, activations of 32 MiB)
that was a third of the step on a 2-core machine (docs/RESULTS.md). :func:`keep_freed_memory`
raises the mmap threshold and the trim threshold once per process, so large blocks come
from the heap and are reused; the process's resident memory then stays at its peak
instead of shrinking between steps (the usual trade of jemalloc / tcmalloc setups).

Only glibc has ``mallopt``; elsewhere this does nothing. ``WAVEGEN_KEEP_FREED_MEMORY=0``
switches it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

#: mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: Blocks at least this large still get their own mapping (and go back to the system).
MMAP_THRESHOLD_BYTES = 1 << 30  # glibc's limit for this parameter is HEAP_MAX (64 MiB..)
#: Free memory at the top of the heap kept rather than returned to the system.
TRIM_THRESHOLD_BYTES = 1 << 30

_done: bool | None = None


def keep_freed_memory() -> bool:
    """Tune glibc malloc as the module docstring says (once per process); True when it
    took effect."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if os.environ.get("WAVEGEN_KEEP_FREED_MEMORY") == "0":
        return _done
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return _done
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and \
        bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    return _done


__all__ = ["keep_freed_memory"]
