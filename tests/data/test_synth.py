"""The built-in piano synthesiser: timing against the piano roll, pitch, dynamics, pedal."""

from __future__ import annotations

import math
import sys

import numpy as np
import pretty_midi
import pytest

from wavegen.data.midi import PianoRollConfig, piano_roll
from wavegen.data.performance import generate_performance
from wavegen.data.synth import render_midi, render_with_fluidsynth, soft_limit
from wavegen.errors import DataError, UsageError

SR = 16000
HOP = 256


def make_midi(notes, pedal=()) -> pretty_midi.PrettyMIDI:
    """notes: (pitch, velocity, start, end); pedal: (time, value) CC64 events."""
    midi = pretty_midi.PrettyMIDI()
    piano = pretty_midi.Instrument(program=0)
    piano.notes = [pretty_midi.Note(velocity=v, pitch=p, start=s, end=e) for p, v, s, e in notes]
    piano.control_changes = [pretty_midi.ControlChange(64, value, t) for t, value in pedal]
    midi.instruments.append(piano)
    return midi


def frame_energy(audio: np.ndarray, hop: int = HOP) -> np.ndarray:
    frames = len(audio) // hop
    return np.sum(audio[: frames * hop].astype(np.float64).reshape(frames, hop) ** 2, axis=1)


def spectrum(audio: np.ndarray, start: float, stop: float) -> tuple[np.ndarray, np.ndarray]:
    segment = audio[int(start * SR):int(stop * SR)].astype(np.float64)
    magnitude = np.abs(np.fft.rfft(segment * np.hanning(len(segment))))
    return np.fft.rfftfreq(len(segment), 1 / SR), magnitude


def centroid(audio: np.ndarray, start: float, stop: float) -> float:
    freqs, magnitude = spectrum(audio, start, stop)
    return float(np.sum(freqs * magnitude) / np.sum(magnitude))


def rms(audio: np.ndarray, start: float, stop: float) -> float:
    return float(np.sqrt(np.mean(audio[int(start * SR):int(stop * SR)].astype(np.float64) ** 2)))


def test_note_energy_starts_in_the_rolls_onset_frame():
    # Notes separated by silence (each release ends before the next onset), at times that
    # fall at different places within their frames.
    starts = [0.1003, 0.6171, 1.2, 1.7349, 2.31]
    midi = make_midi([(48 + 7 * i, 90 - 10 * i, t, t + 0.2) for i, t in enumerate(starts)])
    audio = render_midi(midi, SR, release=0.2)
    energy = frame_energy(audio)
    onsets = piano_roll(midi, PianoRollConfig(SR, HOP))[:88].sum(dim=0).numpy()
    roll_frames = np.flatnonzero(onsets).tolist()
    assert len(roll_frames) == len(starts)

    threshold = 1e-6 * energy.max()
    detected = [f for f in range(len(energy))
                if energy[f] > threshold and (f == 0 or energy[f - 1] <= threshold)]
    assert len(detected) == len(starts), detected
    for got, expected in zip(detected, roll_frames):
        assert abs(got - expected) <= 1, (detected, roll_frames)
    # Nothing sounds before the first onset.
    assert np.all(audio[: int(starts[0] * SR)] == 0)


@pytest.mark.parametrize("pitch", [57, 60, 69, 76])
def test_spectrum_peaks_at_the_fundamental(pitch):
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    audio = render_midi(make_midi([(pitch, 80, 0.0, 1.5)]), SR)
    freqs, magnitude = spectrum(audio, 0.05, 1.05)
    peak = freqs[np.argmax(magnitude)]
    assert abs(peak - f0) < 0.01 * f0, (peak, f0)


def test_partials_are_stretched_by_inharmonicity():
    pitch = 84  # C6: stiff treble strings, so partials lie noticeably above k f0
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    audio = render_midi(make_midi([(pitch, 120, 0.0, 1.2)]), SR)
    freqs, magnitude = spectrum(audio, 0.0, 1.0)
    band = (freqs > 3.9 * f0) & (freqs < 4.2 * f0)
    partial4 = freqs[band][np.argmax(magnitude[band])]
    assert partial4 > 4 * f0 + 10.0, (partial4, 4 * f0)


@pytest.mark.parametrize("pitch", [45, 57, 69])
def test_upper_partials_decay_faster(pitch):
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    audio = render_midi(make_midi([(pitch, 110, 0.0, 3.0)]), SR)

    def upper_to_lower(start):
        freqs, magnitude = spectrum(audio, start, start + 0.5)
        power = magnitude**2
        return power[freqs > 4.5 * f0].sum() / power[freqs < 2.5 * f0].sum()

    ratios = [upper_to_lower(start) for start in (0.05, 0.5, 1.0, 1.5, 2.0)]
    assert all(later < earlier for earlier, later in zip(ratios, ratios[1:])), ratios
    assert ratios[-1] < 0.5 * ratios[0], ratios


def test_louder_velocity_is_louder_and_brighter():
    soft = render_midi(make_midi([(60, 40, 0.0, 1.0)]), SR)
    loud = render_midi(make_midi([(60, 110, 0.0, 1.0)]), SR)
    assert rms(loud, 0.0, 0.5) > 4 * rms(soft, 0.0, 0.5)  # > 12 dB for 70 velocity steps
    assert centroid(loud, 0.02, 0.52) > 1.15 * centroid(soft, 0.02, 0.52)


def test_sustain_pedal_lengthens_the_sound():
    notes = [(60, 90, 0.0, 0.3), (64, 90, 0.0, 0.3)]
    dry = render_midi(make_midi(notes), SR)
    pedalled = render_midi(make_midi(notes, pedal=[(0.1, 127), (1.5, 0)]), SR)
    # Identical until the key release, then the pedal keeps the strings ringing.
    np.testing.assert_array_equal(dry[: int(0.3 * SR)], pedalled[: int(0.3 * SR)])
    assert rms(dry, 0.7, 1.4) < 1e-3 * rms(pedalled, 0.7, 1.4)
    assert rms(pedalled, 0.7, 1.4) > 0.1 * rms(pedalled, 0.0, 0.3)
    # Once the pedal is up the dampers fall: silence after the release time.
    assert np.all(pedalled[int((1.5 + 0.2) * SR) + 1:] == 0)
    assert len(pedalled) > len(dry)


def test_length_is_last_release_plus_tail():
    midi = make_midi([(60, 90, 0.2, 1.0), (67, 90, 0.5, 1.7)])
    audio = render_midi(midi, SR, release=0.25, tail=0.4)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) == math.ceil((1.7 + 0.25 + 0.4) * SR)
    assert len(render_midi(pretty_midi.PrettyMIDI(), SR, tail=0.1)) == math.ceil(0.1 * SR)


def test_dense_loud_polyphony_never_clips():
    cluster = [(p, 127, 0.0, 1.0) for p in range(36, 96, 2)]  # 30 notes at full velocity
    audio = render_midi(make_midi(cluster), SR)
    assert np.abs(audio).max() < 1.0
    assert np.abs(audio).max() > 0.8  # this one does reach the limiter
    x = np.linspace(-3, 3, 2001)
    limited = soft_limit(x, knee=0.8)
    assert np.all(np.abs(limited) < 1.0)
    small = np.abs(x) <= 0.8
    np.testing.assert_array_equal(limited[small], x[small])
    assert np.all(np.diff(limited) > 0)  # monotonic: no fold-over


def test_render_is_deterministic_and_generated_pieces_render():
    midi = generate_performance(seed=11, seconds=5.0, style="mixed")
    first = render_midi(midi, SR, seed=3)
    np.testing.assert_array_equal(first, render_midi(midi, SR, seed=3))
    assert np.isfinite(first).all() and np.abs(first).max() > 1e-3
    # The hammer noise follows the seed; the tones do not.
    other = render_midi(midi, SR, seed=4)
    assert not np.array_equal(first, other)
    assert rms(first - other, 0, 5) < 0.2 * rms(first, 0, 5)


def test_bad_arguments_are_refused():
    midi = make_midi([(60, 90, 0.0, 0.5)])
    with pytest.raises(UsageError):
        render_midi(midi, 0)
    with pytest.raises(UsageError):
        render_midi(midi, SR, release=0.0)
    with pytest.raises(DataError):
        render_midi("/no/such/file.mid", SR)


def test_fluidsynth_needs_a_soundfont_and_pyfluidsynth(tmp_path, monkeypatch):
    midi = make_midi([(60, 90, 0.0, 0.5)])
    with pytest.raises(DataError, match="soundfont not found"):
        render_with_fluidsynth(midi, SR, tmp_path / "missing.sf2")
    soundfont = tmp_path / "piano.sf2"
    soundfont.write_bytes(b"RIFF\x00\x00\x00\x00sfbk")
    monkeypatch.setitem(sys.modules, "fluidsynth", None)  # makes `import fluidsynth` fail
    with pytest.raises(DataError, match="pyfluidsynth") as info:
        render_with_fluidsynth(midi, SR, soundfont)
    assert "\n" not in str(info.value)


def test_fluidsynth_path_plays_everything_as_piano_and_normalises(tmp_path, monkeypatch):
    # No FluidSynth here: stand in for pyfluidsynth and for pretty_midi's renderer, and check
    # what wavegen hands to it and does with its output.
    import types

    monkeypatch.setitem(sys.modules, "fluidsynth", types.ModuleType("fluidsynth"))
    seen = {}

    def fake_fluidsynth(self, fs=None, **kwargs):
        seen["fs"] = fs
        seen["soundfont"] = kwargs.get("synthesizer", kwargs.get("sf2_path"))
        seen["instruments"] = [(inst.program, inst.is_drum) for inst in self.instruments]
        return np.array([0.0, 0.5, -2.0, 1.0])

    monkeypatch.setattr(pretty_midi.PrettyMIDI, "fluidsynth", fake_fluidsynth)
    midi = make_midi([(60, 90, 0.0, 0.5)])
    midi.instruments[0].program = 40  # a violin track still plays as a piano
    drums = pretty_midi.Instrument(program=0, is_drum=True)
    drums.notes.append(pretty_midi.Note(100, 36, 0.0, 0.1))
    midi.instruments.append(drums)
    soundfont = tmp_path / "piano.sf2"
    soundfont.write_bytes(b"RIFF")

    audio = render_with_fluidsynth(midi, 22050, soundfont)
    assert seen == {"fs": 22050, "soundfont": str(soundfont), "instruments": [(0, False)]}
    np.testing.assert_allclose(audio, np.array([0.0, 0.225, -0.9, 0.45], np.float32))
    assert audio.dtype == np.float32
    assert midi.instruments[0].program == 40 and len(midi.instruments) == 2  # input untouched
