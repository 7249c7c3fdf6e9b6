"""MAESTRO-format metadata, crops with aligned piano rolls, caching and bad data."""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import soundfile as sf
import torch

from wavegen.audio.features import get_preset
from wavegen.audio.spectral import LogMelSpectrogram
from wavegen.data import feature_cache as fc
from wavegen.data.maestro import (
    MAESTRO_COLUMNS, MaestroDataset, MaestroEntry, read_maestro_metadata,
)
from wavegen.data.midi import PianoRollConfig
from wavegen.errors import ConfigError, DataError

FILE_RATE = 44100        # like MAESTRO: 44.1 kHz stereo, resampled to the recipe rate
RATE, HOP = 16000, 256
SECONDS = 2.0
# Onsets off the hop grid (0.3137 s = sample 5019.2 at 16 kHz, inside frame 19).
ONSETS = (0.3137, 0.8137, 1.3137)
NOTE_SECONDS = 0.2
CROP = 40 * HOP          # 0.64 s: every crop holds at least one note edge
SPLITS = {"a": "train", "b": "train", "c": "train", "d": "validation", "e": "test"}


def write_recording(root: Path, name: str, pitch: int = 60, seconds: float = SECONDS,
                    onsets=ONSETS) -> tuple[str, str]:
    """A stereo WAV that is silent except a tone for each note, and its MIDI."""
    os.makedirs(root / "2018", exist_ok=True)
    audio = np.zeros((round(seconds * FILE_RATE), 2), np.float32)
    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(program=0)
    freq = 440.0 * 2 ** ((pitch - 69) / 12)
    for onset in onsets:
        a, b = round(onset * FILE_RATE), round((onset + NOTE_SECONDS) * FILE_RATE)
        tone = np.sin(2 * np.pi * freq * np.arange(b - a) / FILE_RATE)
        audio[a:b, 0], audio[a:b, 1] = 0.6 * tone, 0.4 * tone
        piano.notes.append(pretty_midi.Note(velocity=100, pitch=pitch, start=onset,
                                            end=onset + NOTE_SECONDS))
    midi.instruments.append(piano)
    wav, mid = f"2018/{name}.wav", f"2018/{name}.midi"
    sf.write(root / wav, audio, FILE_RATE)
    midi.write(str(root / mid))
    return wav, mid


def entry(name: str, split: str, seconds: float = SECONDS) -> MaestroEntry:
    return MaestroEntry(canonical_composer=f"Composer {name}", canonical_title=f"Piece {name}",
                        split=split, year=2018, midi_filename=f"2018/{name}.midi",
                        audio_filename=f"2018/{name}.wav", duration=seconds)


def write_metadata(root: Path, entries: list[MaestroEntry], fmt: str = "csv",
                   name: str = "maestro-v3.0.0", drop: tuple[str, ...] = ()) -> Path:
    columns = [c for c in MAESTRO_COLUMNS if c not in drop]
    rows = [{c: getattr(e, c) for c in columns} for e in entries]
    path = root / f"{name}.{fmt}"
    if fmt == "csv":
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
    else:  # pandas "columns" orientation, as MAESTRO ships it
        path.write_text(json.dumps({c: {str(i): r[c] for i, r in enumerate(rows)} for c in columns}))
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("maestro")
    for k, name in enumerate(SPLITS):
        write_recording(root, name, pitch=60 + k)
    write_metadata(root, [entry(n, s) for n, s in SPLITS.items()])
    return root


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def roll_config() -> PianoRollConfig:
    return PianoRollConfig(sample_rate=RATE, hop_length=HOP)


def dataset(root, cache, split="train", **kwargs) -> MaestroDataset:
    kwargs.setdefault("roll", roll_config())
    kwargs.setdefault("crop_samples", CROP)
    return MaestroDataset(root, split=split, sample_rate=RATE, cache_dir=cache, **kwargs)


# ----------------------------------------------------------------------------- metadata


def test_csv_and_json_metadata_read_the_same(corpus, tmp_path):
    expected = [entry(n, s) for n, s in SPLITS.items()]
    assert read_maestro_metadata(corpus) == expected
    write_metadata(tmp_path, expected, fmt="json", name="maestro-v2.0.0")
    assert read_maestro_metadata(tmp_path) == expected


def test_metadata_missing_columns_are_named(tmp_path):
    write_metadata(tmp_path, [entry("a", "train")], drop=("split", "duration"))
    with pytest.raises(DataError, match="missing MAESTRO column.*split, duration"):
        read_maestro_metadata(tmp_path)
    (tmp_path / "maestro-v3.0.0.csv").unlink()
    write_metadata(tmp_path, [entry("a", "train")], fmt="json", drop=("year",))
    with pytest.raises(DataError, match="missing MAESTRO column.*year"):
        read_maestro_metadata(tmp_path)


def test_metadata_file_must_be_unambiguous(tmp_path):
    with pytest.raises(DataError, match="no MAESTRO metadata"):
        read_maestro_metadata(tmp_path)
    write_metadata(tmp_path, [entry("a", "train")], name="maestro-v1.0.0")
    write_metadata(tmp_path, [entry("b", "test")], name="maestro-v2.0.0")
    with pytest.raises(DataError, match="several"):
        read_maestro_metadata(tmp_path)
    # v3's own file wins over others.
    write_metadata(tmp_path, [entry("c", "validation")], name="maestro-v3.0.0", fmt="json")
    assert [e.split for e in read_maestro_metadata(tmp_path)] == ["validation"]


def test_splits(corpus, cache):
    for split, names in [("train", "abc"), ("validation", "d"), ("test", "e")]:
        ds = dataset(corpus, cache, split)
        assert [Path(f.source).stem for f in ds.files] == list(names)
        assert [e.split for e in ds.used_entries] == [split] * len(names)
        assert ds.skipped == []
    with pytest.raises(ConfigError, match="split"):
        dataset(corpus, cache, "dev")


# ----------------------------------------------------------------------------- items


def test_audio_and_roll_are_aligned(corpus, cache):
    config = roll_config()
    ds = dataset(corpus, cache, items_per_epoch=48)
    onset_rows = config.channel_slices()["onset"]
    onsets_checked = 0
    for i in range(len(ds)):
        item = ds[i]
        audio, roll = item["audio"], item["roll"]
        assert audio.shape == (1, CROP) and audio.dtype == torch.float32
        assert roll.shape == (config.num_channels, CROP // HOP) and roll.dtype == torch.float32
        assert audio.abs().max() <= 1
        loud = audio[0].reshape(-1, HOP).abs().amax(1) > 0.05                      # [frames]
        sounding = roll.amax(0) > 0                                               # [frames]
        onset = roll[onset_rows].amax(0) > 0
        near = lambda x: torch.nn.functional.max_pool1d(x.float()[None], 3, 1, 1)[0] > 0
        # Every loud frame has a sounding note within one hop, and vice versa.
        assert bool((~loud | near(sounding)).all()), i
        assert bool((~sounding | near(loud)).all()), i
        # The first loud frame after silence is the roll's onset frame, within one hop.
        for f in torch.nonzero(onset).flatten().tolist():
            if f >= 2:
                first_loud = f - 2 + int(torch.nonzero(loud[f - 2:]).flatten()[0])
                assert abs(first_loud - f) <= 1, (i, f, first_loud)
                onsets_checked += 1
    assert onsets_checked >= 10


def test_crops_are_deterministic_per_seed_epoch_index(corpus, cache):
    ds, again = dataset(corpus, cache), dataset(corpus, cache)
    assert len(ds) == 3 * round(SECONDS * RATE) // CROP
    for i in (0, 1, len(ds) - 1):
        for key in ("audio", "roll"):
            torch.testing.assert_close(ds[i][key], again[i][key], rtol=0, atol=0)
    epoch0 = [ds.crop_location(i) for i in range(len(ds))]
    ds.set_epoch(1)
    epoch1 = [ds.crop_location(i) for i in range(len(ds))]
    assert epoch1 != epoch0
    assert sum(a != b for a, b in zip(epoch0, epoch1)) >= len(ds) // 2
    again.set_epoch(1)
    assert [again.crop_location(i) for i in range(len(ds))] == epoch1
    other_seed = dataset(corpus, cache, seed=1)
    assert [other_seed.crop_location(i) for i in range(len(ds))] != epoch0
    # Starts on the hop grid, inside the file.
    assert all(s % HOP == 0 and s + CROP <= round(SECONDS * RATE) for _, s in epoch0 + epoch1)


def test_dataloader_workers_see_the_same_crops(corpus, cache):
    ds = dataset(corpus, cache, items_per_epoch=8)
    expected = {}
    for epoch in (3, 4):
        ds.set_epoch(epoch)
        expected[epoch] = torch.stack([ds[i]["audio"] for i in range(8)])
    assert not torch.equal(expected[3], expected[4])
    # Persistent workers keep their copy of the dataset: set_epoch must still reach them.
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, persistent_workers=True)
    for epoch in (3, 4):
        ds.set_epoch(epoch)
        batched = torch.cat([b["audio"] for b in loader])
        torch.testing.assert_close(batched, expected[epoch], rtol=0, atol=0)


def test_mel_items_are_the_whole_file_log_mel_sliced(corpus, cache):
    features = get_preset("hifigan-16k")
    ds = dataset(corpus, cache, features=features, items_per_epoch=6)
    module = LogMelSpectrogram(features)
    for i in range(len(ds)):
        file, start = ds.crop_location(i)
        audio = np.asarray(fc.cached_audio(ds.files[file].source, RATE, cache))
        full = module(torch.from_numpy(np.array(audio)))
        item = ds[i]
        assert item["mel"].shape == (80, CROP // HOP)
        torch.testing.assert_close(item["mel"], full[:, start // HOP:(start + CROP) // HOP])
        torch.testing.assert_close(item["audio"][0], torch.from_numpy(np.array(audio[start:start + CROP])))
    with pytest.raises(ConfigError, match="hop_aligned"):
        dataset(corpus, cache, features=features.replace(padding="center"))
    with pytest.raises(ConfigError, match="multiple of the hop"):
        dataset(corpus, cache, crop_samples=CROP + 1)
    with pytest.raises(ConfigError, match="hop_length"):
        dataset(corpus, cache, roll=PianoRollConfig(sample_rate=RATE, hop_length=128), features=features)
    with pytest.raises(ConfigError, match="sample_rate"):
        dataset(corpus, cache, roll=PianoRollConfig(sample_rate=22050, hop_length=HOP))


# ----------------------------------------------------------------------------- caching


def test_cached_audio_and_roll_are_reused_and_invalidated(tmp_path, monkeypatch):
    root, cache = tmp_path / "corpus", tmp_path / "cache"
    for name in "ab":
        write_recording(root, name)
    write_metadata(root, [entry("a", "train"), entry("b", "train")])
    first = dataset(root, cache)
    items = [first[i] for i in range(len(first))]

    def fail(*args, **kwargs):
        raise AssertionError("decoded although cached")

    with monkeypatch.context() as m:
        m.setattr(fc, "load_audio", fail)
        m.setattr("wavegen.data.maestro.load_midi", fail)
        cached = dataset(root, cache)
        assert cached.skipped == []
        for i, item in enumerate(items):
            for key in item:
                torch.testing.assert_close(cached[i][key], item[key], rtol=0, atol=0)

    # Replace one recording (louder, new mtime): exactly that file is decoded again.
    wav = root / "2018" / "b.wav"
    data, rate = sf.read(wav)
    sf.write(wav, data * 1.5, rate)
    os.utime(wav, ns=(10**9, 10**9))
    decoded = []
    real = fc.load_audio
    monkeypatch.setattr(fc, "load_audio", lambda path, **k: decoded.append(path) or real(path, **k))
    dataset(root, cache)  # rebuilding the index re-checks every file
    assert decoded == [str(wav)]
    peak = np.abs(np.asarray(fc.cached_audio(wav, RATE, cache))).max()
    assert peak == pytest.approx(0.5 * 1.5, rel=0.02)


# ----------------------------------------------------------------------------- bad data


def test_bad_files_are_reported_once_and_skipped(tmp_path, caplog):
    root, cache = tmp_path / "corpus", tmp_path / "cache"
    names = ["good", "corrupt", "no_audio", "no_midi", "bad_midi", "wrong_length", "short"]
    for name in names:
        write_recording(root, name)
    (root / "2018" / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    (root / "2018" / "no_audio.wav").unlink()
    (root / "2018" / "no_midi.midi").unlink()
    (root / "2018" / "bad_midi.midi").write_bytes(b"MThd not really a midi file")
    write_recording(root, "short", seconds=0.5, onsets=(0.1,))
    entries = [entry(n, "train") for n in names]
    entries[names.index("wrong_length")] = entry("wrong_length", "train", seconds=9.0)
    entries[names.index("short")] = entry("short", "train", seconds=0.5)
    write_metadata(root, entries)

    with caplog.at_level(logging.INFO, logger="wavegen.data"):
        ds = dataset(root, cache)
    assert [Path(f.source).stem for f in ds.files] == ["good"]
    skipped = {Path(s.path).name: s for s in ds.skipped}
    assert set(skipped) == {"corrupt.wav", "no_audio.wav", "no_midi.midi", "bad_midi.midi",
                            "wrong_length.wav", "short.wav"}
    assert "not found" in skipped["no_audio.wav"].reason
    assert "not found" in skipped["no_midi.midi"].reason
    assert "MIDI" in skipped["bad_midi.midi"].reason
    assert "metadata says 9.00 s" in skipped["wrong_length.wav"].reason
    assert skipped["short.wav"].short and not skipped["corrupt.wav"].short
    for name in skipped:
        lines = [r for r in caplog.records if name in r.getMessage()]
        assert len(lines) == 1, name
        assert "\n" not in lines[0].getMessage()
        assert lines[0].levelno == (logging.INFO if name == "short.wav" else logging.WARNING)
    assert any("skipped 6 of 7 files" in r.getMessage() for r in caplog.records)
    assert ds[0]["audio"].shape == (1, CROP)


def test_midi_length_is_when_its_notes_stop_sounding(tmp_path):
    """Silent events after the last note (common in real files) do not make a MIDI file
    "longer than its audio"; notes sounding well past the audio do."""
    root = tmp_path / "corpus"
    for name in ("trailing_events", "notes_past_audio"):
        write_recording(root, name)
    trailing = pretty_midi.PrettyMIDI(str(root / "2018" / "trailing_events.midi"))
    trailing.instruments[0].control_changes.append(pretty_midi.ControlChange(7, 90, 20.0))
    trailing.text_events.append(pretty_midi.Text("end", 30.0))
    trailing.write(str(root / "2018" / "trailing_events.midi"))
    late = pretty_midi.PrettyMIDI(str(root / "2018" / "notes_past_audio.midi"))
    late.instruments[0].notes.append(pretty_midi.Note(velocity=90, pitch=72, start=1.5, end=5.0))
    late.write(str(root / "2018" / "notes_past_audio.midi"))
    write_metadata(root, [entry("trailing_events", "train"), entry("notes_past_audio", "train")])

    ds = dataset(root, tmp_path / "cache")
    assert [Path(f.source).stem for f in ds.files] == ["trailing_events"]
    (skipped,) = ds.skipped
    assert Path(skipped.path).name == "notes_past_audio.midi"
    assert "MIDI notes sound until 5.00 s but the audio lasts 2.00 s" in skipped.reason


def test_no_usable_file_is_a_data_error(tmp_path):
    root = tmp_path / "corpus"
    write_recording(root, "a")
    (root / "2018" / "a.wav").write_bytes(b"not audio at all")
    write_metadata(root, [entry("a", "train"), entry("z", "test")])
    with pytest.raises(DataError, match="no usable recording in split 'train'"):
        dataset(root, tmp_path / "cache")
    with pytest.raises(DataError, match="no rows in split 'validation'"):
        dataset(root, tmp_path / "cache", "validation")
    empty = tmp_path / "empty"
    empty.mkdir()
    write_metadata(empty, [])
    with pytest.raises(DataError, match="no rows"):
        dataset(empty, tmp_path / "cache")
