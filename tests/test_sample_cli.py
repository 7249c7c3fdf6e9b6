"""`wavegen sample`: from a trained bundle to a WAV, for each kind of conditioning."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from wavegen.cli import main
from wavegen.data.performance import generate_performance

ROOT = Path(__file__).resolve().parents[1] / "recipes"
SHORT = ["--set", "train.steps=2", "--set", "train.val_every=2", "--set", "train.checkpoint_every=2",
         "--set", "train.sample_seconds=0"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus") / "c"
    assert main(["prepare", str(out), "--generate", "4", "--seconds", "3", "--seed", "2"]) == 0
    return out


def trained(tmp_path, recipe, corpus=None) -> Path:
    extra = [] if corpus is None else ["--set", f"data.root={corpus}",
                                       "--set", f"data.cache_dir={tmp_path / 'cache'}"]
    out = tmp_path / "run"
    assert main(["train", str(ROOT / recipe), "--out", str(out), "--no-progress", *SHORT, *extra]) == 0
    return out / "checkpoints" / "best"


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("wavegen: error:")
    return err


def test_unconditional_model_samples_seconds(tmp_path, capsys):
    bundle = trained(tmp_path, "wavenet-tones-tiny.yaml")
    assert json.loads((bundle / "config.json").read_text())["conditioning"] == "none"
    out = tmp_path / "free.wav"
    assert main(["sample", str(bundle), "-o", str(out), "--seconds", "0.05", "--no-progress"]) == 0
    audio, rate = sf.read(out)
    assert rate == 8000 and len(audio) == 400
    assert "real-time factor" in capsys.readouterr().out
    assert main(["sample", str(bundle), "-o", str(tmp_path / "x.wav")]) == 2
    assert "--seconds" in error_line(capsys)


def test_midi_model_samples_the_length_of_the_midi(tmp_path, corpus, capsys):
    from wavegen.checkpoint import read_bundle_info

    bundle = trained(tmp_path, "wavenet-midi-tiny.yaml", corpus)
    assert read_bundle_info(bundle).conditioning == "roll"  # recorded at training time
    midi = tmp_path / "piece.mid"
    generate_performance(3, seconds=0.5, style="chords").write(str(midi))
    out = tmp_path / "piano.wav"
    assert main(["sample", str(bundle), "-o", str(out), "--midi", str(midi), "--seconds", "0.1",
                 "--no-progress"]) == 0
    audio, rate = sf.read(out)
    assert rate == 16000 and len(audio) == 7 * 256  # ceil(0.1 s / 16 ms) frames
    assert main(["sample", str(bundle), "-o", str(tmp_path / "y.wav"), "--seconds", "1"]) == 2
    assert "--midi" in error_line(capsys)
    assert not (tmp_path / "y.wav").exists()


def test_midi_events_after_the_last_note_do_not_lengthen_the_sample(tmp_path, corpus):
    import pretty_midi

    from wavegen.data.midi import performance_end

    bundle = trained(tmp_path, "wavenet-midi-tiny.yaml", corpus)
    piece = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(0)
    piano.notes.append(pretty_midi.Note(velocity=80, pitch=60, start=0.0, end=0.1))
    piano.control_changes.append(pretty_midi.ControlChange(number=7, value=90, time=5.0))
    piece.instruments.append(piano)
    midi = tmp_path / "trailing.mid"
    piece.write(str(midi))
    assert pretty_midi.PrettyMIDI(str(midi)).get_end_time() >= 5.0
    out = tmp_path / "t.wav"
    assert main(["sample", str(bundle), "-o", str(out), "--midi", str(midi), "--no-progress"]) == 0
    frames = -(-performance_end(pretty_midi.PrettyMIDI(str(midi))) * 16000 // 256)
    assert sf.info(out).frames == int(frames) * 256 < 16000


def test_mel_model_refuses_features_of_another_shape(tmp_path, corpus, capsys):
    bundle = trained(tmp_path, "wavenet-mel-tiny.yaml", corpus)
    good = tmp_path / "good.npy"
    np.save(good, np.random.default_rng(0).standard_normal((80, 3)).astype(np.float32))
    assert main(["sample", str(bundle), "-o", str(tmp_path / "m.wav"), "--mel", str(good),
                 "--no-progress"]) == 0
    assert sf.info(tmp_path / "m.wav").frames == 3 * 256
    wav = tmp_path / "in.wav"
    sf.write(wav, 0.3 * np.sin(2 * np.pi * 440 * np.arange(8000) / 22050), 22050)  # resampled
    assert main(["sample", str(bundle), "-o", str(tmp_path / "copy.wav"), "--wav", str(wav),
                 "--seconds", "0.05", "--no-progress"]) == 0
    assert sf.info(tmp_path / "copy.wav").frames == 4 * 256  # ceil(0.05 s / 16 ms) frames
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((100, 3), dtype=np.float32))
    assert main(["sample", str(bundle), "-o", str(tmp_path / "n.wav"), "--mel", str(bad)]) == 2
    assert "does not match the features [80, frames]" in error_line(capsys)


def test_missing_checkpoint_is_one_line(tmp_path, capsys):
    assert main(["sample", str(tmp_path / "nope"), "-o", str(tmp_path / "a.wav"), "--seconds", "1"]) == 2
    assert "not a wavegen bundle" in error_line(capsys)
