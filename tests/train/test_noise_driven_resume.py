"""Noise-driven recipes (DiffWave, WaveGrad, WaveGlow) resume bitwise: 4 steps straight equal
2 + 2 resumed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from wavegen.cli import main

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
FAST = ["--set", "train.val_every=2", "--set", "train.checkpoint_every=2",
        "--set", "train.sample_seconds=0", "--set", "train.batch_size=2",
        "--set", "train.ema_decay=0.9", "--no-progress"]


@pytest.mark.parametrize("recipe", ["diffwave-tiny", "wavegrad-tiny", "waveglow-tiny"])
def test_resume_is_bitwise(recipe, tmp_path, one_thread):
    path = str(RECIPES / f"{recipe}.yaml")
    assert main(["train", path, "--out", str(tmp_path / "a"), "--set", "train.steps=4", *FAST]) == 0
    assert main(["train", path, "--out", str(tmp_path / "b"), "--set", "train.steps=2", *FAST]) == 0
    assert main(["train", path, "--out", str(tmp_path / "b"), "--set", "train.steps=4",
                 "--resume", *FAST]) == 0
    for name in ("model.safetensors", "ema.safetensors"):
        a = load_file(str(tmp_path / "a" / "checkpoints" / "step-0000004" / name))
        b = load_file(str(tmp_path / "b" / "checkpoints" / "step-0000004" / name))
        assert a.keys() == b.keys() and a
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
