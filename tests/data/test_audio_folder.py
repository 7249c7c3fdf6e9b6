"""Audio-folder datasets: discovery, deterministic split, mel/audio pairs, bad files."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from wavegen.audio import signals
from wavegen.audio.features import get_preset
from wavegen.audio.io import load_audio
from wavegen.audio.spectral import LogMelSpectrogram
from wavegen.data.audio_folder import AudioFolderDataset, split_of
from wavegen.errors import ConfigError, DataError

RATE = 8000


def write_folder(root: Path, count: int = 40) -> list[Path]:
    paths = []
    for i in range(count):
        path = root / f"speaker{i % 3}" / ("deep" if i % 2 else "") / f"clip{i:02d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, signals.tone(RATE, 0.1, 200 + 10 * i), RATE)
        paths.append(path)
    return paths


def test_split_is_deterministic_and_disjoint(tmp_path):
    root, cache = tmp_path / "audio", tmp_path / "cache"
    paths = write_folder(root)
    (root / "notes.txt").write_text("not audio")
    (root / ".hidden.wav").write_bytes(b"ignored")

    def sources(split):
        ds = AudioFolderDataset(root, RATE, 256, cache_dir=cache, split=split,
                                validation_fraction=0.25)
        assert ds.skipped == []
        return {Path(f.source) for f in ds.files}

    train, validation, everything = sources("train"), sources("validation"), sources(None)
    assert everything == set(paths)
    assert train | validation == everything and not train & validation
    assert 3 <= len(validation) <= 17   # ~25 % of 40
    assert sources("validation") == validation and sources("train") == train
    # The split follows the path relative to the root, so a moved corpus splits the same.
    moved = tmp_path / "elsewhere"
    root.rename(moved)
    assert {moved / p.relative_to(root) for p in validation} == {
        Path(f.source) for f in AudioFolderDataset(moved, RATE, 256, cache_dir=cache,
                                                   split="validation",
                                                   validation_fraction=0.25).files}
    assert split_of("a/b.wav", 0.0) == "train"
    with pytest.raises(ConfigError, match="split"):
        AudioFolderDataset(moved, RATE, 256, cache_dir=cache, split="test")


def test_mel_audio_pairs(tmp_path):
    features = get_preset("hifigan-22k")
    root, cache = tmp_path / "audio", tmp_path / "cache"
    root.mkdir()
    sf.write(root / "sweep.flac", np.stack([signals.sweep(44100, 1.5),
                                            signals.chord(44100, 1.5)], 1), 44100)
    sf.write(root / "notes.ogg", signals.chord(22050, 1.2), 22050)
    ds = AudioFolderDataset(root, 22050, 32 * 256, features=features, cache_dir=cache,
                            seed=5, items_per_epoch=6)
    assert len(ds) == 6 and len(ds.files) == 2
    module = LogMelSpectrogram(features)
    for i in range(len(ds)):
        file, start = ds.crop_location(i)
        assert start % 256 == 0
        full, _ = load_audio(ds.files[file].source, sample_rate=22050, mono=True)
        full = full.clamp(-1, 1)
        item = ds[i]
        assert set(item) == {"audio", "mel"}
        assert item["audio"].shape == (1, 8192) and item["mel"].shape == (80, 32)
        torch.testing.assert_close(item["audio"], full[:, start:start + 8192], rtol=0, atol=0)
        expected = module(full[0])[:, start // 256:start // 256 + 32]
        torch.testing.assert_close(item["mel"], expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="sample_rate"):
        AudioFolderDataset(root, 16000, 8192, features=features, cache_dir=cache)
    with pytest.raises(ConfigError, match="multiple of the hop"):
        AudioFolderDataset(root, 22050, 8000, features=features, cache_dir=cache)


def test_crops_deterministic_per_seed_epoch_index(tmp_path):
    root, cache = tmp_path / "audio", tmp_path / "cache"
    write_folder(root, 4)
    a = AudioFolderDataset(root, RATE, 200, cache_dir=cache, seed=1, items_per_epoch=20)
    b = AudioFolderDataset(root, RATE, 200, cache_dir=cache, seed=1, items_per_epoch=20)
    assert all(torch.equal(a[i]["audio"], b[i]["audio"]) for i in range(20))
    before = [a[i]["audio"] for i in range(20)]
    a.set_epoch(1)
    assert sum(not torch.equal(a[i]["audio"], before[i]) for i in range(20)) >= 10
    # Without features a crop may start anywhere (no frame grid to respect).
    assert any(a.crop_location(i)[1] % 2 for i in range(20))


def test_bad_files_reported_once_and_unknown_files_ignored(tmp_path, caplog):
    root, cache = tmp_path / "audio", tmp_path / "cache"
    write_folder(root, 3)
    (root / "broken.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage")
    (root / "empty.flac").write_bytes(b"")
    (root / "readme.md").write_text("# corpus")
    sf.write(root / "oddly_named.dat", signals.chord(RATE, 0.2), RATE, format="WAV")
    sf.write(root / "short.wav", signals.chord(RATE, 0.01), RATE)
    with caplog.at_level(logging.WARNING, logger="wavegen.data"):
        ds = AudioFolderDataset(root, RATE, 256, cache_dir=cache)
    used = {Path(f.source).name for f in ds.files}
    assert used == {"clip00.wav", "clip01.wav", "clip02.wav", "oddly_named.dat"}
    assert {Path(s.path).name for s in ds.skipped} == {"broken.wav", "empty.flac", "short.wav"}
    for name in ("broken.wav", "empty.flac"):
        assert len([r for r in caplog.records if name in r.getMessage()]) == 1
    assert not any("readme" in r.getMessage() or "short.wav" in r.getMessage()
                   for r in caplog.records)
    assert any("skipped 3 of 7 files" in r.getMessage() for r in caplog.records)


def test_empty_folder_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no usable audio files"):
        AudioFolderDataset(tmp_path, RATE, 256, cache_dir=tmp_path / "cache")
    (tmp_path / "a.txt").write_text("text")
    (tmp_path / "b.wav").write_bytes(b"corrupt")
    with pytest.raises(DataError, match="no usable audio files.*b.wav"):
        AudioFolderDataset(tmp_path, RATE, 256, cache_dir=tmp_path / "cache")
    with pytest.raises(DataError, match="does not exist"):
        AudioFolderDataset(tmp_path / "missing", RATE, 256, cache_dir=tmp_path / "cache")
