"""The task registry: recipes own task sections, and diffusion / VQ train from recipes.

The diffusion and VQ-VAE families of wavegen come in later issues; here two tiny families
defined only in the tests (tests/families.py: a non-causal conv denoiser of kind
noise_driven, a strided conv VQ autoencoder of kind discrete_autoencoder) are registered at
run time and trained through ``wavegen train`` end to end: checkpoints, exact resume, the
best bundle loading back.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from families import (DENOISER, VQ_AE, AutoencoderConfig, DenoiserConfig, TinyDenoiser,
                      TinyVQAutoencoder, diffusion_recipe, vq_recipe, without, write)
from wavegen.checkpoint import load_bundle
from wavegen.cli import main
from wavegen.diffusion.process import DiffusionProcess
from wavegen.errors import ConfigError, UsageError
from wavegen.models.protocols import (DISCRETE_AUTOENCODER, NOISE_DRIVEN, DenoiserModel,
                                      DiscreteAutoencoder, conforms)
from wavegen.models.registry import Family, register_family, unregister_family
from wavegen.train.build import build_task
from wavegen.train.recipe import Recipe, load_recipe, recipe_from_dict
from wavegen.train.tasks import (TASKS, Section, TaskSpec, get_task, register_task,
                                 unregister_task)
from wavegen.train.tasks.diffusion import DiffusionTask
from wavegen.train.tasks.likelihood import LikelihoodTask
from wavegen.train.tasks.registry import RECIPE_KEYS
from wavegen.train.tasks.vq import VQConfig, VQTask

ROOT = Path(__file__).resolve().parents[2]
TINY_WAVENET = ROOT / "recipes" / "wavenet-tones-tiny.yaml"
@pytest.fixture(scope="module", autouse=True)
def test_families():
    """Both families registered for this module only."""
    families = [register_family(Family(DENOISER, DenoiserConfig, TinyDenoiser, NOISE_DRIVEN,
                                       task="diffusion")),
                register_family(Family(VQ_AE, AutoencoderConfig, TinyVQAutoencoder,
                                       DISCRETE_AUTOENCODER, task="vq"))]
    yield families
    for family in families:
        unregister_family(family.name)


# --------------------------------------------------------------------------- recipes
def train(path: Path, out: Path, *extra: str) -> None:
    assert main(["train", str(path), "--out", str(out), "--no-progress", *extra]) == 0


def weights(out: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(str(out / "checkpoints" / f"step-{step:07d}" / "model.safetensors"))


@pytest.mark.parametrize("make", [diffusion_recipe, vq_recipe], ids=["diffusion", "vq"])
def test_task_trains_from_a_recipe_resumes_exactly_and_its_bundle_loads(make, tmp_path,
                                                                        one_thread):
    recipe = make()
    path = write(tmp_path, recipe)
    parsed = load_recipe(path)
    family = parsed.family
    assert parsed.task == family.task and isinstance(parsed.model_config, family.config_class)

    train(path, tmp_path / "straight")
    train(path, tmp_path / "split", "--set", "train.steps=2")
    train(path, tmp_path / "split", "--resume")
    straight, split = weights(tmp_path / "straight", 4), weights(tmp_path / "split", 4)
    assert straight.keys() == split.keys() and straight
    for key in straight:
        assert torch.equal(straight[key], split[key]), key
    assert weights(tmp_path / "straight", 2).keys() == straight.keys()
    assert any(not torch.equal(weights(tmp_path / "straight", 2)[k], straight[k])
               for k in straight)  # it trained between the checkpoints

    # The run folder's recipe.yaml holds every section of the task and reads back equal.
    stored = load_recipe(tmp_path / "straight" / "recipe.yaml")
    assert stored.to_dict() == parsed.to_dict()
    section = {"diffusion": "diffusion", "vq": "vq"}[parsed.task]
    assert stored.to_dict()[section] == parsed.section(section).to_dict()

    model, info = load_bundle(tmp_path / "straight" / "checkpoints" / "best")
    assert info.family == family.name and isinstance(model, family.model_class)
    assert model.config == parsed.model_config and conforms(model, family.kind)
    samples = tmp_path / "straight" / "samples" / "step-0000004"
    stem = {"diffusion": "sample", "vq": "reconstruction"}[parsed.task]
    assert all((samples / name).is_file() for name in (f"{stem}.wav", f"{stem}.png",
                                                       "reference.wav"))
    audio = torch.randn(2, 1, 512).clamp(-1, 1)
    with torch.no_grad():
        if family.kind == NOISE_DRIVEN:
            assert isinstance(model, DenoiserModel)
            out = model(audio, torch.full((2,), 0.5), torch.zeros(2, 16, 8))
            assert out.shape == audio.shape and torch.isfinite(out).all()
        else:
            assert isinstance(model, DiscreteAutoencoder) and model.num_levels == 1
            codes = model.encode(audio)
            assert codes.shape == (2, 64) and codes.dtype == torch.int64
            assert model.decode(codes).shape == audio.shape


# --------------------------------------------------------------------------- recipe sections
def test_a_recipe_naming_an_unknown_task_lists_the_known_ones(tmp_path, capsys):
    path = write(tmp_path, {**diffusion_recipe(), "task": "flowmatch"})
    assert main(["train", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown task 'flowmatch'; known: " in err
    known = err.split("known: ", 1)[1]
    assert all(name in known for name in ("adversarial", "diffusion", "likelihood", "vq"))
    assert not (tmp_path / "run").exists()


def test_a_section_of_another_task_is_refused():
    with pytest.raises(ConfigError, match="the diffusion section belongs to task diffusion, "
                                          "but this recipe's task is likelihood"):
        load_recipe(TINY_WAVENET, ["diffusion.sampler_steps=4"])
    with pytest.raises(ConfigError, match="the discriminators section belongs to task "
                                          "adversarial, but this recipe's task is diffusion"):
        recipe_from_dict({**diffusion_recipe(), "discriminators": {"mpd": {}}})
    with pytest.raises(ConfigError, match=r"recipe: unknown key\(s\) difusion .*task sections: "
                                          r"adversarial, diffusion, discriminators, spectral, vq"):
        recipe_from_dict({**diffusion_recipe(), "difusion": {}})
    with pytest.raises(ConfigError, match="recipe.vq must be a mapping, got list"):
        recipe_from_dict({**vq_recipe(), "vq": [1, 2]})


def test_sections_are_parsed_by_their_task_with_defaults_and_named_errors():
    recipe = recipe_from_dict(without(diffusion_recipe(), "diffusion"))
    assert recipe.section("diffusion") == DiffusionProcess()
    assert recipe.to_dict()["diffusion"] == DiffusionProcess().to_dict()
    assert recipe_from_dict(recipe.to_dict()).to_dict() == recipe.to_dict()
    vq = recipe_from_dict(vq_recipe()).section("vq")
    assert vq == VQConfig(0.5, "l1", ((256, 64, 256), (128, 32, 128)))
    with pytest.raises(UsageError, match="task vq has no recipe section 'diffusion'"):
        recipe_from_dict(vq_recipe()).section("diffusion")
    with pytest.raises(ConfigError, match="diffusion: unknown key"):
        recipe_from_dict({**diffusion_recipe(), "diffusion": {"samplr": "ddim"}})
    with pytest.raises(ConfigError, match="diffusion.sampler_steps must be >= 1"):
        recipe_from_dict({**diffusion_recipe(), "diffusion": {"sampler_steps": 0}})
    with pytest.raises(ConfigError, match="vq.reconstruction must be one of"):
        recipe_from_dict({**vq_recipe(), "vq": {"reconstruction": "l3"}})
    with pytest.raises(ConfigError, match=r"vq.resolutions\[0\] \[256, 64, 512\]"):
        recipe_from_dict({**vq_recipe(), "vq": {"resolutions": [[256, 64, 512]]}})


def test_tasks_check_model_kinds_conditioning_and_their_own_limits():
    with pytest.raises(ConfigError, match="task diffusion trains noise_driven models, but "
                                          "family test-vq is discrete_autoencoder"):
        recipe_from_dict({**without(vq_recipe(), "vq"), "task": "diffusion"})
    with pytest.raises(ConfigError, match="task likelihood needs a model with loss"):
        recipe_from_dict({**without(diffusion_recipe(), "diffusion"), "task": "likelihood"})
    with pytest.raises(ConfigError, match="task vq trains on data.conditioning none"):
        recipe_from_dict({**vq_recipe(), "data": {**vq_recipe()["data"], "conditioning": "mel"}})
    with pytest.raises(ConfigError, match=r"data.crop_samples \(128\) must be longer than half "
                                          r"the largest vq.resolutions FFT size \(256\)"):
        recipe_from_dict({**vq_recipe(), "data": {**vq_recipe()["data"], "crop_samples": 128}})
    # The model side of the cross-checks is the config's contract.
    with pytest.raises(ConfigError, match=r"mel channels/hop_length \(16/32\) must equal "
                                          r"features n_mels/hop_length \(16/64\)"):
        recipe_from_dict({**diffusion_recipe(),
                          "model": {**diffusion_recipe()["model"], "hop_length": 32}})
    with pytest.raises(ConfigError, match=r"model.sample_rate \(16000\) != data.sample_rate"):
        recipe_from_dict({**vq_recipe(), "model": {**vq_recipe()["model"], "sample_rate": 16000}})


def test_a_task_registered_at_run_time_owns_its_section_and_builds_through_the_registry():
    def build(recipe: Recipe, model: nn.Module) -> DiffusionTask:
        return DiffusionTask(model, recipe.section("process"), local_key="mel")

    spec = register_task(TaskSpec("diffusion_alt", build,
                                  sections=(Section.of("process", DiffusionProcess),),
                                  kinds=(NOISE_DRIVEN,), conditionings=("mel",)))
    try:
        assert get_task("diffusion_alt") is spec and TASKS["diffusion_alt"] is spec
        recipe = recipe_from_dict({**without(diffusion_recipe(), "diffusion"),
                                   "task": "diffusion_alt", "process": {"sampler": "heun"}})
        task = build_task(recipe)
        assert isinstance(task, DiffusionTask) and task.process.sampler == "heun"
        assert isinstance(task.model, TinyDenoiser)
        assert recipe.to_dict()["process"]["sampler"] == "heun"
        with pytest.raises(ConfigError, match="belongs to task diffusion_alt"):
            recipe_from_dict({**diffusion_recipe(), "process": {}})
        with pytest.raises(UsageError, match="already registered"):
            register_task(spec)
        assert register_task(spec, replace=True) is spec
    finally:
        unregister_task("diffusion_alt")
    with pytest.raises(ConfigError, match="unknown task 'diffusion_alt'"):
        get_task("diffusion_alt")
    with pytest.raises(UsageError, match="no task 'diffusion_alt' is registered"):
        unregister_task("diffusion_alt")


def test_task_specs_refuse_sections_they_cannot_own():
    build = TASKS["diffusion"].build
    with pytest.raises(ConfigError, match="'data' cannot be a recipe section"):
        TaskSpec("odd", build, sections=(Section.of("data", DiffusionProcess),))
    with pytest.raises(ConfigError, match="listed twice"):
        TaskSpec("odd", build, sections=(Section.of("x", DiffusionProcess),) * 2)
    with pytest.raises(ConfigError, match="unknown model kind 'gan'"):
        TaskSpec("odd", build, kinds=("gan",))
    with pytest.raises(ConfigError, match="unknown conditioning 'text'"):
        TaskSpec("odd", build, conditionings=("text",))
    # The keys a section may not take are exactly the Recipe's own fields.
    assert set(RECIPE_KEYS) == {f.name for f in dataclasses.fields(Recipe)}


def test_builtin_tasks_declare_their_sections_and_kinds():
    sections = {name: [s.name for s in spec.sections] for name, spec in TASKS.items()}
    assert sections["likelihood"] == [] and sections["diffusion"] == ["diffusion"]
    assert sections["adversarial"] == ["discriminators", "adversarial"]
    assert sections["vq"] == ["vq"]
    assert TASKS["adversarial"].kinds == ("feed_forward",)
    assert TASKS["adversarial"].conditionings == ("mel",)
    # The GAN recipes keep their sections and typed config where they were.
    gan = load_recipe(ROOT / "recipes" / "hifigan-tiny.yaml")
    assert gan.adversarial_config is gan.section("adversarial") and gan.discriminators
    assert isinstance(build_task(load_recipe(TINY_WAVENET)), LikelihoodTask)
    assert isinstance(VQTask(TinyVQAutoencoder(AutoencoderConfig())).config, VQConfig)
