"""The ``wavegen`` command: output of each subcommand, and one-line errors with status 2."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
from pathlib import Path

import pytest
import soundfile as sf
from matplotlib.figure import Figure

import wavegen
from wavegen.cli import COMMANDS, main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_sine(path, sample_rate=16000, seconds=0.5, amplitude=0.5, channels=1):
    """A sine of known level: peak 20 log10(a) dBFS, RMS 20 log10(a / sqrt 2) dBFS."""
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    x = amplitude * np.sin(2 * np.pi * 440.0 * t)
    sf.write(path, np.stack([x] * channels, axis=1), sample_rate, subtype="FLOAT")
    return path


@pytest.fixture
def sine(tmp_path):
    return write_sine(tmp_path / "sine.wav")


def run(capsys, *argv):
    """(status, stdout, stderr) of main(argv) run in this process."""
    status = main(list(map(str, argv)))
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_error(status, out, err, fragment=""):
    assert status == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("wavegen: error: ") and fragment in lines[0], lines[0]
    assert "Traceback" not in err


def test_version_and_help(capsys):
    assert run(capsys, "--version") == (0, f"wavegen {wavegen.__version__}\n", "")
    status, out, err = run(capsys, "--help")
    assert status == 0 and err == ""
    for name in ("info", "spec", "doctor"):
        assert name in out
    status, out, _ = run(capsys, "spec", "--help")
    assert status == 0 and "--preset" in out


def test_commands_are_registered_with_both_functions():
    assert {"info", "spec", "doctor"} <= set(COMMANDS)
    for command in COMMANDS.values():
        assert callable(command.add_arguments) and callable(command.run) and command.help


def test_info_table(capsys, tmp_path, sine):
    stereo = write_sine(tmp_path / "stereo.wav", sample_rate=22050, seconds=0.25, channels=2)
    status, out, err = run(capsys, "info", sine, stereo)
    assert status == 0 and err == ""
    header, first, second = out.splitlines()
    assert "peak dBFS" in header and "RMS dBFS" in header
    assert first.split()[1:] == ["0.500", "16000", "1", "-6.02", "-9.03"]
    assert second.split()[1:4] == ["0.250", "22050", "2"]


def test_info_json(capsys, tmp_path, sine):
    silent = tmp_path / "silent.flac"
    sf.write(silent, np.zeros(1000), 8000)
    status, out, err = run(capsys, "info", "--json", sine, silent)
    assert status == 0 and err == ""
    rows = json.loads(out)
    assert [row["path"] for row in rows] == [str(sine), str(silent)]
    row = rows[0]
    assert (row["sample_rate"], row["channels"], row["frames"]) == (16000, 1, 8000)
    assert row["duration_s"] == pytest.approx(0.5)
    assert row["peak_dbfs"] == pytest.approx(20 * math.log10(0.5), abs=1e-3)
    assert row["rms_dbfs"] == pytest.approx(20 * math.log10(0.5 / math.sqrt(2)), abs=1e-3)
    assert row["format"] == "WAV"
    # Silence has a level of -inf, which JSON cannot hold.
    assert rows[1]["peak_dbfs"] is None and rows[1]["rms_dbfs"] is None


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR" and len(data) > 20_000
    assert data.endswith(b"IEND\xaeB`\x82")  # complete, not cut off


def test_spec_resamples_to_the_preset(capsys, tmp_path, sine):
    out_png = tmp_path / "spec.png"
    status, out, err = run(capsys, "spec", sine, "-o", out_png)
    assert status == 0 and err == ""
    assert "hifigan-22k" in out and "22050 Hz" in out
    assert_png(out_png)

    status, out, err = run(capsys, "spec", sine, "--output", tmp_path / "16k.png",
                           "--preset", "hifigan-16k")
    assert status == 0 and err == "" and "16000 Hz" in out
    assert_png(tmp_path / "16k.png")
    assert sorted(os.listdir(tmp_path)) == ["16k.png", "sine.wav", "spec.png"]


def test_doctor(capsys):
    status, out, err = run(capsys, "doctor")
    assert status == 0
    assert "Traceback" not in err
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip() and line[0] != " "}
    for key in ("python", "torch", "cuda", "triton", "nvcc", "torchaudio", "librosa",
                "soundfile", "formats"):
        assert key in lines, out
    assert "WAV" in lines["formats"]

    status, out, _ = run(capsys, "doctor", "--json")
    report = json.loads(out)
    assert status == 0 and report["torch"].startswith(__import__("torch").__version__)
    assert report["fused mel kernel"].startswith(("in use", "not used ("))


def test_doctor_lists_cuda_devices(capsys, monkeypatch):
    # The CUDA branch runs on CPU-only CI too, against a fake device.
    import torch

    props = SimpleNamespace(name="Fake GPU", major=9, minor=0, total_memory=80 * 2**30)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 91000)
    status, out, _ = run(capsys, "doctor")
    assert status == 0
    assert "available, 1 device(s)" in out and "cuda:0 Fake GPU, compute 9.0, 80.0 GiB" in out


def test_doctor_survives_a_torchaudio_that_aborts_on_import(capsys, tmp_path, monkeypatch):
    # A torchaudio built for another torch can kill the interpreter on import.
    fake = tmp_path / "torchaudio"
    fake.mkdir()
    (fake / "__init__.py").write_text("import os\nos.abort()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    status, out, _ = run(capsys, "doctor")
    assert status == 0
    line = next(line for line in out.splitlines() if line.startswith("torchaudio"))
    assert "not importable" in line


@pytest.fixture
def corrupt(tmp_path):
    path = tmp_path / "corrupt.wav"
    path.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + os.urandom(200))
    return path


@pytest.mark.parametrize("argv, fragment", [
    (["info", "{tmp}/missing.wav"], "file not found"),
    (["info", "{sine}", "{tmp}/missing.wav"], "missing.wav"),
    (["info", "{corrupt}"], "corrupt.wav"),
    (["info", "{tmp}"], "directory"),
    (["spec", "{tmp}/missing.wav", "-o", "{tmp}/out.png"], "file not found"),
    (["spec", "{corrupt}", "-o", "{tmp}/out.png"], "corrupt.wav"),
    (["spec", "{sine}", "-o", "{tmp}/out.png", "--preset", "nope"], "unknown feature preset 'nope'"),
    (["spec", "{sine}", "-o", "{tmp}/no/such/dir/out.png"], "does not exist"),
    (["spec", "{sine}", "-o", "{tmp}/out.jpg"], ".png"),
    (["spec", "{sine}"], "-o/--output"),
    (["nope"], "invalid choice: 'nope'"),
    ([], "required: COMMAND"),
    (["info"], "required: AUDIO"),
    (["info", "--frobnicate", "{sine}"], "unrecognized arguments: --frobnicate"),
    (["--frobnicate"], "required: COMMAND"),  # argparse checks that first
])
def test_errors_are_one_line_with_status_2(capsys, tmp_path, sine, corrupt, argv, fragment):
    argv = [a.format(tmp=tmp_path, sine=sine, corrupt=corrupt) for a in argv]
    status, out, err = run(capsys, *argv)
    assert_one_line_error(status, out, err, fragment)
    assert sorted(os.listdir(tmp_path)) == ["corrupt.wav", "sine.wav"]  # nothing written


def test_too_short_audio_fails_before_writing(capsys, tmp_path):
    short = write_sine(tmp_path / "short.wav", sample_rate=22050, seconds=0.01)
    status, out, err = run(capsys, "spec", short, "-o", tmp_path / "out.png")
    assert_one_line_error(status, out, err, "too short")
    assert os.listdir(tmp_path) == ["short.wav"]


def test_interrupt_mid_write_leaves_no_partial_png(capsys, tmp_path, sine, monkeypatch):
    old = tmp_path / "old.png"
    old.write_bytes(b"previous result")

    def interrupted_savefig(self, fname, **kwargs):
        Path(fname).write_bytes(PNG_SIGNATURE + b"half a picture")
        raise KeyboardInterrupt

    monkeypatch.setattr(Figure, "savefig", interrupted_savefig)
    status, out, err = run(capsys, "spec", sine, "-o", old)
    assert status == 130 and out == ""
    assert err.splitlines() == ["wavegen: interrupted"]
    status, _, _ = run(capsys, "spec", sine, "-o", tmp_path / "new.png")
    assert status == 130
    assert old.read_bytes() == b"previous result"
    assert sorted(os.listdir(tmp_path)) == ["old.png", "sine.wav"]


def python_m_wavegen(*argv, cwd):
    env = dict(os.environ)
    # The package may not be installed in the interpreter that runs the tests.
    root = os.path.dirname(os.path.dirname(os.path.abspath(wavegen.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "wavegen", *map(str, argv)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_python_m_wavegen_subprocess(tmp_path, sine):
    result = python_m_wavegen("--version", cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (
        0, f"wavegen {wavegen.__version__}\n", "")

    result = python_m_wavegen("spec", tmp_path / "missing.wav", "-o", tmp_path / "x.png",
                              cwd=tmp_path)
    assert_one_line_error(result.returncode, result.stdout, result.stderr, "file not found")

    result = python_m_wavegen("info", "--json", sine, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["sample_rate"] == 16000
    assert sorted(os.listdir(tmp_path)) == ["sine.wav"]
