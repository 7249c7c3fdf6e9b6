"""Score following (:mod:`wavegen.eval.score`): wavegen's rendering of a MIDI file matches
that file's onsets and chroma, and neither a shifted copy nor another piece; silence and
empty MIDI files score 0 without warnings; bad inputs are one-line errors. The monophonic
pitch accuracy of a rendered melody is high against its own MIDI, low against a transposed
or delayed one and for noise (octave errors keep the chroma accuracy), and undefined (None)
for chords."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pretty_midi
import pytest
import soundfile as sf
import torch

from wavegen.data.performance import generate_performance
from wavegen.data.synth import render_midi
from wavegen.errors import DataError, UsageError, WavegenError
from wavegen.eval import (OnsetScore, detected_onsets, midi_chroma_correlation, note_onsets,
                          onset_f1, score_file)
from wavegen.eval.score import PITCH_HOP, PitchScore, monophonic_pitch

RATE = 16000


@pytest.fixture(scope="module")
def piece() -> tuple[pretty_midi.PrettyMIDI, np.ndarray]:
    """A generated 6 s piece and its rendering. Its onsets are not on a 0.5 s grid: a shift
    of 0.5 s lands most of them on no onset (in many generated pieces, whose beat divides
    0.5 s, it lands them on other notes' onsets, and a shifted copy still scores 0.3-0.9)."""
    midi = generate_performance(4, 6.0, "mixed")
    return midi, render_midi(midi, RATE)


@pytest.fixture(scope="module")
def other_piece() -> pretty_midi.PrettyMIDI:
    return generate_performance(2, 6.0, "melody")


def shifted(midi: pretty_midi.PrettyMIDI, seconds: float) -> pretty_midi.PrettyMIDI:
    """A copy of ``midi`` with every note and controller ``seconds`` later."""
    out = copy.deepcopy(midi)
    for inst in out.instruments:
        for note in inst.notes:
            note.start += seconds
            note.end += seconds
        for cc in inst.control_changes:
            cc.time += seconds
    return out


def one_note_midi(pitch: int = 60, start: float = 0.0, end: float = 0.5) -> pretty_midi.PrettyMIDI:
    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(0)
    piano.notes.append(pretty_midi.Note(100, pitch, start, end))
    midi.instruments.append(piano)
    return midi


def test_note_onsets_merge_chords_and_skip_silent_notes_and_drums():
    midi = pretty_midi.PrettyMIDI()
    piano, drums = pretty_midi.Instrument(0), pretty_midi.Instrument(0, is_drum=True)
    for pitch, start in ((60, 1.0), (64, 1.01), (67, 1.025), (72, 1.5), (48, 1.53)):
        piano.notes.append(pretty_midi.Note(90, pitch, start, start + 0.3))
    piano.notes.append(pretty_midi.Note(0, 62, 0.5, 0.8))  # velocity 0: no sound
    drums.notes.append(pretty_midi.Note(90, 36, 0.25, 0.3))
    midi.instruments += [piano, drums]
    # 1.0/1.01/1.025 are one chord; 1.53 is 30 ms after 1.5, so it is an onset of its own.
    np.testing.assert_allclose(note_onsets(midi), [1.0, 1.5, 1.53])
    np.testing.assert_allclose(note_onsets(midi, chord_spread=0.05), [1.0, 1.5])
    np.testing.assert_allclose(note_onsets(midi, chord_spread=0.0),
                               [1.0, 1.01, 1.025, 1.5, 1.53])
    assert note_onsets(pretty_midi.PrettyMIDI()).shape == (0,)


def test_rendering_matches_its_own_onsets(piece, tmp_path):
    midi, audio = piece
    score = onset_f1(audio, RATE, midi)
    assert isinstance(score, OnsetScore)
    assert score.f1 >= 0.8 and score.precision >= 0.8 and score.recall >= 0.8, score
    assert score.n_reference == len(note_onsets(midi)) > 10
    # A file path, a torch tensor [1, 1, T] and a numpy [1, T] give the same score.
    path = tmp_path / "piece.mid"
    midi.write(str(path))
    assert onset_f1(torch.from_numpy(audio)[None, None], RATE, path) == score
    assert onset_f1(audio[None], RATE, midi) == score


def test_a_note_at_time_zero_is_found():
    midi = one_note_midi(60, 0.0, 0.4)
    onsets = detected_onsets(render_midi(midi, RATE), RATE)
    # (An isolated note's damper can be heard as a second, weak onset at its release.)
    assert onsets[0] < 0.05 and np.sum(onsets < 0.3) == 1, onsets


def test_shifted_or_other_midi_scores_low(piece, other_piece):
    midi, audio = piece
    assert onset_f1(audio, RATE, shifted(midi, 0.5)).f1 < 0.3
    assert onset_f1(audio, RATE, other_piece).f1 < 0.3


def test_chroma_of_the_rendering_follows_its_midi(piece, other_piece):
    midi, audio = piece
    own = midi_chroma_correlation(audio, RATE, midi)
    other = midi_chroma_correlation(audio, RATE, other_piece)
    assert own > 0.5, own
    assert other < own - 0.3, (own, other)


def test_silence_and_empty_midi_score_zero_without_warnings(piece):
    midi, audio = piece
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        silent = onset_f1(np.zeros(2 * RATE, np.float32), RATE, midi)
        assert (silent.precision, silent.recall, silent.f1, silent.n_detected) == (0, 0, 0, 0)
        assert silent.n_reference > 0
        assert midi_chroma_correlation(np.zeros(2 * RATE), RATE, midi) == 0.0
        empty = pretty_midi.PrettyMIDI()
        nothing = onset_f1(audio, RATE, empty)
        assert (nothing.f1, nothing.n_reference) == (0.0, 0) and nothing.n_detected > 0
        assert midi_chroma_correlation(audio, RATE, empty) == 0.0
        assert detected_onsets(np.zeros(0, np.float32), RATE).shape == (0,)
        assert midi_chroma_correlation(np.zeros(0, np.float32), RATE, midi) == 0.0


def test_score_file_reads_only_the_first_seconds(piece, tmp_path):
    midi, audio = piece
    wav, mid = tmp_path / "piece.wav", tmp_path / "piece.midi"
    sf.write(wav, audio, RATE, subtype="FLOAT")
    midi.write(str(mid))
    whole = score_file(wav, mid)
    assert set(whole) == {"onset_precision", "onset_recall", "onset_f1", "chroma_r",
                          "pitch_accuracy", "pitch_chroma_accuracy", "pitch_frames"}
    assert whole["onset_f1"] >= 0.8 and whole["chroma_r"] > 0.5
    # A "mixed" piece always has an accompaniment: no single-note passage, no pitch score.
    assert monophonic_pitch(audio, RATE, midi) is None
    assert (whole["pitch_accuracy"], whole["pitch_chroma_accuracy"],
            whole["pitch_frames"]) == (None, None, 0)
    first = score_file(wav, mid, seconds=3.0)
    head = audio[:3 * RATE]
    expected = onset_f1(head, RATE, midi)
    assert expected.n_reference == int(np.sum(note_onsets(midi) < 3.0)) < len(note_onsets(midi))
    assert first["onset_f1"] == pytest.approx(expected.f1)
    assert first["onset_recall"] == pytest.approx(expected.recall)
    assert first["chroma_r"] == pytest.approx(midi_chroma_correlation(head, RATE, midi), abs=1e-6)


def _one_line(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert "\n" not in text and text
    return text


def test_unreadable_files_are_one_line_errors(tmp_path, piece):
    midi, audio = piece
    wav, mid = tmp_path / "piece.wav", tmp_path / "piece.mid"
    sf.write(wav, audio[:RATE], RATE)
    midi.write(str(mid))
    with pytest.raises(WavegenError) as error:
        score_file(tmp_path / "missing.wav", mid)
    assert "missing.wav" in _one_line(error)
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF not really a wave file\n\nat all")
    with pytest.raises(WavegenError) as error:
        score_file(garbage, mid)
    assert "garbage.wav" in _one_line(error)
    bad_midi = tmp_path / "bad.mid"
    bad_midi.write_bytes(b"MThd\x00\x00\x00\x06 this is not MIDI\n")
    for midi_path in (bad_midi, tmp_path / "missing.mid", tmp_path):
        with pytest.raises(DataError) as error:
            score_file(wav, midi_path)
        assert str(midi_path) in _one_line(error)
        with pytest.raises(DataError):
            onset_f1(audio, RATE, midi_path)


def test_bad_arguments_are_usage_errors(piece):
    midi, audio = piece
    for call in (lambda: onset_f1(audio, 0, midi),
                 lambda: onset_f1(audio, RATE, midi, window=0),
                 lambda: onset_f1(np.zeros((2, 2, 100)), RATE, midi),
                 lambda: midi_chroma_correlation(np.full(100, np.nan), RATE, midi),
                 lambda: midi_chroma_correlation(audio, RATE, midi, hop=0),
                 lambda: note_onsets(midi, chord_spread=-1)):
        with pytest.raises(UsageError) as error:
            call()
        _one_line(error)


def _write_pair(folder, midi, audio, name):
    (folder / "audio" / name).parent.mkdir(parents=True, exist_ok=True)
    (folder / "midi" / name).parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(folder / "audio" / f"{name}.wav"), audio, 16000)
    midi.write(str(folder / "midi" / f"{name}.mid"))


def test_the_score_verb_prints_a_line_per_file_and_the_mean(piece, other_piece, tmp_path,
                                                            capsys):
    from wavegen.cli import main

    midi, audio = piece
    _write_pair(tmp_path, midi, audio, "right")
    _write_pair(tmp_path, other_piece, audio, "sub/wrong")  # the audio of another piece
    assert main(["score", str(tmp_path / "audio"), str(tmp_path / "midi")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[2].startswith("mean over 2 files")
    right = next(line for line in lines if "right.wav" in line)
    wrong = next(line for line in lines if "wrong.wav" in line)

    def f1(line):
        return float(line.split(" F1 ")[1].split()[0])

    assert f1(right) >= 0.8 > 0.5 > f1(wrong)
    mean = float(lines[2].split(" F1 ")[1].split(",")[0])
    assert mean == pytest.approx((f1(right) + f1(wrong)) / 2, abs=2e-3)


def test_the_score_verb_refuses_unpaired_inputs_in_one_line(piece, tmp_path, capsys):
    from wavegen.cli import main

    midi, audio = piece
    _write_pair(tmp_path, midi, audio, "a")
    sf.write(str(tmp_path / "audio" / "b.wav"), audio, 16000)  # no b.mid
    for argv, fragment in (([tmp_path / "audio", tmp_path / "midi"], "b.wav: no MIDI file"),
                           ([tmp_path / "audio", tmp_path / "midi" / "a.mid"], "one of each"),
                           ([tmp_path / "nothing", tmp_path / "midi"], "no such file")):
        assert main(["score", *map(str, argv)]) == 2
        err = capsys.readouterr().err.strip()
        assert fragment in err and len(err.splitlines()) == 1, err


# --- monophonic pitch accuracy ---------------------------------------------------------


def transposed(midi: pretty_midi.PrettyMIDI, semitones: int) -> pretty_midi.PrettyMIDI:
    out = copy.deepcopy(midi)
    for inst in out.instruments:
        for note in inst.notes:
            note.pitch += semitones
    return out


@pytest.fixture(scope="module")
def tune() -> tuple[pretty_midi.PrettyMIDI, np.ndarray]:
    """A 7.8 s monophonic melody (E3-C6, notes of 0.2-0.4 s, legato with a 50 ms rest every
    fourth note, velocities 50-110) and its rendering."""
    rng = np.random.default_rng(0)
    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(0)
    t, pitch = 0.0, 64
    for i in range(24):
        length = float(rng.choice([0.2, 0.25, 0.4]))
        pitch = int(np.clip(pitch + rng.integers(-4, 5), 52, 84))
        rest = 0.05 if i % 4 == 3 else 0.0
        piano.notes.append(pretty_midi.Note(int(rng.integers(50, 110)), pitch, t,
                                            t + length - rest))
        t += length
    midi.instruments.append(piano)
    return midi, render_midi(midi, RATE)


def test_a_rendered_melody_scores_its_own_pitches(tune, tmp_path):
    midi, audio = tune
    score = monophonic_pitch(audio, RATE, midi)
    assert isinstance(score, PitchScore)
    assert score.accuracy > 0.9 and score.chroma_accuracy >= score.accuracy, score
    # Most of the 7.8 s are single-note frames; 30 ms after each onset and 20 ms before
    # each next onset are not scored.
    assert 500 <= score.frames <= 700 and score.seconds == pytest.approx(score.frames * PITCH_HOP)
    path = tmp_path / "tune.mid"
    midi.write(str(path))
    assert monophonic_pitch(torch.from_numpy(audio)[None, None], RATE, path) == score
    # At 44.1 kHz (a 441-sample hop, a longer window) as well.
    assert monophonic_pitch(render_midi(midi, 44100), 44100, midi).accuracy > 0.9


def test_a_transposed_melody_scores_low_and_an_octave_keeps_the_chroma(tune):
    midi, audio = tune
    third = monophonic_pitch(audio, RATE, transposed(midi, 3))
    assert third.accuracy < 0.2 and third.chroma_accuracy < 0.2, third
    for octave in (12, -12):
        off = monophonic_pitch(audio, RATE, transposed(midi, octave))
        assert off.accuracy < 0.2 < 0.9 < off.chroma_accuracy, (octave, off)


def test_noise_and_silence_score_low_without_warnings(tune):
    midi, audio = tune
    noise = 0.1 * np.random.default_rng(1).standard_normal(audio.size).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        score = monophonic_pitch(noise, RATE, midi)
        # By chance about 100 cents of 3600 in the searched range, 100 of 1200 in chroma.
        assert score.accuracy < 0.1 and score.chroma_accuracy < 0.3, score
        silent = monophonic_pitch(np.zeros_like(audio), RATE, midi)
        assert (silent.accuracy, silent.chroma_accuracy) == (0.0, 0.0)
        assert silent.frames == score.frames > 0


def test_late_audio_scores_lower(tune):
    midi, audio = tune
    aligned = monophonic_pitch(audio, RATE, midi).accuracy
    late = np.concatenate([np.zeros(round(0.2 * RATE), np.float32), audio])
    delayed = monophonic_pitch(late, RATE, midi).accuracy
    assert delayed < aligned - 0.3, (aligned, delayed)


def _chord_midi(pedal: bool) -> pretty_midi.PrettyMIDI:
    """C-E-G from 0 s to 1 s (keys up at 0.5 s but held to 1 s by the pedal when ``pedal``),
    A4 from 0.75 s to 2 s: A4 sounds alone from 1 s, either way."""
    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(0)
    for pitch in (60, 64, 67):
        piano.notes.append(pretty_midi.Note(90, pitch, 0.0, 0.5 if pedal else 1.0))
    piano.notes.append(pretty_midi.Note(90, 69, 0.75, 2.0))
    if pedal:
        piano.control_changes += [pretty_midi.ControlChange(64, 127, 0.0),
                                  pretty_midi.ControlChange(64, 0, 1.0)]
    midi.instruments.append(piano)
    return midi


def test_only_frames_with_exactly_one_sounding_note_are_scored():
    for pedal in (False, True):
        midi = _chord_midi(pedal)
        score = monophonic_pitch(render_midi(midi, RATE), RATE, midi)
        # Frames at 1.03 s (30 ms after the chord's dampers fall, pedal included) up to
        # 1.97 s (20 ms before A4 ends): 95 frames of 10 ms, all A4.
        assert score.frames == 95 and score.accuracy > 0.9, (pedal, score)


def test_chords_and_empty_midi_have_no_pitch_score(tune):
    midi, audio = tune
    chords = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(0)
    for k, root in enumerate((60, 65, 67, 60)):
        for pitch in (root, root + 4, root + 7):
            piano.notes.append(pretty_midi.Note(80, pitch, k * 0.5, k * 0.5 + 0.5))
    chords.instruments.append(piano)
    assert monophonic_pitch(render_midi(chords, RATE), RATE, chords) is None
    assert monophonic_pitch(audio, RATE, pretty_midi.PrettyMIDI()) is None
    # A lone note of 100 ms leaves 5 scored frames (30 ms attack, 20 ms lookahead): < 10.
    short = one_note_midi(69, 0.5, 0.6)
    assert monophonic_pitch(render_midi(short, RATE), RATE, short) is None
    assert monophonic_pitch(render_midi(short, RATE), RATE, short, min_frames=5).frames == 5
    # Audio shorter than the MIDI: only the frames inside it count (2 in the first 50 ms).
    assert monophonic_pitch(audio[:RATE // 20], RATE, midi) is None


def test_score_file_reports_pitch_where_defined(tune, tmp_path):
    midi, audio = tune
    wav, mid = tmp_path / "tune.wav", tmp_path / "tune.mid"
    sf.write(wav, audio, RATE, subtype="FLOAT")
    midi.write(str(mid))
    scores = score_file(wav, mid, seconds=4.0)
    expected = monophonic_pitch(audio[:4 * RATE], RATE, midi)
    assert expected.frames < monophonic_pitch(audio, RATE, midi).frames
    assert scores["pitch_accuracy"] == pytest.approx(expected.accuracy) and expected.accuracy > 0.9
    assert scores["pitch_chroma_accuracy"] == pytest.approx(expected.chroma_accuracy)
    assert scores["pitch_frames"] == expected.frames


def test_bad_pitch_arguments_are_usage_errors(tune):
    midi, audio = tune
    for kwargs in ({"attack": -0.01}, {"lookahead": float("nan")}, {"min_frames": 0},
                   {"tolerance": 0}, {"min_frames": 2.5}):
        with pytest.raises(UsageError) as error:
            monophonic_pitch(audio, RATE, midi, **kwargs)
        _one_line(error)
    with pytest.raises(UsageError):
        monophonic_pitch(audio, -1, midi)


def test_the_score_verb_prints_pitch_accuracy_or_a_dash(tune, tmp_path, capsys):
    from wavegen.cli import main

    midi, audio = tune
    chords = _chord_midi(False)
    chords.instruments[0].notes.pop()  # the chord alone: no single note
    assert [n.pitch for n in chords.instruments[0].notes] == [60, 64, 67]
    _write_pair(tmp_path, midi, audio, "tune")
    _write_pair(tmp_path, transposed(midi, 3), audio, "wrong_key")
    _write_pair(tmp_path, chords, render_midi(chords, RATE), "chords")
    assert main(["score", str(tmp_path / "audio"), str(tmp_path / "midi")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and lines[3].startswith("mean over 3 files"), lines

    def pitch(line):
        return line.split("pitch acc ")[1].split()[0]

    by_name = {name: next(line for line in lines if f"{name}.wav" in line)
               for name in ("tune", "wrong_key", "chords")}
    assert pitch(by_name["chords"]) == "-"
    right, wrong = float(pitch(by_name["tune"])), float(pitch(by_name["wrong_key"]))
    assert right > 0.9 and wrong < 0.2, lines
    assert "frames)" in by_name["tune"]
    # The mean is over the two files where the measure is defined, not over all three.
    assert float(pitch(lines[3])) == pytest.approx((right + wrong) / 2, abs=2e-3)
    assert lines[3].endswith("over 2 files")
