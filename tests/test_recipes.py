"""Every recipe in recipes/ validates, and the tiny ones train end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

from wavegen.cli import main
from wavegen.train.recipe import load_recipe

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))


def test_there_are_full_and_tiny_recipes():
    names = {p.stem for p in RECIPES}
    assert {"wavenet-mel-maestro", "wavenet-midi-maestro", "wavenet-uncond-maestro"} <= names
    assert any(name.endswith("-tiny") for name in names)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_validates(path):
    recipe = load_recipe(path)
    assert recipe.name == path.stem
    again = recipe.to_dict()
    assert again["model"]["family"] == recipe.model["family"]
    if not path.stem.endswith("-tiny"):
        # Full-size recipes name their source in a comment.
        assert "et al." in path.read_text()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus") / "maestro"
    assert main(["prepare", str(out), "--generate", "6", "--seconds", "4",
                 "--sample-rate", "16000", "--seed", "1"]) == 0
    return out


@pytest.mark.parametrize("path", [p for p in RECIPES if p.stem.endswith("-tiny")],
                         ids=lambda p: p.stem)
def test_tiny_recipe_trains_a_few_steps(path, corpus, tmp_path):
    recipe = load_recipe(path)
    overrides = ["--set", "train.steps=4", "--set", "train.val_every=4",
                 "--set", "train.checkpoint_every=4"]
    if recipe.task == "adversarial":  # let the discriminator train within the few steps
        overrides += ["--set", "adversarial.discriminator_start=1"]
    if recipe.data.kind != "tones":
        overrides += ["--set", f"data.root={corpus}", "--set", f"data.cache_dir={tmp_path / 'cache'}"]
    assert main(["train", str(path), "--out", str(tmp_path / "run"), "--no-progress", *overrides]) == 0
    assert (tmp_path / "run" / "checkpoints" / "step-0000004" / "model.safetensors").exists()
