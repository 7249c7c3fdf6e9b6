"""Score following: does audio play the notes of a MIDI file, at the right times?

Three measures of audio (a rendering, a recording, a MIDI-conditioned model's output) against
a MIDI performance, each computed by the libraries that define it:

* **note-onset F1** (:func:`onset_f1`): the onsets librosa's onset detector finds in the
  audio (:func:`detected_onsets`) against the MIDI's note onsets (:func:`note_onsets`),
  matched by ``mir_eval.onset.f_measure`` within a ``window`` (50 ms, the MIREX onset
  tolerance). It asks *when* something starts, whatever the pitch.
* **MIDI chroma correlation** (:func:`midi_chroma_correlation`): the Pearson correlation of
  the audio's chromagram (``librosa.feature.chroma_cqt``) with the MIDI's
  (``pretty_midi.PrettyMIDI.get_chroma``) on the same frame grid. It asks *which pitch
  classes* sound when, whatever the onsets: about 0.7-0.95 for wavegen's own rendering of
  a piece, about 0 (-0.3 to 0.3) for another piece, 0 for white noise.
* **monophonic pitch accuracy** (:func:`monophonic_pitch`): on the 10 ms frames where the
  MIDI plays exactly one note, the share of frames whose f0 (``librosa.yin``) lies within
  50 cents of that note (``mir_eval.melody.raw_pitch_accuracy``), and the same ignoring
  octaves (``raw_chroma_accuracy``). It asks *which pitch* sounds, exactly, where that is
  well defined: about 0.97-0.99 for wavegen's rendering of a melody, under 0.05 for the
  melody played 3 semitones off, about 0.01 (chroma about 0.1) for white noise. It is
  undefined (None) for a piece with (almost) no single-note passage, which includes most
  pieces of :func:`wavegen.data.performance.generate_performance`: every style but
  ``"scale"`` keeps an accompaniment or the pedal sounding under the tune.

Times are seconds from the start of the audio and of the MIDI file (no alignment is
searched: audio that is late by more than the window scores as wrong). :func:`score_file`
reads an audio file and a MIDI file and returns all three measures.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pretty_midi
import torch

from wavegen.data.midi import MidiLike, as_pretty_midi, performed_notes
from wavegen.errors import UsageError

__all__ = ["CHORD_SPREAD", "MIN_PITCH_FRAMES", "OnsetScore", "PITCH_HOP", "PitchScore",
           "detected_onsets", "midi_chroma_correlation", "monophonic_pitch", "note_onsets",
           "onset_f1", "score_file", "score_pairs"]

#: Onsets closer than this (seconds) to the first onset of their group are one onset: a
#: chord, even a slightly spread one, is a single onset for an onset detector.
CHORD_SPREAD = 0.03
#: Silence put before the audio for the onset detector (seconds), so that a note at time 0
#: is found (librosa's onset envelope is zero over its first frames).
_LEAD_IN = 0.1
#: librosa's peak-picking parameters of ``onset_detect`` (its defaults), in seconds.
_PRE_MAX, _POST_MAX, _PRE_AVG, _POST_AVG, _WAIT, _DELTA = 0.03, 0.0, 0.10, 0.10, 0.03, 0.07


def _mono(audio: np.ndarray | torch.Tensor, what: str = "audio") -> np.ndarray:
    """float32 ``[time]`` from ``[time]``, ``[channels, time]`` or ``[1, channels, time]``
    (channels averaged); a UsageError for other shapes or non-finite samples."""
    if torch.is_tensor(audio):
        audio = audio.detach().float().cpu().numpy()
    array = np.asarray(audio, dtype=np.float32)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 2:
        array = array.mean(axis=0)
    if array.ndim != 1:
        raise UsageError(f"{what} must be [time], [channels, time] or [1, channels, time], "
                         f"got shape {list(np.shape(audio))}")
    if not np.isfinite(array).all():
        raise UsageError(f"{what} holds NaN or infinite samples")
    return np.ascontiguousarray(array)


def _check_rate(sample_rate: object) -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) \
            or sample_rate <= 0:
        raise UsageError(f"sample_rate must be a positive integer (Hz), got {sample_rate!r}")
    return int(sample_rate)


def note_onsets(midi: MidiLike, chord_spread: float = CHORD_SPREAD) -> np.ndarray:
    """The MIDI's note onsets in seconds, float64 ``[onsets]``, sorted.

    The notes are :func:`wavegen.data.midi.performed_notes` (every non-drum instrument as
    one piano); notes of velocity 0 make no sound and are left out. Onsets are grouped from
    the earliest on: an onset less than ``chord_spread`` seconds (default 30 ms) after the
    first onset of the current group joins that group, and each group counts once, at its
    first onset. A chord (or a slightly rolled one) is thus one onset, as an onset detector
    sees it; notes 30 ms or more apart stay separate.

    Args:
        midi: a MIDI file path or a ``pretty_midi.PrettyMIDI`` (an unreadable file is a
            one-line DataError).
        chord_spread: seconds within which onsets are one (0: only identical times merge).
    """
    if not (isinstance(chord_spread, (int, float)) and math.isfinite(chord_spread)
            and chord_spread >= 0):
        raise UsageError(f"chord_spread must be a finite number of seconds >= 0, "
                         f"got {chord_spread!r}")
    starts = sorted(note.start for note in performed_notes(as_pretty_midi(midi))
                    if note.velocity > 0)
    onsets: list[float] = []
    group_start = -math.inf
    for start in starts:
        if start - group_start >= chord_spread and (not onsets or start > onsets[-1]):
            onsets.append(start)
            group_start = start
    return np.asarray(onsets, dtype=np.float64)


def _onset_hop(sample_rate: int) -> int:
    """The power of two closest to 10 ms of samples (128 at 16 kHz, 512 at 44.1 kHz)."""
    return 1 << max(0, round(math.log2(sample_rate / 100)))


def detected_onsets(audio: np.ndarray | torch.Tensor, sample_rate: int,
                    hop_length: int | None = None) -> np.ndarray:
    """Onsets that librosa's detector finds in ``audio``, in seconds, float64 ``[onsets]``.

    ``librosa.onset.onset_detect(y, sr, hop_length, units='time', backtrack=False)``: peaks
    of the spectral-flux onset strength (``librosa.onset.onset_strength`` defaults: log-power
    mel spectrogram, 2048-point FFT, lag 1 frame, max-filter 1), picked with librosa's
    default thresholds in seconds (a peak is the maximum over the 30 ms before it, exceeds
    the mean over +-100 ms by 0.07 of the normalised envelope, and follows the previous onset
    by more than 30 ms). The windows are rounded to whole frames and kept to at least one
    frame: librosa's own defaults floor them, and at 16 kHz with a 512 hop the pre-max and
    wait windows become zero frames, which doubles onsets.

    The audio is preceded by 0.1 s of silence, so that a note at time 0 can be found (the
    onset envelope is zero over its first frame); times are then given from the start of
    ``audio`` (a detection in the lead-in counts as 0).

    Args:
        audio: ``[time]``, ``[channels, time]`` or ``[1, channels, time]`` (channels are
            averaged), numpy or torch, at ``sample_rate``.
        sample_rate: Hz.
        hop_length: samples between onset-envelope frames (the time resolution); default
            the power of two closest to 10 ms (128 at 16 kHz, 256 at 22.05 kHz).

    Returns:
        onset times, sorted; empty for silence or an empty signal.
    """
    import librosa

    rate = _check_rate(sample_rate)
    y = _mono(audio)
    hop = _onset_hop(rate) if hop_length is None else hop_length
    if isinstance(hop, bool) or not isinstance(hop, (int, np.integer)) or hop < 1:
        raise UsageError(f"hop_length must be a positive integer, got {hop_length!r}")
    if y.size == 0 or not np.any(y):
        return np.zeros(0, dtype=np.float64)
    lead = round(_LEAD_IN * rate)
    n_fft = 2048
    padded = np.concatenate([np.zeros(lead, np.float32), y,
                             np.zeros(max(0, n_fft - lead - y.size), np.float32)])
    frames = rate / hop

    def window(seconds: float, extra: int = 0) -> int:
        return max(1, round(seconds * frames)) + extra

    onsets = librosa.onset.onset_detect(
        y=padded, sr=rate, hop_length=int(hop), units="time", backtrack=False,
        pre_max=window(_PRE_MAX), post_max=max(1, round(_POST_MAX * frames) + 1),
        pre_avg=window(_PRE_AVG), post_avg=window(_POST_AVG, 1), wait=window(_WAIT),
        delta=_DELTA)
    onsets = np.maximum(np.asarray(onsets, dtype=np.float64) - lead / rate, 0.0)
    return onsets[onsets < y.size / rate]


@dataclasses.dataclass(frozen=True)
class OnsetScore:
    """Note-onset precision, recall and F1 (each in [0, 1]) of detected against reference
    onsets, and how many of each there were."""

    precision: float
    recall: float
    f1: float
    n_reference: int
    n_detected: int


def onset_f1(audio: np.ndarray | torch.Tensor, sample_rate: int, midi: MidiLike,
             window: float = 0.05, *, chord_spread: float = CHORD_SPREAD) -> OnsetScore:
    """Note-onset F1 of ``audio`` against ``midi``.

    The reference is :func:`note_onsets` of ``midi`` that fall inside the audio (before
    ``len(audio) / sample_rate``: notes after the end of the audio cannot be in it); the
    estimate is :func:`detected_onsets` of the audio. ``mir_eval.onset.f_measure`` matches
    them one to one within ``window`` seconds (50 ms: the MIREX tolerance). With no
    reference onset or no detection every score is 0 (mir_eval is not called, so it does not
    warn).

    Args:
        audio: ``[time]``, ``[channels, time]`` or ``[1, channels, time]`` at ``sample_rate``.
        sample_rate: Hz.
        midi: a MIDI file path or a ``pretty_midi.PrettyMIDI``; times from its start.
        window: matching tolerance in seconds, > 0.
        chord_spread: see :func:`note_onsets`.
    """
    import mir_eval

    if not (isinstance(window, (int, float)) and math.isfinite(window) and window > 0):
        raise UsageError(f"window must be a positive number of seconds, got {window!r}")
    rate = _check_rate(sample_rate)
    y = _mono(audio)
    reference = note_onsets(midi, chord_spread)
    reference = reference[reference < y.size / rate]
    estimated = detected_onsets(y, rate)
    if reference.size == 0 or estimated.size == 0:
        return OnsetScore(0.0, 0.0, 0.0, int(reference.size), int(estimated.size))
    f1, precision, recall = mir_eval.onset.f_measure(reference, estimated, window=window)
    return OnsetScore(float(precision), float(recall), float(f1), int(reference.size),
                      int(estimated.size))


def midi_chroma_correlation(audio: np.ndarray | torch.Tensor, sample_rate: int,
                            midi: MidiLike, hop: int = 512) -> float:
    """Pearson correlation of the audio's chromagram with the MIDI's, in [-1, 1].

    * Audio: ``librosa.feature.chroma_cqt`` (``[12, frames]``, each frame scaled to maximum
      1), tuned to A440 like the MIDI (``tuning=0``: not estimated from the audio, which
      for noise-like model output is arbitrary and warns). The constant-Q transform has 3
      bins per semitone down to C1, so bass notes fall into their own pitch class; a
      2048-point STFT at 16 kHz has 7.8 Hz bins, wider than a semitone below about 130 Hz,
      and smears them over neighbouring classes (``chroma_stft`` correlates less with the
      MIDI: 0.66-0.84 against 0.72-0.94 for wavegen's renderings of generated pieces).
    * MIDI: ``PrettyMIDI.get_chroma(fs=sample_rate / hop)`` (velocities summed per pitch
      class; notes held by the sustain pedal sound until it is released), each frame scaled
      to maximum 1 with ``librosa.util.normalize`` like the audio's (frames without notes
      stay 0).

    Frame ``j`` of both lies at ``j * hop / sample_rate`` seconds (the audio's frames are
    centred there, the MIDI's start there: half a frame apart, 16 ms at 16 kHz, hop 512). Both
    are cut to the shorter, flattened (12 classes x frames pooled) and correlated. Constant
    inputs (silence, a MIDI file without notes, no common frame) give 0.0, never NaN.

    Pooling the classes makes a steady pitch-class bias count: audio that always stresses
    a few classes (a hum, a decoder's tonal artefacts at ``sample_rate / hop`` multiples)
    correlates with a piece in a key holding them, up to about 0.3 with no alignment at all.

    Args:
        audio: ``[time]``, ``[channels, time]`` or ``[1, channels, time]`` at ``sample_rate``.
        sample_rate: Hz.
        midi: a MIDI file path or a ``pretty_midi.PrettyMIDI``.
        hop: samples per chroma frame.
    """
    import librosa

    rate = _check_rate(sample_rate)
    if isinstance(hop, bool) or not isinstance(hop, (int, np.integer)) or hop < 1:
        raise UsageError(f"hop must be a positive integer, got {hop!r}")
    y = _mono(audio)
    score = as_pretty_midi(midi)
    if y.size == 0 or not np.any(y):
        return 0.0
    with warnings.catch_warnings():
        # Short clips: the CQT's low octaves are computed on downsampled signals shorter
        # than their FFT; librosa warns and pads, which is what we want.
        warnings.filterwarnings("ignore", message="n_fft=.* is too large")
        audio_chroma = librosa.feature.chroma_cqt(y=y, sr=rate, hop_length=int(hop),
                                                  tuning=0.0)
    midi_chroma = librosa.util.normalize(score.get_chroma(fs=rate / hop), norm=np.inf, axis=0)
    frames = min(audio_chroma.shape[1], midi_chroma.shape[1])
    a = audio_chroma[:, :frames].reshape(-1).astype(np.float64)
    b = midi_chroma[:, :frames].reshape(-1).astype(np.float64)
    if a.size < 2 or not a.std() > 0 or not b.std() > 0:
        return 0.0
    r = float(np.corrcoef(a, b)[0, 1])
    return r if math.isfinite(r) else 0.0


#: Seconds between the frames of :func:`monophonic_pitch` (samples: ``round(PITCH_HOP *
#: sample_rate)``, 160 at 16 kHz).
PITCH_HOP = 0.01
#: Fewest single-note frames (of ``PITCH_HOP``) for :func:`monophonic_pitch` to be defined.
MIN_PITCH_FRAMES = 10
#: Shortest yin analysis window (seconds); longer where two periods of ``fmin`` need more.
_YIN_WINDOW = 0.04
#: MIDI pitch of A0, the lowest piano key (27.5 Hz): no lower note is scored, no lower f0
#: searched.
_LOWEST_PITCH = 21


@dataclasses.dataclass(frozen=True)
class PitchScore:
    """Raw pitch and raw chroma accuracy (each in [0, 1]) over the MIDI's single-note frames,
    how many frames were scored, and the seconds they cover (``frames`` x the hop)."""

    accuracy: float
    chroma_accuracy: float
    frames: int
    seconds: float


def _midi_hz(pitch: np.ndarray | float) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(pitch, dtype=np.float64) - 69.0) / 12.0)


def _single_note_frames(midi: pretty_midi.PrettyMIDI, frames: int, hop: int, rate: int,
                        attack: float, lookahead: float) -> np.ndarray:
    """int64 ``[frames]``: per frame ``j`` (at ``j * hop / rate`` s), the MIDI pitch of the
    one note sounding from ``attack`` s before to ``lookahead`` s after the frame, -1 where
    not exactly one note sounds over that span or its pitch is not scored (below A0, or
    above a quarter of the sample rate)."""
    per_second = rate / hop

    def first_frame(seconds: float) -> int:
        # The first frame at or after ``seconds`` (1e-6 frame of slack for float times).
        return int(min(max(math.ceil(seconds * per_second - 1e-6), 0), frames))

    touching = np.zeros(frames + 1, np.int64)  # notes sounding somewhere in the span
    covering = np.zeros(frames + 1, np.int64)  # notes sounding over all of it
    pitches = np.zeros(frames + 1, np.int64)   # sum of the covering notes' pitches
    for note in performed_notes(midi):
        if note.velocity <= 0:
            continue  # no sound
        # Sounding over [start, end): it touches the span [t - attack, t + lookahead] when
        # start - lookahead <= t < end + attack, covers it when start + attack <= t <
        # end - lookahead.
        a, b = first_frame(note.start - lookahead), first_frame(note.end + attack)
        if note.end <= note.start:  # a zero-length note still clicks
            b = max(b, a + 1)
        touching[a] += 1
        touching[b] -= 1
        a, b = first_frame(note.start + attack), first_frame(note.end - lookahead)
        if b > a:
            covering[a] += 1
            covering[b] -= 1
            pitches[a] += note.pitch
            pitches[b] -= note.pitch
    touching, covering, pitches = (np.cumsum(v)[:frames] for v in (touching, covering, pitches))
    single = (touching == 1) & (covering == 1)
    scored = single & (pitches >= _LOWEST_PITCH) & (_midi_hz(pitches) <= rate / 4)
    return np.where(scored, pitches, -1)


def monophonic_pitch(audio: np.ndarray | torch.Tensor, sample_rate: int, midi: MidiLike, *,
                     attack: float = 0.03, lookahead: float = 0.02,
                     min_frames: int = MIN_PITCH_FRAMES,
                     tolerance: float = 50.0) -> PitchScore | None:
    """Frame-level pitch accuracy of ``audio`` on the MIDI's monophonic passages.

    * **Frames**: every ``PITCH_HOP`` (10 ms; ``round(0.01 * sample_rate)`` samples), frame
      ``j`` at ``j * hop / sample_rate`` seconds, for the frames inside the audio.
    * **Reference**: a frame is scored when exactly one note of
      :func:`wavegen.data.midi.performed_notes` (notes as they sound, sustain pedal
      included; velocity 0 is silent) sounds from ``attack`` (30 ms) before the frame to
      ``lookahead`` (20 ms) after it. The ``attack`` skips the first 30 ms of each note
      (the hammer's noise and the previous note's damper fading: wavegen's synthesiser
      fades a released note over 0.2 s, -9 dB after 30 ms) and also 30 ms after any other
      note ends; the ``lookahead`` keeps the next onset out of the 40 ms analysis window
      centred on the frame. Its pitch is the reference, ``mir_eval.melody.hz2cents`` of its
      equal-tempered frequency (A4 = 440 Hz). Single notes below A0 or above
      ``sample_rate / 4`` (B7 at 16 kHz) are not scored.
    * **Estimate**: ``librosa.yin`` (no voicing decision: every frame gets an f0) centred
      on the same instants (``center=True``, hop as above, so frame ``j`` of both lies at
      the same time), searched from one octave below the lowest scored note (at least A0,
      27.5 Hz) to one octave above the highest (at most Nyquist), so that octave errors
      stay visible; its window is 40 ms, or two periods of that lowest frequency when
      longer. Frames of digital silence (an all-zero window) get no f0 and count as wrong.
    * **Scores**: ``mir_eval.melody.raw_pitch_accuracy`` and ``raw_chroma_accuracy``
      (``tolerance`` cents, 50: the MIREX melody tolerance) with the scored frames as the
      reference voicing and every frame voiced in the estimate: the share of scored frames
      whose f0 is within 50 cents of the note, and the same modulo octaves.

    Returns None, not 0, when fewer than ``min_frames`` frames are scored (a chordal piece,
    no notes, audio too short): the measure is then undefined.

    Args:
        audio: ``[time]``, ``[channels, time]`` or ``[1, channels, time]`` at ``sample_rate``.
        sample_rate: Hz.
        midi: a MIDI file path or a ``pretty_midi.PrettyMIDI``; times from its start.
        attack: seconds of a single note sounding alone before a frame counts, >= 0.
        lookahead: seconds it must still sound alone after the frame, >= 0.
        min_frames: fewest scored frames for a score, >= 1.
        tolerance: cents within which an f0 is right, > 0.
    """
    import librosa
    import mir_eval

    for name, value in (("attack", attack), ("lookahead", lookahead)):
        if isinstance(value, bool) or not (isinstance(value, (int, float))
                                           and math.isfinite(value) and value >= 0):
            raise UsageError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
    if isinstance(min_frames, bool) or not isinstance(min_frames, (int, np.integer)) \
            or min_frames < 1:
        raise UsageError(f"min_frames must be an integer >= 1, got {min_frames!r}")
    if isinstance(tolerance, bool) or not (isinstance(tolerance, (int, float))
                                           and math.isfinite(tolerance) and tolerance > 0):
        raise UsageError(f"tolerance must be a positive number of cents, got {tolerance!r}")
    rate = _check_rate(sample_rate)
    y = _mono(audio)
    score = as_pretty_midi(midi)
    hop = max(1, round(PITCH_HOP * rate))
    frames = -(-y.size // hop)  # frames j with j * hop inside the audio
    reference = _single_note_frames(score, frames, hop, rate, attack, lookahead)
    voiced = reference >= 0
    count = int(voiced.sum())
    if count < min_frames:
        return None
    fmin = max(float(_midi_hz(_LOWEST_PITCH)), float(_midi_hz(reference[voiced].min() - 12)))
    fmax = min(float(_midi_hz(reference[voiced].max() + 12)), rate / 2)
    # At least two periods of fmin in the window (librosa warns otherwise), an even length.
    length = max(round(_YIN_WINDOW * rate), 2 * math.ceil(rate / fmin) + 2)
    length += length % 2
    f0 = librosa.yin(y, fmin=fmin, fmax=fmax, sr=rate, frame_length=length, hop_length=hop,
                     center=True)[:frames].astype(np.float64)
    energy = librosa.feature.rms(y=y, frame_length=length, hop_length=hop, center=True,
                                 pad_mode="constant")[0, :frames]
    f0[(energy == 0) | ~np.isfinite(f0)] = 0.0  # hz2cents keeps 0: no f0, counted wrong
    ref_cent = mir_eval.melody.hz2cents(np.where(voiced, _midi_hz(reference), 0.0))
    est_cent = mir_eval.melody.hz2cents(f0)
    ref_voicing = voiced.astype(np.float64)
    est_voicing = np.ones(frames, np.float64)
    accuracy = mir_eval.melody.raw_pitch_accuracy(ref_voicing, ref_cent, est_voicing, est_cent,
                                                  cent_tolerance=tolerance)
    chroma = mir_eval.melody.raw_chroma_accuracy(ref_voicing, ref_cent, est_voicing, est_cent,
                                                 cent_tolerance=tolerance)
    return PitchScore(float(accuracy), float(chroma), count, count * hop / rate)


def score_file(audio_path: str | os.PathLike, midi_path: MidiLike,
               seconds: float | None = None) -> dict[str, float | int | None]:
    """Onset, chroma and monophonic pitch scores of an audio file against a MIDI file.

    The audio is read with :func:`wavegen.audio.io.load_audio` at its own rate, channels
    averaged, only its first ``seconds`` when given (None: all of it); the MIDI's onsets and
    single-note frames are then those before ``seconds`` too (the measures keep what lies
    inside the audio). A missing or unreadable audio file is a one-line
    :class:`~wavegen.errors.AudioFileError`, a MIDI file a one-line
    :class:`~wavegen.errors.DataError`.

    Returns:
        ``{"onset_precision", "onset_recall", "onset_f1"}`` (:func:`onset_f1`, 50 ms window)
        and ``"chroma_r"`` (:func:`midi_chroma_correlation`), floats;
        ``"pitch_accuracy"`` and ``"pitch_chroma_accuracy"`` (:func:`monophonic_pitch`),
        floats, or None where the piece has too few single-note frames (undefined: leave
        it out of means, never count it as 0), and ``"pitch_frames"``, the int number of
        frames they were scored on (0 when undefined).
    """
    from wavegen.audio.io import load_audio

    if seconds is not None and not (isinstance(seconds, (int, float)) and math.isfinite(seconds)
                                    and seconds > 0):
        raise UsageError(f"seconds must be a positive number, got {seconds!r}")
    midi = as_pretty_midi(midi_path)
    audio, rate = load_audio(audio_path, mono=True, duration=seconds)
    y = audio[0].numpy()
    if seconds is not None:
        y = y[:max(1, round(seconds * rate))]
    onsets = onset_f1(y, rate, midi)
    pitch = monophonic_pitch(y, rate, midi)
    return {"onset_precision": onsets.precision, "onset_recall": onsets.recall,
            "onset_f1": onsets.f1, "chroma_r": midi_chroma_correlation(y, rate, midi),
            "pitch_accuracy": None if pitch is None else pitch.accuracy,
            "pitch_chroma_accuracy": None if pitch is None else pitch.chroma_accuracy,
            "pitch_frames": 0 if pitch is None else pitch.frames}


#: MIDI file suffixes a folder pair is matched on.
MIDI_SUFFIXES = (".mid", ".midi", ".MID", ".MIDI")


def score_pairs(audio: str | os.PathLike, midi: str | os.PathLike
                ) -> list[tuple[Path, Path]]:
    """(audio file, MIDI file) pairs to score: two files, or two folders matched by path
    (``AUDIO_DIR/a/b.wav`` with ``MIDI_DIR/a/b.mid`` or ``.midi``; hidden files ignored).
    Every audio file of a folder needs its MIDI file: a missing one is a one-line UsageError
    naming it (nothing is scored), as is an empty folder or a missing path."""
    from wavegen.data.audio_folder import AUDIO_SUFFIXES

    audio, midi = Path(audio), Path(midi)
    for path in (audio, midi):
        if not path.exists():
            raise UsageError(f"{path}: no such file or folder")
    if audio.is_file() and midi.is_file():
        return [(audio, midi)]
    if not (audio.is_dir() and midi.is_dir()):
        raise UsageError(f"give an audio file and a MIDI file, or two folders ({audio} and "
                         f"{midi} are one of each)")
    pairs = []
    for path in sorted(audio.rglob("*")):
        relative = path.relative_to(audio)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file() \
                or path.suffix.lower() not in AUDIO_SUFFIXES:
            continue
        match = next((midi / relative.with_suffix(s) for s in MIDI_SUFFIXES
                      if (midi / relative.with_suffix(s)).is_file()), None)
        if match is None:
            raise UsageError(f"{path}: no MIDI file {relative.with_suffix('.mid')} (or .midi) "
                             f"under {midi}")
        pairs.append((path, match))
    if not pairs:
        raise UsageError(f"{audio}: no audio files")
    return pairs
