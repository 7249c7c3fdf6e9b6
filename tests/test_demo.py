"""`wavegen demo`: the README's first command, end to end on a short piece."""

from __future__ import annotations

import json

import soundfile as sf

from wavegen.cli import main


def test_demo_writes_every_file_and_sane_scores(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--seconds", "1.5", "--iters", "8"]) == 0
    printed = capsys.readouterr().out
    assert "magnitude+IF" in printed and "Griffin-Lim" in printed
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
