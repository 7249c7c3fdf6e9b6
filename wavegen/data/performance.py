"""Generated piano performances, so that a MIDI + audio corpus can be made from nothing.

:func:`generate_performance` writes plausible (not musically ambitious) piano pieces as a
``pretty_midi.PrettyMIDI`` with one piano instrument (program 0):

* ``"scale"``: scale runs over one or two octaves, hands in octaves or over a held bass;
* ``"arpeggio"``: broken chords over a progression, bass held, the pedal changed per chord;
* ``"chords"``: block chords (I-vi-IV-V, I-V-vi-IV, ii-V-I, ...) voiced with smooth voice
  leading, slightly rolled, over bass octaves, the pedal changed per chord;
* ``"melody"``: a random-walk melody that lands on chord tones on strong beats, over an
  Alberti bass, broken chords or block chords;
* ``"mixed"``: a sequence of sections of the styles above, each in a new random key.

Every piece has its own tempo (70-130 beats per minute) with rubato (a smoothly varying
tempo within the piece), phrase-level dynamics (crescendi and diminuendi drawn per bar),
accents on strong beats, a softer accompaniment, and small human timing jitter. Keys and
modes (major, harmonic minor) are random. Times are quantised to the ticks of the MIDI file
(384 per beat at 120 bpm, as in MAESTRO), so a written and re-read file equals the object.
The result is a deterministic function of ``(seed, seconds, style)``.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pretty_midi

from wavegen.errors import UsageError

__all__ = ["STYLES", "generate_performance"]

#: The styles :func:`generate_performance` accepts.
STYLES = ("scale", "arpeggio", "chords", "melody", "mixed")

_RESOLUTION = 384
_FILE_TEMPO = 120.0
_TICK = 60.0 / _FILE_TEMPO / _RESOLUTION  # seconds per tick
_BEATS_PER_BAR = 4

_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_HARMONIC_MINOR = (0, 2, 3, 5, 7, 8, 11)
# Progressions as 0-based scale degrees, one chord per bar.
_PROGRESSIONS = (
    (0, 5, 3, 4),  # I-vi-IV-V
    (0, 4, 5, 3),  # I-V-vi-IV
    (1, 4, 0, 0),  # ii-V-I
    (0, 3, 4, 0),  # I-IV-V-I
    (5, 3, 0, 4),  # vi-IV-I-V
    (0, 3, 1, 4),  # I-IV-ii-V
)
_MELODY_RHYTHMS = (
    (1, 1, 1, 1), (2, 1, 1), (1.5, 0.5, 1, 1), (1, 0.5, 0.5, 2), (0.5,) * 8,
    (1, 1, 2), (0.5, 0.5, 1, 0.5, 0.5, 1), (3, 1),
)


@dataclasses.dataclass
class _Event:
    pitch: int
    beat: float
    beats: float  # duration in beats
    accent: float  # velocity offset relative to the phrase dynamics


@dataclasses.dataclass
class _Key:
    tonic: int  # pitch class 0..11
    steps: tuple[int, ...]

    def pitch(self, degree: int, octave: int) -> int:
        """MIDI pitch of scale ``degree`` (any integer) counted from the tonic of ``octave``."""
        return 12 * (octave + 1) + self.tonic + 12 * (degree // 7) + self.steps[degree % 7]

    def triad(self, degree: int) -> tuple[int, int, int]:
        """Pitch classes of the triad built on ``degree``."""
        return tuple((self.tonic + 12 * ((degree + i) // 7) + self.steps[(degree + i) % 7]) % 12
                     for i in (0, 2, 4))


class _Section:
    """Notes and pedal changes of one section, in beats from the start of the piece."""

    def __init__(self) -> None:
        self.events: list[_Event] = []
        self.pedal: list[tuple[float, bool]] = []

    def note(self, pitch: int, beat: float, beats: float, accent: float = 0.0) -> None:
        while pitch < 24:
            pitch += 12
        while pitch > 104:
            pitch -= 12
        self.events.append(_Event(pitch, beat, beats, accent))

    def pedal_change(self, beat: float) -> None:
        """Lift and re-press just after ``beat`` (legato pedalling: the new bass is caught)."""
        self.pedal.append((beat, False))
        self.pedal.append((beat + 0.15, True))


def _metric_accent(beat: float) -> float:
    position = beat % _BEATS_PER_BAR
    if abs(position) < 1e-9:
        return 8.0
    if abs(position - 2) < 1e-9:
        return 4.0
    return 0.0 if abs(position - round(position)) > 1e-9 else 1.5


def _random_key(rng: np.random.Generator) -> _Key:
    minor = rng.random() < 0.35
    return _Key(int(rng.integers(12)), _HARMONIC_MINOR if minor else _MAJOR)


def _scale_section(rng, key: _Key, start: float, bars: int, out: _Section) -> None:
    per_beat = int(rng.choice([2, 4]))
    octaves = int(rng.choice([1, 2]))
    octave = int(rng.integers(4, 6)) - (octaves - 1)
    hands_together = rng.random() < 0.5
    legato = 0.9 if rng.random() < 0.8 else 0.45
    span = 7 * octaves
    # Up and down the scale until the section is full: 0..span..0..span...
    steps = bars * _BEATS_PER_BAR * per_beat
    path = [i % (2 * span) for i in range(steps)]
    step_beats = 1.0 / per_beat
    for i, position in enumerate(path):
        degree = position if position <= span else 2 * span - position
        beat = start + i * step_beats
        out.note(key.pitch(degree, octave), beat, step_beats * legato, _metric_accent(beat))
        if hands_together:
            out.note(key.pitch(degree, octave - 1), beat, step_beats * legato,
                     _metric_accent(beat) - 8)
    if not hands_together:
        for bar in range(bars):
            degree = 0 if bar % 2 == 0 else 4
            out.note(key.pitch(degree, 2), start + bar * _BEATS_PER_BAR, _BEATS_PER_BAR * 0.95,
                     -6)
    if rng.random() < 0.3:
        for bar in range(bars):
            out.pedal_change(start + bar * _BEATS_PER_BAR)


def _arpeggio_section(rng, key: _Key, start: float, bars: int, out: _Section) -> None:
    progression = _PROGRESSIONS[int(rng.integers(len(_PROGRESSIONS)))]
    per_beat = int(rng.choice([2, 3, 4]))
    base_octave = int(rng.integers(3, 5))
    for bar in range(bars):
        degree = progression[bar % len(progression)]
        bar_start = start + bar * _BEATS_PER_BAR
        out.pedal_change(bar_start)
        # Chord tones over two octaves, up then down.
        up = [key.pitch(degree + 2 * i, base_octave) for i in range(7)]
        pattern = up + up[-2:0:-1]
        count = _BEATS_PER_BAR * per_beat
        for i in range(count):
            beat = bar_start + i / per_beat
            out.note(pattern[i % len(pattern)], beat, 1.5 / per_beat, _metric_accent(beat))
        out.note(key.pitch(degree, 2), bar_start, _BEATS_PER_BAR, 0)
        out.note(key.pitch(degree, 1), bar_start, _BEATS_PER_BAR, -4)


def _voicing(key: _Key, degree: int, previous: list[int] | None) -> list[int]:
    """Close-position triad near the previous voicing (smooth voice leading), around C4-C5."""
    classes = key.triad(degree)
    candidates = []
    for inversion in range(3):
        order = classes[inversion:] + classes[:inversion]
        for low in range(55, 67):
            if low % 12 != order[0]:
                continue
            chord = [low]
            for pc in order[1:]:
                nxt = chord[-1] + 1
                while nxt % 12 != pc:
                    nxt += 1
                chord.append(nxt)
            candidates.append(chord)
    if previous is None:
        return min(candidates, key=lambda c: abs(sum(c) / 3 - 64))
    centre = sum(previous) / len(previous)
    return min(candidates, key=lambda c: (abs(sum(c) / 3 - centre), c[0]))


def _chords_section(rng, key: _Key, start: float, bars: int, out: _Section) -> None:
    progression = _PROGRESSIONS[int(rng.integers(len(_PROGRESSIONS)))]
    rhythm = [(0, 2), (2, 2)] if rng.random() < 0.5 else [(0, 1), (1, 1), (2, 1), (3, 1)]
    if rng.random() < 0.25:
        rhythm = [(0, 4)]
    previous = None
    for bar in range(bars):
        degree = progression[bar % len(progression)]
        bar_start = start + bar * _BEATS_PER_BAR
        out.pedal_change(bar_start)
        voicing = _voicing(key, degree, previous)
        previous = voicing
        root = key.pitch(degree, 2)
        out.note(root, bar_start, _BEATS_PER_BAR * 0.98, 2)
        out.note(root - 12, bar_start, _BEATS_PER_BAR * 0.98, -2)
        # Rolled slightly from the bottom up, as pianists rarely strike a chord exactly.
        roll = float(rng.uniform(0.0, 0.06))
        for offset, length in rhythm:
            beat = bar_start + offset
            for i, pitch in enumerate(voicing + [voicing[0] + 12]):
                out.note(pitch, beat + i * roll, length * 0.9, _metric_accent(beat))


def _melody_section(rng, key: _Key, start: float, bars: int, out: _Section) -> None:
    progression = _PROGRESSIONS[int(rng.integers(len(_PROGRESSIONS)))]
    accompaniment = rng.choice(["alberti", "broken", "block"])
    degree_now = int(rng.integers(7, 12))  # scale degree counted from octave 4's tonic
    pedalled = rng.random() < 0.7
    for bar in range(bars):
        chord = progression[bar % len(progression)]
        bar_start = start + bar * _BEATS_PER_BAR
        if pedalled:
            out.pedal_change(bar_start)
        rhythm = _MELODY_RHYTHMS[int(rng.integers(len(_MELODY_RHYTHMS)))]
        beat = bar_start
        for length in rhythm:
            if abs((beat - bar_start) % 2) < 1e-9:
                # Strong beat: the nearest tone of the bar's chord.
                tones = [d for d in range(degree_now - 4, degree_now + 5) if (d - chord) % 7 in (0, 2, 4)]
                degree_now = min(tones, key=lambda d: (abs(d - degree_now), d))
            else:
                step = int(rng.choice([-2, -1, -1, 1, 1, 2, 3, -3]))
                degree_now += step
            # Keep the walk within about C4..C6 by reflecting at the edges.
            if degree_now < 0:
                degree_now = -degree_now
            if degree_now > 14:
                degree_now = 28 - degree_now
            out.note(key.pitch(degree_now, 4), beat, length * 0.95, _metric_accent(beat) + 8)
            beat += length
        tones = [key.pitch(chord, 2), key.pitch(chord + 4, 2), key.pitch(chord + 2, 3)]
        if accompaniment == "alberti":  # root - fifth - third - fifth in eighths
            order = [0, 1, 2, 1]
            for i in range(8):
                out.note(tones[order[i % 4]], bar_start + i * 0.5, 0.5, -12)
        elif accompaniment == "broken":
            for i in range(4):
                out.note(tones[i % 3] if i < 3 else tones[1], bar_start + i, 1.0, -10)
        else:
            for offset in (0, 2):
                for pitch in tones:
                    out.note(pitch, bar_start + offset, 1.9, -10)


_SECTIONS = {
    "scale": _scale_section,
    "arpeggio": _arpeggio_section,
    "chords": _chords_section,
    "melody": _melody_section,
}


def _smooth_curve(rng, beats: float, low: float, high: float, every: float) -> tuple[np.ndarray, np.ndarray]:
    """Control points (beat, value) of a piecewise-linear random curve, one per ``every`` beats."""
    count = int(math.ceil(beats / every)) + 2
    points = np.arange(count) * every
    # A random walk clipped to the range makes neighbouring values related (phrases).
    values = np.empty(count)
    values[0] = rng.uniform(low, high)
    for i in range(1, count):
        values[i] = np.clip(values[i - 1] + rng.normal(0, (high - low) / 4), low, high)
    return points, values


def generate_performance(seed: int, seconds: float = 30.0, style: str = "mixed") -> pretty_midi.PrettyMIDI:
    """A generated piano performance of about ``seconds`` seconds in ``style`` (see :data:`STYLES`).

    The returned PrettyMIDI has one instrument (program 0, "Acoustic Grand Piano") with
    notes and sustain-pedal (CC64) changes; nothing sounds or changes after ``seconds``,
    and the pedal is up at the end. Deterministic for a given ``(seed, seconds, style)``.
    """
    if style not in STYLES:
        raise UsageError(f"unknown performance style {style!r} (choose one of: {', '.join(STYLES)})")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UsageError(f"seed must be an integer >= 0, got {seed!r}")
    if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and 0 < seconds <= 36000):
        raise UsageError(f"seconds must be a number in (0, 36000], got {seconds!r}")

    rng = np.random.default_rng([int(seed), STYLES.index(style)])
    base_bpm = float(rng.uniform(70, 130))
    # Enough beats even when rubato slows the tempo to its lowest (0.85x).
    needed = seconds * base_bpm / 60 / 0.85 + _BEATS_PER_BAR
    score = _Section()
    beat = 0.0
    key = _random_key(rng)
    while beat < needed:
        name = style if style != "mixed" else str(rng.choice(list(_SECTIONS)))
        if style == "mixed" or rng.random() < 0.25:
            key = _random_key(rng)
        bars = int(rng.integers(2, 5))
        _SECTIONS[name](rng, key, beat, bars, score)
        beat += bars * _BEATS_PER_BAR

    # Tempo map: seconds per beat from a smooth rubato curve, integrated on a fine grid.
    tempo_beats, tempo_factor = _smooth_curve(rng, beat, 0.85, 1.15, every=2.0)
    grid = np.arange(0.0, beat + 8.0, 1.0 / 64)
    bpm = base_bpm * np.interp(grid, tempo_beats, tempo_factor)
    elapsed = np.concatenate([[0.0], np.cumsum(60.0 / bpm[:-1] / 64)])

    def to_seconds(b: float | np.ndarray) -> np.ndarray:
        return np.interp(b, grid, elapsed)

    dyn_beats, dyn_values = _smooth_curve(rng, beat, 35.0, 100.0, every=_BEATS_PER_BAR)
    piano = pretty_midi.Instrument(program=0, name="Acoustic Grand Piano")
    jitter = rng.normal(0.0, 0.006, size=len(score.events))
    velocity_noise = rng.normal(0.0, 4.0, size=len(score.events))
    for event, dt, dv in zip(score.events, jitter, velocity_noise):
        start = float(to_seconds(event.beat)) + float(dt)
        end = float(to_seconds(event.beat + event.beats))
        start = _quantise(max(0.0, start))
        end = min(_quantise(end), _last_tick(seconds))
        if start >= seconds - 0.05 or end - start < 0.02:
            continue
        velocity = float(np.interp(event.beat, dyn_beats, dyn_values)) + event.accent + float(dv)
        piano.notes.append(pretty_midi.Note(velocity=int(np.clip(round(velocity), 12, 120)),
                                            pitch=int(event.pitch), start=start, end=end))

    down = False
    for b, press in sorted(score.pedal):
        t = _quantise(float(to_seconds(b)))
        if t >= seconds - 0.05 or press == down:
            continue
        piano.control_changes.append(pretty_midi.ControlChange(64, 127 if press else 0, t))
        down = press
    if down:
        piano.control_changes.append(pretty_midi.ControlChange(64, 0, _last_tick(seconds)))

    piano.notes.sort(key=lambda n: (n.start, n.pitch))
    midi = pretty_midi.PrettyMIDI(resolution=_RESOLUTION, initial_tempo=_FILE_TEMPO)
    midi.instruments.append(piano)
    return midi


def _quantise(t: float) -> float:
    """Round to the MIDI file's tick grid, so that writing and re-reading changes nothing."""
    return round(t / _TICK) * _TICK


def _last_tick(t: float) -> float:
    """The last tick at or before ``t``."""
    return math.floor(t / _TICK + 1e-9) * _TICK
