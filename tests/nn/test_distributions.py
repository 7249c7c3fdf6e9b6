"""Output heads: normalisation and agreement with scipy, exact inverse-CDF sampling, filters."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import special, stats

from wavegen.audio.mulaw import mulaw_dequantize, mulaw_quantize
from wavegen.errors import ConfigError, UsageError
from wavegen.nn.distributions import (Categorical, DiscretizedGaussian,
                                      DiscretizedMixtureOfLogistics, build_output_distribution,
                                      nats_to_bits, sample_categorical)
from wavegen.nn.logit_filters import apply_temperature, cfg_logits, top_p_filter, typical_filter

BINS = 65536
H = 1.0 / (BINS - 1)
ALL_BINS = torch.arange(BINS)
GRID64 = ALL_BINS.double() * (2.0 / (BINS - 1)) - 1.0

MOL = DiscretizedMixtureOfLogistics(num_mixtures=3)
GAUSS = DiscretizedGaussian()


def mol_params(logits, means, log_scales, dtype=torch.float64) -> torch.Tensor:
    """One MoL parameter row ``[3M]``."""
    return torch.tensor([*logits, *means, *log_scales], dtype=dtype)


def all_bin_log_probs(head, row: torch.Tensor) -> torch.Tensor:
    """``log_prob`` of every grid value (given as waveform targets) for one params row."""
    params = row[None, :, None].expand(1, row.numel(), BINS)
    return head.log_prob(params, GRID64.to(row.dtype)[None])[0]


# --- reference computations with scipy (float64) -----------------------------------------

def bin_log_mass(dist, x, mean):
    """log P(bin centred at x) under a frozen scipy distribution, in log space (tail-accurate)."""
    if x <= -1.0:
        return dist.logcdf(x + H)
    if x >= 1.0:
        return dist.logsf(x - H)
    if x <= mean:
        hi, lo = dist.logcdf(x + H), dist.logcdf(x - H)
    else:
        hi, lo = dist.logsf(x - H), dist.logsf(x + H)
    return hi + np.log(-np.expm1(lo - hi))


def logistic_bin_log_mass(x, mean, scale):
    return bin_log_mass(stats.logistic(loc=mean, scale=scale), x, mean)


def gaussian_bin_log_mass(x, mean, scale):
    return bin_log_mass(stats.norm(loc=mean, scale=scale), x, mean)


def mol_reference_log_prob(row: torch.Tensor, x: float, log_scale_min=-14.0) -> float:
    m = row.numel() // 3
    logits, means, log_scales = row[:m].numpy(), row[m:2 * m].numpy(), row[2 * m:].numpy()
    log_w = logits - special.logsumexp(logits)
    scales = np.exp(np.maximum(log_scales, log_scale_min))
    terms = [log_w[k] + logistic_bin_log_mass(x, means[k], scales[k]) for k in range(m)]
    return float(special.logsumexp(terms))


def chi_square_pvalue(counts: np.ndarray, probs: np.ndarray) -> float:
    """Pearson chi-square p-value, lumping cells expected to hold fewer than 5 draws."""
    n = counts.sum()
    big = probs * n >= 5
    obs = np.append(counts[big], counts[~big].sum())
    exp = np.append(probs[big], probs[~big].sum()) * n
    keep = exp > 0
    return float(stats.chisquare(obs[keep], exp[keep] * obs[keep].sum() / exp[keep].sum()).pvalue)


# --- normalisation and agreement with scipy ----------------------------------------------

EXTREME_MOL = {
    "moderate": mol_params([0.3, -0.5, 1.0], [-0.4, 0.1, 0.55], [-4.0, -6.0, -3.0]),
    "tiny_scales_clamped": mol_params([0.0, 0.0, 0.0], [-0.2, 0.3, 0.7], [-30.0, -14.0, -40.0]),
    "tiny_scale_on_bin_boundary": mol_params([0.0, 1.0, 2.0], [H, 0.5 + H, -1.0 + 3 * H],
                                             [-14.0, -13.0, -14.0]),
    "means_at_edges": mol_params([0.0, 0.0, 0.0], [-1.0, 1.0, 1.0 - H], [-9.0, -14.0, -5.0]),
    "means_beyond_edges": mol_params([1.0, 0.0, -1.0], [-3.0, 5.0, 1.2], [-2.0, -8.0, -14.0]),
    "huge_scales": mol_params([0.0, 0.0, 0.0], [0.0, -0.5, 3.0], [6.0, 3.0, 40.0]),
    "peaked_logits": mol_params([80.0, -80.0, 0.0], [0.25, -0.25, 0.0], [-10.0, -3.0, -7.0]),
}


@pytest.mark.parametrize("name", sorted(EXTREME_MOL))
def test_mol_bins_sum_to_one(name):
    log_p = all_bin_log_probs(MOL, EXTREME_MOL[name])
    assert torch.isfinite(log_p).all()
    assert abs(float(log_p.exp().sum()) - 1.0) < 1e-6


@settings(max_examples=25, deadline=None)
@given(logits=st.lists(st.floats(-30, 30), min_size=3, max_size=3),
       means=st.lists(st.floats(-1.5, 1.5), min_size=3, max_size=3),
       log_scales=st.lists(st.floats(-20, 8), min_size=3, max_size=3))
def test_mol_bins_sum_to_one_random(logits, means, log_scales):
    log_p = all_bin_log_probs(MOL, mol_params(logits, means, log_scales))
    assert abs(float(log_p.exp().sum()) - 1.0) < 1e-6


@pytest.mark.parametrize("mean,log_scale", [(0.0, -5.0), (0.3 + H / 3, -14.0), (-1.0, -9.0),
                                            (1.0, -20.0), (1.7, -2.0), (-4.0, 0.0),
                                            (0.2, 1.0), (-0.6, 12.0)])
def test_gaussian_bins_sum_to_one(mean, log_scale):
    log_p = all_bin_log_probs(GAUSS, torch.tensor([mean, log_scale], dtype=torch.float64))
    assert torch.isfinite(log_p).all()
    assert abs(float(log_p.exp().sum()) - 1.0) < 1e-6


@pytest.mark.parametrize("index", [0, 1, 2, 9000, 26214, 32767, 32768, 52428, 65534, 65535])
def test_mol_bin_probability_equals_scipy_cdf_difference(index):
    row = mol_params([0.4, -0.2, 0.0], [-0.6, 0.2, 0.8], [-3.0, -2.0, -4.5])
    x = float(GRID64[index])
    lo = -np.inf if index == 0 else x - H
    hi = np.inf if index == BINS - 1 else x + H
    weights = special.softmax(row[:3].numpy())
    direct = sum(w * np.diff(stats.logistic.cdf([lo, hi], m, math.exp(s)))[0]
                 for w, m, s in zip(weights, row[3:6].numpy(), row[6:].numpy()))
    ours = all_bin_log_probs(MOL, row)[index].exp().item()
    assert ours == pytest.approx(direct, rel=1e-8)


@pytest.mark.parametrize("index", [0, 1, 9000, 32768, 52428, 65534, 65535])
def test_gaussian_bin_probability_equals_scipy_cdf_difference(index):
    mean, log_scale = 0.15, -1.5
    x = float(GRID64[index])
    lo = -np.inf if index == 0 else x - H
    hi = np.inf if index == BINS - 1 else x + H
    dist = stats.norm(mean, math.exp(log_scale))
    direct = dist.cdf(hi) - dist.cdf(lo)
    ours = all_bin_log_probs(GAUSS, torch.tensor([mean, log_scale], dtype=torch.float64))
    assert ours[index].exp().item() == pytest.approx(direct, rel=1e-8)


@pytest.mark.parametrize("x", [-1.0, -0.9, -0.30001, 0.4999, 0.5, 0.6, 0.99, 1.0])
@pytest.mark.parametrize("log_scale", [-14.0, -11.0, -7.0, 0.5])
def test_single_component_log_probs_match_scipy_in_the_tails(x, log_scale):
    """Far from the mean the CDF difference underflows; the log-probability must not."""
    mean = 0.5
    x = float(GRID64[int(round((x + 1) / (2 * H)))])
    row = mol_params([0.0], [mean], [log_scale])
    head = DiscretizedMixtureOfLogistics(num_mixtures=1)
    ours = head.log_prob(row[None, :, None], torch.tensor([[x]], dtype=torch.float64)).item()
    ref = logistic_bin_log_mass(x, mean, math.exp(log_scale))
    assert np.isfinite(ours)
    assert ours == pytest.approx(ref, rel=1e-9, abs=1e-9)

    ours_g = GAUSS.log_prob(torch.tensor([[[mean], [log_scale]]], dtype=torch.float64),
                            torch.tensor([[x]], dtype=torch.float64)).item()
    ref_g = gaussian_bin_log_mass(x, mean, math.exp(log_scale))
    assert np.isfinite(ours_g)
    assert ours_g == pytest.approx(ref_g, rel=1e-9, abs=1e-9)


def mp_bin_log_mass(cdf, sf, mean: float, index: int) -> float:
    """log P(bin) with 50 significant digits (mpmath), from the CDF left of the mean and
    the survival function right of it, so that no tail is lost to 1 - (1 - tiny)."""
    with mpmath.workdps(50):
        h = mpmath.mpf(1) / (BINS - 1)
        x = -1 + 2 * h * index
        if index == 0:
            mass = cdf(x + h)
        elif index == BINS - 1:
            mass = sf(x - h)
        elif x <= mean:
            mass = cdf(x + h) - cdf(x - h)
        else:
            mass = sf(x - h) - sf(x + h)
        return float(mpmath.log(mass))


MP_INDICES = [0, 1, 2, 700, 30000, 32767, 32768, 50000, 65000, 65534, 65535]


@pytest.mark.parametrize("mean,log_scale", [
    (0.3, 12.0),      # bins 1e-10 standard deviations wide: the midpoint branch
    (-30.0, 0.45),    # just inside that branch, far from the mean: its correction term
    (0.02, 0.35),     # just outside it: CDF differences of nearly equal numbers
    (0.2, -13.9), (2.5, -2.0), (-0.77, -6.0),
])
def test_gaussian_log_probs_match_high_precision(mean, log_scale):
    ours = all_bin_log_probs(GAUSS, torch.tensor([mean, log_scale], dtype=torch.float64))
    scale = mpmath.exp(log_scale)
    cdf = lambda t: mpmath.ncdf((t - mean) / scale)  # noqa: E731
    sf = lambda t: mpmath.ncdf((mean - t) / scale)  # noqa: E731
    for index in MP_INDICES:
        assert ours[index].item() == pytest.approx(mp_bin_log_mass(cdf, sf, mean, index),
                                                   rel=1e-12, abs=1e-10)


@pytest.mark.parametrize("mean,log_scale", [(0.3, 12.0), (-30.0, 0.5), (0.02, -4.0),
                                            (0.2, -13.9), (-0.77, -6.9), (0.9, -7.0)])
def test_logistic_log_probs_match_high_precision(mean, log_scale):
    head = DiscretizedMixtureOfLogistics(num_mixtures=1)
    ours = all_bin_log_probs(head, mol_params([0.0], [mean], [log_scale]))
    scale = mpmath.exp(log_scale)
    cdf = lambda t: 1 / (1 + mpmath.exp((mean - t) / scale))  # noqa: E731
    sf = lambda t: 1 / (1 + mpmath.exp((t - mean) / scale))  # noqa: E731
    for index in MP_INDICES:
        assert ours[index].item() == pytest.approx(mp_bin_log_mass(cdf, sf, mean, index),
                                                   rel=1e-12, abs=1e-10)


@pytest.mark.parametrize("name", ["moderate", "means_at_edges", "peaked_logits"])
def test_mol_matches_scipy_mixture_everywhere(name):
    row = EXTREME_MOL[name]
    ours = all_bin_log_probs(MOL, row)
    for index in [0, 1, 700, 20000, 32767, 45000, 65000, 65534, 65535]:
        ref = mol_reference_log_prob(row, float(GRID64[index]))
        assert ours[index].item() == pytest.approx(ref, rel=1e-9, abs=1e-9)


def test_float32_mol_agrees_with_float64_where_the_mass_is():
    for row in EXTREME_MOL.values():
        row32 = row.float()
        lp64 = all_bin_log_probs(MOL, row32.double())
        lp32 = all_bin_log_probs(MOL, row32)
        assert lp32.dtype == torch.float32
        relevant = lp64 > -30
        assert (lp32.double() - lp64)[relevant].abs().max() < 2e-5
        assert abs(float(lp32.double().exp().sum()) - 1.0) < 1e-5


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log_prob_and_gradients_finite_at_edges_and_tiny_scales(dtype):
    targets = torch.tensor([[-1.0, -1.0 + 2 * H, 0.0, 0.31, 1.0 - 2 * H, 1.0]], dtype=dtype)
    for log_scale in [-40.0, -14.0, -9.0, 0.0, 30.0]:
        for mean in [-1.0, -0.999, 0.31, 1.0, 4.0]:
            raw = torch.tensor([0.5, -0.5, 0.0, mean, -mean / 2, 0.9,
                                log_scale, log_scale + 2, -4.0], dtype=dtype)
            params = raw[None, :, None].expand(1, 9, targets.shape[1]).clone().requires_grad_()
            lp = MOL.log_prob(params, targets)
            lp.sum().backward()
            assert torch.isfinite(lp).all() and torch.isfinite(params.grad).all()

            g = torch.tensor([mean, log_scale], dtype=dtype)[None, :, None]
            g = g.expand(1, 2, targets.shape[1]).clone().requires_grad_()
            lp = GAUSS.log_prob(g, targets)
            lp.sum().backward()
            assert lp.dtype == dtype
            assert torch.isfinite(lp).all() and torch.isfinite(g.grad).all()
            # A narrow distribution far from its target must still pull its mean towards it
            # (the last target is the edge bin, which contains this mean).
            if log_scale <= -9.0 and mean == 4.0:
                assert (g.grad[0, 0, :-1] < 0).all() and g.grad[0, 0, -1] <= 0


def test_log_prob_gradients_are_correct():
    """Against finite differences, on both sides of every branch switch of the formulas."""
    targets = GRID64[[0, 1, 20000, 32768, 40000, 65534, 65535]][None]
    params = torch.tensor([0.2, -0.4, 0.1, -0.99, 0.02, 0.97, -3.0, -9.0, -5.5],
                          dtype=torch.float64)[None, :, None].expand(1, 9, 7).clone()
    assert torch.autograd.gradcheck(lambda p: MOL.log_prob(p, targets), (params.requires_grad_(),))
    for mean, log_scale in [(0.05, -6.0), (-0.9, 1.0), (0.99, -3.0)]:
        g = torch.tensor([mean, log_scale], dtype=torch.float64)[None, :, None]
        g = g.expand(1, 2, 7).clone().requires_grad_()
        assert torch.autograd.gradcheck(lambda p: GAUSS.log_prob(p, targets), (g,))


def test_log_prob_snaps_waveform_targets_to_the_grid():
    torch.manual_seed(0)
    wave = torch.rand(2, 50, dtype=torch.float64) * 2.2 - 1.1
    params = torch.randn(2, 9, 50, dtype=torch.float64)
    snapped = MOL.targets_from_waveform(wave)
    assert torch.equal(MOL.log_prob(params, wave), MOL.log_prob(params, snapped))
    assert torch.equal(snapped, MOL.targets_from_waveform(snapped))
    assert snapped.abs().max() <= 1.0
    assert ((snapped - wave.clamp(-1, 1)).abs() <= H + 1e-12).all()


def test_gaussian_continuous_log_prob_is_the_normal_density():
    mean, log_scale = 0.1, -3.0
    x = GAUSS.targets_from_waveform(torch.linspace(-0.9, 0.9, 11, dtype=torch.float64)[None])
    params = torch.tensor([[[mean], [log_scale]]], dtype=torch.float64).expand(1, 2, 11)
    ours = GAUSS.continuous_log_prob(params, x)
    assert np.allclose(ours[0].numpy(), stats.norm.logpdf(x[0].numpy(), mean, math.exp(log_scale)))
    # With many bins per standard deviation, bin mass ~ density * bin width.
    approx = ours + math.log(2 * H)
    assert torch.allclose(GAUSS.log_prob(params, x), approx, atol=1e-6)


def test_categorical_log_prob_is_log_softmax_gather():
    torch.manual_seed(1)
    head = Categorical(256)
    logits = torch.randn(3, 256, 40) * 4
    target = torch.randint(0, 256, (3, 40))
    expected = torch.log_softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)
    assert torch.equal(head.log_prob(logits, target), expected)
    with pytest.raises(UsageError):
        head.log_prob(logits, target.float())


# --- grids and target spaces --------------------------------------------------------------

def test_grid_round_trip_of_every_bin():
    for dtype in (torch.float32, torch.float64):
        values = MOL.bin_value(ALL_BINS, dtype)
        assert torch.equal(MOL.bin_index(values), ALL_BINS)
    assert MOL.bin_value(torch.tensor([0, BINS - 1])).tolist() == [-1.0, 1.0]
    assert MOL.waveform_from_samples(GRID64.float()).dtype == torch.float32


def test_16_bit_pcm_codes_get_distinct_bins():
    codes = torch.arange(-32768, 32768)
    for dtype in (torch.float32, torch.float64):
        index = GAUSS.bin_index(codes.to(dtype) / 32768)
        assert index.unique().numel() == BINS - 1
        assert index[32768].item() == index[32769].item() == 32768  # codes 0 and 1
        assert (index[:32768] == codes[:32768] + 32768).all()
        assert (index[32769:] == codes[32769:] + 32767).all()


def test_categorical_targets_are_mu_law():
    head = Categorical(256)
    wave = torch.linspace(-1, 1, 1001)[None]
    assert torch.equal(head.targets_from_waveform(wave), mulaw_quantize(wave, 255))
    q = torch.arange(256)[None]
    assert torch.equal(head.waveform_from_samples(q), mulaw_dequantize(q, 255))
    assert Categorical(16).mu == 15


# --- sampling -----------------------------------------------------------------------------

def numpy_categorical(logits: np.ndarray, u: np.ndarray, temperature: float) -> np.ndarray:
    if temperature == 0:
        return logits.argmax(-1)
    z = logits.astype(np.float64) / temperature
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    cdf = np.cumsum(p, -1)
    return np.array([min(np.searchsorted(c, ui, side="right"), len(c) - 1)
                     for c, ui in zip(cdf, u)])


def check_grid_samples(samples: torch.Tensor, x_ref: np.ndarray):
    """Samples are the nearest bins of the float64 reference values ``x_ref``.

    Float32 rounding of the sampled value (a few ulps, ~0.01 bin near full scale) may pick
    the other neighbour when the reference lies that close to a tie.
    """
    pos = (np.clip(x_ref, -1, 1) + 1) * (BINS - 1) / 2
    ref_index = np.rint(pos)
    near_tie = np.abs(np.abs(pos - np.floor(pos)) - 0.5) < 0.02
    index = MOL.bin_index(samples).numpy()
    assert ((index == ref_index) | near_tie).all()
    assert near_tie.mean() < 0.06
    assert torch.equal(samples, MOL.bin_value(MOL.bin_index(samples), samples.dtype))


@pytest.mark.parametrize("temperature", [1.0, 0.7, 1.6, 0.0])
def test_categorical_sampling_is_inverse_cdf(temperature):
    gen = torch.Generator().manual_seed(2)
    head = Categorical(256)
    logits = torch.randn(256, 256, generator=gen) * 3
    u = torch.rand(256, 1, generator=gen)
    a = head.sample(logits, u, temperature)
    assert a.dtype == torch.int64
    assert torch.equal(a, head.sample(logits, u.clone(), temperature))
    expected = numpy_categorical(logits.numpy(), u[:, 0].numpy(), temperature)
    assert np.array_equal(a.numpy(), expected)


@pytest.mark.parametrize("temperature", [1.0, 0.5, 0.0])
def test_mol_sampling_is_inverse_cdf(temperature):
    gen = torch.Generator().manual_seed(3)
    batch, m = 512, 3
    logits = torch.randn(batch, m, generator=gen) * 2
    means = torch.rand(batch, m, generator=gen) * 2.4 - 1.2
    log_scales = torch.rand(batch, m, generator=gen) * 10 - 16
    params = torch.cat([logits, means, log_scales], 1)
    u = torch.rand(batch, 2, generator=gen)
    u[0] = torch.tensor([0.0, 0.0])   # the extreme uniforms torch.rand can return
    u[1] = torch.tensor([0.5, 0.5])
    samples = MOL.sample(params, u, temperature)
    assert samples.dtype == torch.float32 and samples.shape == (batch,)
    assert torch.equal(samples, MOL.sample(params, u.clone(), temperature))

    k = numpy_categorical(logits.numpy(), u[:, 0].numpy(), temperature)
    rows = np.arange(batch)
    x = means.numpy().astype(np.float64)[rows, k]
    if temperature > 0:
        s = temperature * np.exp(np.maximum(log_scales.numpy().astype(np.float64)[rows, k], -14))
        u1 = u[:, 1].numpy().astype(np.float64)
        with np.errstate(divide="ignore"):
            x = x + s * (np.log(u1) - np.log1p(-u1))
    check_grid_samples(samples, x)
    if temperature > 0:
        assert samples[0].item() == -1.0


@pytest.mark.parametrize("temperature", [1.0, 0.3, 0.0])
def test_gaussian_sampling_is_inverse_cdf(temperature):
    gen = torch.Generator().manual_seed(4)
    batch = 512
    params = torch.stack([torch.rand(batch, generator=gen) * 2.4 - 1.2,
                          torch.rand(batch, generator=gen) * 12 - 16], 1)
    u = torch.rand(batch, 1, generator=gen)
    samples = GAUSS.sample(params, u, temperature)
    assert torch.equal(samples, GAUSS.sample(params, u.clone(), temperature))
    p = params.numpy().astype(np.float64)
    x = p[:, 0] + temperature * np.exp(np.maximum(p[:, 1], -14)) * special.ndtri(
        u[:, 0].numpy().astype(np.float64))
    check_grid_samples(samples, x)


@pytest.mark.parametrize("head", [Categorical(16), MOL, GAUSS], ids=type)
def test_sampling_with_a_generator_is_reproducible(head):
    params = torch.randn(8, head.num_params, generator=torch.Generator().manual_seed(5))
    draw = lambda: head.sample(params, generator=torch.Generator().manual_seed(6))  # noqa: E731
    first = draw()
    assert torch.equal(first, draw())
    u = torch.rand(8, head.num_uniforms, generator=torch.Generator().manual_seed(6))
    assert torch.equal(first, head.sample(params, u))


def test_categorical_histogram_matches_softmax():
    gen = torch.Generator().manual_seed(7)
    logits = torch.randn(16, generator=gen) * 1.5
    n = 20_000
    for temperature in (1.0, 0.6):
        samples = Categorical(16).sample(logits.expand(n, 16), generator=gen,
                                         temperature=temperature)
        counts = np.bincount(samples.numpy(), minlength=16)
        probs = torch.softmax(logits.double() / temperature, 0).numpy()
        assert chi_square_pvalue(counts, probs) > 1e-4
        # The test has power: the untempered distribution is rejected at T = 0.6.
        if temperature != 1.0:
            assert chi_square_pvalue(counts, torch.softmax(logits.double(), 0).numpy()) < 1e-4


def coarse_probs(head, row: torch.Tensor, cells: int = 128) -> np.ndarray:
    p = all_bin_log_probs(head, row).exp().numpy()
    return p.reshape(cells, -1).sum(1)


def coarse_counts(head, samples: torch.Tensor, cells: int = 128) -> np.ndarray:
    return np.bincount(head.bin_index(samples).numpy() // (BINS // cells), minlength=cells)


def tempered_mol_row(row: torch.Tensor, temperature: float) -> torch.Tensor:
    """Parameters whose T = 1 distribution is the T-tempered one of ``row`` (documented rule)."""
    m = row.numel() // 3
    return torch.cat([row[:m] / temperature, row[m:2 * m], row[2 * m:] + math.log(temperature)])


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_mol_histogram_matches_distribution(temperature):
    row = mol_params([0.5, 0.0, -0.7], [-0.3, 0.35, 0.96], [-3.0, -4.0, -3.5])
    n = 20_000
    gen = torch.Generator().manual_seed(8)
    samples = MOL.sample(row.float().expand(n, 9), generator=gen, temperature=temperature)
    target = tempered_mol_row(row, temperature)
    assert chi_square_pvalue(coarse_counts(MOL, samples),
                             coarse_probs(MOL, target)) > 1e-4
    # The edge bin collects the clamped tail of the third component.
    p_edge = all_bin_log_probs(MOL, target)[-1].exp().item()
    hits = (samples == 1.0).sum().item()
    assert abs(hits - n * p_edge) < 5 * math.sqrt(n * p_edge * (1 - p_edge)) + 1
    if temperature != 1.0:
        assert chi_square_pvalue(coarse_counts(MOL, samples), coarse_probs(MOL, row)) < 1e-4


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_gaussian_histogram_matches_distribution(temperature):
    row = torch.tensor([0.8, -1.8], dtype=torch.float64)
    n = 20_000
    samples = GAUSS.sample(row.float().expand(n, 2), temperature=temperature,
                           generator=torch.Generator().manual_seed(9))
    target = row + torch.tensor([0.0, math.log(temperature)], dtype=torch.float64)
    assert chi_square_pvalue(coarse_counts(GAUSS, samples), coarse_probs(GAUSS, target)) > 1e-4


@pytest.mark.parametrize("head,row", [
    (Categorical(256), None),
    (MOL, mol_params([0.5, 0.0, -0.7], [-0.3, 0.35, 0.96], [-3.0, -4.0, -3.5])),
    (DiscretizedMixtureOfLogistics(2), mol_params([0.0, 0.0], [0.1, 0.1005], [-11.0, -12.0])),
    (GAUSS, torch.tensor([0.95, -2.5], dtype=torch.float64)),
], ids=["categorical", "mol", "mol_narrow", "gaussian"])
def test_mean_nll_of_samples_matches_entropy(head, row):
    """The typicality diagnostic: samples' mean NLL estimates the predictive entropy."""
    if row is None:
        row = torch.randn(256, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    n = 20_000
    samples = head.sample(row.float().expand(n, -1), generator=torch.Generator().manual_seed(11))
    targets = samples.double() if samples.is_floating_point() else samples
    nll = -head.log_prob(row[None, :, None].expand(1, -1, n), targets[None])[0]
    entropy = head.entropy(row[None])[0].item()
    assert abs(nll.mean().item() - entropy) < 5 * nll.std().item() / math.sqrt(n) + 1e-9


def test_temperature_zero_gives_the_mode():
    u = torch.rand(6, 2, generator=torch.Generator().manual_seed(12))
    logits = torch.tensor([[0.1, 2.0, 1.9, -1.0], [5.0, 5.0, 0.0, 1.0]])
    assert Categorical(4).sample(logits, u[:2, :1], 0.0).tolist() == [1, 0]

    def greedy_bin(head, row, i=0):
        return head.bin_index(head.sample(row[None], u[i:i + 1, :head.num_uniforms], 0.0)).item()

    for mean, log_scale in [(0.3, -9.0), (-0.2 + 0.49 * 2 * H, -14.0), (1.4, -5.0),
                            (-7.0, 0.0), (0.01, -4.0)]:
        row = torch.tensor([mean, log_scale]).double()   # float32 values, as sampled
        assert greedy_bin(GAUSS, row) == all_bin_log_probs(GAUSS, row).argmax().item()
    # The documented exception: a heavy tail beyond +1 makes the edge bin the global mode;
    # the greedy sample is still the most probable interior bin.
    wide = torch.tensor([0.6, -1.0]).double()
    log_p = all_bin_log_probs(GAUSS, wide)
    assert log_p.argmax().item() == BINS - 1
    assert greedy_bin(GAUSS, wide) == 1 + log_p[1:-1].argmax().item()
    # Well-separated components of equal scale: the heaviest component's peak is the mode.
    for row in [mol_params([0.0, 1.0, -1.0], [-0.5, 0.2, 0.7], [-7.0, -7.0, -7.0]),
                mol_params([2.0, 1.0, 0.0], [1.3, 0.2, -0.7], [-5.0, -5.0, -5.0])]:
        row = row.float().double()
        mode = all_bin_log_probs(MOL, row).argmax().item()
        assert [greedy_bin(MOL, row, i) for i in range(3)] == [mode] * 3


def test_apply_temperature_then_sampling_equals_sampling_with_temperature():
    gen = torch.Generator().manual_seed(13)
    logits = torch.randn(64, 32, generator=gen) * 2
    u = torch.rand(64, generator=gen)
    for t in (0.0, 0.4, 1.0, 2.5):
        assert torch.equal(sample_categorical(apply_temperature(logits, t), u),
                           sample_categorical(logits, u, t))
    greedy = apply_temperature(logits, 0.0)
    assert torch.equal(greedy.argmax(-1), logits.argmax(-1))
    assert (torch.isfinite(greedy).sum(-1) == 1).all()


def test_sampling_never_draws_filtered_classes():
    logits = torch.tensor([[-math.inf, 1.0, -math.inf, 0.0, -math.inf]]).expand(1001, 5)
    u = torch.linspace(0, 1 - 2 ** -24, 1001)
    samples = sample_categorical(logits, u)
    assert set(samples.tolist()) == {1, 3}


# --- logit filters ------------------------------------------------------------------------

def kept(logits: torch.Tensor) -> list[int]:
    return torch.nonzero(torch.isfinite(logits)).flatten().tolist()


def test_top_p_keeps_the_smallest_nucleus():
    # Probabilities 0.2, 0.5, 0.1, 0.2 (a tie between classes 0 and 3).
    logits = torch.tensor([0.2, 0.5, 0.1, 0.2]).log() + 3.0
    assert kept(top_p_filter(logits, 0.0)) == [1]
    assert kept(top_p_filter(logits, 0.3)) == [1]
    assert kept(top_p_filter(logits, 0.65)) == [0, 1]
    assert kept(top_p_filter(logits, 0.85)) == [0, 1, 3]
    assert kept(top_p_filter(logits, 0.95)) == [0, 1, 2, 3]
    assert torch.equal(top_p_filter(logits, 1.0), logits)
    out = top_p_filter(logits, 0.65)
    assert torch.equal(out[[0, 1]], logits[[0, 1]])
    # Rows are independent; already removed classes stay removed.
    batch = torch.stack([logits, torch.tensor([0.0, -math.inf, 0.0, 0.0])])
    assert [kept(r) for r in top_p_filter(batch, 0.6)] == [[0, 1], [0, 2]]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-6, 6), min_size=2, max_size=12), st.floats(0.0, 0.99))
def test_top_p_set_is_minimal(values, p):
    logits = torch.tensor(values, dtype=torch.float64)
    probs = torch.softmax(logits, 0)
    keep = torch.isfinite(top_p_filter(logits, p))
    assert keep[logits.argmax()]
    assert probs[keep].sum() >= p - 1e-12
    assert probs[keep].min() >= probs[~keep].max() if (~keep).any() else True
    assert probs[keep].sum() - probs[keep].min() < p + 1e-12


def test_typical_keeps_the_most_typical_classes():
    # p = 0.4, 0.3, 0.2, 0.1: H = 1.2799 nats; |surprisal - H| = 0.364, 0.076, 0.330, 1.023.
    logits = torch.tensor([0.4, 0.3, 0.2, 0.1]).log()
    assert kept(typical_filter(logits, 0.0)) == [1]
    assert kept(typical_filter(logits, 0.25)) == [1]
    assert kept(typical_filter(logits, 0.45)) == [1, 2]       # the argmax is not kept
    assert kept(typical_filter(logits, 0.8)) == [0, 1, 2]
    assert kept(typical_filter(logits, 0.95)) == [0, 1, 2, 3]
    assert torch.equal(typical_filter(logits, 1.0), logits)
    # Renormalised 4/7, 0, 2/7, 1/7: typicality order 2, 0, 3; the removed class stays out.
    filtered = torch.tensor([0.4, 0.0, 0.2, 0.1]).log()
    assert kept(typical_filter(filtered, 0.8)) == [0, 2]
    assert kept(typical_filter(filtered, 0.9)) == [0, 2, 3]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-6, 6), min_size=2, max_size=12), st.floats(0.0, 0.99))
def test_typical_set_matches_brute_force(values, mass):
    logits = torch.tensor(values, dtype=torch.float64)
    p = torch.softmax(logits, 0).numpy()
    entropy = -(p * np.log(p)).sum()
    scores = np.abs(-np.log(p) - entropy)
    order = np.argsort(scores, kind="stable")
    # Near-ties in the score or in the running mass may be ordered either way by rounding
    # (numpy and torch round differently): both answers are right there, so skip them.
    assume(np.min(np.diff(np.sort(scores))) > 1e-9)
    assume(np.min(np.abs(np.cumsum(p[order]) - mass)) > 1e-9)
    n = next(i + 1 for i in range(len(p)) if p[order[:i + 1]].sum() >= mass or i == len(p) - 1)
    assert kept(typical_filter(logits, mass)) == sorted(order[:n].tolist())


def test_cfg_logits_interpolates_log_probabilities():
    gen = torch.Generator().manual_seed(14)
    cond, uncond = torch.randn(2, 3, 256, generator=gen, dtype=torch.float64) * 3
    log_c, log_u = torch.log_softmax(cond, -1), torch.log_softmax(uncond, -1)
    assert torch.allclose(cfg_logits(cond, uncond, 1.0), log_c, atol=1e-12)
    assert torch.allclose(cfg_logits(cond, uncond, 0.0), log_u, atol=1e-12)
    assert torch.allclose(cfg_logits(cond, uncond, 3.0), 3 * log_c - 2 * log_u, atol=1e-12)
    # gamma = 0.5 is the normalised geometric mean of the two distributions.
    mixed = torch.softmax(cfg_logits(cond, uncond, 0.5), -1)
    geo = (log_c.exp() * log_u.exp()).sqrt()
    assert torch.allclose(mixed, geo / geo.sum(-1, keepdim=True), atol=1e-12)
    with pytest.raises(UsageError):
        cfg_logits(cond, uncond[..., :10], 2.0)


# --- entropy ------------------------------------------------------------------------------

def test_categorical_entropy():
    head = Categorical(256)
    assert head.entropy(torch.zeros(2, 256)).tolist() == pytest.approx([math.log(256)] * 2,
                                                                        abs=1e-5)
    logits = torch.randn(4, 256, generator=torch.Generator().manual_seed(15), dtype=torch.float64)
    expected = stats.entropy(torch.softmax(logits, -1).numpy(), axis=-1)
    assert np.allclose(head.entropy(logits).numpy(), expected, atol=1e-12)
    logits[0, :200] = -math.inf
    assert torch.isfinite(head.entropy(logits)).all()


def test_grid_entropies():
    # Many bins per standard deviation: H ~ differential entropy - log(bin width).
    sigma = 0.01
    row = torch.tensor([[0.0, math.log(sigma)]], dtype=torch.float64)
    expected = 0.5 * math.log(2 * math.pi * math.e * sigma ** 2) - math.log(2 * H)
    assert GAUSS.entropy(row).item() == pytest.approx(expected, abs=1e-5)
    assert GAUSS.entropy(row.float()).dtype == torch.float32
    # At log_scale_min one component sits in one bin: entropy ~ 0.
    point = mol_params([20.0, 0.0, 0.0], [GRID64[36044].item(), -0.5, 0.5], [-14.0] * 3)
    assert 0.0 <= MOL.entropy(point[None]).item() < 1e-5
    # Off centre (a quarter bin, 9 scales from the boundary) about 1e-4 of it spills over.
    point[3] = 0.1
    assert 1e-4 < MOL.entropy(point[None]).item() < 1e-2
    # Against -sum p log p from scipy's logistic CDF, on a coarser grid to keep it quick.
    head = DiscretizedMixtureOfLogistics(2, bins=1024, log_scale_min=-9.0)
    logits, means, scales = np.array([0.3, -0.3]), np.array([-0.2, 0.4]), np.exp([-3.0, -2.5])
    edges = np.linspace(-1, 1, 1024)[:, None] + np.array([-1, 1]) / 1023
    edges[0, 0], edges[-1, 1] = -np.inf, np.inf
    w = special.softmax(logits)
    p = sum(wk * np.diff(stats.logistic.cdf(edges, mk, sk), axis=1)[:, 0]
            for wk, mk, sk in zip(w, means, scales))
    row = torch.tensor([*logits, *means, *np.log(scales)])[None]
    assert head.entropy(row).item() == pytest.approx(stats.entropy(p), rel=1e-9)


def test_bits_per_sample():
    assert nats_to_bits(math.log(2) * 8) == pytest.approx(8.0)
    assert Categorical().bits_per_sample(math.log(256)) == pytest.approx(8.0)
    assert torch.allclose(MOL.bits_per_sample(torch.tensor([math.log(2)])), torch.tensor([1.0]))


# --- configuration and argument errors ----------------------------------------------------

def test_interface_sizes_and_factory():
    assert (Categorical(256).num_params, Categorical(256).num_uniforms) == (256, 1)
    assert (MOL.num_params, MOL.num_uniforms) == (9, 2)
    assert (GAUSS.num_params, GAUSS.num_uniforms) == (2, 1)
    assert build_output_distribution("mol", num_mixtures=3) == MOL
    assert build_output_distribution("gaussian") == DiscretizedGaussian()
    with pytest.raises(ConfigError):
        build_output_distribution("laplace")
    with pytest.raises(ConfigError):
        build_output_distribution("categorical", classes=256)


@pytest.mark.parametrize("make", [lambda: Categorical(100), lambda: Categorical(1),
                                  lambda: DiscretizedMixtureOfLogistics(0),
                                  lambda: DiscretizedGaussian(bins=1),
                                  lambda: DiscretizedGaussian(log_scale_min=float("nan"))])
def test_bad_configs_raise(make):
    with pytest.raises(ConfigError):
        make()


def test_bad_arguments_raise():
    with pytest.raises(UsageError):
        MOL.log_prob(torch.zeros(1, 8, 5), torch.zeros(1, 5))
    with pytest.raises(UsageError):
        MOL.log_prob(torch.zeros(1, 9, 5), torch.zeros(1, 4))
    with pytest.raises(UsageError):
        MOL.sample(torch.zeros(2, 9), torch.zeros(2, 1))
    with pytest.raises(UsageError):
        GAUSS.sample(torch.zeros(2, 2, 1))
    with pytest.raises(UsageError):
        Categorical(4).sample(torch.zeros(2, 4), temperature=-1.0)
    with pytest.raises(UsageError):
        top_p_filter(torch.zeros(4), 1.5)
    with pytest.raises(UsageError):
        typical_filter(torch.zeros(4), -0.1)
