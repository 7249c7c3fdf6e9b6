"""Torch's intra-op thread count for a stretch of code, chosen at run time.

A sample-level model's reference loop is thousands of tiny ops per second (a few hundred
channels, batch 1). Each is an OpenMP parallel region whose second thread only spin-waits
at that size, and on a shared machine those spinning threads fight the other processes:
measured on 2 cores (docs/RESULTS.md, "Under a competing load"), one thread is as fast as
two on a quiet machine and 3.3x faster under one competing process.

The same holds for every parallel CPU path once another process is busy: OpenMP's
parallel regions end at a barrier, so a region on 2 threads with one of them descheduled
waits for it (and its partner spins meanwhile), and 2 threads run slower than 1.
:func:`free_threads` looks at the machine at run time (``/proc/stat``'s runnable threads
minus this process's own) and gives the threads that have a core to themselves; the heavy
CPU paths (log-mel, Griffin-Lim, vocoder and noise-driven chunks, diffusion sampling, the
sampling kernels) run under :func:`shared_machine_threads`; a training run reads it once,
when it starts (``train.threads: auto``), and keeps that count. On a quiet machine nothing changes.
``WAVEGEN_FIXED_THREADS=1`` switches this off (always torch's own setting).
"""

from __future__ import annotations

import contextlib
import os
import time

import torch

#: Seconds a reading of the machine's load is reused (reading it costs ~0.1-0.3 ms).
LOAD_CACHE_SECONDS = 0.25
#: Readings of the runnable threads per check (their minimum: a thread of ours that was
#: just waking, or a short-lived process, is not a competitor).
LOAD_SAMPLES = 3

_reading: tuple[float, int] | None = None  # (time, competitors)


def _runnable_threads() -> int | None:
    """Runnable threads on the whole machine now (``procs_running`` of /proc/stat)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            for line in f:
                if line.startswith("procs_running"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _own_runnable_threads() -> int:
    """Threads of this process that are running or runnable now."""
    count = 0
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return 0
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/stat", encoding="ascii", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue
        end = stat.rfind(")")
        if end > 0 and stat[end + 2:end + 3] == "R":
            count += 1
    return count


def competing_threads() -> int | None:
    """Runnable threads of other processes (the least of :data:`LOAD_SAMPLES` readings),
    or None where the machine does not say (no /proc)."""
    least = None
    for _ in range(LOAD_SAMPLES):
        total = _runnable_threads()
        if total is None:
            return None
        others = max(0, total - _own_runnable_threads())
        least = others if least is None else min(least, others)
    return least


def usable_cores() -> int:
    """CPUs this process may run on (its affinity mask)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def free_threads(requested: int | None = None) -> int:
    """Threads for a parallel CPU section: ``requested`` (default: torch's setting), fewer
    when other processes keep cores busy (one core each), never below 1. Readings are
    reused for :data:`LOAD_CACHE_SECONDS`."""
    global _reading
    requested = max(1, int(requested or torch.get_num_threads()))
    if requested == 1 or os.environ.get("WAVEGEN_FIXED_THREADS") == "1":
        return requested
    now = time.monotonic()
    if _reading is None or now - _reading[0] > LOAD_CACHE_SECONDS:
        others = competing_threads()
        _reading = (now, 0 if others is None else others)
    return max(1, min(requested, usable_cores() - _reading[1]))


@contextlib.contextmanager
def shared_machine_threads(device: torch.device | str | None = None,
                           requested: int | None = None):
    """Run the block on :func:`free_threads` torch threads (see the module docstring);
    nothing changes for a ``device`` other than the CPU."""
    if device is not None and torch.device(device).type != "cpu":
        yield
        return
    with torch_threads(free_threads(requested)):
        yield


@contextlib.contextmanager
def torch_threads(count: int | None):
    """Run the block with ``torch.set_num_threads(count)``, then restore the previous
    count; None (or the current count) changes nothing."""
    previous = torch.get_num_threads()
    if count is None or count == previous:
        yield
        return
    torch.set_num_threads(max(1, int(count)))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def step_threads(batch: int, device: torch.device) -> int | None:
    """The thread count for per-step ops of ``batch`` items on ``device``: on the CPU 1 for
    one item (parallel regions that small only wait), else :func:`free_threads`; None (leave
    it) elsewhere."""
    if device.type != "cpu":
        return None
    return 1 if batch == 1 else free_threads()


__all__ = ["competing_threads", "free_threads", "shared_machine_threads", "step_threads",
           "torch_threads", "usable_cores"]
