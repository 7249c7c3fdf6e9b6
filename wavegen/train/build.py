"""From a validated recipe to the objects the trainer needs: datasets, model, task."""

from __future__ import annotations

from pathlib import Path

import torch

from wavegen.checkpoint import BundleInfo
from wavegen.models.registry import get_family
from wavegen.train.recipe import Recipe
from wavegen.train.tasks.base import Task
from wavegen.train.tasks.likelihood import LikelihoodTask


def build_datasets(recipe: Recipe):
    """(train, validation) datasets for the recipe's ``data`` section."""
    data, features = recipe.data, recipe.feature_config
    mel_features = features if data.conditioning == "mel" else None
    seed = recipe.train.seed
    if data.kind == "tones":
        from wavegen.data.synthetic import ToneDataset
        return (ToneDataset(data.size, data.sample_rate, data.crop_samples, mel_features, seed),
                ToneDataset(data.validation_size, data.sample_rate, data.crop_samples,
                            mel_features, seed, split="validation"))
    cache_dir = data.cache_dir or str(Path(data.root) / ".wavegen-cache")
    if data.kind == "maestro":
        from wavegen.data.maestro import MaestroDataset
        from wavegen.data.midi import PianoRollConfig
        roll = PianoRollConfig(data.sample_rate, data.hop_length) if data.conditioning == "roll" else None
        hop = features.hop_length if data.conditioning == "mel" else data.hop_length

        def make(split: str):
            return MaestroDataset(data.root, split=split, sample_rate=data.sample_rate,
                                  crop_samples=data.crop_samples, hop_length=hop, roll=roll,
                                  features=mel_features, cache_dir=cache_dir, seed=seed,
                                  items_per_epoch=data.items_per_epoch)
        return make("train"), make("validation")
    from wavegen.data.audio_folder import AudioFolderDataset

    def make_folder(split: str):
        return AudioFolderDataset(data.root, data.sample_rate, data.crop_samples, mel_features,
                                  cache_dir, seed, split=split,
                                  validation_fraction=data.validation_fraction,
                                  items_per_epoch=data.items_per_epoch)
    return make_folder("train"), make_folder("validation")


def build_task(recipe: Recipe) -> Task:
    """The model (seeded by ``train.seed``) inside the recipe's task."""
    torch.manual_seed(recipe.train.seed)
    family = get_family(recipe.model["family"])
    model = family.model_class(recipe.model_config)
    if recipe.task == "adversarial":
        from wavegen.models.discriminators import build_discriminators
        from wavegen.train.tasks.adversarial import AdversarialTask

        discriminators = build_discriminators(recipe.discriminators, recipe.feature_config)
        return AdversarialTask(model, discriminators, recipe.feature_config,
                               recipe.adversarial_config)
    local_key = None if recipe.data.conditioning == "none" else recipe.data.conditioning
    return LikelihoodTask(model, local_key=local_key, features=recipe.feature_config)


def bundle_info(recipe: Recipe) -> BundleInfo:
    return BundleInfo(recipe.model["family"], recipe.model_config, recipe.data.sample_rate,
                      recipe.feature_config, extra={"recipe_name": recipe.name})
