"""PNG plots of waveforms, spectrograms, log-mels and instantaneous frequency.

Every figure is a :class:`matplotlib.figure.Figure` rendered by the Agg canvas directly, so
nothing here goes through ``pyplot``: the user's global backend, the list of open figures
and interactive state are never touched, and plotting works on machines without a display.

Axes are in physical units: time in seconds (frame ``i`` is drawn at the time of its
centre in the original signal, which depends on the config's padding) and frequency in Hz.
Files are written atomically: a hidden temporary PNG next to the target is renamed over it
only once it is complete, so an interrupted or failed plot never leaves a partial file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from wavegen.audio.features import FeatureConfig
from wavegen.errors import UsageError
from wavegen.utils.atomic import atomic_path

__all__ = ["plot_analysis", "plot_if", "plot_mel", "plot_spectrogram", "plot_waveform"]

# Above this many samples a channel is drawn as its min/max envelope over _ENVELOPE_BINS
# time bins: a line through millions of points is slow to render and looks the same.
_MAX_LINE_POINTS = 20_000
_ENVELOPE_BINS = 4_000
# Dynamic range shown in dB plots; quieter bins are clipped so silence does not dominate.
_TOP_DB = 80.0
_DPI = 100
_IF_LABEL = "IF (phase advance per hop / π)"
# IF of bins this far below the loudest bin is not drawn when the magnitude is known.
_IF_FLOOR_DB = 60.0

ArrayLike = torch.Tensor | np.ndarray


# --------------------------------------------------------------------------- public API


def plot_waveform(wave: ArrayLike, sample_rate: int, path: str | os.PathLike,
                  title: str | None = None) -> Path:
    """Plot a waveform, one row per channel, to the PNG ``path``.

    Args:
        wave: ``[channels, time]`` or ``[time]`` (a leading batch axis of size 1 is accepted).
        sample_rate: in Hz, for the time axis in seconds.
        path: the PNG to write; its directory must exist.
        title: figure title.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    target = _check_target(path)
    x = _waveform_array(wave)
    sample_rate = _check_rate(sample_rate)
    channels = x.shape[0]
    fig = _figure(width=10.0, height=1.0 + 2.0 * channels)
    axes = fig.subplots(channels, 1, sharex=True, squeeze=False)[:, 0]
    for c, ax in enumerate(axes):
        _draw_waveform(ax, x[c:c + 1], sample_rate)
        ax.set_ylabel(f"ch {c}\namplitude" if channels > 1 else "amplitude")
        if c < channels - 1:
            ax.set_xlabel("")
    if title:
        fig.suptitle(title)
    return _save(fig, target)


def plot_spectrogram(magnitude: ArrayLike, config: FeatureConfig, path: str | os.PathLike,
                     title: str | None = None, power: float = 1.0) -> Path:
    """Plot a linear-frequency spectrogram in dB to the PNG ``path``.

    Args:
        magnitude: ``[freq, frames]`` with ``freq == config.n_freq``, non-negative values
            ``|X| ** power`` (a leading batch axis of size 1 is accepted).
        config: the front-end that made it (sample rate, hop, padding, n_fft).
        path: the PNG to write; its directory must exist.
        title: axes title.
        power: the exponent already applied to ``|X|`` (1 for magnitude, 2 for power), so
            that the colour scale is dB of the amplitude either way.
    """
    target = _check_target(path)
    spec = _image_array(magnitude, "magnitude", config.n_freq, "config.n_freq")
    fig = _figure(width=10.0, height=4.0)
    ax = fig.subplots()
    image = _draw_spectrogram(ax, spec, config, power)
    fig.colorbar(image, ax=ax, label="level (dB re full scale)")
    if title:
        ax.set_title(title)
    return _save(fig, target)


def plot_mel(logmel: ArrayLike, config: FeatureConfig, path: str | os.PathLike,
             title: str | None = None) -> Path:
    """Plot a (log-)mel spectrogram ``[n_mels, frames]`` to the PNG ``path``.

    Mel bands are drawn as equal-height rows, as the model sees them, and the frequency
    axis is labelled with the centre frequency in Hz of the band at each tick.
    """
    target = _check_target(path)
    mel = _image_array(logmel, "logmel", config.n_mels, "config.n_mels")
    fig = _figure(width=10.0, height=4.0)
    ax = fig.subplots()
    image = _draw_mel(ax, mel, config)
    fig.colorbar(image, ax=ax, label=_mel_units(config))
    if title:
        ax.set_title(title)
    return _save(fig, target)


def plot_if(ifreq: ArrayLike, config: FeatureConfig, path: str | os.PathLike,
            title: str | None = None, magnitude: ArrayLike | None = None) -> Path:
    """Plot instantaneous frequency ``[freq, frames]`` (``freq == config.n_freq``) to ``path``.

    Args:
        ifreq: GANSynth IF as made by :func:`wavegen.audio.phase.magnitude_and_if`: phase
            advance per hop divided by pi, in [-1, 1] (a leading batch axis of 1 is accepted).
        config: the front-end that made it.
        path: the PNG to write; its directory must exist.
        title: axes title.
        magnitude: optional ``|X|`` ``[freq, frames]`` of the same STFT; bins more than
            60 dB below its peak are left blank, since their phase (hence IF) is noise.
    """
    target = _check_target(path)
    ifr = _image_array(ifreq, "ifreq", config.n_freq, "config.n_freq")
    mag = None
    if magnitude is not None:
        mag = _image_array(magnitude, "magnitude", config.n_freq, "config.n_freq")
        if mag.shape != ifr.shape:
            raise UsageError(f"magnitude {mag.shape} and ifreq {ifr.shape} differ in shape")
    fig = _figure(width=10.0, height=4.0)
    ax = fig.subplots()
    image = _draw_if(ax, ifr, config, mag)
    fig.colorbar(image, ax=ax, label=_IF_LABEL)
    if title:
        ax.set_title(title)
    return _save(fig, target)


def plot_analysis(wave: ArrayLike, config: FeatureConfig, path: str | os.PathLike,
                  title: str | None = None) -> Path:
    """Waveform, log-mel and instantaneous frequency of ``wave`` stacked in one PNG.

    Args:
        wave: ``[channels, time]`` or ``[time]`` at ``config.sample_rate`` (a leading batch
            axis of size 1 is accepted). All channels are drawn in the waveform panel; the
            spectral panels analyse their mean (the mono mix).
        config: the front-end used for the log-mel and the IF.
        path: the PNG to write; its directory must exist.
        title: figure title.
    """
    from wavegen.audio.phase import magnitude_and_if
    from wavegen.audio.spectral import LogMelSpectrogram

    target = _check_target(path)
    x = _waveform_array(wave)
    mono = torch.from_numpy(x.mean(axis=0))
    with torch.no_grad():
        # Both raise a WavegenError (before any file is created) for a too-short signal.
        logmel = LogMelSpectrogram(config)(mono).numpy()  # [n_mels, frames]
        magnitude, ifreq = magnitude_and_if(mono[None], config)  # [1, n_freq, frames] each
    magnitude, ifreq = magnitude[0].numpy(), ifreq[0].numpy()

    fig = _figure(width=11.0, height=10.0)
    # A narrow second column holds the colorbars; the waveform row leaves its cell empty so
    # that all three panels share one time axis of the same width.
    grid = fig.add_gridspec(3, 2, width_ratios=(40, 1), height_ratios=(1, 1.4, 1.4))
    ax_wave = fig.add_subplot(grid[0, 0])
    ax_mel = fig.add_subplot(grid[1, 0], sharex=ax_wave)
    ax_if = fig.add_subplot(grid[2, 0], sharex=ax_wave)
    fig.add_subplot(grid[0, 1]).set_axis_off()

    _draw_waveform(ax_wave, x, config.sample_rate)
    ax_wave.set_title("waveform")
    image = _draw_mel(ax_mel, logmel, config)
    fig.colorbar(image, cax=fig.add_subplot(grid[1, 1]), label=_mel_units(config))
    ax_mel.set_title(f"log-mel ({config.n_mels} bands, preset {config.name})")
    image = _draw_if(ax_if, ifreq, config, magnitude)
    fig.colorbar(image, cax=fig.add_subplot(grid[2, 1]), label=_IF_LABEL)
    ax_if.set_title(f"instantaneous frequency (blank: > {_IF_FLOOR_DB:.0f} dB below peak)")
    # The waveform sets the time range; images extend half a hop past it, which is noise.
    ax_wave.set_xlim(0.0, x.shape[1] / config.sample_rate)
    for ax in (ax_wave, ax_mel):
        ax.set_xlabel("")
    fig.suptitle(title or f"{x.shape[1] / config.sample_rate:.2f} s at {config.sample_rate} Hz")
    return _save(fig, target)


# --------------------------------------------------------------------------- drawing

def _draw_waveform(ax: Axes, x: np.ndarray, sample_rate: int) -> None:
    """Draw ``x`` ``[channels, time]`` overlaid on ``ax`` with a time axis in seconds."""
    n = x.shape[1]
    for c in range(x.shape[0]):
        label = f"ch {c}" if x.shape[0] > 1 else None
        if n <= _MAX_LINE_POINTS:
            ax.plot(np.arange(n) / sample_rate, x[c], linewidth=0.6, label=label)
        else:
            edges = np.linspace(0, n, _ENVELOPE_BINS + 1).astype(np.int64)
            lo = np.minimum.reduceat(x[c], edges[:-1])
            hi = np.maximum.reduceat(x[c], edges[:-1])
            t = (edges[:-1] + edges[1:]) / (2 * sample_rate)
            ax.fill_between(t, lo, hi, linewidth=0.4, alpha=0.8 if x.shape[0] == 1 else 0.5,
                            label=label)
    finite = x[np.isfinite(x)]
    peak = float(np.abs(finite).max()) if finite.size else 1.0
    limit = 1.05 * max(1.0, peak)  # full scale stays visible; overs are not cut off
    ax.set_ylim(-limit, limit)
    ax.set_xlim(0.0, n / sample_rate)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("amplitude")
    ax.grid(True, alpha=0.3)
    if x.shape[0] > 1:
        ax.legend(loc="upper right", fontsize="small")


def _time_extent(config: FeatureConfig, frames: int) -> tuple[float, float]:
    """Left and right edges in seconds of ``frames`` frames drawn as hop-wide columns."""
    # Frame i covers padded samples [i*hop, i*hop + n_fft); its centre in the original
    # signal is i*hop - pad + n_fft/2 (0 for centre padding, hop/2 for hop-aligned).
    first = (config.n_fft / 2 - config.pad_amount) / config.sample_rate
    half = config.hop_length / (2 * config.sample_rate)
    return first - half, first + (frames - 1) * config.frame_seconds() + half


def _linear_extent(config: FeatureConfig, frames: int) -> list[float]:
    """imshow extent (seconds, Hz) for ``[n_freq, frames]`` bins centred on k * sr / n_fft."""
    left, right = _time_extent(config, frames)
    df = config.sample_rate / config.n_fft
    return [left, right, -df / 2, (config.n_freq - 1) * df + df / 2]


def _draw_spectrogram(ax: Axes, spec: np.ndarray, config: FeatureConfig, power: float):
    if not power > 0:
        raise UsageError(f"power must be positive, got {power!r}")
    with np.errstate(divide="ignore", invalid="ignore"):
        db = (20.0 / power) * np.log10(np.maximum(spec, 1e-12))
    finite = db[np.isfinite(db)]
    vmax = float(finite.max()) if finite.size else 0.0
    image = ax.imshow(np.ma.masked_invalid(db), origin="lower", aspect="auto",
                      interpolation="nearest", cmap="magma", vmin=vmax - _TOP_DB, vmax=vmax,
                      extent=_linear_extent(config, spec.shape[1]))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (Hz)")
    return image


def _draw_mel(ax: Axes, mel: np.ndarray, config: FeatureConfig):
    from wavegen.audio.spectral import mel_frequencies

    left, right = _time_extent(config, mel.shape[1])
    image = ax.imshow(np.ma.masked_invalid(mel), origin="lower", aspect="auto",
                      interpolation="nearest", cmap="magma",
                      extent=[left, right, -0.5, config.n_mels - 0.5])
    # Rows are mel bands (uniform in mel, not in Hz), so ticks sit on band indices and are
    # labelled with each band's centre frequency.
    centres = mel_frequencies(config)
    ticks = np.unique(np.linspace(0, config.n_mels - 1, min(8, config.n_mels)).round().astype(int))
    ax.set_yticks(ticks)
    ax.set_yticklabels([_format_hz(centres[i]) for i in ticks])
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mel band centre (Hz)")
    return image


def _draw_if(ax: Axes, ifreq: np.ndarray, config: FeatureConfig,
             magnitude: np.ndarray | None = None):
    shown = np.ma.masked_invalid(ifreq)
    if magnitude is not None:
        with np.errstate(divide="ignore"):
            db = 20.0 * np.log10(magnitude)
        finite = db[np.isfinite(db)]
        if finite.size:
            shown = np.ma.masked_where(~(db >= finite.max() - _IF_FLOOR_DB), shown)
    # IF is a phase advance folded into [-pi, pi] / pi, so -1 and +1 are the same advance:
    # a cyclic colour map shows that wrap-around as continuous.
    image = ax.imshow(shown, origin="lower", aspect="auto", interpolation="nearest",
                      cmap="twilight", vmin=-1.0, vmax=1.0,
                      extent=_linear_extent(config, ifreq.shape[1]))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (Hz)")
    return image


def _mel_units(config: FeatureConfig) -> str:
    return {
        "ln": "ln(mel)",
        "log10": "log10(mel)",
        "db": "mel level (dB)",
        "none": "mel amplitude",
    }[config.log]


def _format_hz(hz: float) -> str:
    return f"{hz / 1000:.1f}k" if hz >= 1000 else f"{hz:.0f}"


# --------------------------------------------------------------------------- inputs


def _to_numpy(value: ArrayLike, name: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        if value.is_complex():
            raise UsageError(f"{name} must be real, got a complex tensor")
        return value.detach().cpu().float().numpy()
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "fiu":
            raise UsageError(f"{name} must be numeric, got dtype {value.dtype}")
        return value.astype(np.float32, copy=False)
    raise UsageError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(value).__name__}")


def _waveform_array(wave: ArrayLike) -> np.ndarray:
    """``[channels, time]`` float32 from ``[time]``, ``[channels, time]`` or ``[1, channels, time]``."""
    x = _to_numpy(wave, "wave")
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2:
        raise UsageError(f"wave must be shaped [channels, time] or [time], got {tuple(x.shape)}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise UsageError(f"wave of shape {tuple(x.shape)} has no samples to plot")
    return x


def _image_array(value: ArrayLike, name: str, rows: int, what: str) -> np.ndarray:
    """A ``[rows, frames]`` float32 array (a leading batch axis of 1 is dropped)."""
    x = _to_numpy(value, name)
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 2:
        raise UsageError(f"{name} must be shaped [freq, frames], got {tuple(x.shape)}")
    if x.shape[0] != rows:
        raise UsageError(f"{name} has {x.shape[0]} rows but {what} is {rows}: "
                         "was it made with a different front-end?")
    if x.shape[1] == 0:
        raise UsageError(f"{name} has no frames to plot")
    return x


def _check_rate(sample_rate: object) -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) \
            or sample_rate <= 0:
        raise UsageError(f"sample_rate must be a positive integer (Hz), got {sample_rate!r}")
    return int(sample_rate)


def _check_target(path: str | os.PathLike) -> Path:
    """The output path, refused early (before any work) if it cannot be written."""
    try:
        target = Path(os.fspath(path))
    except TypeError:
        raise UsageError(f"expected an output path, got {type(path).__name__}") from None
    if target.is_dir():
        raise UsageError(f"cannot write plot {target}: it is a directory")
    directory = target.absolute().parent
    if not directory.is_dir():
        raise UsageError(f"cannot write plot {target}: directory {directory} does not exist")
    return target


# --------------------------------------------------------------------------- output


def _figure(width: float, height: float) -> Figure:
    """A Figure attached to its own Agg canvas (no pyplot, no global backend change)."""
    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, target: Path) -> Path:
    """Render ``fig`` as PNG to ``target`` atomically (see :mod:`wavegen.utils.atomic`)."""
    try:
        with atomic_path(target) as temp:
            fig.savefig(temp, format="png", dpi=_DPI)
    except OSError as e:
        raise UsageError(f"cannot write plot {target}: {e.strerror or e}") from None
    return target
