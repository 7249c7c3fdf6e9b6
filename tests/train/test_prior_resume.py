"""Priors over codes resume bitwise: 4 steps straight equal 2 + 2 resumed (with the
conditioning dropout's random draws, for the WaveNet and the transformer)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from test_codes import make_bundle
from wavegen.cli import main

RECIPE = str(Path(__file__).resolve().parents[2] / "recipes" / "prior-top-midi-tiny.yaml")


@pytest.fixture(scope="module")
def codes(tmp_path_factory):
    root = tmp_path_factory.mktemp("prior-resume")
    corpus = root / "corpus"
    assert main(["prepare", str(corpus), "--generate", "6", "--seconds", "4",
                 "--sample-rate", "16000", "--seed", "1"]) == 0
    vq = make_bundle(root / "vq")
    assert main(["encode", str(vq), str(corpus), "-o", str(root / "codes")]) == 0
    return corpus, root / "codes"


@pytest.mark.parametrize("architecture", [
    [],
    ["--set", "model.architecture=transformer", "--set", "model.layers=2", "--set",
     "model.width=32", "--set", "model.heads=4", "--set", "model.context=64"]])
def test_resume_is_bitwise(codes, architecture, tmp_path, one_thread):
    corpus, folder = codes
    fast = ["--set", f"data.root={folder}", "--set", f"data.midi_root={corpus}",
            "--set", "data.validation_fraction=0.55", "--set", "data.crop_samples=32",
            "--set", "train.batch_size=4", "--set", "train.val_every=2",
            "--set", "train.checkpoint_every=2", "--set", "model.cond_dropout=0.5",
            "--no-progress", *architecture]
    assert main(["train", RECIPE, "--out", str(tmp_path / "a"), "--set", "train.steps=4",
                 *fast]) == 0
    assert main(["train", RECIPE, "--out", str(tmp_path / "b"), "--set", "train.steps=2",
                 *fast]) == 0
    assert main(["train", RECIPE, "--out", str(tmp_path / "b"), "--set", "train.steps=4",
                 "--resume", *fast]) == 0
    start = load_file(str(tmp_path / "b" / "checkpoints" / "step-0000002" / "model.safetensors"))
    for name in ("model.safetensors", "ema.safetensors"):
        a = load_file(str(tmp_path / "a" / "checkpoints" / "step-0000004" / name))
        b = load_file(str(tmp_path / "b" / "checkpoints" / "step-0000004" / name))
        assert a.keys() == b.keys() and a
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
    moved = load_file(str(tmp_path / "a" / "checkpoints" / "step-0000004" / "model.safetensors"))
    assert any(not torch.equal(moved[k], start[k]) for k in moved)  # steps 3-4 trained
