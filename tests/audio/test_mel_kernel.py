"""The fused C magnitude -> mel kernel (wavegen/audio/mel_kernel.c) against the PyTorch paths."""

from __future__ import annotations

import pytest
import torch

from wavegen.audio import mel_kernel
from wavegen.audio.features import PRESETS, get_preset
from wavegen.audio.spectral import LogMelSpectrogram, MelSpectrogram
from wavegen.native import find_compiler

needs_compiler = pytest.mark.skipif(find_compiler() is None, reason="no C compiler here")


@needs_compiler
def test_the_kernel_builds_where_a_compiler_exists():
    assert mel_kernel.available(), mel_kernel.status()
    assert mel_kernel.status().startswith("in use")


@needs_compiler
@pytest.mark.parametrize("power", [1.0, 2.0])
def test_fused_mel_equals_a_dense_product_for_any_banded_filterbank(power):
    g = torch.Generator().manual_seed(0)
    n_freq, n_mels, frames = 200, 12, 37
    bank = torch.rand(n_mels, 150, generator=g)
    # Irregular bands: empty rows, zeros inside a run, runs at both edges of the band.
    mask = torch.zeros_like(bank, dtype=torch.bool)
    for m in range(n_mels):
        a = int(torch.randint(0, 140, (), generator=g))
        mask[m, a:a + int(torch.randint(1, 30, (), generator=g))] = True
    mask[8] = False
    mask[3] = False
    mask[5, 0] = mask[6, -1] = True
    bank = bank * mask
    bank[8, 55] = 0.0  # a zero inside band 8's run of bins 50..59
    bank[8, 50:55] = bank[8, 56:60] = 0.5
    first_bin = 20
    spec = torch.randn(frames, n_freq, dtype=torch.complex64, generator=g)
    eps = 1e-3
    banded = mel_kernel.BandedFilterbank(bank, first_bin)
    out = torch.full((n_mels, frames), float("nan"))
    assert mel_kernel.fused_mel(spec, banded, power, eps, out)
    mag = (spec.abs().double() ** 2 + eps) ** (power / 2)
    expected = bank.double() @ mag[:, first_bin:first_bin + 150].t()
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)
    assert torch.all(out[3] == 0)


@needs_compiler
def test_fused_mel_writes_into_a_column_slice_only():
    spec = torch.randn(10, 40, dtype=torch.complex64)
    bank = mel_kernel.BandedFilterbank(torch.rand(4, 30), 5)
    buffer = torch.full((4, 30), -1.0)
    assert mel_kernel.fused_mel(spec, bank, 1.0, 0.0, buffer[:, 7:17])
    assert torch.all(buffer[:, :7] == -1) and torch.all(buffer[:, 17:] == -1)
    assert torch.all(buffer[:, 7:17] >= 0)


def test_fused_mel_declines_what_it_does_not_cover():
    bank = mel_kernel.BandedFilterbank(torch.rand(4, 30), 5)
    out = torch.zeros(4, 10)
    assert not mel_kernel.fused_mel(torch.randn(10, 40, dtype=torch.complex128), bank, 1.0, 0.0,
                                    out)
    assert not mel_kernel.fused_mel(torch.randn(10, 40, dtype=torch.complex64), bank, 0.5, 0.0,
                                    out)
    assert not mel_kernel.fused_mel(torch.randn(10, 20, dtype=torch.complex64), bank, 1.0, 0.0,
                                    out)  # the bank reaches bin 35
    assert not mel_kernel.fused_mel(torch.randn(9, 40, dtype=torch.complex64), bank, 1.0, 0.0,
                                    out)  # frames do not match the output
    assert torch.all(out == 0)


@needs_compiler
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_fused_path_equals_the_torch_paths(name, monkeypatch):
    """(tests/audio/test_spectral.py compares the default path, now the fused one, with librosa.)"""
    c = get_preset(name)
    g = torch.Generator().manual_seed(1)
    wave = torch.randn(2, 1, 2 * c.sample_rate + 77, generator=g) * 0.1
    module = MelSpectrogram(c)
    with torch.no_grad():
        fused = module(wave)
        reference = module.reference(wave)
        monkeypatch.setenv("WAVEGEN_DISABLE_NATIVE", "1")
        assert not mel_kernel.available()
        torch_blocked = module(wave)
    assert fused.shape == reference.shape == torch_blocked.shape
    scale = reference.abs().max()
    assert (fused - reference).abs().max() <= 1e-5 * scale
    assert (fused - torch_blocked).abs().max() <= 1e-5 * scale


@needs_compiler
def test_a_broken_compiler_falls_back_to_the_same_values(monkeypatch, tmp_path):
    c = get_preset("hifigan-22k")
    wave = torch.randn(1, 1, c.sample_rate, generator=torch.Generator().manual_seed(2)) * 0.1
    expected = LogMelSpectrogram(c)(wave)
    monkeypatch.setenv("CC", "false")
    monkeypatch.setenv("WAVEGEN_KERNEL_CACHE", str(tmp_path))
    assert not mel_kernel.available()
    reason = mel_kernel.status()
    assert reason.startswith("not used (fused mel kernel: compiling mel_kernel.c")
    assert "\n" not in reason
    got = LogMelSpectrogram(c)(wave)
    assert (got - expected).abs().max() <= 1e-5 * expected.abs().max()
