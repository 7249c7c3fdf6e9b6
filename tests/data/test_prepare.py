"""Generated performances and `wavegen prepare`: a MAESTRO v3-format corpus from nothing."""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import re

import numpy as np
import pretty_midi
import pytest
import soundfile as sf

from wavegen.cli import main
from wavegen.data.maestro import MaestroDataset
from wavegen.data.midi import PianoRollConfig, load_midi, pedal_intervals, performance_end
from wavegen.data.performance import STYLES, generate_performance
from wavegen.data.prepare import (
    CSV_NAME,
    JSON_NAME,
    MARKER_NAME,
    METADATA_COLUMNS,
    _split_counts,
    prepare_corpus,
)
from wavegen.errors import DataError, StorageError, UsageError
from wavegen.utils import atomic

SR = 16000


def midi_bytes(midi: pretty_midi.PrettyMIDI) -> bytes:
    buffer = io.BytesIO()
    midi.write(buffer)
    return buffer.getvalue()


def read_csv(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


# --------------------------------------------------------------------------- performances


@pytest.mark.parametrize("style", STYLES)
def test_performances_are_deterministic_per_seed_and_differ_across_seeds(style):
    first = generate_performance(seed=5, seconds=6.0, style=style)
    again = generate_performance(seed=5, seconds=6.0, style=style)
    other = generate_performance(seed=6, seconds=6.0, style=style)
    assert midi_bytes(first) == midi_bytes(again)
    assert midi_bytes(first) != midi_bytes(other)

    assert len(first.instruments) == 1
    piano = first.instruments[0]
    assert piano.program == 0 and not piano.is_drum
    assert len(piano.notes) >= 10
    assert all(21 <= n.pitch <= 108 and 1 <= n.velocity <= 127 for n in piano.notes)
    assert all(0 <= n.start < n.end <= 6.0 + 1e-9 for n in piano.notes)
    assert max(n.end for n in piano.notes) > 5.0  # it fills the requested time
    assert len({n.velocity for n in piano.notes}) > 3  # dynamics vary
    # The pedal, when used, is up again by the end.
    values = [cc.value for cc in piano.control_changes if cc.number == 64]
    assert not values or values[-1] < 64


def test_performances_vary_tempo_and_use_the_pedal():
    midi = generate_performance(seed=2, seconds=20.0, style="arpeggio")
    starts = sorted({round(n.start, 4) for n in midi.instruments[0].notes})
    gaps = np.diff(starts)
    # Rubato: the spacing of notes written on an even grid drifts over the piece.
    assert gaps.max() > 1.1 * np.median(gaps)
    assert len(pedal_intervals(midi)) >= 4
    # A written and re-read file is the same performance (times lie on the tick grid).
    reread = pretty_midi.PrettyMIDI(io.BytesIO(midi_bytes(midi)))
    key = lambda n: (n.start, n.pitch)  # noqa: E731
    assert [(n.pitch, n.velocity, n.start, n.end) for n in sorted(reread.instruments[0].notes, key=key)] \
        == [(n.pitch, n.velocity, n.start, n.end) for n in sorted(midi.instruments[0].notes, key=key)]


def test_performance_arguments_are_checked():
    with pytest.raises(UsageError, match="style"):
        generate_performance(seed=0, seconds=5.0, style="jazz")
    with pytest.raises(UsageError):
        generate_performance(seed=0, seconds=0.0)
    with pytest.raises(UsageError):
        generate_performance(seed=-1, seconds=5.0)


# --------------------------------------------------------------------------- prepare


def test_prepare_builds_a_maestro_v3_corpus_from_generated_pieces(tmp_path):
    out = tmp_path / "corpus"
    result = prepare_corpus(out, num_generated=3, seconds=4.0, sample_rate=SR, seed=1, year=2021)
    assert len(result.pieces) == 3 and result.skipped == ()

    columns, rows = read_csv(out / CSV_NAME)
    assert tuple(columns) == METADATA_COLUMNS
    table = json.loads((out / JSON_NAME).read_text())
    assert tuple(table) == METADATA_COLUMNS
    for column in METADATA_COLUMNS:
        assert list(table[column]) == ["0", "1", "2"]
    assert {row["split"] for row in rows} == {"train", "validation", "test"}  # one of each

    for i, row in enumerate(rows):
        for column in METADATA_COLUMNS:
            assert str(table[column][str(i)]) == row[column]
        assert isinstance(table["year"][str(i)], int) and isinstance(table["duration"][str(i)], float)
        assert row["year"] == "2021"
        assert row["midi_filename"].startswith("2021/") and row["midi_filename"].endswith(".midi")
        assert row["audio_filename"] == row["midi_filename"][:-len(".midi")] + ".wav"
        info = sf.info(str(out / row["audio_filename"]))
        assert info.samplerate == SR and info.channels == 1
        assert math.isclose(float(row["duration"]), info.frames / SR, abs_tol=1e-9)
        midi = load_midi(out / row["midi_filename"])
        # The audio covers the performance, its release and a short tail, no more.
        assert performance_end(midi) <= info.frames / SR <= performance_end(midi) + 1.0
        audio, _ = sf.read(str(out / row["audio_filename"]))
        assert np.abs(audio).max() > 1e-3
    marker = json.loads((out / MARKER_NAME).read_text())
    assert marker["complete"] is True
    assert math.isclose(result.total_duration, sum(float(r["duration"]) for r in rows))
    assert "prepared 3 pieces" in result.summary()


def test_prepare_is_deterministic_for_a_seed(tmp_path):
    kwargs = dict(num_generated=4, seconds=2.0, sample_rate=8000, year=2020)
    prepare_corpus(tmp_path / "a", seed=7, **kwargs)
    prepare_corpus(tmp_path / "b", seed=7, **kwargs)
    prepare_corpus(tmp_path / "c", seed=8, **kwargs)
    a, b, c = ((tmp_path / name / CSV_NAME).read_text() for name in "abc")
    assert a == b
    assert a != c
    for row in read_csv(tmp_path / "a" / CSV_NAME)[1]:
        for kind in ("midi_filename", "audio_filename"):
            assert (tmp_path / "a" / row[kind]).read_bytes() == (tmp_path / "b" / row[kind]).read_bytes()


def test_corrupt_midi_is_reported_once_and_skipped(tmp_path):
    midi_dir = tmp_path / "midi"
    (midi_dir / "sub").mkdir(parents=True)
    good = generate_performance(seed=0, seconds=3.0, style="melody")
    (midi_dir / "sub" / "good piece.MID").write_bytes(midi_bytes(good))
    (midi_dir / "broken.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk\xff")
    (midi_dir / "empty.midi").write_bytes(midi_bytes(pretty_midi.PrettyMIDI()))
    (midi_dir / "notes.txt").write_text("not a MIDI file, and not named like one")

    reports = []
    out = tmp_path / "corpus"
    result = prepare_corpus(out, midi_dir=midi_dir, sample_rate=8000,
                            on_skip=lambda path, reason: reports.append((path, reason)))
    assert sorted(p.rsplit("/", 1)[-1] for p, _ in reports) == ["broken.mid", "empty.midi"]
    assert result.skipped == tuple(reports)
    assert all(reason and "\n" not in reason for _, reason in reports)
    assert "skipped 2" in result.summary()

    _, rows = read_csv(out / CSV_NAME)
    assert len(rows) == 1
    row = rows[0]
    assert row["canonical_title"] == "good piece"
    assert row["midi_filename"].endswith("/sub--good_piece.midi")
    # The input is copied byte for byte.
    assert (out / row["midi_filename"]).read_bytes() == (midi_dir / "sub" / "good piece.MID").read_bytes()


def test_no_usable_input_is_a_data_error_and_writes_nothing(tmp_path):
    midi_dir = tmp_path / "midi"
    midi_dir.mkdir()
    (midi_dir / "broken.mid").write_bytes(b"garbage")
    out = tmp_path / "corpus"
    with pytest.raises(DataError, match="none of the 1 MIDI files"):
        prepare_corpus(out, midi_dir=midi_dir)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no MIDI files"):
        prepare_corpus(out, midi_dir=tmp_path / "empty")
    with pytest.raises(DataError, match="not found"):
        prepare_corpus(out, midi_dir=tmp_path / "missing")
    with pytest.raises(DataError, match="nothing to prepare"):
        prepare_corpus(out)
    assert not out.exists()


def test_soundfont_rendering_without_pyfluidsynth_fails_before_writing(tmp_path, monkeypatch):
    import sys

    soundfont = tmp_path / "piano.sf2"
    soundfont.write_bytes(b"RIFF")
    monkeypatch.setitem(sys.modules, "fluidsynth", None)
    out = tmp_path / "corpus"
    with pytest.raises(DataError, match="pyfluidsynth"):
        prepare_corpus(out, num_generated=1, seconds=1.0, soundfont=soundfont)
    with pytest.raises(DataError, match="soundfont not found"):
        prepare_corpus(out, num_generated=1, seconds=1.0, soundfont=tmp_path / "none.sf2")
    assert not out.exists()


def test_foreign_folders_are_refused_and_own_corpora_are_replaced(tmp_path):
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(DataError, match="not a corpus prepared by wavegen"):
        prepare_corpus(foreign, num_generated=1, seconds=1.0, sample_rate=8000)
    assert [p.name for p in foreign.iterdir()] == ["holiday.jpg"]
    assert (foreign / "holiday.jpg").read_bytes() == b"precious"

    out = tmp_path / "corpus"
    first = prepare_corpus(out, num_generated=3, seconds=1.0, sample_rate=8000, year=2019)
    (out / "my_notes.txt").write_text("mine")
    second = prepare_corpus(out, num_generated=1, seconds=1.0, sample_rate=8000, year=2019)
    kept = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    expected = {CSV_NAME, JSON_NAME, MARKER_NAME, "my_notes.txt"}
    for piece in second.pieces:
        expected |= {piece.midi_filename, piece.audio_filename}
    assert kept == expected  # the two pieces of the first run are gone, the user's file stays
    assert len(first.pieces) == 3 and len(read_csv(out / CSV_NAME)[1]) == 1


def midi_with_events_after_the_last_note() -> bytes:
    """Two notes ending at 1 s, then (as real files often have) a volume change at 10 s and a
    tempo change at 12 s, which pretty_midi's get_end_time() counts: 12 s."""
    import mido

    ticks = 480  # per beat; 120 bpm: a beat is 0.5 s
    tempo_map = mido.MidiTrack([
        mido.MetaMessage("set_tempo", tempo=500_000, time=0),
        mido.MetaMessage("set_tempo", tempo=600_000, time=24 * ticks),
        mido.MetaMessage("end_of_track", time=4 * ticks),
    ])
    piano = mido.MidiTrack([
        mido.Message("program_change", program=0, time=0),
        mido.Message("note_on", note=60, velocity=90, time=0),
        mido.Message("note_off", note=60, velocity=0, time=ticks),
        mido.Message("note_on", note=64, velocity=80, time=0),
        mido.Message("note_off", note=64, velocity=0, time=ticks),
        mido.Message("control_change", control=7, value=100, time=18 * ticks),
        mido.MetaMessage("end_of_track", time=0),
    ])
    buffer = io.BytesIO()
    mido.MidiFile(type=1, ticks_per_beat=ticks, tracks=[tempo_map, piano]).save(file=buffer)
    return buffer.getvalue()


def test_prepared_midi_with_events_after_the_last_note_is_accepted_by_the_maestro_reader(
        tmp_path, capsys):
    midi_dir = tmp_path / "midi"
    midi_dir.mkdir()
    (midi_dir / "piece.mid").write_bytes(midi_with_events_after_the_last_note())
    midi = load_midi(midi_dir / "piece.mid")
    assert math.isclose(midi.get_end_time(), 12.0) and math.isclose(performance_end(midi), 1.0)

    out = tmp_path / "corpus"
    status, stdout, stderr = run(capsys, "prepare", out, "--midi", midi_dir)
    assert status == 0, stderr
    assert stdout.startswith("prepared 1 piece (1 train, 0 validation, 0 test)")
    (row,) = read_csv(out / CSV_NAME)[1]
    # The audio covers the notes, the release and the tail, not the silent events.
    assert 1.0 < float(row["duration"]) < 2.0

    roll = PianoRollConfig(sample_rate=SR, hop_length=256)
    dataset = MaestroDataset(out, "train", sample_rate=SR, crop_samples=64 * 256, roll=roll,
                             cache_dir=tmp_path / "cache")
    assert dataset.skipped == [] and len(dataset.files) == 1
    item = dataset[0]
    assert item["roll"].shape == (roll.num_channels, 64) and item["roll"].sum() > 0


@pytest.fixture
def full_disk_for(monkeypatch):
    """``full_disk_for(suffix)``: from then on, flushing a file whose name ends with
    ``suffix`` to disk fails with ENOSPC, as on a full disk (every corpus file, the audio
    included, goes through wavegen.utils.atomic)."""
    real_fsync = atomic._fsync_file

    def arm(suffix: str) -> None:
        def fsync(path):
            if path.name.startswith(".") and f"{suffix}." in path.name:  # .NAME.XXXX.tmp
                raise OSError(errno.ENOSPC, "No space left on device")
            real_fsync(path)

        monkeypatch.setattr(atomic, "_fsync_file", fsync)

    return arm


@pytest.mark.parametrize("failing", [".wav", ".midi", CSV_NAME])
def test_full_disk_names_the_file_and_leaves_nothing_half_written(
        tmp_path, capsys, full_disk_for, failing):
    out = tmp_path / "corpus"
    full_disk_for(failing)
    status, stdout, stderr = run(capsys, "prepare", out, "--generate", 2, "--seconds", 1,
                                 "--sample-rate", 8000)
    assert status == 1 and stdout == ""
    name = re.escape(failing) if failing == CSV_NAME else rf"\d{{4}}/[^ ]+{re.escape(failing)}"
    expected = rf"wavegen: error: {re.escape(str(out))}/{name}: no space left on device\n"
    assert re.fullmatch(expected, stderr), stderr
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert not [f for f in files if f.endswith(".tmp")]
    assert not any(f.endswith(failing) for f in files)
    assert json.loads((out / MARKER_NAME).read_text())["complete"] is False

    # With space again, preparing into the folder gives exactly the new corpus: the files
    # the failed run wrote for its second piece are gone.
    full_disk_for(".nothing")
    result = prepare_corpus(out, num_generated=1, seconds=1.0, sample_rate=8000)
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    (piece,) = result.pieces
    assert files == {CSV_NAME, JSON_NAME, MARKER_NAME, piece.midi_filename, piece.audio_filename}


def test_full_disk_is_a_storage_error_in_python(tmp_path, full_disk_for):
    full_disk_for(".midi")
    with pytest.raises(StorageError, match="no space left on device") as caught:
        prepare_corpus(tmp_path / "corpus", num_generated=1, seconds=1.0, sample_rate=8000)
    assert caught.value.path.endswith(".midi") and caught.value.exit_status == 1


def test_split_counts():
    assert _split_counts(3, (0.8, 0.1, 0.1)) == [1, 1, 1]
    assert _split_counts(10, (0.8, 0.1, 0.1)) == [8, 1, 1]
    assert _split_counts(2, (0.8, 0.1, 0.1)) == [2, 0, 0]
    assert _split_counts(7, (1.0, 0.0, 0.0)) == [7, 0, 0]
    assert _split_counts(25, (0.8, 0.1, 0.1)) in ([20, 3, 2], [20, 2, 3])
    assert sum(_split_counts(1277, (0.8, 0.1, 0.1))) == 1277
    with pytest.raises(UsageError):
        prepare_corpus("unused", num_generated=1, splits=(0.5, 0.6, 0.1))


# --------------------------------------------------------------------------- CLI


def run(capsys, *argv):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_error(status, out, err, fragment):
    assert status == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("wavegen: error: ") and fragment in lines[0], err


def test_cli_prepare_generates_and_summarises(tmp_path, capsys):
    out = tmp_path / "corpus"
    status, stdout, stderr = run(capsys, "prepare", out, "--generate", 2, "--seconds", 2,
                                 "--sample-rate", 8000, "--seed", 3)
    assert status == 0, stderr
    lines = stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("prepared 2 pieces") and "8000 Hz" in lines[0]
    assert len(read_csv(out / CSV_NAME)[1]) == 2


def test_cli_prepare_reports_skipped_files_on_stderr(tmp_path, capsys):
    midi_dir = tmp_path / "midi"
    midi_dir.mkdir()
    (midi_dir / "bad.mid").write_bytes(b"not midi")
    (midi_dir / "ok.mid").write_bytes(midi_bytes(generate_performance(1, 2.0, "scale")))
    status, stdout, stderr = run(capsys, "prepare", tmp_path / "corpus", "--midi", midi_dir,
                                 "--sample-rate", 8000)
    assert status == 0
    warnings = stderr.splitlines()
    assert len(warnings) == 1 and warnings[0].startswith("wavegen: warning: skipped ")
    assert "bad.mid" in warnings[0]
    assert "prepared 1 piece (" in stdout and "skipped 1" in stdout


def test_cli_prepare_bad_input_is_one_line_and_status_2(tmp_path, capsys):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "data.csv").write_text("a,b\n")
    assert_one_line_error(*run(capsys, "prepare", foreign, "--generate", 1), "not a corpus")
    assert_one_line_error(*run(capsys, "prepare", tmp_path / "new", "--midi", tmp_path / "nope"),
                          "not found")
    assert_one_line_error(*run(capsys, "prepare", tmp_path / "new"), "nothing to prepare")
    assert_one_line_error(*run(capsys, "prepare", tmp_path / "new", "--generate", "x"), "not a whole number")
    assert not (tmp_path / "new").exists()
