"""Shared test set-up. Test signals come from wavegen.audio.signals (generated, no data files)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from hypothesis import settings

# CI explores the same examples on every run (a red CI must be reproducible); local runs
# keep exploring new ones.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

# Tests must not depend on how many threads the machine has, and CI has 2 cores.
torch.set_num_threads(2)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def one_thread():
    """One torch thread for tests of tiny tensors: on a busy 2-core machine a second OpenMP
    thread only adds spin-waiting around each small op (the results do not depend on it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
