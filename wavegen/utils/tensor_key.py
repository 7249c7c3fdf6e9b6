"""A key that changes whenever a tensor does: for caches of weights laid out for a kernel."""

from __future__ import annotations

from typing import Iterable

import torch


def tensors_key(tensors: Iterable[torch.Tensor]) -> tuple:
    """``(storage address, version counter, shape)`` of each tensor: equal keys mean the
    same tensors, not replaced, resized or changed in place since (the version counter
    counts in-place writes, ``optimizer.step`` and ``load_state_dict`` included)."""
    return tuple((t.data_ptr(), t._version, tuple(t.shape)) for t in tensors)


__all__ = ["tensors_key"]
