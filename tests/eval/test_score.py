"""Score following (:mod:`wavegen.eval.score`): wavegen's rendering of a MIDI file matches
that file's onsets and chroma, and neither a shifted copy nor another piece; silence and
empty MIDI files score 0 without warnings; bad inputs are one-line errors."""

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
    assert set(whole) == {"onset_precision", "onset_recall", "onset_f1", "chroma_r"}
    assert whole["onset_f1"] >= 0.8 and whole["chroma_r"] > 0.5
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
