"""CodeDataset with ``midi_root``: crops of codes with the piano roll of the MIDI beside each
source on the level's grid, sources without MIDI left out, and a MIDI-conditioned top prior
trained end to end by `wavegen train` on a folder encoded by `wavegen encode`."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pretty_midi
import pytest
import soundfile as sf
import torch

from test_codes import make_bundle
from wavegen.checkpoint import bundle_fingerprint, load_bundle, read_bundle_info
from wavegen.cli import main
from wavegen.codes import read_codes
from wavegen.data.audio_folder import split_of
from wavegen.data.code_dataset import CodeDataset
from wavegen.data.midi import PianoRollConfig, piano_roll
from wavegen.data.synth import render_midi
from wavegen.errors import DataError

RATE = 16000
HOPS = {0: 8, 1: 32, 2: 128}
CHANNELS = 265  # onsets, frames and velocities of the 88 keys, and the pedal
RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "prior-top-midi-tiny.yaml"
#: source -> (MIDI suffix or None, performance seed)
SOURCES = {"a.wav": (".midi", 1), "sub/b.wav": (".mid", 2), "c.wav": (None, 3)}


def performance(seed: int, seconds: float = 1.2) -> pretty_midi.PrettyMIDI:
    """A dense piece: a note every ~50 ms (onsets off the code grid), chords and a pedal."""
    g = torch.Generator().manual_seed(seed)
    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(program=0)
    onset = 0.0137
    while onset < seconds:
        for _ in range(int(torch.randint(1, 3, (), generator=g))):
            pitch = int(torch.randint(30, 100, (), generator=g))
            velocity = int(torch.randint(30, 127, (), generator=g))
            length = 0.03 + 0.2 * float(torch.rand((), generator=g))
            piano.notes.append(pretty_midi.Note(velocity=velocity, pitch=pitch, start=onset,
                                                end=min(onset + length, seconds)))
        onset += 0.03 + 0.04 * float(torch.rand((), generator=g))
    piano.control_changes += [pretty_midi.ControlChange(64, 100, 0.4),
                              pretty_midi.ControlChange(64, 0, 0.7)]
    midi.instruments.append(piano)
    return midi


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    """A MAESTRO-like folder (rendered audio, its MIDI beside it; c.wav has none), a tiny
    VQ-VAE, and the folder's codes written by `wavegen encode`."""
    root = tmp_path_factory.mktemp("roll")
    data = root / "data"
    for source, (suffix, seed) in SOURCES.items():
        midi = performance(seed)
        wav = data / source
        wav.parent.mkdir(parents=True, exist_ok=True)
        sf.write(wav, render_midi(midi, RATE, tail=0.2), RATE, subtype="FLOAT")
        if suffix is not None:
            midi.write(str(wav.with_suffix(suffix)))
    vq = make_bundle(root / "vq")
    assert main(["encode", str(vq), str(data), "-o", str(root / "codes")]) == 0
    return {"data": data, "codes": root / "codes", "vq": vq}


def reference_roll(corpus, source: str, hop: int, start: int, frames: int) -> torch.Tensor:
    suffix = SOURCES[source][0]
    midi = str((corpus["data"] / source).with_suffix(suffix))
    return piano_roll(midi, PianoRollConfig(RATE, hop), num_frames=frames, start_frame=start)


@pytest.mark.parametrize("level, crop", [(2, 16), (1, 32)])
def test_items_hold_the_roll_of_their_crop(corpus, level, crop, one_thread):
    data = CodeDataset(corpus["codes"], level=level, crop_codes=crop, seed=1,
                       midi_root=corpus["data"], items_per_epoch=24)
    assert sorted(f.source for f in data.files) == ["a.wav", "sub/b.wav"]
    assert data.hop_length == HOPS[level]
    lengths = {f.source: f.num_codes for f in data.files}
    notes = pedal = 0
    for index in range(len(data)):
        item = data[index]
        file_index, start = data.crop_location(index)
        source = data.files[file_index].source
        assert set(item) == {"codes", "roll"}
        roll = item["roll"]
        assert roll.dtype == torch.float32 and roll.shape == (CHANNELS, crop)
        assert start + crop <= lengths[source]
        assert torch.equal(roll, reference_roll(corpus, source, HOPS[level], start, crop)), index
        notes += int(roll[88:176].sum() > 0)
        pedal += int(roll[264].sum() > 0)
    assert notes > len(data) // 2 and pedal > 0  # the comparison is not of empty rolls


def test_roll_frame_j_covers_the_samples_of_code_j(corpus, one_thread):
    """Onsets land in the crop frame of the code that holds their sample (the level's hop),
    independently of piano_roll's own frame arithmetic."""
    data = CodeDataset(corpus["codes"], level=2, crop_codes=16, seed=0,
                       midi_root=corpus["data"], items_per_epoch=30)
    midis = {s: pretty_midi.PrettyMIDI(str((corpus["data"] / s).with_suffix(SOURCES[s][0])))
             for s in ("a.wav", "sub/b.wav")}
    checked = 0
    for index in range(len(data)):
        item = data[index]
        file_index, start = data.crop_location(index)
        midi = midis[data.files[file_index].source]
        for note in midi.instruments[0].notes:
            frame = math.floor(note.start * RATE / HOPS[2] + 1e-6) - start
            if 0 <= frame < 16 and 21 <= note.pitch <= 108:
                assert item["roll"][note.pitch - 21, frame] == 1.0, (index, note)
                assert item["roll"][176 + note.pitch - 21, frame] > 0  # its velocity
                checked += 1
    assert checked > 50


def test_a_source_without_midi_is_left_out(corpus, caplog, one_thread):
    with caplog.at_level(logging.WARNING, logger="wavegen.data"):
        data = CodeDataset(corpus["codes"], level=2, crop_codes=16, midi_root=corpus["data"])
    skipped = {Path(s.path).name: s.reason for s in data.skipped}
    assert list(skipped) == ["c.level2.npz"] and "no MIDI file for c.wav" in skipped["c.level2.npz"]
    assert "c.level2.npz" in caplog.text
    # Without midi_root every source is used and items hold no roll.
    plain = CodeDataset(corpus["codes"], level=2, crop_codes=16)
    assert sorted(f.source for f in plain.files) == ["a.wav", "c.wav", "sub/b.wav"]
    assert set(plain[0]) == {"codes"}
    # With upper codes and a roll, both come (aligned with the codes).
    both = CodeDataset(corpus["codes"], level=1, crop_codes=16, upper_level=2,
                       midi_root=corpus["data"])
    assert set(both[0]) == {"codes", "upper_codes", "roll"}
    assert both[0]["roll"].shape == (CHANNELS, 16) and both[0]["upper_codes"].shape == (4,)
    # A folder without any MIDI has no usable file; a missing MIDI folder is refused.
    with pytest.raises(DataError, match="no MIDI file"):
        CodeDataset(corpus["codes"], level=2, crop_codes=16, midi_root=corpus["codes"])
    with pytest.raises(DataError, match="does not exist"):
        CodeDataset(corpus["codes"], level=2, crop_codes=16,
                    midi_root=corpus["data"] / "missing")


def test_training_a_midi_conditioned_top_prior(corpus, tmp_path, capsys, one_thread):
    # A validation fraction that puts one of the two MIDI sources in each split.
    fraction = next(f / 20 for f in range(1, 20)
                    if split_of("a.wav", f / 20) != split_of("sub/b.wav", f / 20))
    out = tmp_path / "run"
    status = main(["train", str(RECIPE), "--out", str(out), "--no-progress",
                   "--set", f"data.root={corpus['codes']}",
                   "--set", f"data.midi_root={corpus['data']}",
                   "--set", f"data.validation_fraction={fraction}",
                   "--set", "data.crop_samples=64", "--set", "train.steps=2",
                   "--set", "train.batch_size=2", "--set", "train.val_every=2",
                   "--set", "train.checkpoint_every=2", "--set", "train.val_batches=1",
                   "--set", "model.layers=4", "--set", "model.stacks=1"])
    err = capsys.readouterr().err
    assert status == 0, err
    bundle = out / "checkpoints" / "latest"
    info = read_bundle_info(bundle)
    config = info.model_config
    assert info.family == "prior" and info.conditioning == "roll"
    assert config.fingerprint == bundle_fingerprint(corpus["vq"], use_ema=True)
    assert config.fingerprint == read_codes(corpus["codes"] / "a.level2.npz").fingerprint
    assert (config.level, config.code_hop, config.roll_channels) == (2, 128, CHANNELS)
    model, _ = load_bundle(bundle)
    codes = torch.zeros(1, 8, dtype=torch.long)
    assert model(codes, torch.zeros(1, CHANNELS, 8)).shape == (1, 64, 8)
