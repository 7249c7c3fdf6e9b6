"""Spectral losses: definitions against numpy/librosa, zero on identity, safety on silence
and under autocast."""

from __future__ import annotations

import warnings

import librosa
import numpy as np
import pytest
import torch

from wavegen.audio.signals import chord, sweep
from wavegen.audio.features import get_preset
from wavegen.audio.losses import (PWG_RESOLUTIONS, MelL1Loss, MultiResolutionSTFTLoss,
                                  SpectralLoss, STFTLoss)
from wavegen.audio.spectral import LogMelSpectrogram
from wavegen.errors import UsageError

SR = 16000
LENGTH = 8192


def signal(seed: int = 0, batch: int = 2) -> torch.Tensor:
    """[batch, 1, LENGTH] mixtures of tones, a sweep and a little noise."""
    rng = np.random.default_rng(seed)
    base = chord(SR, LENGTH / SR) + 0.5 * sweep(SR, LENGTH / SR)
    items = [base * (0.5 + 0.5 * i) + 0.02 * rng.standard_normal(LENGTH) for i in range(batch)]
    return torch.from_numpy(np.stack(items).astype(np.float32))[:, None]


def fp16_cpu_autocast_works() -> bool:
    """Whether this torch really runs CPU autocast in float16 (older ones warn and disable)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with torch.autocast("cpu", dtype=torch.float16):
                a = torch.ones(2, 2)
                return (a @ a).dtype == torch.float16
        except (RuntimeError, ValueError):
            return False


AUTOCAST_DTYPES = [None, torch.bfloat16] + ([torch.float16] if fp16_cpu_autocast_works() else [])
AUTOCAST_IDS = [str(d).replace("torch.", "") if d else "float32" for d in AUTOCAST_DTYPES]


def autocast(dtype):
    return torch.autocast("cpu", dtype=dtype) if dtype is not None else torch.autocast(
        "cpu", enabled=False)


# --------------------------------------------------------------------------- STFTLoss

def test_stft_loss_zero_for_identical_and_positive_otherwise():
    loss = STFTLoss(1024, 120, 600)
    x = signal(0)
    same = loss(x, x.clone())
    assert isinstance(same, SpectralLoss)
    assert same.total.item() == 0.0
    assert same.spectral_convergence.item() == 0.0
    assert same.log_magnitude.item() == 0.0
    other = loss(signal(1) * 0.9, x)
    assert other.spectral_convergence.item() > 0.01
    assert other.log_magnitude.item() > 0.01
    assert other.total.item() == pytest.approx(
        other.spectral_convergence.item() + other.log_magnitude.item(), rel=1e-6)


@pytest.mark.parametrize("fft_size,hop,win", PWG_RESOLUTIONS)
def test_stft_loss_terms_match_numpy_librosa(fft_size, hop, win):
    x = signal(0, batch=1)[0, 0].numpy()
    y = (x + 0.05 * np.random.default_rng(3).standard_normal(x.shape)).astype(np.float32)

    def mag(a):
        spec = librosa.stft(a.astype(np.float64), n_fft=fft_size, hop_length=hop,
                            win_length=win, window="hann", center=True, pad_mode="reflect")
        return np.sqrt(np.maximum(np.abs(spec) ** 2, 1e-7))

    ref, est = mag(x), mag(y)
    sc_expected = np.linalg.norm(ref - est) / np.linalg.norm(ref)
    mag_expected = np.mean(np.abs(np.log(ref) - np.log(est)))
    got = STFTLoss(fft_size, hop, win)(torch.from_numpy(y)[None], torch.from_numpy(x)[None])
    assert got.spectral_convergence.item() == pytest.approx(sc_expected, rel=1e-4)
    assert got.log_magnitude.item() == pytest.approx(mag_expected, rel=1e-4)
    # Spectral convergence is normalised by the target: swapping the arguments changes it.
    swapped = STFTLoss(fft_size, hop, win)(torch.from_numpy(x)[None], torch.from_numpy(y)[None])
    assert swapped.spectral_convergence.item() == pytest.approx(
        np.linalg.norm(ref - est) / np.linalg.norm(est), rel=1e-4)


def test_stft_loss_batch_uses_batch_frobenius_norm():
    x, y = signal(0), signal(5)
    loss = STFTLoss(512, 50, 240)
    est_mag, ref_mag = loss.magnitudes(y[:, 0], x[:, 0])
    expected = torch.linalg.norm(ref_mag - est_mag) / torch.linalg.norm(ref_mag)
    assert loss(y, x).spectral_convergence.item() == pytest.approx(expected.item(), rel=1e-5)


# --------------------------------------------------------------------------- MR-STFT

def test_multi_resolution_averages_resolutions_with_weights():
    x, y = signal(0), signal(2)
    parts = [STFTLoss(*r)(y, x) for r in PWG_RESOLUTIONS]
    sc = sum(p.spectral_convergence for p in parts) / 3
    mag = sum(p.log_magnitude for p in parts) / 3
    out = MultiResolutionSTFTLoss(sc_weight=2.0, mag_weight=0.5)(y, x)
    assert out.spectral_convergence.item() == pytest.approx(sc.item(), rel=1e-6)
    assert out.log_magnitude.item() == pytest.approx(mag.item(), rel=1e-6)
    assert out.total.item() == pytest.approx(2.0 * sc.item() + 0.5 * mag.item(), rel=1e-6)
    assert MultiResolutionSTFTLoss()(x, x).total.item() == 0.0


def test_multi_resolution_loss_falls_as_estimate_approaches_target():
    x = signal(0)
    noise = torch.from_numpy(np.random.default_rng(9).standard_normal(x.shape).astype(np.float32))
    loss = MultiResolutionSTFTLoss()
    values = [loss(x + level * noise, x).total.item() for level in (0.3, 0.1, 0.03, 0.01)]
    assert all(a > b for a, b in zip(values, values[1:])), values


def test_loss_accepts_both_layouts_and_rejects_mismatches():
    x, y = signal(0), signal(1)
    loss = MultiResolutionSTFTLoss()
    assert loss(y, x).total.item() == pytest.approx(loss(y[:, 0], x[:, 0]).total.item(), rel=1e-6)
    with pytest.raises(UsageError, match="equal shapes"):
        loss(y[:, 0], x)
    with pytest.raises(UsageError, match="equal shapes"):
        loss(y[..., :-1], x)
    with pytest.raises(UsageError):
        loss(y.expand(-1, 2, -1), x.expand(-1, 2, -1))
    with pytest.raises(UsageError):
        loss(y[0, 0], x[0, 0])
    with pytest.raises(UsageError):
        loss(y[..., :600], x[..., :600])  # shorter than the 2048-point reflect padding
    with pytest.raises(UsageError):
        MelL1Loss(get_preset("hifigan-16k"))(y[:1], x)


# --------------------------------------------------------------------------- silence

CASES = {
    "both-zero": lambda x: (torch.zeros_like(x), torch.zeros_like(x)),
    "estimate-zero": lambda x: (torch.zeros_like(x), x),
    "target-zero": lambda x: (x, torch.zeros_like(x)),
    "identical": lambda x: (x, x.clone()),
}
LOSSES = {
    "stft": lambda: STFTLoss(1024, 120, 600),
    "mr-stft": lambda: MultiResolutionSTFTLoss(),
    # MelGAN's front-end has magnitude_eps=0: sqrt(0) at silence is the hard case.
    "mel-melgan": lambda: MelL1Loss(get_preset("melgan-22k")),
    "mel-hifigan": lambda: MelL1Loss(get_preset("hifigan-16k")),
}


def total(out):
    return out.total if isinstance(out, SpectralLoss) else out


@pytest.mark.parametrize("dtype", AUTOCAST_DTYPES, ids=AUTOCAST_IDS)
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("name", LOSSES)
def test_finite_values_and_gradients(name, case, dtype):
    # The estimate comes out of an (identity) linear layer so that under autocast it is a
    # low-precision tensor, as a generator's output would be.
    block, length = 64, 4096
    layer = torch.nn.Linear(block, block)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(block))
        layer.bias.zero_()
    estimate_in, target = CASES[case](signal(0)[..., :length])
    source = estimate_in.reshape(2, length // block, block).clone().requires_grad_(True)
    loss_fn = LOSSES[name]()
    with autocast(dtype):
        estimate = layer(source).reshape(2, 1, length)
        assert estimate.dtype == (dtype or torch.float32)
        value = total(loss_fn(estimate, target))
    assert value.dtype == torch.float32
    assert value.dim() == 0 and torch.isfinite(value)
    if case == "both-zero" or (case == "identical" and dtype is None):
        assert value.item() == 0.0
    elif case == "identical":
        # Low-precision rounding of the layer output makes the copy only nearly identical.
        assert 0.0 <= value.item() < 0.5
    else:
        assert value.item() > 0.1
    value.backward()
    for grad in (source.grad, layer.weight.grad, layer.bias.grad):
        assert grad is not None and torch.isfinite(grad).all()


@pytest.mark.parametrize("name", ["stft", "mr-stft", "mel-melgan"])
def test_gradient_reaches_silent_target_argument(name):
    x = signal(0)
    target = torch.zeros_like(x, requires_grad=True)
    estimate = x.clone().requires_grad_(True)
    total(LOSSES[name]()(estimate, target)).backward()
    assert torch.isfinite(target.grad).all() and torch.isfinite(estimate.grad).all()
    assert estimate.grad.abs().sum() > 0


def test_loss_is_float32_for_half_precision_inputs():
    x = signal(0)
    out = MultiResolutionSTFTLoss()(x.bfloat16(), x.double())
    assert out.total.dtype == torch.float32
    assert out.total.item() < 0.1


# --------------------------------------------------------------------------- mel L1

def test_mel_l1_matches_logmel_spectrogram_and_l1():
    config = get_preset("hifigan-16k")
    x, y = signal(0), signal(4)
    logmel = LogMelSpectrogram(config)
    expected = (logmel(y) - logmel(x)).abs().mean()
    assert MelL1Loss(config)(y, x).item() == pytest.approx(expected.item(), rel=1e-6)


def test_mel_l1_zero_for_identical_and_decreases_with_cleaner_copy():
    config = get_preset("hifigan-16k")
    loss = MelL1Loss(config)
    x = signal(0)
    assert loss(x, x.clone()).item() == 0.0
    noise = torch.from_numpy(np.random.default_rng(1).standard_normal(x.shape).astype(np.float32))
    values = [loss(x + level * noise, x).item() for level in (0.3, 0.1, 0.03, 0.01, 0.003)]
    assert all(a > b for a, b in zip(values, values[1:])), values
    assert values[-1] > 0
