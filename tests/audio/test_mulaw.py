"""Mu-law companding and quantisation: closed forms, bounds and the relation to librosa."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from wavegen.audio.mulaw import (from_librosa_codes, mulaw_compress, mulaw_dequantize,
                                 mulaw_error_bound, mulaw_expand, mulaw_quantize)
from wavegen.errors import UsageError

GRID = torch.linspace(-1.0, 1.0, 100_001, dtype=torch.float64)


@pytest.mark.parametrize("mu", [1, 15, 255, 1023, 65535])
def test_compress_expand_are_inverse(mu):
    assert torch.allclose(mulaw_expand(mulaw_compress(GRID, mu), mu), GRID, atol=1e-12)


@pytest.mark.parametrize("mu", [15, 255, 1023])
def test_quantiser_matches_closed_form(mu):
    q = mulaw_quantize(GRID, mu)
    y = torch.sign(GRID) * torch.log1p(mu * GRID.abs()) / np.log1p(mu)
    expected = torch.floor((y + 1) / 2 * mu + 0.5).long()  # nearest level, halves up
    assert torch.equal(q, expected)
    assert q.min() == 0 and q.max() == mu and q.dtype == torch.int64
    levels = torch.arange(mu + 1)
    assert torch.allclose(mulaw_compress(mulaw_dequantize(levels, mu).double(), mu),
                          levels.double() * 2 / mu - 1, atol=1e-5)


@pytest.mark.parametrize("mu", [15, 255, 1023])
def test_round_trip_error_within_closed_form_bound(mu):
    err = (mulaw_dequantize(mulaw_quantize(GRID, mu), mu).double() - GRID).abs()
    bound = mulaw_error_bound(GRID, mu)
    assert torch.all(err <= bound + 1e-6)
    # The bound is tight: some value comes within 2% of it.
    assert (err / bound).max() > 0.98


def test_wavenet_convention_zero_and_extremes():
    assert mulaw_quantize(torch.tensor([-1.0, 0.0, 1.0])).tolist() == [0, 128, 255]
    assert mulaw_dequantize(torch.tensor([0, 255])).tolist() == [-1.0, 1.0]


def test_continuous_companding_equals_librosa():
    x = GRID.float().numpy()
    assert np.allclose(mulaw_compress(torch.from_numpy(x)).numpy(),
                       librosa.mu_compress(x, mu=255, quantize=False), atol=1e-6)
    assert np.allclose(mulaw_expand(torch.from_numpy(x)).numpy(),
                       librosa.mu_expand(x, mu=255, quantize=False), atol=1e-6)


def test_librosa_codes_are_signed_and_ceil_binned():
    x = GRID.float().numpy()
    codes = librosa.mu_compress(x, mu=255, quantize=True)
    # Ceil binning: only exactly -1.0 reaches -128, and exactly +1.0 overflows to +128.
    assert codes[0] == -128 and codes[-1] == 128
    assert codes[1:-1].min() == -127 and codes[1:-1].max() == 127
    ours = mulaw_quantize(torch.from_numpy(x)).numpy()
    shifted = codes.astype(np.int64) + 128
    # librosa rounds up into its bin where we round to the nearest level: at most one apart.
    assert np.abs(shifted - ours).max() == 1
    assert np.mean(shifted == ours) > 0.4
    converted = from_librosa_codes(torch.from_numpy(codes)).numpy()
    librosa_values = librosa.mu_expand(codes, mu=255, quantize=True)
    ours_values = mulaw_dequantize(torch.from_numpy(converted)).numpy()
    assert np.abs(librosa_values - ours_values).max() <= mulaw_error_bound(torch.tensor(1.0)).item()


def test_bad_mu_is_an_error():
    with pytest.raises(UsageError):
        mulaw_quantize(GRID, mu=0)
    with pytest.raises(UsageError):
        mulaw_dequantize(torch.zeros(3))  # floats are not class indices


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1.0, 1.0, allow_nan=False), min_size=1, max_size=64),
       st.sampled_from([7, 255, 4095]))
def test_property_quantise_is_monotone_and_in_range(values, mu):
    x = torch.tensor(sorted(values), dtype=torch.float64)
    q = mulaw_quantize(x, mu)
    assert torch.all(q[1:] >= q[:-1])
    assert q.min() >= 0 and q.max() <= mu
    assert torch.all((mulaw_dequantize(q, mu).double() - x).abs() <= mulaw_error_bound(x, mu) + 1e-6)
