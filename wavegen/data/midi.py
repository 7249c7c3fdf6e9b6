"""Frame-level piano-roll features from MIDI, for MIDI-conditioned WaveNets.

Wave2Midi2Wave (Hawthorne et al., 2019) conditions a WaveNet on a piano roll computed from
the MAESTRO MIDI: note onsets, the frames where each note sounds, and velocities. This
module computes such rolls with pretty_midi, aligned to the audio sample grid so that the
roll can be upsampled by ``hop_length`` to the waveform.

Conventions
-----------
* **Frames.** Frame ``f`` covers audio samples ``[f * hop, (f + 1) * hop)``. An event at
  ``t`` seconds falls in frame ``floor(t * sample_rate / hop)``. Times within 1e-6 of a
  frame from a boundary count as on it, so the tick -> seconds rounding in pretty_midi
  never moves an event that lies exactly on a boundary into the previous frame.
* **One piano.** Every non-drum instrument of the file is merged into one piano, whatever
  its program number (MIDI files often split the hands over tracks and put the pedal on
  one of them only, or carry arbitrary program numbers). Drum instruments are ignored.
  Pitches outside ``[min_pitch, max_pitch]`` do not appear in the roll.
* **Sustain pedal.** CC64 with value >= 64 is "pedal down", < 64 "pedal up" (the usual
  on/off reading of the damper pedal, as in the MAESTRO/Onsets-and-Frames pre-processing).
  The pedal is down over half-open intervals ``[down, up)``; the intervals of all merged
  instruments are united. A pedal still down when the file ends is released at the end of
  the file.
* **Sounding notes** (:func:`performed_notes`). A note sounds from its onset until its
  damper falls: at the key release (note-off), unless the pedal is down at that moment, in
  which case the note keeps sounding until the pedal is released. A note never sounds past
  the next onset of the same pitch (re-striking a key stops its previous sound), whether it
  was held by the pedal or overlapped in the MIDI. The built-in synthesiser
  (:mod:`wavegen.data.synth`) uses the same notes, so audio and roll agree.
* **Length of a performance** (:func:`performance_end`). The performance lasts until its
  last sounding note ends (pedal included). Events that make no sound do not lengthen it:
  tempo, time-signature and text events, or controllers after the last note, which real
  files often carry (``PrettyMIDI.get_end_time()`` counts them all). The synthesiser
  renders up to this time (plus the release and a tail), ``wavegen prepare`` checks it and
  the MAESTRO reader compares it with the audio, so the three always agree.

Channel blocks
--------------
:func:`piano_roll` returns ``[channels, frames]`` float32 with these blocks, in this order,
each present only when enabled in :class:`PianoRollConfig` (``P = max_pitch - min_pitch + 1``
rows per note block, row ``i`` is MIDI pitch ``min_pitch + i``):

1. ``onset``    [P]: 1 in the frame that contains a note's onset, else 0.
2. ``frames``   [P]: 1 in every frame that overlaps a note's sounding interval (pedal
   included, see above; at least the onset frame, even for a zero-length note), else 0.
3. ``velocity`` [P]: ``velocity / 127`` over the same frames as ``frames``; where notes of
   one pitch share a frame the later onset wins.
4. ``pedal``    [1]: 1 in every frame that overlaps a pedal-down interval, else 0.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import os
import warnings
from typing import Union

import numpy as np
import pretty_midi
import torch

from wavegen.errors import ConfigError, DataError, UsageError

__all__ = [
    "MidiLike",
    "as_pretty_midi",
    "PerformedNote",
    "PianoRollConfig",
    "load_midi",
    "pedal_intervals",
    "performance_end",
    "performed_notes",
    "piano_roll",
    "time_to_frame",
]

MidiLike = Union[str, os.PathLike, pretty_midi.PrettyMIDI]

#: Controller number of the sustain (damper) pedal, and the value from which it is down.
SUSTAIN_CC = 64
PEDAL_DOWN = 64

# Tolerance in frames (and in samples for the synthesiser) when a time is converted to a
# grid index: tick -> seconds conversions leave ~1e-12 relative errors.
_GRID_EPS = 1e-6

# A corrupt tempo map can put an event hours away; refuse rolls longer than this many
# frames rather than allocating gigabytes (about 17 hours at 16 kHz, hop 256).
_MAX_FRAMES = 4_000_000


@dataclasses.dataclass(frozen=True)
class PianoRollConfig:
    """Which piano-roll channels to compute, and the frame grid.

    ``sample_rate`` / ``hop_length`` set the frame rate (``hop_length`` audio samples per
    frame); ``[min_pitch, max_pitch]`` is the range of MIDI pitches (default: the 88 keys,
    A0 = 21 to C8 = 108). See the module docstring for the channel blocks and their order.
    """

    sample_rate: int
    hop_length: int
    min_pitch: int = 21
    max_pitch: int = 108
    onset: bool = True
    frames: bool = True
    velocity: bool = True
    pedal: bool = True

    def __post_init__(self) -> None:
        for name in ("sample_rate", "hop_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"PianoRollConfig.{name} must be a positive integer, got {value!r}")
        for name in ("min_pitch", "max_pitch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 127:
                raise ConfigError(f"PianoRollConfig.{name} must be a MIDI pitch 0..127, got {value!r}")
        if self.min_pitch > self.max_pitch:
            raise ConfigError(f"PianoRollConfig.min_pitch {self.min_pitch} is above max_pitch "
                              f"{self.max_pitch}")
        if not (self.onset or self.frames or self.velocity or self.pedal):
            raise ConfigError("PianoRollConfig enables no channel block: set at least one of "
                              "onset, frames, velocity, pedal")

    @property
    def num_pitches(self) -> int:
        """Rows per note block: ``max_pitch - min_pitch + 1``."""
        return self.max_pitch - self.min_pitch + 1

    @property
    def num_channels(self) -> int:
        """Total channels: ``num_pitches`` per enabled note block, plus 1 for the pedal."""
        blocks = int(self.onset) + int(self.frames) + int(self.velocity)
        return blocks * self.num_pitches + int(self.pedal)

    @property
    def frame_rate(self) -> float:
        """Frames per second."""
        return self.sample_rate / self.hop_length

    def channel_slices(self) -> dict[str, slice]:
        """Where each enabled block lies along the channel axis, in order."""
        out: dict[str, slice] = {}
        start = 0
        for name in ("onset", "frames", "velocity"):
            if getattr(self, name):
                out[name] = slice(start, start + self.num_pitches)
                start += self.num_pitches
        if self.pedal:
            out["pedal"] = slice(start, start + 1)
        return out


@dataclasses.dataclass(frozen=True)
class PerformedNote:
    """One key press: ``start`` (key down), ``key_up`` (note-off) and ``end`` (damper falls,
    i.e. the end of the sound after the pedal and re-strikes are applied), in seconds."""

    pitch: int
    velocity: int
    start: float
    key_up: float
    end: float


def load_midi(path: str | os.PathLike) -> pretty_midi.PrettyMIDI:
    """Read a MIDI file; any failure is a one-line :class:`DataError` naming the file."""
    try:
        name = os.fspath(path)
    except TypeError:
        raise UsageError(f"expected a MIDI file path or a PrettyMIDI, got {type(path).__name__}") from None
    if not os.path.exists(name):
        raise DataError(f"{name}: MIDI file not found")
    if os.path.isdir(name):
        raise DataError(f"{name}: is a directory, not a MIDI file")
    try:
        with warnings.catch_warnings():
            # pretty_midi warns about tempo events on non-zero tracks, which is common and
            # harmless for piano files; it is not worth a line per file.
            warnings.simplefilter("ignore")
            return pretty_midi.PrettyMIDI(name)
    except MemoryError:
        raise DataError(f"{name}: not a readable MIDI file (it is corrupt: too large to load)") from None
    except Exception as e:  # noqa: BLE001 - mido/pretty_midi raise many types for bad files
        reason = " ".join(str(e).split()) or type(e).__name__
        raise DataError(f"{name}: not a readable MIDI file ({reason})") from None


def as_pretty_midi(midi: MidiLike) -> pretty_midi.PrettyMIDI:
    """``midi`` itself when it is a PrettyMIDI, else the file it names (see :func:`load_midi`)."""
    return midi if isinstance(midi, pretty_midi.PrettyMIDI) else load_midi(midi)


def _piano_instruments(midi: pretty_midi.PrettyMIDI) -> list[pretty_midi.Instrument]:
    return [inst for inst in midi.instruments if not inst.is_drum]


def _file_end(midi: pretty_midi.PrettyMIDI) -> float:
    end = 0.0
    for inst in _piano_instruments(midi):
        for note in inst.notes:
            end = max(end, note.end, note.start)
        for cc in inst.control_changes:
            end = max(end, cc.time)
    return end


def pedal_intervals(midi: MidiLike) -> list[tuple[float, float]]:
    """Sustain-pedal-down intervals ``[(down, up), ...]`` in seconds, sorted and disjoint.

    CC64 >= 64 is down; the intervals of all non-drum instruments are united, and a pedal
    still down at the end of the file is released there. Empty intervals are dropped.
    """
    midi = as_pretty_midi(midi)
    end_of_file = _file_end(midi)
    raw: list[tuple[float, float]] = []
    for inst in _piano_instruments(midi):
        # Stable sort: events at the same time keep their order in the file.
        events = sorted((cc for cc in inst.control_changes if cc.number == SUSTAIN_CC),
                        key=lambda cc: cc.time)
        down_at: float | None = None
        for cc in events:
            if cc.value >= PEDAL_DOWN and down_at is None:
                down_at = cc.time
            elif cc.value < PEDAL_DOWN and down_at is not None:
                raw.append((down_at, cc.time))
                down_at = None
        if down_at is not None:
            raw.append((down_at, max(end_of_file, down_at)))
    raw.sort()
    merged: list[tuple[float, float]] = []
    for down, up in raw:
        if up <= down:
            continue
        # Intervals that only touch stay apart: an up and a down at one instant is a pedal
        # change, which damps the notes released before it.
        if merged and down < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], up))
        else:
            merged.append((down, up))
    return merged


def performed_notes(midi: MidiLike) -> list[PerformedNote]:
    """The notes of all non-drum instruments with their sounding ends, sorted by onset.

    ``end`` is the note-off, extended to the pedal release when the pedal is down at the
    note-off, and cut at the next onset of the same pitch (see the module docstring).
    """
    midi = as_pretty_midi(midi)
    pedal = pedal_intervals(midi)
    downs = [down for down, _ in pedal]
    notes = sorted(
        ((n.start, n.pitch, n.velocity, max(n.end, n.start))
         for inst in _piano_instruments(midi) for n in inst.notes),
    )
    # Onsets of each pitch, for the re-strike cut. Notes of one pitch starting together
    # are one strike (bisect_right skips them), so neither cuts the other.
    onsets: dict[int, list[float]] = {}
    for start, pitch, _, _ in notes:
        onsets.setdefault(pitch, []).append(start)  # already sorted by start
    next_onset = []
    for start, pitch, _, _ in notes:
        same = onsets[pitch]
        k = bisect.bisect_right(same, start)
        next_onset.append(same[k] if k < len(same) else math.inf)
    out = []
    for (start, pitch, velocity, key_up), cut in zip(notes, next_onset):
        end = key_up
        k = bisect.bisect_right(downs, key_up) - 1
        if k >= 0 and pedal[k][0] <= key_up < pedal[k][1]:
            end = pedal[k][1]
        end = max(start, min(end, cut))
        out.append(PerformedNote(pitch=pitch, velocity=velocity, start=start, key_up=key_up,
                                 end=end))
    return out


def performance_end(midi: MidiLike) -> float:
    """When the performance stops sounding, in seconds: the latest ``end`` of
    :func:`performed_notes` (the last damper to fall, sustain pedal included); 0.0 for a
    file without notes. Tempo, meta and controller events after that do not count (see
    "Length of a performance" in the module docstring).
    """
    return max((note.end for note in performed_notes(midi)), default=0.0)


def time_to_frame(seconds: float, sample_rate: int, hop_length: int) -> int:
    """The frame containing time ``seconds``: ``floor(seconds * sample_rate / hop_length)``."""
    return math.floor(seconds * sample_rate / hop_length + _GRID_EPS)


def _end_frame(seconds: float, sample_rate: int, hop_length: int) -> int:
    """One past the last frame that overlaps ``[.., seconds)``."""
    return math.ceil(seconds * sample_rate / hop_length - _GRID_EPS)


def piano_roll(
    midi: MidiLike,
    config: PianoRollConfig,
    num_frames: int | None = None,
    start_frame: int = 0,
) -> torch.Tensor:
    """Piano-roll features of ``midi`` on ``config``'s frame grid.

    Args:
        midi: a MIDI file path or a ``pretty_midi.PrettyMIDI``.
        config: the channels and the frame grid.
        num_frames: frames to return (None: up to the last frame in which a note of the
            pitch range sounds or the pedal is down, counted from ``start_frame``; the same
            for every choice of channel blocks).
        start_frame: first frame to return.

    Returns:
        float32 ``[config.num_channels, num_frames]``: frames ``start_frame`` to
        ``start_frame + num_frames`` of the whole piece's roll (frames past the end of the
        piece are zero), channel blocks in the order of the module docstring.
    """
    if isinstance(start_frame, bool) or not isinstance(start_frame, int) or start_frame < 0:
        raise UsageError(f"start_frame must be an integer >= 0, got {start_frame!r}")
    if num_frames is not None and (isinstance(num_frames, bool) or not isinstance(num_frames, int)
                                   or num_frames < 0):
        raise UsageError(f"num_frames must be None or an integer >= 0, got {num_frames!r}")
    midi = as_pretty_midi(midi)
    sr, hop = config.sample_rate, config.hop_length
    notes = performed_notes(midi)
    # The pedal counts towards the length even when its channel is off, so that every
    # config gives a piece the same number of frames.
    pedal = pedal_intervals(midi)

    if num_frames is None:
        total = 0
        for note in notes:
            if config.min_pitch <= note.pitch <= config.max_pitch:
                on = time_to_frame(note.start, sr, hop)
                total = max(total, on + 1, _end_frame(note.end, sr, hop))
        for down, up in pedal:
            total = max(total, _end_frame(up, sr, hop))
        if total > _MAX_FRAMES:
            raise DataError(f"the piano roll would have {total} frames (over {_MAX_FRAMES}); "
                            "the MIDI file is probably corrupt")
        num_frames = max(0, total - start_frame)

    P = config.num_pitches
    stop_frame = start_frame + num_frames
    onset = np.zeros((P, num_frames), np.float32)
    sounding = np.zeros((P, num_frames), np.float32)
    velocity = np.zeros((P, num_frames), np.float32)
    for note in notes:  # sorted by onset, so a later note overwrites an earlier velocity
        if not config.min_pitch <= note.pitch <= config.max_pitch:
            continue
        row = note.pitch - config.min_pitch
        on = time_to_frame(note.start, sr, hop)
        off = max(on + 1, _end_frame(note.end, sr, hop))
        if off <= start_frame or on >= stop_frame:
            continue
        if on >= start_frame:
            onset[row, on - start_frame] = 1.0
        lo, hi = max(on, start_frame) - start_frame, min(off, stop_frame) - start_frame
        sounding[row, lo:hi] = 1.0
        velocity[row, lo:hi] = note.velocity / 127.0

    blocks = []
    if config.onset:
        blocks.append(onset)
    if config.frames:
        blocks.append(sounding)
    if config.velocity:
        blocks.append(velocity)
    if config.pedal:
        pedal_row = np.zeros((1, num_frames), np.float32)
        for down, up in pedal:
            lo = max(time_to_frame(down, sr, hop), start_frame) - start_frame
            hi = min(_end_frame(up, sr, hop), stop_frame) - start_frame
            if hi > lo:
                pedal_row[0, lo:hi] = 1.0
        blocks.append(pedal_row)
    return torch.from_numpy(np.concatenate(blocks, axis=0))
