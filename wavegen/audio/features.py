"""FeatureConfig: the one description of a spectral front-end.

Vocoders fail silently (noise, metallic buzz) when they are fed mel-spectrograms made
with different conventions from the ones they were trained on: natural log vs log10,
Slaney vs HTK mel scale, fmax 8 kHz vs Nyquist, centre padding vs hop-aligned padding.
Every one of those choices is a field here. A FeatureConfig is stored inside every
checkpoint, round-trips exactly through JSON, and :meth:`FeatureConfig.check_compatible`
refuses features made with any other setting, naming the fields that differ.

Named presets reproduce the front-ends of widely used vocoders (see :data:`PRESETS`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field, fields
from typing import Any

from wavegen.errors import ConfigError, FeatureMismatchError

MEL_SCALES = ("slaney", "htk")
LOG_KINDS = ("ln", "log10", "db", "none")
PADDINGS = ("center", "hop_aligned", "none")
#: The level map's fields and their neutral values (see FeatureConfig).
LEVEL_DEFAULTS = {"level_offset": 0.0, "level_scale": 1.0, "level_floor": None,
                  "level_ceiling": None}
PAD_MODES = ("reflect", "constant")


@dataclass(frozen=True)
class FeatureConfig:
    """All settings of an STFT / mel / log-mel front-end.

    Attributes:
        sample_rate: audio sample rate in Hz.
        n_fft: FFT size; the spectrogram has ``n_fft // 2 + 1`` frequency bins.
        hop_length: samples between frames.
        win_length: window length (``<= n_fft``; the window is zero-padded, centred, to n_fft).
        window: window name understood by ``scipy.signal.get_window`` (periodic form).
        n_mels: number of mel bands.
        fmin: lowest mel filter edge in Hz.
        fmax: highest mel filter edge in Hz; ``None`` means the Nyquist frequency.
        mel_scale: ``"slaney"`` (librosa default, linear below 1 kHz) or ``"htk"``.
        mel_norm: filter normalisation: ``"slaney"`` (area), ``None``, or a p-norm order.
        power: exponent applied to the STFT magnitude (1 = magnitude, 2 = power).
        log: compression of the mel: ``"ln"``, ``"log10"``, ``"db"`` (decibels of the
            underlying amplitude, whatever ``power`` is) or ``"none"``.
        log_clamp: floor applied before the log (e.g. 1e-5 for HiFi-GAN) so silence is finite.
        padding: ``"center"`` pads n_fft//2 on both sides (librosa ``center=True``; frames =
            1 + T // hop); ``"hop_aligned"`` pads (n_fft - hop) // 2 on both sides with no
            centring (HiFi-GAN / MelGAN; frames = T // hop when n_fft - hop is even);
            ``"none"`` pads nothing (frames = 1 + (T - n_fft) // hop).
        pad_mode: ``"reflect"`` or ``"constant"`` (zeros), for the padding above.
        magnitude_eps: added to ``|X|^2`` before the square root (HiFi-GAN uses 1e-9); it
            also keeps the gradient of the magnitude finite at exact zeros.
        stft_normalized: scale the STFT by ``1 / sqrt(n_fft)`` (``torch.stft(normalized=True)``).
        level_offset, level_scale: an affine map applied after the log,
            ``(log + level_offset) * level_scale`` (DiffWave's ``(dB - 20 + 100) / 100``:
            offset 80, scale 0.01); the defaults leave the log as it is.
        level_floor, level_ceiling: clamp of the mapped level (DiffWave: 0 and 1); None
            leaves that side open.
    """

    sample_rate: int = 22050
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    window: str = "hann"
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float | None = 8000.0
    mel_scale: str = "slaney"
    mel_norm: str | float | None = "slaney"
    power: float = 1.0
    log: str = "ln"
    log_clamp: float = 1e-5
    padding: str = "hop_aligned"
    pad_mode: str = "reflect"
    magnitude_eps: float = 0.0
    stft_normalized: bool = False
    level_offset: float = 0.0
    level_scale: float = 1.0
    level_floor: float | None = None
    level_ceiling: float | None = None
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        def bad(message: str) -> ConfigError:
            return ConfigError(f"FeatureConfig: {message}")

        for key in ("sample_rate", "n_fft", "hop_length", "win_length", "n_mels"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise bad(f"{key} must be a positive integer, got {value!r}")
        if self.win_length > self.n_fft:
            raise bad(f"win_length ({self.win_length}) must not exceed n_fft ({self.n_fft})")
        if self.hop_length > self.win_length:
            raise bad(f"hop_length ({self.hop_length}) must not exceed win_length "
                      f"({self.win_length}): frames would skip samples")
        nyquist = self.sample_rate / 2
        if not 0 <= self.fmin < self.fmax_hz:
            raise bad(f"need 0 <= fmin < fmax, got fmin={self.fmin}, fmax={self.fmax_hz}")
        if self.fmax_hz > nyquist:
            raise bad(f"fmax ({self.fmax_hz} Hz) exceeds the Nyquist frequency ({nyquist} Hz)")
        if self.mel_scale not in MEL_SCALES:
            raise bad(f"mel_scale must be one of {MEL_SCALES}, got {self.mel_scale!r}")
        if not (self.mel_norm is None or self.mel_norm == "slaney"
                or (isinstance(self.mel_norm, (int, float)) and not isinstance(self.mel_norm, bool))):
            raise bad(f"mel_norm must be 'slaney', None or a number, got {self.mel_norm!r}")
        if not (isinstance(self.power, (int, float)) and self.power > 0):
            raise bad(f"power must be positive, got {self.power!r}")
        if self.log not in LOG_KINDS:
            raise bad(f"log must be one of {LOG_KINDS}, got {self.log!r}")
        if not self.log_clamp > 0:
            raise bad(f"log_clamp must be positive, got {self.log_clamp!r}")
        if not (math.isfinite(self.level_scale) and self.level_scale > 0):
            raise bad(f"level_scale must be a finite number > 0, got {self.level_scale!r}")
        if (self.level_floor is not None and self.level_ceiling is not None
                and not self.level_floor < self.level_ceiling):
            raise bad(f"level_floor ({self.level_floor}) must be below level_ceiling "
                      f"({self.level_ceiling})")
        if self.log == "none" and self.has_level_map:
            raise bad("level_offset / level_scale / level_floor / level_ceiling need a log "
                      "compression (log is 'none')")
        if self.padding not in PADDINGS:
            raise bad(f"padding must be one of {PADDINGS}, got {self.padding!r}")
        if self.pad_mode not in PAD_MODES:
            raise bad(f"pad_mode must be one of {PAD_MODES}, got {self.pad_mode!r}")
        if self.magnitude_eps < 0:
            raise bad(f"magnitude_eps must be >= 0, got {self.magnitude_eps!r}")
        if self.padding == "hop_aligned" and (self.n_fft - self.hop_length) % 2:
            raise bad("padding='hop_aligned' needs n_fft - hop_length to be even")

    # ----------------------------------------------------------------- derived values
    @property
    def fmax_hz(self) -> float:
        """The upper mel edge in Hz (the Nyquist frequency when ``fmax`` is None)."""
        return self.sample_rate / 2 if self.fmax is None else float(self.fmax)

    @property
    def n_freq(self) -> int:
        """Number of linear-frequency bins, ``n_fft // 2 + 1``."""
        return self.n_fft // 2 + 1

    @property
    def pad_amount(self) -> int:
        """Samples of padding added on each side of the signal before framing."""
        if self.padding == "center":
            return self.n_fft // 2
        if self.padding == "hop_aligned":
            return (self.n_fft - self.hop_length) // 2
        return 0

    def num_frames(self, num_samples: int) -> int:
        """Number of STFT frames for a signal of ``num_samples`` samples."""
        padded = num_samples + 2 * self.pad_amount
        if padded < self.n_fft:
            return 0
        return 1 + (padded - self.n_fft) // self.hop_length

    def frame_seconds(self) -> float:
        """Duration of one hop in seconds."""
        return self.hop_length / self.sample_rate

    @property
    def has_level_map(self) -> bool:
        """Whether the log is followed by an affine map or a clamp (the level_* fields)."""
        return any(getattr(self, key) != default for key, default in LEVEL_DEFAULTS.items())

    # ----------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dict of every field (including the informational ``name``)."""
        return dataclasses.asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FeatureConfig":
        """Build from a dict; an unknown key or a value of the wrong type is a ConfigError."""
        if not isinstance(data, dict):
            raise ConfigError(f"FeatureConfig: expected a mapping, got {type(data).__name__}")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(f"FeatureConfig: unknown key(s) {', '.join(unknown)}")
        values = {}
        for key, value in data.items():
            values[key] = _coerce(key, value, getattr(cls, key, None))
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> "FeatureConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"FeatureConfig: invalid JSON ({exc.msg} at line {exc.lineno})") from None
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> "FeatureConfig":
        """A copy with some fields changed (validated like a new config)."""
        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise ConfigError(f"FeatureConfig: unknown key(s) {', '.join(unknown)}")
        if "name" not in changes:
            changes["name"] = "custom"
        return dataclasses.replace(self, **changes)

    # ----------------------------------------------------------------- comparison
    def differences(self, other: "FeatureConfig") -> list[str]:
        """``field: mine != theirs`` for every setting that differs (``name`` is ignored)."""
        out = []
        for f in fields(self):
            if not f.compare:
                continue
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if mine != theirs:
                out.append(f"{f.name}: {mine!r} != {theirs!r}")
        return out

    def check_compatible(self, other: "FeatureConfig", what: str = "features") -> None:
        """Raise FeatureMismatchError unless ``other`` has exactly these settings."""
        diffs = self.differences(other)
        if diffs:
            raise FeatureMismatchError(
                f"{what} were made with a different front-end ({'; '.join(diffs)})")

    def fingerprint(self) -> str:
        """Short hash of the settings that matter (``name`` excluded), for cache keys."""
        payload = {f.name: getattr(self, f.name) for f in fields(self) if f.compare
                   and not (f.name in LEVEL_DEFAULTS  # unchanged fingerprints without them
                            and getattr(self, f.name) == LEVEL_DEFAULTS[f.name])}
        text = json.dumps(payload, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _coerce(key: str, value: Any, default: Any) -> Any:
    """Accept JSON's spelling of a field's type (int for float, list for nothing else)."""
    expected = {
        "sample_rate": int, "n_fft": int, "hop_length": int, "win_length": int, "n_mels": int,
        "window": str, "mel_scale": str, "log": str, "padding": str, "pad_mode": str, "name": str,
        "fmin": float, "power": float, "log_clamp": float, "magnitude_eps": float,
        "stft_normalized": bool, "level_offset": float, "level_scale": float,
    }.get(key)
    if key in ("fmax", "level_floor", "level_ceiling"):
        if value is None:
            return None
        expected = float
    if key == "mel_norm":
        if value is None or isinstance(value, str):
            return value
        expected = float
    if expected is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ConfigError(f"FeatureConfig: {key} must be finite, got {value!r}")
        return float(value)
    if expected is not None and not (isinstance(value, expected)
                                     and not (expected is int and isinstance(value, bool))):
        raise ConfigError(
            f"FeatureConfig: {key} must be {expected.__name__}, got {type(value).__name__} {value!r}")
    return value


def _preset(name: str, **values: Any) -> FeatureConfig:
    return FeatureConfig(name=name, **values)


#: Front-ends of widely used vocoders, by name. Each reproduces the source's analysis code.
PRESETS: dict[str, FeatureConfig] = {
    # HiFi-GAN (jik876/hifi-gan, config_v1.json + meldataset.py): librosa Slaney mel,
    # reflect padding of (n_fft - hop) / 2, sqrt(|X|^2 + 1e-9), natural log clamped at 1e-5.
    "hifigan-22k": _preset(
        "hifigan-22k", sample_rate=22050, n_fft=1024, hop_length=256, win_length=1024,
        n_mels=80, fmin=0.0, fmax=8000.0, log="ln", log_clamp=1e-5, padding="hop_aligned",
        magnitude_eps=1e-9),
    # MelGAN (descriptinc/melgan-neurips, Audio2Mel): same framing, fmax = Nyquist, log10.
    "melgan-22k": _preset(
        "melgan-22k", sample_rate=22050, n_fft=1024, hop_length=256, win_length=1024,
        n_mels=80, fmin=0.0, fmax=None, log="log10", log_clamp=1e-5, padding="hop_aligned"),
    # A 16 kHz speech/music front-end (HiFi-GAN conventions at 16 kHz, 16 ms hop).
    "hifigan-16k": _preset(
        "hifigan-16k", sample_rate=16000, n_fft=1024, hop_length=256, win_length=1024,
        n_mels=80, fmin=0.0, fmax=8000.0, log="ln", log_clamp=1e-5, padding="hop_aligned",
        magnitude_eps=1e-9),
    # BigVGAN 24 kHz 100-band (NVIDIA/BigVGAN bigvgan_24khz_100band): HiFi-GAN conventions.
    "bigvgan-24k-100": _preset(
        "bigvgan-24k-100", sample_rate=24000, n_fft=1024, hop_length=256, win_length=1024,
        n_mels=100, fmin=0.0, fmax=12000.0, log="ln", log_clamp=1e-5, padding="hop_aligned",
        magnitude_eps=1e-9),
    # Tacotron 2 / WaveGlow (NVIDIA tacotron2 TacotronSTFT, waveglow mel2samp.py): the
    # HiFi-GAN filters and log, but centred frames (reflect padding of n_fft / 2) and a
    # plain magnitude.
    "tacotron2-22k": _preset(
        "tacotron2-22k", sample_rate=22050, n_fft=1024, hop_length=256, win_length=1024,
        n_mels=80, fmin=0.0, fmax=8000.0, log="ln", log_clamp=1e-5, padding="center",
        magnitude_eps=0.0),
    # Vocos 24 kHz (gemelo-ai/vocos mel config): torchaudio defaults, i.e. HTK scale without
    # filter normalisation, fmax = Nyquist, centre padding, natural log clamped at 1e-7.
    "vocos-24k-100": _preset(
        "vocos-24k-100", sample_rate=24000, n_fft=1024, hop_length=256, win_length=1024,
        n_mels=100, fmin=0.0, fmax=None, mel_scale="htk", mel_norm=None, log="ln",
        log_clamp=1e-7, padding="center"),
}


def get_preset(name: str) -> FeatureConfig:
    """The preset called ``name`` (ConfigError listing the choices otherwise)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown feature preset {name!r}; choose one of {', '.join(sorted(PRESETS))}") from None
