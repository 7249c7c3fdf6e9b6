"""Shared test set-up. Test signals come from wavegen.audio.signals (generated, no data files)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wavegen.audio.signals import chord, sweep  # noqa: F401  (re-exported for older test modules)

# Tests must not depend on how many threads the machine has, and CI has 2 cores.
torch.set_num_threads(2)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
