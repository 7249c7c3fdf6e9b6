#!/usr/bin/env python
"""Write MIDI files of five public-domain piano excerpts, a held-out set unlike the
generated corpus (its scales, arpeggios, chords and melodies), for score-following tests.

    python scripts/classical_excerpts.py data/classical-midi
    wavegen prepare data/classical --midi data/classical-midi      # the renderings (ceiling)
    python scripts/score_midi_models.py --midi-dir data/classical-midi --seconds 20 \\
        --out /tmp/classical piano=wavegen/pretrained/piano

The notes are transcribed by hand into this file (the openings of the pieces, plain
rhythm, no ornaments, fixed tempo, velocities from a simple accent pattern), so they are
"after" the composers rather than editions of their scores:

* Bach, Prelude in C major BWV 846, bars 1-7 (broken chords, the bass held);
* Beethoven, Für Elise WoO 59, bars 1-11 and 1-8 again (a fast right-hand line over
  left-hand arpeggios);
* Satie, Gymnopédie No. 1, bars 1-12 (wide left-hand chords, slow melody);
* the melody of "Ah vous dirai-je, maman" (the theme of Mozart's variations K. 265) with a
  simple bass;
* the melody of Beethoven's "Ode to Joy" (Symphony No. 9) with a simple bass.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pretty_midi

NAMES = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


def pitch(name: str) -> int:
    """MIDI number of a note name like ``C4``, ``F#5``, ``Bb3`` (C4 = 60)."""
    step, rest = name[0], name[1:]
    shift = 0
    while rest and rest[0] in "#b":
        shift += 1 if rest[0] == "#" else -1
        rest = rest[1:]
    return 12 * (int(rest) + 1) + NAMES[step] + shift


class Score:
    """Notes added at times in beats, written at a fixed tempo."""

    def __init__(self, seconds_per_beat: float):
        self.beat = seconds_per_beat
        self.notes: list[pretty_midi.Note] = []

    def add(self, names: str, start: float, length: float, velocity: int = 70) -> None:
        """Every note in ``names`` (space-separated) from ``start`` for ``length`` beats."""
        for name in names.split():
            self.notes.append(pretty_midi.Note(velocity, pitch(name), start * self.beat,
                                               (start + 0.95 * length) * self.beat))

    def write(self, path: Path) -> None:
        midi = pretty_midi.PrettyMIDI()
        piano = pretty_midi.Instrument(0, name="piano")
        piano.notes = sorted(self.notes, key=lambda n: (n.start, n.pitch))
        midi.instruments.append(piano)
        midi.write(str(path))


def bach_prelude() -> Score:
    """BWV 846, bars 1-7: per half bar, bass n1 (held 8 sixteenths), n2 (held 7), then
    n3 n4 n5 twice; one sixteenth = one beat here."""
    bars = ["C4 E4 G4 C5 E5", "C4 D4 A4 D5 F5", "B3 D4 G4 D5 F5", "C4 E4 G4 C5 E5",
            "C4 E4 A4 E5 A5", "C4 D4 F#4 A4 D5", "B3 D4 G4 D5 G5"]
    score = Score(0.2)
    for bar, chord in enumerate(bars):
        n1, n2, n3, n4, n5 = chord.split()
        for half in range(2):
            t = bar * 16 + half * 8
            score.add(n1, t, 8, 62)
            score.add(n2, t + 1, 7, 58)
            for i, note in enumerate((n3, n4, n5, n3, n4, n5)):
                score.add(note, t + 2 + i, 1, 72 if i in (0, 3) else 64)
    return score


def fur_elise() -> Score:
    """WoO 59, bars 1-11 then 1-8; one sixteenth = one beat, six per bar, after a pickup."""
    motif = "E5 D#5 E5 B4 D5 C5"
    # (right hand on sixteenth 0, left-hand arpeggio on 0-2, right hand on 3-5)
    bars = [("A4", "A2 E3 A3", "C4 E4 A4"), ("B4", "E2 E3 G#3", "E4 G#4 B4"),
            ("C5", "A2 E3 A3", "E4 E5 D#5")]
    second = [("A4", "A2 E3 A3", "C4 E4 A4"), ("B4", "E2 E3 G#3", "E4 C5 B4")]
    score = Score(0.16)
    t = 0.0

    def line(notes: str, start: float, velocity: int = 70) -> None:
        for i, note in enumerate(notes.split()):
            score.add(note, start + i, 1, velocity)

    def arpeggio_bar(top: str, left: str, right: str, start: float) -> None:
        score.add(top, start, 2, 72)
        line(left, start, 55)
        line(right, start + 3, 66)

    for repeat in range(2):
        score.add("E5", t, 1, 66)
        score.add("D#5", t + 1, 1, 62)
        t += 2
        line(motif, t, 70)
        t += 6
        for bar in bars:
            arpeggio_bar(*bar, t)
            t += 6
        line(motif, t, 70)
        t += 6
        for bar in second:
            arpeggio_bar(*bar, t)
            t += 6
        score.add("A4", t, 2, 72)
        line("A2 E3 A3", t, 55)
        if repeat == 0:
            line("B4 C5 D5", t + 3, 66)
            t += 6
            for top, left, right in (("E5", "C3 G3 C4", "G4 F5 E5"),
                                     ("D5", "G2 G3 B3", "F4 E5 D5"),
                                     ("C5", "A2 E3 A3", "E4 D5 C5")):
                score.add(top, t, 3, 72)
                line(left, t, 55)
                line(right, t + 3, 66)
                t += 6
        else:
            t += 6
    return score


def gymnopedie() -> Score:
    """Gymnopédie No. 1, bars 1-12: the left hand's bass and chord alternate every bar, the
    melody enters in bar 5; one quarter = one beat."""
    score = Score(0.75)
    for bar in range(12):
        t = bar * 3
        if bar % 2 == 0:
            score.add("G2", t, 3, 52)
            score.add("B3 D4 F#4", t + 1, 2, 48)
        else:
            score.add("D2", t, 3, 52)
            score.add("A3 C#4 F#4", t + 1, 2, 48)
    melody = [("F#5", 13), ("A5", 14), ("G5", 15), ("F#5", 16), ("C#5", 17), ("B4", 18),
              ("C#5", 19), ("D5", 20)]
    for note, start in melody:
        score.add(note, start, 1, 66)
    score.add("A4", 21, 3, 62)
    score.add("F#4", 24, 9, 60)
    return score


def twinkle() -> Score:
    """The K. 265 theme's melody (C major, 2/4) over a bass; one quarter = one beat."""
    melody = ("C5 C5 G5 G5 A5 A5 G5- F5 F5 E5 E5 D5 D5 C5- G5 G5 F5 F5 E5 E5 D5- "
              "G5 G5 F5 F5 E5 E5 D5- C5 C5 G5 G5 A5 A5 G5- F5 F5 E5 E5 D5 D5 C5-")
    bass = ["C3", "F3 C3", "D3 C3", "G2 C3", "E3 F3", "C3 G2", "E3 F3", "C3 G2",
            "C3", "F3 C3", "D3 C3", "G2 C3"]
    score = Score(0.42)
    t = 0.0
    for token in melody.split():
        length = 2 if token.endswith("-") else 1
        score.add(token.rstrip("-"), t, length, 72)
        t += length
    for bar, notes in enumerate(bass):
        names = notes.split()
        for i, note in enumerate(names):
            score.add(note, bar * 2 + i * 2 / len(names), 2 / len(names), 56)
    return score


def ode_to_joy() -> Score:
    """The "Ode to Joy" melody (D major, 4/4) over a bass; one quarter = one beat."""
    melody = ("F#4 F#4 G4 A4 A4 G4 F#4 E4 D4 D4 E4 F#4 F#4. E4, E4-- "
              "F#4 F#4 G4 A4 A4 G4 F#4 E4 D4 D4 E4 F#4 E4. D4, D4-- "
              "E4 E4 F#4 D4 E4 F#4, G4, F#4 D4 E4 F#4, G4, F#4 E4 D4 E4 A3--")
    lengths = {".": 1.5, ",": 0.5, "--": 2.0}
    score = Score(0.5)
    t = 0.0
    for token in melody.split():
        length = 1.0
        for suffix, value in lengths.items():
            if token.endswith(suffix):
                token, length = token[: -len(suffix)], value
                break
        score.add(token, t, length, 70)
        t += length
    bass = ["D3", "A2", "D3", "A2", "D3", "A2", "D3 A2", "D3", "A2", "D3", "A2", "A2"]
    for bar, notes in enumerate(bass):
        names = notes.split()
        for i, note in enumerate(names):
            score.add(note, bar * 4 + i * 4 / len(names), 4 / len(names), 54)
    return score


PIECES = {"bach-prelude-bwv846": bach_prelude, "beethoven-fur-elise": fur_elise,
          "satie-gymnopedie-1": gymnopedie, "mozart-k265-theme": twinkle,
          "beethoven-ode-to-joy": ode_to_joy}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder for the .mid files (created)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, make in PIECES.items():
        score = make()
        score.write(args.out / f"{name}.mid")
        end = max(note.end for note in score.notes)
        print(f"{name}.mid: {len(score.notes)} notes, {end:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
