"""wavegen's own piano-like synthesiser: render MIDI to audio with numpy only.

It exists so that a MAESTRO-format corpus can be built anywhere (tests, CI, a laptop with
no FluidSynth or soundfont) and so that the audio is exactly aligned with the MIDI and the
piano roll of :mod:`wavegen.data.midi`. It is a modest additive model of a struck string,
not a sampled piano; use :func:`render_with_fluidsynth` and a piano soundfont when realism
matters.

The model, per note (pitch ``p``, velocity ``v`` scaled to [0, 1]):

* **Partials** ``f_k = k f0 sqrt(1 + B k^2)`` (stiff-string inharmonicity, Fletcher 1964),
  with ``B`` about 1.5e-4 at middle C, rising towards the treble (about 2.4e-3 at C8) and
  gently towards the bass, kept below 0.45 x the sample rate, at most ``max_partials``.
* **Spectrum**: ``a_k ~ k^-(1.9 - 1.2 v) exp(-f_k / (1500 + 7000 v)) |sinc(k / 8)|``: a
  harder blow excites more upper partials (brighter), and the hammer striking at 1/8 of the
  string weakens partials near multiples of 8. The partial amplitudes are normalised to unit
  power and scaled by the velocity curve ``10^(-36 (1 - v) / 20)`` (36 dB from v=0 to 127).
* **Decay**: every partial decays exponentially at ``d_k = 1/tau(p) + 1e-3 f_k + 1.5e-7 f_k^2``
  per second, so upper partials die first, and ``tau(p) = 8 s * 2^(-(p - 21) / 16)`` makes
  low notes ring longer (8 s at A0, 1.5 s at C4, 0.18 s at C8). Each partial is the sum of
  a prompt sound (70 %) and an aftersound (30 %, 4x slower), the two-stage decay of real
  piano tones. (The aftersound is not detuned: beating between the two would carve notches
  into the decay of single partials, making the level of a partial non-monotonic.)
* **Attack**: a raised-cosine onset of 4 ms (pp) to 1.5 ms (ff) plus a short low-passed
  noise burst for the hammer.
* **Release**: when the damper falls (the key release, or the pedal release for a note the
  sustain pedal holds, see :func:`wavegen.data.midi.performed_notes`), the note fades to
  silence over ``release`` seconds (exponential to -60 dB times a half-cosine, reaching
  exactly zero). A note stops early once its slowest partial is 80 dB down.

Mixing: notes are summed at a fixed ``gain`` (so velocities keep their absolute meaning
across files: a pp piece is quieter than an ff one), then a soft limiter keeps every sample
inside (-1, 1): samples up to ``limiter_knee`` pass unchanged, larger ones are compressed
smoothly by ``knee + (1 - knee) tanh((|x| - knee) / (1 - knee))``, which never reaches 1.
With the default gain dense ff chords touch the limiter only rarely.

Speed: each note is vectorised as a complex matrix product. The output is cut into blocks
of ``_BLOCK`` samples; sample ``m`` of block ``b`` is ``Im(sum_j C[b, j] E[j, m])`` with
``C[b, j] = a_j exp(s_j b M / sr)`` and ``E[j, m] = exp(s_j m / sr)`` for the complex
rates ``s_j = -d_j + 2 pi i f_j``, so the whole note is one BLAS call.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import inspect
import math
import os

import numpy as np
import pretty_midi
from scipy.signal import lfilter

from wavegen.data.midi import MidiLike, as_pretty_midi, performance_end, performed_notes
from wavegen.errors import DataError, UsageError

__all__ = ["check_fluidsynth", "render_midi", "render_with_fluidsynth", "soft_limit"]

_BLOCK = 256
_STRIKE_POSITION = 1 / 8
_PROMPT_SHARE = 0.7
_AFTERSOUND_SLOWDOWN = 4.0
_DYNAMIC_RANGE_DB = 36.0
# The note is cut when its slowest component has decayed by this factor (80 dB).
_SILENCE_LOG = math.log(1e4)
_END_FADE_S = 0.01


def soft_limit(x: np.ndarray, knee: float = 0.8) -> np.ndarray:
    """Identity up to ``|x| = knee``, then a tanh curve that approaches but never reaches 1.

    The curve has slope 1 at the knee, so it joins the linear part without a kink.
    """
    if not 0 < knee < 1:
        raise UsageError(f"limiter knee must be between 0 and 1, got {knee!r}")
    mag = np.abs(x)
    over = mag > knee
    out = np.array(x, dtype=np.float64, copy=True)
    squeezed = knee + (1 - knee) * np.tanh((mag[over] - knee) / (1 - knee))
    out[over] = np.sign(x[over]) * squeezed
    return out


def _inharmonicity(pitch: int) -> float:
    """Stiffness coefficient B: ~1.5e-4 at C4, x10 per 40 semitones up, slowly rising down."""
    if pitch >= 48:
        return 1.5e-4 * 10 ** (0.025 * (pitch - 60))
    return 1.5e-4 * 10 ** (0.025 * (48 - 60)) * 10 ** (0.01 * (48 - pitch))


def _fundamental_decay_time(pitch: int) -> float:
    return 8.0 * 2.0 ** (-(pitch - 21) / 16)


def _note_components(pitch: int, velocity: int, sample_rate: int,
                     max_partials: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Amplitudes, frequencies (Hz) and decay rates (1/s) of a note's components ``[J]``."""
    v = min(max(velocity, 0), 127) / 127.0
    f0 = 440.0 * 2.0 ** ((pitch - 69) / 12)
    k = np.arange(1, max_partials + 1, dtype=np.float64)
    freqs = k * f0 * np.sqrt(1.0 + _inharmonicity(pitch) * k**2)
    keep = freqs < 0.45 * sample_rate
    k, freqs = k[keep], freqs[keep]
    if len(k) == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    amps = k ** -(1.9 - 1.2 * v) * np.exp(-freqs / (1500.0 + 7000.0 * v))
    amps *= np.maximum(np.abs(np.sinc(k * _STRIKE_POSITION)), 0.05)
    amps *= 10 ** (-_DYNAMIC_RANGE_DB * (1.0 - v) / 20) / np.sqrt(np.sum(amps**2))
    decay = 1.0 / _fundamental_decay_time(pitch) + 1e-3 * freqs + 1.5e-7 * freqs**2
    return (
        np.concatenate([amps * _PROMPT_SHARE, amps * (1 - _PROMPT_SHARE)]),
        np.concatenate([freqs, freqs]),
        np.concatenate([decay, decay / _AFTERSOUND_SLOWDOWN]),
    )


def _damped_partials(amps: np.ndarray, freqs: np.ndarray, decay: np.ndarray,
                     num_samples: int, sample_rate: int) -> np.ndarray:
    """``sum_j amps_j exp(-decay_j t) sin(2 pi freqs_j t)`` for ``t = n / sr``: ``[num_samples]``."""
    rates = -decay + 2j * np.pi * freqs  # [J]
    blocks = -(-num_samples // _BLOCK)
    block_start = np.arange(blocks) * (_BLOCK / sample_rate)  # [B]
    within = np.arange(_BLOCK) / sample_rate  # [M]
    coeffs = amps * np.exp(np.outer(block_start, rates))  # [B, J]
    basis = np.exp(np.outer(rates, within))  # [J, M]
    # complex64 keeps errors near -140 dB and halves the cost of the product.
    out = (coeffs.astype(np.complex64) @ basis.astype(np.complex64)).imag
    return out.reshape(-1)[:num_samples].astype(np.float64)


def _render_note(pitch: int, velocity: int, sounding: float, sample_rate: int, release: float,
                 max_partials: int, rng: np.random.Generator) -> np.ndarray:
    """One note starting at sample 0 whose damper falls ``sounding`` seconds later: ``[n]``."""
    amps, freqs, decay = _note_components(pitch, velocity, sample_rate, max_partials)
    if len(amps) == 0:
        return np.zeros(0)
    natural = _SILENCE_LOG / float(decay.min())
    length = min(sounding + release, natural)
    n = max(1, math.ceil(length * sample_rate))
    t = np.arange(n) / sample_rate
    y = _damped_partials(amps, freqs, decay, n, sample_rate)

    v = min(max(velocity, 0), 127) / 127.0
    attack = 0.004 - 0.0025 * v
    na = min(n, max(1, round(attack * sample_rate)))
    y[:na] *= 0.5 - 0.5 * np.cos(np.pi * np.arange(na) / na)

    # Hammer: a few ms of low-passed noise, brighter and louder for harder blows.
    nh = min(n, round(0.03 * sample_rate))
    if nh > 0:
        cutoff = 800.0 + 4000.0 * v
        a = math.exp(-2 * math.pi * min(cutoff, 0.45 * sample_rate) / sample_rate)
        noise = lfilter([1 - a], [1, -a], rng.standard_normal(nh))
        level = 0.3 * float(np.sum(amps))  # relative to the tone's initial peak
        y[:nh] += level * noise * np.exp(-t[:nh] / 0.004)

    env = np.ones(n)
    if sounding < length:
        after = t[t >= sounding] - sounding
        env[t >= sounding] = np.exp(-after * math.log(1e3) / release) * (
            0.5 + 0.5 * np.cos(np.pi * np.minimum(after / release, 1.0)))
    else:
        # Cut at -80 dB by the natural decay: fade the last few ms so the cut is smooth.
        nf = min(n, max(1, round(_END_FADE_S * sample_rate)))
        env[-nf:] *= np.linspace(1.0, 0.0, nf)
    return y * env


def _single_threaded_blas() -> contextlib.AbstractContextManager:
    """Limit BLAS to one thread while rendering, when threadpoolctl is available.

    The per-note products are small (tens of rows); a multi-threaded BLAS spends more on
    waking threads than on the work, 5-10x slower on a loaded 2-core machine.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # an optional speed-up: librosa's scikit-learn usually brings it
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def render_midi(
    midi: MidiLike,
    sample_rate: int,
    *,
    tail: float = 0.5,
    release: float = 0.2,
    gain: float = 0.12,
    limiter_knee: float = 0.8,
    max_partials: int = 48,
    seed: int = 0,
) -> np.ndarray:
    """Render a MIDI file (all non-drum instruments, as one piano) to a mono waveform.

    Args:
        midi: a MIDI file path or a ``pretty_midi.PrettyMIDI``.
        sample_rate: output rate in Hz.
        tail: seconds of audio kept after the last note's release ends.
        release: seconds from the damper falling to silence.
        gain: fixed mixing gain (a unit-velocity note is about ``gain`` RMS before the limiter).
        limiter_knee: level above which the soft limiter compresses (see module docstring).
        max_partials: most partials per note (low notes have many below Nyquist).
        seed: seed of the hammer noise; the output is a deterministic function of the inputs.

    Returns:
        float32 ``[time]`` in (-1, 1), ``time = ceil((performance_end(midi) + release +
        tail) * sample_rate)`` (see :func:`wavegen.data.midi.performance_end`: events after
        the last note, such as a final tempo change, add nothing); a file without notes
        gives ``ceil(tail * sample_rate)`` samples of silence (at least 1).
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
        raise UsageError(f"sample_rate must be a positive integer (Hz), got {sample_rate!r}")
    for name, value in (("tail", tail), ("release", release), ("gain", gain)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise UsageError(f"{name} must be a finite number >= 0, got {value!r}")
    if release <= 0:
        raise UsageError(f"release must be > 0 seconds, got {release!r}")
    if isinstance(max_partials, bool) or not isinstance(max_partials, int) or max_partials < 1:
        raise UsageError(f"max_partials must be an integer >= 1, got {max_partials!r}")

    midi = as_pretty_midi(midi)
    notes = performed_notes(midi)
    seconds = performance_end(midi) + release + tail if notes else tail
    total = max(1, math.ceil(seconds * sample_rate))
    out = np.zeros(total, np.float64)
    rng = np.random.default_rng(seed)
    with _single_threaded_blas():
        for note in notes:
            start = math.floor(note.start * sample_rate + 1e-6)
            if start >= total or note.velocity <= 0:
                continue
            # The sound is timed from the (whole) start sample; keep the damper time exact.
            sounding = max(0.0, note.end - start / sample_rate)
            y = _render_note(note.pitch, note.velocity, sounding, sample_rate, release,
                             max_partials, rng)
            stop = min(total, start + len(y))
            out[start:stop] += y[: stop - start]
    out *= gain
    return soft_limit(out, limiter_knee).astype(np.float32)


def render_with_fluidsynth(midi: MidiLike, sample_rate: int,
                           soundfont: str | os.PathLike) -> np.ndarray:
    """Render with FluidSynth (pyfluidsynth) and a soundfont: float32 ``[time]``.

    Drum instruments are dropped and every other instrument plays program 0 (acoustic grand
    piano), matching the piano roll. The result is peak-normalised to 0.9 (pretty_midi
    normalises FluidSynth's output), so unlike :func:`render_midi` absolute levels are not
    comparable between files. Raises :class:`DataError` when the soundfont or pyfluidsynth
    (and its FluidSynth library) is missing.
    """
    soundfont = os.fspath(soundfont)
    if not os.path.isfile(soundfont):
        raise DataError(f"{soundfont}: soundfont not found")
    check_fluidsynth()
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
        raise UsageError(f"sample_rate must be a positive integer (Hz), got {sample_rate!r}")
    piano = copy.deepcopy(as_pretty_midi(midi))
    piano.instruments = [inst for inst in piano.instruments if not inst.is_drum]
    for inst in piano.instruments:
        inst.program = 0
    # pretty_midi >= 0.2.11 takes the soundfont as `synthesizer`; older ones as `sf2_path`.
    params = inspect.signature(pretty_midi.PrettyMIDI.fluidsynth).parameters
    key = "synthesizer" if "synthesizer" in params else "sf2_path"
    try:
        audio = piano.fluidsynth(fs=sample_rate, **{key: soundfont})
    except Exception as e:  # noqa: BLE001 - FluidSynth reports bad soundfonts in many ways
        reason = " ".join(str(e).split()) or type(e).__name__
        raise DataError(f"{soundfont}: FluidSynth could not render with this soundfont ({reason})") from None
    audio = np.asarray(audio, dtype=np.float64)
    if audio.size == 0:
        return np.zeros(1, np.float32)
    peak = float(np.max(np.abs(audio)))
    if not math.isfinite(peak):
        raise DataError(f"{soundfont}: FluidSynth produced non-finite samples")
    if peak > 0:
        audio = audio * (0.9 / peak)
    return audio.astype(np.float32)


def check_fluidsynth() -> None:
    """Raise :class:`DataError` unless pyfluidsynth and the FluidSynth library import."""
    try:
        importlib.import_module("fluidsynth")
    except Exception as e:  # noqa: BLE001 - ImportError, or OSError when libfluidsynth is absent
        reason = " ".join(str(e).split()) or type(e).__name__
        raise DataError(
            "FluidSynth rendering needs pyfluidsynth and the FluidSynth library "
            f"(pip install pyfluidsynth; apt install fluidsynth): {reason}") from None
