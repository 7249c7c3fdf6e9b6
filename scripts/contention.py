"""A competing CPU load for the benchmarks' ``--contention`` columns.

A shared machine rarely gives a process all its cores. :func:`competing_load` starts
``processes`` busy processes (each spins on one core, in pure Python, holding no lock the
benchmark needs) for the duration of a ``with`` block, so a benchmark can time the same
call quiet and under load and report both; a CPU path that spin-waits on two OpenMP pools
collapses under such a load, one that yields keeps about half its speed on 2 cores.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import time


def _spin(stop) -> None:
    x = 0
    while not stop.is_set():
        for _ in range(10000):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF


@contextlib.contextmanager
def competing_load(processes: int = 1, settle: float = 0.2):
    """Run ``processes`` busy processes while the block runs (0: a quiet block)."""
    if processes <= 0:
        yield
        return
    context = mp.get_context("spawn")
    stop = context.Event()
    workers = [context.Process(target=_spin, args=(stop,), daemon=True)
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    time.sleep(settle)  # let them reach the spin loop
    try:
        yield
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=5)
            if worker.is_alive():
                worker.kill()
