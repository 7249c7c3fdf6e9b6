"""The spectral front-end against librosa, for every preset and for batched input."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch

from wavegen.audio.signals import chord, sweep
from wavegen.audio.features import PRESETS, FeatureConfig, get_preset
from wavegen.audio.spectral import (STFT, LogMelSpectrogram, MelSpectrogram, Spectrogram,
                                    compress, decompress, frame_pieces, magnitude,
                                    mel_filterbank, mel_frequencies)
from wavegen.errors import UsageError

RTOL = 1e-4


def librosa_magnitude(x: np.ndarray, c: FeatureConfig) -> np.ndarray:
    """|STFT|^power computed by librosa with the config's framing conventions."""
    if c.padding == "center":
        spec = librosa.stft(x, n_fft=c.n_fft, hop_length=c.hop_length, win_length=c.win_length,
                            window=c.window, center=True, pad_mode=c.pad_mode)
    else:
        pad = [(0, 0)] * (x.ndim - 1) + [(c.pad_amount, c.pad_amount)]
        padded = np.pad(x, pad, mode=c.pad_mode) if c.pad_amount else x
        spec = librosa.stft(padded, n_fft=c.n_fft, hop_length=c.hop_length,
                            win_length=c.win_length, window=c.window, center=False)
    if c.stft_normalized:
        spec = spec / np.sqrt(c.n_fft)
    mag = np.sqrt(np.abs(spec).astype(np.float64) ** 2 + c.magnitude_eps)
    return mag ** c.power


def librosa_mel(x: np.ndarray, c: FeatureConfig) -> np.ndarray:
    return librosa.feature.melspectrogram(
        S=librosa_magnitude(x, c), sr=c.sample_rate, n_fft=c.n_fft, n_mels=c.n_mels,
        fmin=c.fmin, fmax=c.fmax_hz, htk=c.mel_scale == "htk", norm=c.mel_norm)


def rel_error(ours: torch.Tensor, theirs: np.ndarray) -> float:
    theirs = np.asarray(theirs, dtype=np.float64)
    return float(np.abs(ours.double().numpy() - theirs).max() / np.abs(theirs).max())


def mixed_signal(sample_rate: int, seconds: float = 1.3, seed: int = 0) -> np.ndarray:
    x = chord(sample_rate, seconds) + sweep(sample_rate, seconds) * 0.5
    noise = np.random.default_rng(seed).standard_normal(len(x)) * 0.05
    return (x + noise).astype(np.float32)


VARIANTS = {
    **PRESETS,
    "center-constant-power": get_preset("hifigan-22k").replace(
        padding="center", pad_mode="constant", power=2.0, log="db"),
    "short-window-hamming": get_preset("hifigan-16k").replace(
        win_length=800, hop_length=200, window="hamming", fmin=80.0, fmax=7600.0),
    "no-padding-normalized": get_preset("melgan-22k").replace(padding="none", stft_normalized=True),
    "htk-unnormalized": get_preset("hifigan-22k").replace(mel_scale="htk", mel_norm=None),
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_magnitude_and_mel_match_librosa(name):
    c = VARIANTS[name]
    x = mixed_signal(c.sample_rate)
    ours = Spectrogram(c)(torch.from_numpy(x))
    theirs = librosa_magnitude(x, c)
    assert ours.shape == theirs.shape == (c.n_freq, c.num_frames(len(x)))
    assert rel_error(ours, theirs) <= RTOL
    mel = MelSpectrogram(c)(torch.from_numpy(x))
    assert mel.shape == (c.n_mels, c.num_frames(len(x)))
    assert rel_error(mel, librosa_mel(x, c)) <= RTOL


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_batched_input_matches_librosa_per_item(name):
    c = PRESETS[name]
    batch = np.stack([mixed_signal(c.sample_rate, 0.7, seed=s) * (s + 1) / 3 for s in range(3)])
    mel = MelSpectrogram(c)(torch.from_numpy(batch)[:, None, :])  # [batch, 1, time]
    assert mel.shape == (3, c.n_mels, c.num_frames(batch.shape[-1]))
    for i in range(3):
        assert rel_error(mel[i], librosa_mel(batch[i], c)) <= RTOL


def test_multichannel_keeps_channel_axis():
    c = get_preset("hifigan-22k")
    wave = torch.randn(2, 3, 4096) * 0.1
    mel = MelSpectrogram(c)(wave)
    assert mel.shape == (2, 3, c.n_mels, c.num_frames(4096))
    assert torch.allclose(mel[1, 2], MelSpectrogram(c)(wave[1, 2]), atol=1e-6)


@pytest.mark.parametrize("log", ["ln", "log10", "db", "none"])
@pytest.mark.parametrize("power", [1.0, 2.0])
def test_log_compression_conventions(log, power):
    c = get_preset("hifigan-22k").replace(log=log, power=power)
    x = mixed_signal(c.sample_rate, 0.5)
    mel = librosa_mel(x, c)
    ours = LogMelSpectrogram(c)(torch.from_numpy(x)).double().numpy()
    floor = np.maximum(mel, c.log_clamp)
    expected = {"ln": np.log(floor), "log10": np.log10(floor), "none": mel,
                "db": 20 / power * np.log10(floor)}[log]
    assert np.abs(ours - expected).max() <= 1e-3 * max(1.0, np.abs(expected).max())
    if log == "db" and power == 2.0:
        assert np.allclose(ours, librosa.power_to_db(mel, ref=1.0, amin=c.log_clamp, top_db=None),
                           atol=1e-3)
    back = decompress(compress(torch.from_numpy(mel), c), c).numpy()
    assert np.allclose(back, floor, rtol=1e-5)


def test_filterbank_is_librosas():
    c = get_preset("vocos-24k-100")
    expected = librosa.filters.mel(sr=24000, n_fft=1024, n_mels=100, fmin=0.0, fmax=12000.0,
                                   htk=True, norm=None)
    assert np.array_equal(mel_filterbank(c).numpy(), expected)
    centres = mel_frequencies(c)
    assert centres.shape == (100,) and np.all(np.diff(centres) > 0) and centres[-1] < 12000


def test_silence_is_finite_and_at_the_floor():
    c = get_preset("hifigan-22k")
    logmel = LogMelSpectrogram(c)(torch.zeros(2, 1, 8192))
    assert torch.isfinite(logmel).all()
    # sqrt(1e-9) ~ 3e-5 per bin: the floor dominates where the preset says it should.
    assert logmel.max() <= np.log(1e-5) + 1.0


def test_gradients_flow_and_match_finite_differences():
    c = FeatureConfig(sample_rate=8000, n_fft=64, hop_length=16, win_length=64, n_mels=8,
                      fmax=4000.0, magnitude_eps=1e-6)
    x = (torch.randn(1, 1, 256, dtype=torch.float64) * 0.3).requires_grad_()
    module = LogMelSpectrogram(c)
    assert torch.autograd.gradcheck(lambda w: module(w).sum(), (x,), eps=1e-6, atol=1e-4)


def test_module_moves_with_to_and_keeps_no_state():
    module = LogMelSpectrogram(get_preset("hifigan-22k"))
    assert module.state_dict() == {}  # nothing derived from the config is saved twice
    module = module.to(torch.float64)
    out = module(torch.randn(1, 1, 4096, dtype=torch.float64))
    assert out.dtype == torch.float64


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_stft_inverse_is_exact(name):
    c = VARIANTS[name]
    x = torch.from_numpy(mixed_signal(c.sample_rate, 0.6))
    stft = STFT(c)
    y = stft.inverse(stft(x), length=x.shape[-1])
    # With no padding the first and last samples see a zero window and cannot come back.
    keep = slice(c.n_fft, -c.n_fft) if c.padding == "none" else slice(None)
    assert torch.allclose(y[keep], x[keep], atol=2e-6)


def test_too_short_input_is_a_clear_error():
    with pytest.raises(UsageError, match="too short"):
        Spectrogram(get_preset("hifigan-22k"))(torch.zeros(100))
    with pytest.raises(UsageError, match="shorter than one frame"):
        Spectrogram(get_preset("melgan-22k").replace(padding="none"))(torch.zeros(500))


@pytest.mark.parametrize("power,eps", [(1.0, 0.0), (2.0, 0.0), (1.5, 0.0), (1.0, 1e-9)])
def test_magnitude_grad_path_equals_fast_path_and_is_finite_on_silence(power, eps):
    c = get_preset("melgan-22k")
    wave = torch.cat([torch.zeros(1, 4096), torch.from_numpy(chord(c.sample_rate, 4096 / 22050))[None]])
    spec = STFT(c)(wave)
    with torch.no_grad():
        fast = magnitude(spec, power, eps)
    leaf = spec.detach().requires_grad_(True)
    slow = magnitude(leaf, power, eps)
    assert torch.allclose(fast, slow, rtol=1e-6, atol=1e-12)
    slow.sum().backward()
    assert torch.isfinite(torch.view_as_real(leaf.grad)).all()


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_logmel_gradient_of_digital_silence_is_finite(name):
    wave = torch.zeros(1, 1, 8192, requires_grad=True)
    LogMelSpectrogram(PRESETS[name])(wave).sum().backward()
    assert torch.isfinite(wave.grad).all()


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_blocked_cpu_path_equals_reference_path(name):
    c = VARIANTS[name]
    module = MelSpectrogram(c)
    module.block_frames = 7  # several blocks, the last one partial
    wave = torch.from_numpy(np.stack([mixed_signal(c.sample_rate, 0.4, seed=s) for s in range(2)]))
    with torch.no_grad():
        blocked = module.blocked(wave[:, None])
        reference = module.reference(wave[:, None])
    assert blocked.shape == reference.shape == (2, c.n_mels, c.num_frames(wave.shape[-1]))
    assert blocked.is_contiguous()
    assert (blocked - reference).abs().max() <= 1e-5 * reference.abs().max()
    # forward() picks the blocked path for CPU inference and the reference under autograd
    assert torch.equal(module(wave), blocked)
    leaf = wave.clone().requires_grad_(True)
    assert torch.allclose(module(leaf), reference, rtol=0, atol=1e-6 * reference.abs().max().item())


def test_band_cropping_skips_only_unused_bins():
    c = get_preset("hifigan-22k")  # fmax 8 kHz: bins above ~372 never reach a band
    module = MelSpectrogram(c)
    lo, hi = module.band
    full = mel_filterbank(c)
    assert lo <= 1 and hi < c.n_freq
    assert full[:, :lo].abs().sum() == 0 and full[:, hi:].abs().sum() == 0
    assert full[:, lo].abs().sum() > 0 and full[:, hi - 1].abs().sum() > 0


@pytest.mark.parametrize("name", sorted(VARIANTS))
@pytest.mark.parametrize("length", [3000, 4096, 8191, 22050 + 77])
def test_frame_pieces_equal_padded_framing(name, length):
    c = VARIANTS[name]
    x = torch.randn(length, dtype=torch.float64)
    pad = c.n_fft // 2 if c.padding == "center" else c.pad_amount
    expected = torch.nn.functional.pad(x[None, None], (pad, pad), mode=c.pad_mode)[0, 0] \
        if pad else x
    expected = expected.unfold(-1, c.n_fft, c.hop_length)
    got = torch.cat(frame_pieces(x, c))
    assert got.shape == expected.shape == (c.num_frames(length), c.n_fft)
    assert torch.equal(got, expected)


def test_logmel_blocked_and_reference_paths_agree():
    c = get_preset("hifigan-22k")
    wave = torch.from_numpy(mixed_signal(c.sample_rate, 0.5))[None, None]
    module = LogMelSpectrogram(c)
    with torch.no_grad():
        fast = module(wave)
        slow = compress(module.mel.reference(wave), c)
    assert torch.allclose(fast, slow, atol=1e-4)


@pytest.mark.parametrize("n_fft,hop", [(1024, 256), (512, 128), (1000, 300), (64, 64)])
def test_overlap_add_equals_fold_with_and_without_autograd(n_fft, hop):
    import torch.nn.functional as F

    from wavegen.audio.spectral import _overlap_add

    frames = torch.randn(3, n_fft, 11, generator=torch.Generator().manual_seed(0))
    full = n_fft + 10 * hop
    expected = F.fold(frames, output_size=(1, full), kernel_size=(1, n_fft),
                      stride=(1, hop))[:, 0, 0]
    torch.testing.assert_close(_overlap_add(frames.clone(), n_fft, hop, full), expected)
    leaf = frames.clone().requires_grad_(True)
    out = _overlap_add(leaf, n_fft, hop, full)
    torch.testing.assert_close(out, expected)
    (out * expected).sum().backward()
    reference = frames.clone().requires_grad_(True)
    (F.fold(reference, output_size=(1, full), kernel_size=(1, n_fft),
            stride=(1, hop))[:, 0, 0] * expected).sum().backward()
    torch.testing.assert_close(leaf.grad, reference.grad)
