"""`wavegen demo`: the README's first command, end to end on a short piece."""

from __future__ import annotations

import json

import pytest
import soundfile as sf
import torch

import wavegen.demo
from wavegen.audio.features import get_preset
from wavegen.audio.metrics import (log_mel_l1, mel_cepstral_distortion,
                                   multi_resolution_stft_distance, snr_db)
from wavegen.cli import main

SHORT = ["--seconds", "1.0", "--iters", "4", "--no-models"]


def test_demo_writes_every_file_and_sane_scores(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--seconds", "1.5", "--iters", "8",
                 "--model-seconds", "3"]) == 0
    printed = capsys.readouterr().out
    assert "magnitude+IF" in printed and "Griffin-Lim" in printed
    # Then the shipped models play and vocode a piece (scored in tests/test_shipped_models.py).
    assert "'piano'" in printed and "'piano-vocoder'" in printed
    from wavegen.demo_models import OUTPUT_FILES

    assert set(OUTPUT_FILES) <= {p.name for p in (out / "models").iterdir()}
    models = json.loads((out / "models" / "summary.json").read_text())
    assert models["seconds"] == 3 and 0 <= models["piano"]["onset_f1"] <= 1
    piano, rate = sf.read(out / "models" / "piano.wav")
    assert rate == 16000 and abs(len(piano) - 3 * 16000) <= 256
    names = {"original.wav", "resynth_if.wav", "resynth_griffinlim.wav", "analysis.png",
             "griffinlim.png", "summary.json"}
    assert names <= {p.name for p in out.iterdir()}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["magnitude_if"]["snr_db"] >= 60
    gl = summary["griffin_lim"]
    # Griffin-Lim keeps the spectral envelope (small log-mel error) but not the waveform.
    assert 0 < gl["log_mel_l1"] < 1.0 and 0 < gl["mcd_db"] < 10
    audio, rate = sf.read(out / "original.wav")
    assert rate == 22050 and len(audio) == int(1.5 * 22050)
    assert (out / "analysis.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_bad_arguments_exit_2_with_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    for argv in (["demo", "--out", str(blocker)], ["demo", "--preset", "nope"],
                 ["demo", "--iters", "0"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("wavegen: error:")
    assert blocker.read_text() == "not a folder"


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The demo run twice with the same arguments into two folders."""
    runs = [tmp_path_factory.mktemp("demo") / name for name in ("first", "second")]
    for out in runs:
        assert main(["demo", "--out", str(out), *SHORT]) == 0
    return runs


def read_summary(out) -> dict:
    return json.loads((out / "summary.json").read_text())


def test_demo_is_seeded_same_files_and_numbers_every_run(two_runs):
    first, second = (read_summary(out) for out in two_runs)
    # Wall-clock time is kept apart, under "timing"; everything else is identical.
    timing = {"elapsed_s", "real_time_factor"}
    assert set(first.pop("timing")) == set(second.pop("timing")) == timing
    assert first == second and first["seed"] == 0
    for name in ("original.wav", "resynth_if.wav", "resynth_griffinlim.wav"):
        assert (two_runs[0] / name).read_bytes() == (two_runs[1] / name).read_bytes(), name


def test_demo_summary_is_measured_on_the_written_wav_files(two_runs):
    out = two_runs[0]
    summary = read_summary(out)
    config = get_preset(summary["preset"])

    def written(name):
        audio, rate = sf.read(out / name, dtype="float32")
        assert rate == summary["sample_rate"]
        return torch.from_numpy(audio)[None, None]  # [1, 1, time], 16-bit values

    original, exact, griffin = (written(name) for name in
                                ("original.wav", "resynth_if.wav", "resynth_griffinlim.wav"))
    assert summary["magnitude_if"]["snr_db"] == pytest.approx(
        float(snr_db(original, exact)), rel=1e-9)
    gl = summary["griffin_lim"]
    assert gl["mr_stft_distance"] == pytest.approx(
        float(multi_resolution_stft_distance(original, griffin).total), rel=1e-9)
    assert gl["log_mel_l1"] == pytest.approx(float(log_mel_l1(original, griffin, config)), rel=1e-9)
    assert gl["mcd_db"] == pytest.approx(
        float(mel_cepstral_distortion(original, griffin, config)), rel=1e-9)
    # Measured after 16-bit quantisation: a few samples differ by one step, so the SNR is
    # finite and far below the float-only value (about 135 dB).
    assert 60 < summary["magnitude_if"]["snr_db"] < 125


def test_demo_figures_have_titles_saying_what_they_show(tmp_path, monkeypatch):
    titles = {}
    real_plot = wavegen.demo.plot_analysis

    def plot_analysis(wave, config, path, title=None):
        titles[path.name] = title
        return real_plot(wave, config, path, title=title)

    monkeypatch.setattr(wavegen.demo, "plot_analysis", plot_analysis)
    assert main(["demo", "--out", str(tmp_path), *SHORT, "--seed", "3"]) == 0
    assert set(titles) == {"analysis.png", "griffinlim.png"}
    assert titles["analysis.png"] != titles["griffinlim.png"]
    assert "Original" in titles["analysis.png"] and "Griffin-Lim" not in titles["analysis.png"]
    assert "Griffin-Lim" in titles["griffinlim.png"] and "4 iterations" in titles["griffinlim.png"]
    assert "seed 3" in titles["griffinlim.png"]
    assert read_summary(tmp_path)["seed"] == 3
