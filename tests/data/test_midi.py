"""Piano-roll features: exact values on a hand-built MIDI, windows, pedal handling, errors."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import torch

from wavegen.data.midi import (
    PianoRollConfig,
    load_midi,
    pedal_intervals,
    performance_end,
    performed_notes,
    piano_roll,
    time_to_frame,
)
from wavegen.data.performance import generate_performance
from wavegen.errors import ConfigError, DataError, UsageError

# 1000 Hz with a hop of 100 samples: 10 frames per second, frame f = [f/10, (f+1)/10) s.
CONFIG = PianoRollConfig(sample_rate=1000, hop_length=100)
P = 88


def make_midi(notes, pedal=(), drums=()) -> pretty_midi.PrettyMIDI:
    """notes: (pitch, velocity, start, end); pedal: (time, value) CC64 events."""
    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(program=0)
    piano.notes = [pretty_midi.Note(velocity=v, pitch=p, start=s, end=e) for p, v, s, e in notes]
    piano.control_changes = [pretty_midi.ControlChange(64, value, t) for t, value in pedal]
    midi.instruments.append(piano)
    if drums:
        kit = pretty_midi.Instrument(program=0, is_drum=True)
        kit.notes = [pretty_midi.Note(velocity=v, pitch=p, start=s, end=e) for p, v, s, e in drums]
        midi.instruments.append(kit)
    return midi


def blocks(roll: torch.Tensor):
    return roll[:P], roll[P:2 * P], roll[2 * P:3 * P], roll[3 * P:]


def test_hand_built_roll_has_exact_values():
    midi = make_midi(
        notes=[
            (60, 100, 0.05, 0.32),  # frames 0..3
            # Frames 5, 6 (0.7 s starts frame 7). Both times are a rounding error off a frame
            # boundary, as tick -> seconds conversions leave them: they count as on it.
            (64, 64, math.nextafter(0.5, 0.0), 0.1 * 7),
            (67, 127, 1.00, 1.05),  # released under the pedal: sounds until 1.6 s
            (21, 10, 0.00, 0.10),   # lowest key, exactly one frame
            (110, 90, 0.2, 0.4),    # above max_pitch: not in the roll
        ],
        pedal=[(0.9, 127), (1.6, 0)],
        drums=[(60, 120, 0.8, 0.9)],  # drums are ignored
    )
    roll = piano_roll(midi, CONFIG)
    assert roll.dtype == torch.float32
    assert roll.shape == (CONFIG.num_channels, 16) == (3 * P + 1, 16)

    onset = torch.zeros(P, 16)
    frames = torch.zeros(P, 16)
    velocity = torch.zeros(P, 16)
    pedal = torch.zeros(1, 16)
    for pitch, vel, first, stop in [(60, 100, 0, 4), (64, 64, 5, 7), (67, 127, 10, 16), (21, 10, 0, 1)]:
        onset[pitch - 21, first] = 1
        frames[pitch - 21, first:stop] = 1
        velocity[pitch - 21, first:stop] = vel / 127
    pedal[0, 9:16] = 1
    got = blocks(roll)
    for name, actual, expected in zip(("onset", "frames", "velocity", "pedal"), got,
                                      (onset, frames, velocity, pedal)):
        assert torch.equal(actual, expected), name


def test_onset_frame_is_floor_of_time_times_frame_rate():
    config = PianoRollConfig(sample_rate=16000, hop_length=256)
    times = [0.0, 0.015, 0.016, 0.0161, 1.0, 2.345678]
    midi = make_midi([(60 + i, 80, t, t + 0.5) for i, t in enumerate(times)])
    onset = blocks(piano_roll(midi, config))[0]
    for i, t in enumerate(times):
        expected = int(np.floor(t * 16000 / 256 + 1e-9))
        assert torch.nonzero(onset[60 + i - 21]).flatten().tolist() == [expected]
        assert time_to_frame(t, 16000, 256) == expected
    # 0.016 s is sample 256 exactly: the first sample of frame 1.
    assert time_to_frame(0.016, 16000, 256) == 1


def test_windows_equal_slices_of_the_full_roll():
    midi = generate_performance(seed=3, seconds=8.0, style="mixed")
    config = PianoRollConfig(sample_rate=16000, hop_length=320)
    full = piano_roll(midi, config)
    total = full.shape[1]
    assert total > 100 and full.sum() > 0
    rng = np.random.default_rng(0)
    windows = [(0, total), (0, 1), (total - 1, 1), (17, 0), (total - 5, 20), (total + 3, 4)]
    windows += [(int(s), int(n)) for s, n in zip(rng.integers(0, total, 12), rng.integers(1, 150, 12))]
    for start, count in windows:
        window = piano_roll(midi, config, num_frames=count, start_frame=start)
        expected = torch.zeros(full.shape[0], count)
        part = full[:, start:start + count]
        expected[:, :part.shape[1]] = part
        assert torch.equal(window, expected), (start, count)
    # With num_frames omitted a window runs to the end of the piece.
    assert torch.equal(piano_roll(midi, config, start_frame=40), full[:, 40:])


def test_pedal_extends_released_notes_until_pedal_release_or_restrike():
    midi = make_midi(
        notes=[
            (60, 100, 0.0, 0.2),  # released under the pedal: held until 1.0 s
            (62, 90, 0.1, 1.15),  # released while the pedal is up: not extended
            (64, 80, 0.3, 0.4),   # held by the pedal, but re-struck at 0.7 s
            (64, 40, 0.7, 0.8),   # the re-strike, also held until 1.0 s
            (65, 70, 1.2, 1.3),   # pedal down again from 1.25: released under it until 2.0
            (67, 70, 1.05, 1.1),  # played while the pedal is up: not extended
        ],
        pedal=[(0.05, 100), (0.5, 127), (1.0, 20), (1.25, 64), (2.0, 63)],
    )
    assert pedal_intervals(midi) == [(0.05, 1.0), (1.25, 2.0)]
    ends = {(n.pitch, n.start): n.end for n in performed_notes(midi)}
    assert ends == {(60, 0.0): 1.0, (62, 0.1): 1.15, (64, 0.3): 0.7, (64, 0.7): 1.0,
                    (65, 1.2): 2.0, (67, 1.05): 1.1}

    onset, frames, velocity, pedal = blocks(piano_roll(midi, CONFIG))
    row = lambda pitch: pitch - 21  # noqa: E731
    assert torch.nonzero(frames[row(60)]).flatten().tolist() == list(range(0, 10))
    assert torch.nonzero(frames[row(62)]).flatten().tolist() == list(range(1, 12))
    assert torch.nonzero(frames[row(65)]).flatten().tolist() == list(range(12, 20))
    assert torch.nonzero(frames[row(67)]).flatten().tolist() == [10]
    # The re-struck key: continuous frames, two onsets, and the new velocity from the re-strike.
    assert torch.nonzero(frames[row(64)]).flatten().tolist() == list(range(3, 10))
    assert torch.nonzero(onset[row(64)]).flatten().tolist() == [3, 7]
    assert torch.allclose(velocity[row(64), 3:7], torch.tensor(80 / 127))
    assert torch.allclose(velocity[row(64), 7:10], torch.tensor(40 / 127))
    expected_pedal = torch.zeros(20)
    expected_pedal[0:10] = 1
    expected_pedal[12:20] = 1
    assert torch.equal(pedal[0], expected_pedal)


def test_performance_ends_with_the_last_sounding_note_not_with_silent_events():
    midi = make_midi([(60, 100, 0.0, 0.5), (64, 90, 1.0, 1.5)], pedal=[(1.2, 127), (2.5, 0)])
    # Silent events long after the last note, as real files have them.
    midi.instruments[0].control_changes.append(pretty_midi.ControlChange(7, 90, 30.0))
    midi.time_signature_changes.append(pretty_midi.TimeSignature(3, 4, 40.0))
    midi.text_events.append(pretty_midi.Text("fine", 50.0))
    assert midi.get_end_time() == 50.0
    # The note released under the pedal sounds until the pedal lifts at 2.5 s.
    assert performance_end(midi) == 2.5 == max(n.end for n in performed_notes(midi))
    assert performance_end(make_midi([(60, 100, 0.2, 0.9)])) == 0.9
    assert performance_end(pretty_midi.PrettyMIDI()) == 0.0
    assert performance_end(make_midi([], drums=[(36, 100, 0.0, 4.0)])) == 0.0


def test_overlapping_notes_of_one_pitch_are_cut_at_the_restrike_without_pedal():
    midi = make_midi([(60, 100, 0.0, 1.0), (60, 50, 0.5, 0.6)])
    assert [(n.start, n.end) for n in performed_notes(midi)] == [(0.0, 0.5), (0.5, 0.6)]


def test_channel_blocks_can_be_selected_and_keep_their_order():
    midi = make_midi([(60, 100, 0.05, 0.32), (72, 30, 0.3, 0.9)], pedal=[(0.2, 127), (0.6, 0)])
    full = piano_roll(midi, CONFIG)
    only = PianoRollConfig(sample_rate=1000, hop_length=100, onset=False, frames=False)
    assert only.num_channels == P + 1
    assert list(only.channel_slices()) == ["velocity", "pedal"]
    assert torch.equal(piano_roll(midi, only), full[2 * P:])
    narrow = PianoRollConfig(sample_rate=1000, hop_length=100, min_pitch=60, max_pitch=71,
                             pedal=False)
    assert narrow.num_channels == 36
    roll = piano_roll(midi, narrow)
    assert torch.equal(roll[:12], full[39:51, :roll.shape[1]])
    assert roll[:, :].sum() > 0 and roll[:12, :].sum() == 1  # pitch 72 is out of range


def test_file_and_object_give_the_same_roll(tmp_path):
    midi = generate_performance(seed=1, seconds=4.0, style="chords")
    path = tmp_path / "piece.mid"
    midi.write(str(path))
    config = PianoRollConfig(sample_rate=16000, hop_length=256)
    assert torch.equal(piano_roll(path, config), piano_roll(midi, config))
    assert torch.equal(piano_roll(str(path), config), piano_roll(midi, config))


def test_bad_midi_files_raise_one_line_data_errors(tmp_path):
    corrupt = tmp_path / "corrupt.mid"
    corrupt.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\x00\x00\xff\xff garbage")
    text = tmp_path / "notes.mid"
    text.write_text("this is not a MIDI file\n")
    for path in (corrupt, text, tmp_path / "missing.mid", tmp_path):
        with pytest.raises(DataError) as info:
            piano_roll(path, CONFIG)
        message = str(info.value)
        assert str(path) in message and "\n" not in message
    with pytest.raises(DataError):
        load_midi(corrupt)


def test_bad_arguments_are_refused():
    midi = make_midi([(60, 100, 0.0, 0.5)])
    with pytest.raises(UsageError):
        piano_roll(midi, CONFIG, start_frame=-1)
    with pytest.raises(UsageError):
        piano_roll(midi, CONFIG, num_frames=-2)
    with pytest.raises(ConfigError):
        PianoRollConfig(sample_rate=16000, hop_length=0)
    with pytest.raises(ConfigError):
        PianoRollConfig(sample_rate=16000, hop_length=256, min_pitch=90, max_pitch=80)
    with pytest.raises(ConfigError):
        PianoRollConfig(sample_rate=16000, hop_length=256, onset=False, frames=False,
                        velocity=False, pedal=False)


def test_empty_midi_gives_an_empty_roll():
    roll = piano_roll(pretty_midi.PrettyMIDI(), CONFIG)
    assert roll.shape == (CONFIG.num_channels, 0)
    assert piano_roll(pretty_midi.PrettyMIDI(), CONFIG, num_frames=5).abs().sum() == 0


def test_datasets_readme_gives_the_channel_count_the_code_gives():
    """datasets/README.md states the roll's size twice and its blocks once: all must match
    PianoRollConfig, so the documentation cannot drift from the code again."""
    text = (Path(__file__).resolve().parents[2] / "datasets" / "README.md").read_text()
    config = PianoRollConfig(sample_rate=16000, hop_length=256)
    stated = [int(n) for n in re.findall(r"(\d+) channels", text)]
    assert len(stated) >= 2 and set(stated) == {config.num_channels}, stated
    blocks = re.search(r"onsets \((\d+)\), sounding frames.*?\((\d+)\), velocities \((\d+)\), "
                       r"sustain pedal \((\d+)\)", text, re.S)
    sizes = [int(n) for n in blocks.groups()]
    assert sizes == [config.num_pitches] * 3 + [1]
    assert sum(sizes) == config.num_channels
    assert [s.stop - s.start for s in config.channel_slices().values()] == sizes
