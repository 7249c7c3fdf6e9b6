"""Whole-file caches (audio, log-mel), crop windows, crop seeds and plans."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf
import torch

from wavegen.audio import signals
from wavegen.audio.features import get_preset
from wavegen.audio.io import load_audio
from wavegen.audio.spectral import LogMelSpectrogram
from wavegen.data import feature_cache as fc
from wavegen.errors import ConfigError

RATE = 22050


@pytest.fixture
def wav(tmp_path):
    path = tmp_path / "chord.wav"
    sf.write(path, signals.chord(RATE, 1.5), RATE, subtype="FLOAT")
    return path


def _fail(*args, **kwargs):
    raise AssertionError("this must come from the cache")


def test_audio_cache_reused_and_invalidated_by_a_changed_file(tmp_path, wav, monkeypatch):
    cache = tmp_path / "cache"
    first = np.array(fc.cached_audio(wav, 16000, cache))
    expected, _ = load_audio(wav, sample_rate=16000, mono=True)
    np.testing.assert_array_equal(first, np.clip(expected[0].numpy(), -1, 1))
    assert len(list((cache / "audio" / "16000").glob("*.npy"))) == 1

    with monkeypatch.context() as m:
        m.setattr(fc, "load_audio", _fail)
        np.testing.assert_array_equal(fc.cached_audio(wav, 16000, cache), first)

    # Same size, new content and mtime: a new key, so it is decoded again.
    sf.write(wav, signals.tone(RATE, 1.5, 1000.0), RATE, subtype="FLOAT")
    os.utime(wav, ns=(1, 1))
    calls = []
    real = fc.load_audio
    monkeypatch.setattr(fc, "load_audio", lambda *a, **k: calls.append(a) or real(*a, **k))
    changed = np.array(fc.cached_audio(wav, 16000, cache))
    assert len(calls) == 1
    assert not np.allclose(changed, first)
    assert len(list((cache / "audio" / "16000").glob("*.npy"))) == 2


def test_feature_cache_keyed_by_feature_config(tmp_path, wav, monkeypatch):
    cache = tmp_path / "cache"
    config = get_preset("hifigan-22k")
    mel = np.array(fc.cached_log_mel(wav, config, cache))
    audio = np.asarray(fc.cached_audio(wav, RATE, cache))
    reference = LogMelSpectrogram(config)(torch.from_numpy(np.array(audio)))
    np.testing.assert_allclose(mel, reference.numpy(), rtol=0, atol=1e-5)
    assert mel.shape == (80, len(audio) // 256)

    with monkeypatch.context() as m:   # same config: no new computation
        m.setattr(fc, "_log_mel_module", _fail)
        np.testing.assert_array_equal(fc.cached_log_mel(wav, config, cache), mel)

    # Same shape, different front-end: must be recomputed, never the stale array.
    other = config.replace(log="log10")
    assert other.fingerprint() != config.fingerprint()
    with monkeypatch.context() as m:
        m.setattr(fc, "_log_mel_module", _fail)
        with pytest.raises(AssertionError, match="from the cache"):
            fc.cached_log_mel(wav, other, cache)
    recomputed = np.array(fc.cached_log_mel(wav, other, cache))
    np.testing.assert_allclose(recomputed, mel / np.log(10), rtol=1e-5, atol=1e-5)
    assert {p.name for p in (cache / "features").iterdir()} == {config.fingerprint(),
                                                                 other.fingerprint()}


def test_damaged_cache_entry_is_recomputed(tmp_path, wav):
    cache = tmp_path / "cache"
    good = np.array(fc.cached_audio(wav, RATE, cache))
    (entry,) = (cache / "audio" / str(RATE)).glob("*.npy")
    entry.write_bytes(b"\x93NUMPY garbage")
    np.testing.assert_array_equal(fc.cached_audio(wav, RATE, cache), good)


def test_sliced_mel_matches_the_crop_on_interior_frames(tmp_path, wav):
    # Frame f of the full file <-> samples [f*hop, (f+1)*hop): the log-mel of the crop alone
    # agrees with the slice wherever its frames do not reach into the crop's padding.
    config = get_preset("hifigan-22k")
    cache = tmp_path / "cache"
    full = fc.cached_log_mel(wav, config, cache)
    audio = np.asarray(fc.cached_audio(wav, RATE, cache))
    hop, n = config.hop_length, 64 * config.hop_length
    module = LogMelSpectrogram(config)
    for start in (0, 5 * hop, 37 * hop):
        window = fc.frame_window(full, start, n, hop)
        assert window.shape == (80, 64) and window.dtype == torch.float32
        alone = module(torch.from_numpy(np.array(audio[start:start + n])))
        inner = slice(config.pad_amount // hop + 1, (n - config.n_fft + config.pad_amount) // hop)
        assert inner.stop - inner.start > 50
        torch.testing.assert_close(window[:, inner], alone[:, inner], rtol=1e-4, atol=1e-4)
        # Off by one hop it no longer matches.
        shifted = fc.frame_window(full, start + hop, n, hop) if start + n + hop <= len(audio) else None
        if shifted is not None:
            assert (shifted[:, inner] - alone[:, inner]).abs().max() > 1e-2


def test_crops_refuse_unaligned_frames():
    config = get_preset("hifigan-22k")
    fc.check_crop(8192, 256, config)
    with pytest.raises(ConfigError, match="multiple of the hop"):
        fc.check_crop(8000, 256, config)
    for padding in ("center", "none"):
        with pytest.raises(ConfigError, match="hop_aligned"):
            fc.check_crop(8192, 256, config.replace(padding=padding))
    with pytest.raises(ConfigError, match="hop_length"):
        fc.check_crop(8192, 128, config)
    with pytest.raises(ConfigError, match="not on the hop grid"):
        fc.frame_window(np.zeros((80, 100), np.float32), 100, 2560, 256)


def test_array_ref_reads_rows(tmp_path):
    data = np.arange(60, dtype=np.float32).reshape(20, 3)
    target = tmp_path / "a.npy"
    fc.cached_array(target, lambda: data)
    ref = fc.ArrayRef.of(target)
    np.testing.assert_array_equal(ref.rows(5, 4), data[5:9])
    assert ref.rows(0, 1).flags.writeable
    with pytest.raises(IndexError):
        ref.rows(18, 4)


def test_levels_round_trip_exactly():
    velocity = (np.arange(128) / 127.0).astype(np.float32)
    roll = np.stack([velocity, (velocity > 0.5).astype(np.float32)])
    packed = fc.pack_levels(roll)
    assert packed.dtype == np.uint8
    np.testing.assert_array_equal(fc.unpack_levels(packed), roll)
    other = roll.copy()
    other[0, 3] = 0.3
    assert fc.pack_levels(other).dtype == np.float32


def test_crop_generator_depends_only_on_seed_epoch_index():
    def draw(*key):
        return torch.rand(4, generator=fc.crop_generator(*key))

    torch.testing.assert_close(draw(3, 1, 7), draw(3, 1, 7))
    for other in [(4, 1, 7), (3, 2, 7), (3, 1, 8)]:
        assert not torch.equal(draw(3, 1, 7), draw(*other))


def test_crop_plan_covers_every_window_on_the_grid():
    plan = fc.CropPlan([1000, 520, 2000], crop_samples=512, hop_length=64)
    # windows per file: T // hop - crop / hop + 1
    assert plan.num_windows == (15 - 8 + 1) + (8 - 8 + 1) + (31 - 8 + 1)
    seen = set()
    g = torch.Generator().manual_seed(0)
    for _ in range(3000):
        file, start = plan.sample(g)
        limit = [1000, 520, 2000][file] // 64 * 64
        assert start % 64 == 0 and start + 512 <= limit
        seen.add((file, start))
    assert len(seen) == plan.num_windows
    with pytest.raises(ValueError):
        fc.CropPlan([1000, 100], crop_samples=512, hop_length=64)
