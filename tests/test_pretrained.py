"""Models shipped with wavegen (wavegen.pretrained): the index, `wavegen models` and
`--model NAME` on `wavegen sample` / `wavegen vocode`.

The shipped folder is replaced by a temporary one (``PRETRAINED_DIR`` monkeypatched) that
holds small untrained bundles, so these tests run without the real models' files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import wavegen.pretrained
from wavegen.audio.features import PRESETS
from wavegen.checkpoint import BundleInfo, save_bundle
from wavegen.cli import main
from wavegen.errors import CheckpointError, UsageError
from wavegen.models.hifigan import HiFiGANConfig, HiFiGANGenerator
from wavegen.models.wavenet import WaveNet, WaveNetConfig
from wavegen.pretrained import PretrainedModel, read_index, resolve_model

VOCODER_FEATURES = PRESETS["hifigan-22k"]

#: The test index: a sample-level WaveNet, a HiFi-GAN vocoder two folders down (with a
#: model card), a model whose folder is missing and one whose folder holds no model.
INDEX = {"wavegen_models": 1, "models": [
    {"name": "tones", "path": "tones", "verb": "sample", "description": "free-running tones"},
    {"name": "voc", "path": "family/vocoder", "verb": "vocode",
     "description": "mel -> audio, 22 kHz"},
    {"name": "ghost", "path": "ghost", "verb": "sample", "description": "not installed"},
    {"name": "hollow", "path": "hollow", "verb": "vocode"},
]}


def write_index(folder: Path, index: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "models.json").write_text(json.dumps(index))
    return folder


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def shipped_dir(tmp_path_factory) -> Path:
    """A pretrained folder with :data:`INDEX` and small untrained bundles."""
    root = tmp_path_factory.mktemp("pretrained")
    torch.manual_seed(0)
    free = WaveNetConfig(layers=2, stacks=1, residual_channels=4, gate_channels=4,
                         skip_channels=4, sample_rate=8000)
    save_bundle(root / "tones", WaveNet(free), BundleInfo("wavenet", free, 8000))
    hifigan = HiFiGANGenerator(HiFiGANConfig.preset("v3", upsample_initial_channel=32))
    save_bundle(root / "family" / "vocoder", hifigan,
                BundleInfo("hifigan", hifigan.config, VOCODER_FEATURES.sample_rate,
                           VOCODER_FEATURES))
    (root / "family" / "vocoder" / "MODEL_CARD.md").write_text("# voc\nuntrained, for tests\n")
    (root / "hollow").mkdir()
    (root / "hollow" / "README.txt").write_text("no model here\n")
    return write_index(root, INDEX)


@pytest.fixture
def shipped(shipped_dir, monkeypatch) -> Path:
    monkeypatch.setattr(wavegen.pretrained, "PRETRAINED_DIR", shipped_dir)
    return shipped_dir


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("wavegen: error:"), err
    return lines[0]


# --------------------------------------------------------------------------- the real index


def test_the_shipped_index_parses():
    models = read_index()
    by_name = {model.name: model for model in models}
    assert by_name["piano"].verb == "sample"
    assert by_name["piano-vocoder"].verb == "vocode"
    root = wavegen.pretrained.PRETRAINED_DIR.resolve()
    assert by_name["piano"].path == root / "piano"
    assert by_name["piano-vocoder"].path == root / "piano" / "vocoder"
    assert all(model.description for model in models)


# --------------------------------------------------------------------------- wavegen models


def test_models_lists_name_verb_size_status_and_description(shipped, capsys):
    status, out, err = run(capsys, "models")
    assert status == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["name", "verb", "size", "status", "description"]
    rows = {line.split()[0]: line for line in lines[1:5]}
    assert list(rows) == ["tones", "voc", "ghost", "hollow"]
    tones_mb = f"{folder_bytes(shipped / 'tones') / 1e6:.1f} MB"
    voc_mb = f"{folder_bytes(shipped / 'family' / 'vocoder') / 1e6:.1f} MB"
    assert rows["tones"].split()[:5] == ["tones", "sample", *tones_mb.split(), "installed"]
    assert rows["tones"].endswith("free-running tones")
    assert rows["voc"].split()[:5] == ["voc", "vocode", *voc_mb.split(), "installed"]
    assert rows["voc"].endswith("mel -> audio, 22 kHz")
    assert rows["ghost"].split()[:5] == ["ghost", "sample", "0.0", "MB", "missing"]
    assert rows["hollow"].split()[:5] == ["hollow", "vocode", "0.0", "MB", "missing"]
    cards = [line for line in lines[5:] if "MODEL_CARD.md" in line]
    assert len(cards) == 1 and str(shipped) in cards[0]


def test_models_json(shipped, capsys):
    status, out, err = run(capsys, "models", "--json")
    assert status == 0 and err == ""
    rows = {row["name"]: row for row in json.loads(out)}
    assert list(rows) == ["tones", "voc", "ghost", "hollow"]
    for row in rows.values():
        assert set(row) == {"name", "verb", "path", "size_bytes", "available", "description",
                            "card"}
    voc = rows["voc"]
    assert voc["verb"] == "vocode" and voc["available"] is True
    assert Path(voc["path"]) == (shipped / "family" / "vocoder").resolve()
    assert voc["size_bytes"] == folder_bytes(shipped / "family" / "vocoder") > 0
    assert Path(voc["card"]) == (shipped / "family" / "vocoder" / "MODEL_CARD.md").resolve()
    assert rows["tones"]["card"] is None and rows["tones"]["available"] is True
    assert rows["ghost"] == {"name": "ghost", "verb": "sample",
                             "path": str((shipped / "ghost").resolve()), "size_bytes": 0,
                             "available": False, "description": "not installed", "card": None}
    assert rows["hollow"]["available"] is False and rows["hollow"]["description"] == ""
    assert rows["hollow"]["size_bytes"] == folder_bytes(shipped / "hollow") > 0


def test_models_on_a_broken_index_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(wavegen.pretrained, "PRETRAINED_DIR", write_index(
        tmp_path, {"wavegen_models": 2, "models": []}))
    status, out, err = run(capsys, "models")
    assert status == 2 and out == ""
    assert "wavegen_models must be 1" in one_error_line(err)


# --------------------------------------------------------------------------- resolve_model


def test_resolve_model_gives_the_folder(shipped):
    assert resolve_model("tones") == (shipped / "tones").resolve()
    assert resolve_model("tones", verb="sample") == (shipped / "tones").resolve()
    assert resolve_model("voc", verb="vocode") == (shipped / "family" / "vocoder").resolve()


def test_an_unknown_name_lists_the_known_ones(shipped):
    with pytest.raises(UsageError) as info:
        resolve_model("pianoo")
    message = str(info.value)
    assert "'pianoo'" in message and "tones, voc, ghost, hollow" in message
    assert "wavegen models" in message and "\n" not in message


def test_the_wrong_verb_names_the_right_command(shipped):
    with pytest.raises(UsageError, match=r"voc is a vocoder.*`wavegen vocode --model voc`"):
        resolve_model("voc", verb="sample")
    with pytest.raises(UsageError, match=r"tones is a generator.*`wavegen sample --model tones`"):
        resolve_model("tones", verb="vocode")


@pytest.mark.parametrize("name, fragment", [("ghost", "does not exist"),
                                            ("hollow", "holds neither config.json")])
def test_a_model_that_is_not_installed_is_a_checkpoint_error(shipped, name, fragment):
    with pytest.raises(CheckpointError) as info:
        resolve_model(name)
    message = str(info.value)
    assert f"model {name!r} is not installed" in message and fragment in message
    assert "downloads nothing" in message


def test_properties_of_a_model(shipped):
    voc, = [model for model in read_index() if model.name == "voc"]
    assert isinstance(voc, PretrainedModel)
    assert voc.available and voc.card == voc.path / "MODEL_CARD.md"
    assert voc.size_bytes == folder_bytes(shipped / "family" / "vocoder")
    ghost = PretrainedModel("ghost", shipped / "nowhere", "sample", "")
    assert not ghost.available and ghost.card is None and ghost.size_bytes == 0


# --------------------------------------------------------------------------- index checks


def entry(**fields) -> dict:
    return {"name": "a", "path": "a", "verb": "sample", **fields}


@pytest.mark.parametrize("index, fragment", [
    pytest.param({"wavegen_models": 2, "models": []}, "wavegen_models must be 1", id="version 2"),
    pytest.param({"wavegen_models": True, "models": []}, "wavegen_models must be 1",
                 id="version true"),
    pytest.param({"models": []}, "wavegen_models must be 1", id="no version"),
    pytest.param({"wavegen_models": 1, "models": [], "extra": 1}, "unknown key 'extra'",
                 id="unknown top-level key"),
    pytest.param({"wavegen_models": 1, "models": {}}, "models must be a list", id="models dict"),
    pytest.param({"wavegen_models": 1, "models": ["a"]}, "model 1: must be an object",
                 id="model not an object"),
    pytest.param({"wavegen_models": 1, "models": [entry(size=3)]}, "unknown key 'size'",
                 id="unknown model key"),
    pytest.param({"wavegen_models": 1, "models": [{"name": "a", "verb": "sample"}]},
                 "no 'path'", id="no path"),
    pytest.param({"wavegen_models": 1, "models": [entry(), entry(path="b")]},
                 "model 2: name 'a' is used twice", id="duplicate names"),
    pytest.param({"wavegen_models": 1, "models": [entry(name="")]}, "non-empty", id="empty name"),
    pytest.param({"wavegen_models": 1, "models": [entry(name=3)]}, "non-empty", id="int name"),
    pytest.param({"wavegen_models": 1, "models": [entry(name="a b")]}, "only letters",
                 id="name with a space"),
    pytest.param({"wavegen_models": 1, "models": [entry(verb="train")]},
                 "verb must be one of sample, vocode", id="bad verb"),
    pytest.param({"wavegen_models": 1, "models": [entry(path="../x")]},
                 "leads outside", id="path escaping"),
    pytest.param({"wavegen_models": 1, "models": [entry(path="a/../../x")]},
                 "leads outside", id="path escaping from inside"),
    pytest.param({"wavegen_models": 1, "models": [entry(path="/tmp/x")]},
                 "must be a path relative", id="absolute path"),
    pytest.param({"wavegen_models": 1, "models": [entry(path="a\\b")]},
                 "must be a path relative", id="backslash"),
    pytest.param({"wavegen_models": 1, "models": [entry(path="")]},
                 "must be a path relative", id="empty path"),
    pytest.param({"wavegen_models": 1, "models": [entry(description=["x"])]},
                 "description must be a string", id="description not a string"),
    pytest.param([], "must be a JSON object", id="list"),
])
def test_a_bad_index_is_a_one_line_checkpoint_error(tmp_path, monkeypatch, index, fragment):
    monkeypatch.setattr(wavegen.pretrained, "PRETRAINED_DIR", write_index(tmp_path, index))
    with pytest.raises(CheckpointError) as info:
        read_index()
    assert fragment in str(info.value) and "\n" not in str(info.value)
    assert "models.json" in str(info.value)


def test_corrupt_or_missing_index(tmp_path):
    with pytest.raises(CheckpointError, match="missing"):
        read_index(tmp_path)
    (tmp_path / "models.json").write_text('{"wavegen_models": 1, ')
    with pytest.raises(CheckpointError, match="corrupt JSON"):
        read_index(tmp_path)


def test_a_link_leading_outside_the_folder_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "config.json").write_text("{}")
    inside = tmp_path / "pretrained"
    inside.mkdir()
    (inside / "link").symlink_to(outside, target_is_directory=True)
    write_index(inside, {"wavegen_models": 1, "models": [entry(path="link")]})
    with pytest.raises(CheckpointError, match="leads outside"):
        read_index(inside)


def test_an_empty_index_lists_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(wavegen.pretrained, "PRETRAINED_DIR",
                        write_index(tmp_path, {"wavegen_models": 1, "models": []}))
    assert read_index() == []
    status, out, _ = run(capsys, "models", "--json")
    assert status == 0 and json.loads(out) == []
    with pytest.raises(UsageError, match="no models are shipped"):
        resolve_model("piano")


# --------------------------------------------------------------------------- --model


def test_sample_with_a_shipped_model(shipped, tmp_path, capsys):
    out = tmp_path / "out.wav"
    status, stdout, err = run(capsys, "sample", "--model", "tones", "--seconds", "0.05", "-o",
                              str(out), "--no-progress")
    assert status == 0, err
    audio, rate = sf.read(out)
    assert rate == 8000 and len(audio) == 400
    assert f"wrote {out}" in stdout


def test_vocode_with_a_shipped_model(shipped, tmp_path, capsys):
    rate = VOCODER_FEATURES.sample_rate
    wav = tmp_path / "in.wav"
    sf.write(wav, 0.3 * np.sin(np.arange(rate // 10) * 0.05), rate)
    out = tmp_path / "out.wav"
    status, stdout, err = run(capsys, "vocode", "--model", "voc", "--wav", str(wav), "-o",
                              str(out))
    assert status == 0, err
    audio, out_rate = sf.read(out)
    assert out_rate == rate and len(audio) > 0
    assert "vocoded 1 of 1 file(s)" in stdout


@pytest.mark.parametrize("verb", ["sample", "vocode"])
def test_checkpoint_and_model_together_or_neither_is_one_line(shipped, tmp_path, capsys, verb):
    out = tmp_path / "out.wav"
    wav = tmp_path / "in.wav"
    sf.write(wav, np.zeros(2205), 22050)
    model = "tones" if verb == "sample" else "voc"
    rest = ["--seconds", "0.05"] if verb == "sample" else ["--wav", str(wav)]
    status, stdout, err = run(capsys, verb, str(shipped / model), "--model", model, "-o",
                              str(out), *rest)
    assert status == 2 and stdout == ""
    assert "not both" in one_error_line(err)
    status, stdout, err = run(capsys, verb, "-o", str(out), *rest)
    assert status == 2 and stdout == ""
    line = one_error_line(err)
    assert "--model NAME" in line and "wavegen models" in line
    assert not out.exists()


@pytest.mark.parametrize("argv, fragment", [
    (["sample", "--model", "voc", "--seconds", "0.05"], "`wavegen vocode --model voc`"),
    (["vocode", "--model", "tones", "--mel", "x.npy"], "`wavegen sample --model tones`"),
    (["sample", "--model", "nope", "--seconds", "0.05"], "shipped models: tones, voc"),
    (["sample", "--model", "ghost", "--seconds", "0.05"], "'ghost' is not installed"),
])
def test_a_bad_model_on_the_command_line_is_one_line(shipped, tmp_path, capsys, argv, fragment):
    out = tmp_path / "out.wav"
    status, stdout, err = run(capsys, *argv, "-o", str(out))
    assert status == 2 and stdout == ""
    assert fragment in one_error_line(err)
    assert not out.exists()


@pytest.mark.parametrize("verb", ["sample", "vocode"])
def test_help_offers_model(capsys, verb):
    status, out, _ = run(capsys, verb, "--help")
    text = " ".join(out.split())
    assert status == 0 and "--model NAME" in text and "wavegen models" in text
