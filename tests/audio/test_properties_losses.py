"""Property tests of the multi-resolution STFT loss on random batches and lengths."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from wavegen.audio.losses import MultiResolutionSTFTLoss

LOSS = MultiResolutionSTFTLoss()
PROPERTY_SETTINGS = settings(max_examples=10, deadline=None)


def random_pair(batch: int, length: int, seed: int, gain: float, silent: str):
    """Two [batch, 1, length] waves; ``silent`` zeroes one side to cover the floor path."""
    generator = torch.Generator().manual_seed(seed)
    a = torch.randn(batch, 1, length, generator=generator) * 0.3
    b = gain * torch.randn(batch, 1, length, generator=generator) * 0.3
    if silent == "a":
        a.zero_()
    elif silent == "b":
        b.zero_()
    return a, b


pairs = st.builds(random_pair, batch=st.integers(1, 3), length=st.integers(2048, 9000),
                  seed=st.integers(0, 2**31 - 1), gain=st.floats(0.01, 10.0),
                  silent=st.sampled_from(["none", "none", "a", "b"]))


@PROPERTY_SETTINGS
@given(pairs)
def test_mr_stft_loss_finite_nonnegative_and_log_magnitude_symmetric(pair):
    a, b = pair
    forward, backward = LOSS(a, b), LOSS(b, a)
    for out in (forward, backward):
        for term in out:
            assert term.dtype == torch.float32 and torch.isfinite(term)
            assert term.item() >= 0.0
    # Only spectral convergence is normalised by one side; the log term is symmetric.
    torch.testing.assert_close(forward.log_magnitude, backward.log_magnitude,
                               rtol=1e-6, atol=1e-7)


@PROPERTY_SETTINGS
@given(pairs)
def test_mr_stft_loss_zero_on_identical_inputs(pair):
    a, _ = pair
    out = LOSS(a, a.clone())
    assert out.total.item() == 0.0
    assert out.spectral_convergence.item() == 0.0 and out.log_magnitude.item() == 0.0
