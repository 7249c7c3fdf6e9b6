"""Every recipe in recipes/ validates, and the tiny ones train end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

from wavegen.cli import main
from wavegen.train.recipe import load_recipe

RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*.yaml"))


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
    if recipe.data.kind == "codes":  # a prior: trains on the codes of a (tiny, untrained) VQ-VAE
        from test_codes import make_bundle

        vq = make_bundle(tmp_path / "vq")  # (0.55: 2 of the corpus's 6 sources validate)
        assert main(["encode", str(vq), str(corpus), "-o", str(tmp_path / "codes")]) == 0
        overrides += ["--set", f"data.root={tmp_path / 'codes'}", "--set",
                      "data.validation_fraction=0.55", "--set", "data.crop_samples=32",
                      "--set", "train.batch_size=2"]
        if recipe.data.conditioning == "roll":
            overrides += ["--set", f"data.midi_root={corpus}"]
    elif recipe.data.kind != "tones":
        overrides += ["--set", f"data.root={corpus}", "--set", f"data.cache_dir={tmp_path / 'cache'}"]
    if recipe.task == "spectral":  # crops of 4 s: one per piece of the 4-piece corpus
        overrides += ["--set", "train.batch_size=2"]
    assert main(["train", str(path), "--out", str(tmp_path / "run"), "--no-progress", *overrides]) == 0
    assert (tmp_path / "run" / "checkpoints" / "step-0000004" / "model.safetensors").exists()


@pytest.mark.parametrize("path", [p for p in RECIPES if p.stem.endswith("-tiny")],
                         ids=lambda p: p.stem)
def test_tiny_recipe_size_estimates_match_the_built_models(path):
    from wavegen.models.discriminators import build_discriminator, estimate_discriminator
    from wavegen.models.registry import get_family

    def parameters(module):
        return sum(p.numel() for p in module.parameters())

    recipe = load_recipe(path)
    model = get_family(recipe.model["family"]).model_class(recipe.model_config)
    assert parameters(model) == recipe.model_config.estimate_size().parameters
    for kind, arguments in recipe.discriminators.items():
        built = build_discriminator(kind, arguments, recipe.feature_config)
        estimate = estimate_discriminator(kind, arguments, recipe.feature_config)
        assert parameters(built) == estimate.parameters, kind


@pytest.mark.parametrize("content, fragment", [
    (bytes(range(256)) * 8, "not a text file (a recipe is UTF-8 YAML)"),
    (b"- name: a list\n- task: likelihood\n", "a recipe must be a YAML mapping (key: value "
                                             "lines), got list"),
    (b"just a sentence\n", "a recipe must be a YAML mapping (key: value lines), got str"),
    (b"name: x\nmodel: [wavenet]\n", "recipe.model must be a mapping, got list"),
    (b"name: x\nmodel: {family: wavenet}\ndiscriminators: [mpd]\n",
     "recipe.discriminators must be a mapping"),
    (b"name: [unclosed\n", "invalid YAML at line"),
])
def test_a_file_that_is_not_a_recipe_fails_in_one_line_naming_it(tmp_path, capsys, content,
                                                                 fragment):
    path = tmp_path / "recipe.yaml"
    path.write_bytes(content)
    assert main(["train", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"wavegen: error: {path}: ") and fragment in err
