"""PNG plots: valid files, atomic writes, physical axes, and no global matplotlib state."""

from __future__ import annotations

import os
import struct
import subprocess
import sys

import matplotlib
import numpy as np
from pathlib import Path

import pytest
import torch
from matplotlib.figure import Figure

from wavegen.audio.signals import chord
from wavegen.audio import plot
from wavegen.audio.features import get_preset
from wavegen.audio.phase import magnitude_and_if
from wavegen.audio.spectral import LogMelSpectrogram, Spectrogram
from wavegen.errors import UsageError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CONFIG = get_preset("hifigan-22k")


def png_size(path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, after checking the signature and chunk type."""
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def assert_png(path, min_width=400, min_height=150) -> np.ndarray:
    """The file is a complete, decodable, non-blank PNG of plausible size; returns its pixels."""
    width, height = png_size(path)
    assert min_width <= width <= 4000 and min_height <= height <= 4000
    assert os.path.getsize(path) > 5_000  # axes, labels and an image, not an empty canvas
    pixels = matplotlib.image.imread(path)  # decodes every chunk: a truncated file fails here
    assert pixels.shape[:2] == (height, width)
    assert pixels.std() > 0.01
    return pixels


def only_files(directory, *names) -> None:
    """No temporary or partial files: the directory holds exactly ``names``."""
    assert sorted(os.listdir(directory)) == sorted(names)


@pytest.fixture(scope="module")
def wave() -> torch.Tensor:
    """0.5 s stereo chord at the preset's rate, [2, time]."""
    x = chord(CONFIG.sample_rate, 0.5)
    return torch.from_numpy(np.stack([x, 0.5 * x]))


def test_waveform_shapes_and_envelope(tmp_path, wave):
    plot.plot_waveform(wave, CONFIG.sample_rate, tmp_path / "stereo.png", title="stereo")
    plot.plot_waveform(wave[0], CONFIG.sample_rate, tmp_path / "mono.png")
    # Long enough for the min/max envelope path; numpy input is accepted too.
    long = np.tile(wave[0].numpy(), 8)
    out = plot.plot_waveform(long, CONFIG.sample_rate, str(tmp_path / "long.png"))
    assert out == tmp_path / "long.png"
    for name in ("stereo.png", "mono.png", "long.png"):
        assert_png(tmp_path / name)
    assert png_size(tmp_path / "stereo.png")[1] > png_size(tmp_path / "mono.png")[1]
    only_files(tmp_path, "stereo.png", "mono.png", "long.png")


def test_spectral_plots(tmp_path, wave):
    mono = wave[0]
    magnitude = Spectrogram(CONFIG)(mono)  # [n_freq, frames]
    logmel = LogMelSpectrogram(CONFIG)(mono)  # [n_mels, frames]
    _, ifreq = magnitude_and_if(mono[None], CONFIG)  # [1, n_freq, frames]
    plot.plot_spectrogram(magnitude, CONFIG, tmp_path / "spec.png", title="spectrogram")
    plot.plot_mel(logmel, CONFIG, tmp_path / "mel.png")
    plot.plot_if(ifreq[0], CONFIG, tmp_path / "if.png")
    plot.plot_analysis(wave, CONFIG, tmp_path / "analysis.png")
    for name in ("spec.png", "mel.png", "if.png"):
        assert_png(tmp_path / name)
    assert_png(tmp_path / "analysis.png", min_height=600)
    only_files(tmp_path, "spec.png", "mel.png", "if.png", "analysis.png")


def test_plots_leave_backend_and_pyplot_alone(tmp_path, wave):
    before = matplotlib.get_backend()
    plot.plot_waveform(wave, CONFIG.sample_rate, tmp_path / "w.png")
    plot.plot_analysis(wave[0], CONFIG, tmp_path / "a.png")
    assert matplotlib.get_backend() == before


def test_no_pyplot_import_in_a_fresh_interpreter(tmp_path):
    # get_backend() itself may import pyplot, so the clean check runs in a new process
    # whose backend is set to something other than Agg.
    code = (
        "import sys, numpy as np, matplotlib\n"
        "from wavegen.audio.features import get_preset\n"
        "from wavegen.audio.plot import plot_analysis\n"
        "x = np.sin(np.arange(8000) * 0.05).astype(np.float32)\n"
        f"plot_analysis(x, get_preset('hifigan-22k'), {str(tmp_path / 'a.png')!r})\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'\n"
        "assert matplotlib.rcParams['backend'].lower() == 'svg', matplotlib.rcParams['backend']\n"
    )
    env = dict(os.environ, MPLBACKEND="svg")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert_png(tmp_path / "a.png")


def test_time_axis_follows_padding():
    # Hop-aligned frames are centred at (i + 1/2) hop, so hop-wide columns start at t = 0
    # and end at frames * hop; centre-padded frames are centred at i * hop.
    frames = 10
    left, right = plot._time_extent(CONFIG, frames)
    assert left == pytest.approx(0.0)
    assert right == pytest.approx(frames * CONFIG.hop_length / CONFIG.sample_rate)
    centre = get_preset("vocos-24k-100")
    left, right = plot._time_extent(centre, frames)
    half = centre.hop_length / 2 / centre.sample_rate
    assert (left, right) == pytest.approx((-half, (frames - 1) * 2 * half + half))


def test_mel_axis_is_labelled_in_hz_at_band_centres():
    from wavegen.audio.spectral import mel_frequencies

    ax = Figure().subplots()
    plot._draw_mel(ax, np.zeros((CONFIG.n_mels, 20), np.float32), CONFIG)
    ticks = ax.get_yticks().astype(int)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    centres = mel_frequencies(CONFIG)
    assert ticks[0] == 0 and ticks[-1] == CONFIG.n_mels - 1
    assert labels == [plot._format_hz(centres[i]) for i in ticks]
    assert "Hz" in ax.get_ylabel() and "s" in ax.get_xlabel()


def test_failed_write_leaves_nothing_and_keeps_old_file(tmp_path, wave, monkeypatch):
    target = tmp_path / "keep.png"
    target.write_bytes(b"old")

    def broken_savefig(self, fname, **kwargs):
        Path(fname).write_bytes(PNG_SIGNATURE + b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(KeyboardInterrupt):
        plot.plot_waveform(wave, CONFIG.sample_rate, target)
    with pytest.raises(KeyboardInterrupt):
        plot.plot_waveform(wave, CONFIG.sample_rate, tmp_path / "new.png")
    assert target.read_bytes() == b"old"
    only_files(tmp_path, "keep.png")


@pytest.mark.parametrize("call, message", [
    (lambda p: plot.plot_waveform(np.zeros(100), 22050, p / "missing" / "x.png"), "does not exist"),
    (lambda p: plot.plot_waveform(np.zeros(100), 22050, p), "is a directory"),
    (lambda p: plot.plot_waveform(np.zeros((1, 2, 3, 4)), 22050, p / "x.png"), "shaped"),
    (lambda p: plot.plot_waveform(np.zeros(100), 0, p / "x.png"), "sample_rate"),
    (lambda p: plot.plot_mel(np.zeros((64, 10)), CONFIG, p / "x.png"), "n_mels"),
    (lambda p: plot.plot_spectrogram(np.zeros((CONFIG.n_freq, 0)), CONFIG, p / "x.png"), "frames"),
    (lambda p: plot.plot_analysis(np.zeros(100, np.float32), CONFIG, p / "x.png"), "short"),
])
def test_bad_input_raises_usage_error_and_writes_nothing(tmp_path, call, message):
    with pytest.raises(UsageError, match=message):
        call(tmp_path)
    only_files(tmp_path)
