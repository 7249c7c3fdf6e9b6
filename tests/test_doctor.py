"""wavegen.doctor: structured rows, the text and JSON formatters, probes that fail."""

from __future__ import annotations

import json

from wavegen import doctor
from wavegen.cli import main
from wavegen.doctor import Row


def test_rows_format_as_two_columns_with_continuation_lines():
    rows = [Row("torch", "2.0 (CUDA build: none)"), Row("sampling backends", ["cpu/a: usable",
                                                                          "cpu/b: no (why)"]),
            Row("devices", []), Row("nvcc", "not found")]
    assert doctor.format_text(rows) == "\n".join([
        "torch              2.0 (CUDA build: none)",
        "sampling backends  cpu/a: usable",
        "                   cpu/b: no (why)",
        "devices            -",
        "nvcc               not found",
    ])
    assert json.loads(doctor.format_json(rows)) == {
        "torch": "2.0 (CUDA build: none)", "sampling backends": ["cpu/a: usable", "cpu/b: no (why)"],
        "devices": [], "nvcc": "not found"}


def test_a_failing_probe_is_a_row_not_an_exception(monkeypatch):
    def broken():
        raise RuntimeError("libsndfile\n  is missing")

    monkeypatch.setattr(doctor, "_soundfile", broken)
    monkeypatch.setattr(doctor, "_torchaudio", lambda: "not installed (optional)")
    rows = doctor.diagnose()
    by_name = doctor.as_dict(rows)
    assert by_name["soundfile"] == "error: RuntimeError: libsndfile is missing"
    assert "formats" not in by_name
    assert len(by_name) == len(rows)  # names are unique
    assert [r.name for r in rows][:3] == ["wavegen", "python", "platform"]
    assert all(isinstance(r.value, str) or all(isinstance(v, str) for v in r.value) for r in rows)


def test_module_version_says_why_there_is_none(tmp_path, monkeypatch):
    (tmp_path / "wavegen_doctor_broken.py").write_text("raise ImportError('needs libfoo')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert doctor.module_version("wavegen_doctor_absent") == "not installed"
    assert doctor.module_version("wavegen_doctor_broken") == \
        "installed but not importable (ImportError: needs libfoo)"
    assert doctor.one_line(ValueError()) == "ValueError"


def test_the_command_prints_the_formatted_rows(capsys, monkeypatch):
    rows = [Row("wavegen", "1.0"), Row("backends", ["x", "y"])]
    monkeypatch.setattr(doctor, "diagnose", lambda: rows)
    assert main(["doctor"]) == 0
    assert capsys.readouterr().out == doctor.format_text(rows) + "\n"
    assert main(["doctor", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"wavegen": "1.0", "backends": ["x", "y"]}
