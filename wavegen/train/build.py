"""From a validated recipe to the objects the trainer needs: datasets, model, task."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from wavegen.checkpoint import BundleInfo
from wavegen.errors import ConfigError
from wavegen.train.recipe import Recipe
from wavegen.train.tasks.base import Task


def build_datasets(recipe: Recipe):
    """(train, validation) datasets for the recipe's ``data`` section; with
    ``data.stream_chunks`` K > 1 the training set is :class:`~wavegen.data.streams.StreamChunks`
    over crops K times as long (truncated BPTT), the validation set plain crops."""
    train, validation = _build_datasets(recipe)
    chunks = recipe.data.stream_chunks
    if chunks == 1:
        return train, validation
    from wavegen.data.streams import StreamChunks

    conditioning = recipe.data.conditioning
    hop = (recipe.feature_config.hop_length if conditioning == "mel"
           else recipe.data.hop_length if conditioning == "roll" else None)
    return StreamChunks(train, chunks, hop), validation


def _build_datasets(recipe: Recipe):
    data, features = recipe.data, recipe.feature_config
    long = data.crop_samples * data.stream_chunks  # training crops (streams)
    mel_features = features if data.conditioning == "mel" else None
    seed = recipe.train.seed
    if data.kind == "tones":
        from wavegen.data.synthetic import ToneDataset
        return (ToneDataset(data.size, data.sample_rate, long, mel_features, seed),
                ToneDataset(data.validation_size, data.sample_rate, data.crop_samples,
                            mel_features, seed, split="validation"))
    if data.kind == "codes":
        return _code_datasets(recipe)
    cache_dir = data.cache_dir or str(Path(data.root) / ".wavegen-cache")
    if data.kind == "maestro":
        from wavegen.data.maestro import MaestroDataset
        from wavegen.data.midi import PianoRollConfig
        roll = PianoRollConfig(data.sample_rate, data.hop_length) if data.conditioning == "roll" else None
        hop = features.hop_length if data.conditioning == "mel" else data.hop_length

        def make(split: str):
            return MaestroDataset(data.root, split=split, sample_rate=data.sample_rate,
                                  crop_samples=long if split == "train" else data.crop_samples,
                                  hop_length=hop, roll=roll,
                                  features=mel_features, cache_dir=cache_dir, seed=seed,
                                  items_per_epoch=data.items_per_epoch)
        return make("train"), make("validation")
    from wavegen.data.audio_folder import AudioFolderDataset

    label_names(recipe)  # the model must have room for the classes (checked before caching)

    def make_folder(split: str):
        crop = long if split == "train" else data.crop_samples
        return AudioFolderDataset(data.root, data.sample_rate, crop, mel_features,
                                  cache_dir, seed, split=split,
                                  validation_fraction=data.validation_fraction,
                                  items_per_epoch=data.items_per_epoch,
                                  labels=data.labels == "folder")
    return make_folder("train"), make_folder("validation")


def _code_datasets(recipe: Recipe):
    """Train / validation :class:`~wavegen.data.code_dataset.CodeDataset` of a prior's
    recipe, checked against the prior's config (codebook sizes, hop, rate, the upper
    level's ratio); the prior's ``fingerprint`` is filled in from the codes when the recipe
    leaves it empty, and must match them otherwise."""
    from wavegen.data.code_dataset import CodeDataset

    data, config = recipe.data, recipe.model_config
    fingerprint = config.fingerprint or None

    def make(split: str) -> CodeDataset:
        return CodeDataset(data.root, data.level, data.crop_samples, seed=recipe.train.seed,
                           split=split, upper_level=data.upper_level,
                           validation_fraction=data.validation_fraction,
                           items_per_epoch=data.items_per_epoch if split == "train" else None,
                           fingerprint=fingerprint, midi_root=data.midi_root)

    train = make("train")
    checks = [("codebook_size", train.codebook_size), ("code_hop", train.hop_length),
              ("sample_rate", train.sample_rate)]
    if data.upper_level is not None:
        checks += [("upper_codebook_size", train.upper_codebook_size),
                   ("upper_ratio", train.ratio)]
    if data.conditioning == "roll":
        from wavegen.data.midi import PianoRollConfig
        checks.append(("roll_channels",
                       PianoRollConfig(train.sample_rate, train.hop_length).num_channels))
    for name, value in checks:
        if getattr(config, name) != value:
            raise ConfigError(f"model.{name} is {getattr(config, name)} but the level-"
                              f"{data.level} codes under {data.root} need {value}")
    config.fingerprint = train.fingerprint
    return train, make("validation")


def label_names(recipe: Recipe) -> list[str]:
    """The class names of a labelled corpus (``data.labels``), else ``[]``; a ConfigError
    when the model has fewer ``global_classes`` than there are classes."""
    if recipe.data.labels == "none":
        return []
    from wavegen.data.audio_folder import folder_labels

    names = folder_labels(recipe.data.root)
    classes = getattr(recipe.model_config, "global_classes", None)
    if classes is None:
        raise ConfigError(f"data.labels {recipe.data.labels}: model family "
                          f"{recipe.model['family']} takes no class labels")
    if classes < len(names):
        raise ConfigError(f"data.labels: {recipe.data.root} has {len(names)} classes "
                          f"({', '.join(names[:4])}{', ...' if len(names) > 4 else ''}) but "
                          f"model.global_classes is {classes}")
    return names


def build_model(recipe: Recipe) -> nn.Module:
    """The recipe's model, freshly initialised from the global RNG."""
    return recipe.family.model_class(recipe.model_config)


def build_task(recipe: Recipe) -> Task:
    """The model (seeded by ``train.seed``) inside the recipe's task, built by the task's
    :class:`~wavegen.train.tasks.TaskSpec` (anything else the task trains, e.g. a GAN's
    discriminators, is initialised after the model from the same seeded stream)."""
    torch.manual_seed(recipe.train.seed)
    return recipe.task_spec.build(recipe, build_model(recipe))


def bundle_info(recipe: Recipe) -> BundleInfo:
    """What the run's bundles record: family, model config, rate, features, the
    conditioning the model is trained on (``data.conditioning``) and, for a diffusion
    model, its process (the recipe's ``diffusion:`` section), so inference never has to
    read the recipe back."""
    process = recipe.task_configs.get("diffusion")
    extra: dict = {"recipe_name": recipe.name}
    labels = label_names(recipe)
    if labels:
        extra["labels"] = labels
    return BundleInfo(recipe.model["family"], recipe.model_config, recipe.data.sample_rate,
                      recipe.feature_config, extra=extra,
                      conditioning=recipe.data.conditioning,
                      process=None if process is None else process.to_dict())
