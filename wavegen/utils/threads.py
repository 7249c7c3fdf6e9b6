"""Torch's intra-op thread count for a stretch of code, chosen at run time.

A sample-level model's reference loop is thousands of tiny ops per second (a few hundred
channels, batch 1). Each is an OpenMP parallel region whose second thread only spin-waits
at that size, and on a shared machine those spinning threads fight the other processes:
measured on 2 cores (docs/RESULTS.md, "Under a competing load"), one thread is as fast as
two on a quiet machine and 3.3x faster under one competing process.
"""

from __future__ import annotations

import contextlib

import torch


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
    """The thread count for per-step ops of ``batch`` items on ``device``: 1 for one item
    on the CPU (parallel regions that small only wait), else None (leave it)."""
    return 1 if device.type == "cpu" and batch == 1 else None


__all__ = ["step_threads", "torch_threads"]
