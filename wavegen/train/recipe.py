"""Recipes: YAML files that say what to train, on what, and how.

A recipe maps onto dataclasses, and anything they do not know is an error naming the key::

    name: wavenet-mel-tiny
    task: likelihood
    model:            # family + that family's config (WaveNetConfig fields for wavenet)
      family: wavenet
      layers: 6
      ...
    features: hifigan-16k        # a preset name, or a mapping of FeatureConfig fields
                                 # (optionally with `preset: NAME` as the base)
    data:             # DataConfig
      kind: maestro   # maestro | audio_folder | tones
      root: corpus/
      sample_rate: 16000
      crop_samples: 8192
      conditioning: roll          # none | mel | roll
    train:            # TrainConfig
      steps: 2000
      ...
    diffusion:        # sections of the recipe's task (wavegen.train.tasks): e.g.
      ...             # discriminators + adversarial (GANs), diffusion, vq

``task`` defaults to the model family's own task (wavenet: likelihood, hifigan and melgan:
adversarial). Every other top-level key must be a section of a registered task, and only the
sections of the recipe's own task may appear; each is parsed by its task into a typed value
(:meth:`Recipe.section`).

``--set key.sub=value`` overrides any entry before validation (values are parsed as YAML,
so ``--set train.steps=100 --set model.upsample_factors=[4,4]`` are typed).

Validation builds nothing: the model's and the discriminators' sizes are estimated and
checked against :mod:`wavegen.models.size`'s limits, so an absurd recipe fails at once with
one line naming the file and the key, before any data is prepared. Rates, hops and channel
counts are checked against the model config's contract
(:class:`~wavegen.models.protocols.ModelConfigContract`), then the task adds its own checks.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from wavegen.audio.features import FeatureConfig, get_preset
from wavegen.errors import ConfigError, UsageError
from wavegen.models.protocols import contract_of
from wavegen.models.registry import get_family
from wavegen.models.size import check_config_size
from wavegen.train.config import TrainConfig
from wavegen.train.tasks import get_task, section_owners
from wavegen.train.tasks.registry import CONDITIONINGS, RECIPE_KEYS, TaskSpec
from wavegen.utils.config import coerce, from_dict, to_dict

DATA_KINDS = ("tones", "maestro", "audio_folder", "codes")
LABEL_SOURCES = ("none", "folder")
#: Most audio samples in one optimiser step (batch_size x crop_samples): 2^31 (8 GiB of
#: float32 audio before any activation; also the int32 index limit of many GPU kernels).
MAX_STEP_SAMPLES = 2 ** 31


@dataclass
class DataConfig:
    """The ``data:`` section.

    Attributes:
        kind: ``maestro`` (MAESTRO-format corpus: audio + MIDI), ``audio_folder`` (any folder
            of audio files), ``codes`` (a folder of VQ-VAE codes written by ``wavegen
            encode``: the training data of the priors over codes,
            :class:`~wavegen.data.code_dataset.CodeDataset`) or ``tones`` (generated on the
            fly, for smoke tests).
        root: corpus folder (maestro, audio_folder, codes).
        sample_rate: rate the audio is resampled to (cached).
        crop_samples: samples per training example (a multiple of the hop); for ``codes``,
            codes per example.
        conditioning: what the model is conditioned on: nothing, the log-mel of the
            recipe's features, the MIDI piano roll, or (``codes`` data) the codes of
            ``upper_level``.
        hop_length: piano-roll hop in samples (for ``roll``; mel uses the features' hop).
        cache_dir: where resampled audio and features are cached (default: ROOT/.wavegen-cache).
        items_per_epoch: random crops per epoch (default: one per file, or ``size``).
        size, validation_size: items of the ``tones`` dataset.
        validation_fraction: share of files held out by ``audio_folder``.
        labels: ``none``, or ``folder`` (``audio_folder``: each file's class is its
            top-level sub-folder; the model needs that many ``global_classes``).
        stream_chunks: 1, or ``K`` > 1 for truncated backpropagation through time: each
            training item is then a contiguous stream of ``K * crop_samples`` samples that a
            batch lane reads one ``crop_samples`` chunk per step, the model's state carried
            between chunks (:mod:`wavegen.data.streams`; recurrent models such as SampleRNN).
        level: ``codes``: the level whose codes a prior learns.
        upper_level: ``codes`` with conditioning ``codes``: the coarser level an upsampler
            prior is conditioned on.
        midi_root: ``codes`` with conditioning ``roll``: the folder the codes were encoded
            from, holding each recording's MIDI file beside it.
    """

    kind: str = "tones"
    root: str | None = None
    sample_rate: int = 16000
    crop_samples: int = 8192
    conditioning: str = "none"
    hop_length: int = 256
    cache_dir: str | None = None
    items_per_epoch: int | None = None
    size: int = 256
    validation_size: int = 16
    validation_fraction: float = 0.05
    labels: str = "none"
    stream_chunks: int = 1
    level: int = 0
    upper_level: int | None = None
    midi_root: str | None = None

    def __post_init__(self) -> None:
        for key in ("sample_rate", "crop_samples", "hop_length", "size", "validation_size",
                    "stream_chunks"):
            if getattr(self, key) < 1:
                raise ConfigError(f"data.{key} must be >= 1, got {getattr(self, key)}")
        if self.items_per_epoch is not None and self.items_per_epoch < 1:
            raise ConfigError(f"data.items_per_epoch must be >= 1, got {self.items_per_epoch}")
        if not 0 <= self.validation_fraction < 1:
            raise ConfigError(f"data.validation_fraction must be in [0, 1), "
                              f"got {self.validation_fraction}")
        if self.kind not in DATA_KINDS:
            raise ConfigError(f"data.kind must be one of {DATA_KINDS}, got {self.kind!r}")
        if self.conditioning not in CONDITIONINGS:
            raise ConfigError(f"data.conditioning must be one of {CONDITIONINGS}, got {self.conditioning!r}")
        if self.kind != "tones" and not self.root:
            raise ConfigError(f"data.root is required for data.kind {self.kind}")
        if self.conditioning == "roll" and self.kind not in ("maestro", "codes"):
            raise ConfigError("data.conditioning roll needs MIDI: use data.kind maestro")
        self._check_codes()
        if self.labels not in LABEL_SOURCES:
            raise ConfigError(f"data.labels must be one of {LABEL_SOURCES}, got {self.labels!r}")
        if self.labels == "folder" and self.kind != "audio_folder":
            raise ConfigError("data.labels folder needs data.kind audio_folder")

    def _check_codes(self) -> None:
        """The ``codes`` fields: used by ``data.kind codes`` only, and consistent there."""
        if self.kind != "codes":
            for name, unset in (("upper_level", None), ("midi_root", None), ("level", 0)):
                if getattr(self, name) != unset:
                    raise ConfigError(f"data.{name} is for data.kind codes")
            if self.conditioning == "codes":
                raise ConfigError("data.conditioning codes needs data.kind codes")
            return
        if isinstance(self.level, bool) or self.level < 0:
            raise ConfigError(f"data.level must be >= 0, got {self.level}")
        if self.conditioning == "mel":
            raise ConfigError("data.kind codes: conditioning must be none, codes or roll")
        if (self.conditioning == "codes") != (self.upper_level is not None):
            raise ConfigError("data.kind codes: conditioning codes and data.upper_level go "
                              "together (an upsampler prior over level data.level, "
                              "conditioned on the coarser level data.upper_level)")
        if self.upper_level is not None and self.upper_level <= self.level:
            raise ConfigError(f"data.upper_level ({self.upper_level}) must be coarser than "
                              f"data.level ({self.level})")
        if (self.conditioning == "roll") != (self.midi_root is not None):
            raise ConfigError("data.kind codes: conditioning roll and data.midi_root go together "
                              "(the folder the codes were encoded from, with the MIDI files)")
        if self.stream_chunks != 1:
            raise ConfigError("data.kind codes trains on crops: stream_chunks must be 1")


@dataclass
class Recipe:
    """A whole recipe (see the module docstring).

    After validation it also holds ``family`` (the :class:`~wavegen.models.registry.Family`),
    ``model_config``, ``feature_config``, ``task_spec`` (the
    :class:`~wavegen.train.tasks.TaskSpec`) and ``task_configs`` (every section of the
    task, parsed; defaults for those the recipe leaves out). ``task`` is resolved to the
    family's task when the recipe names none.

    Attributes:
        sections: the task sections as given (section name -> mapping);
            :func:`recipe_from_dict` collects them from the recipe's top-level keys.
    """

    name: str = "unnamed"
    task: str | None = None
    model: dict[str, Any] = field(default_factory=dict)
    features: Any = None
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sections: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if "family" not in self.model:
            raise ConfigError("model.family is required (e.g. wavenet)")
        family = get_family(self.model["family"])
        self.family = family
        if self.task is None:
            self.task = family.task
        spec = get_task(self.task)
        self.task_spec = spec
        if spec.kinds and family.kind not in spec.kinds:
            raise ConfigError(f"task {spec.name} trains {' or '.join(spec.kinds)} models, but "
                              f"family {family.name} is {family.kind}")
        params = {k: v for k, v in self.model.items() if k != "family"}
        preset = params.pop("preset", None)
        if preset is not None:
            if not hasattr(family.config_class, "preset"):
                raise ConfigError(f"model.preset: family {family.name} has no presets")
            base = family.config_class.preset(preset).to_dict()
            params = {**base, **params}
        self.model_config = family.config_class.from_dict(params, "model")
        check_config_size(self.model_config, "model")
        self.feature_config = resolve_features(self.features)
        self.task_configs = parse_sections(spec, self.sections)
        check_consistency(self)
        if spec.check is not None:
            spec.check(self)

    def section(self, name: str) -> Any:
        """The parsed section ``name`` of the recipe's task (UsageError if it has none)."""
        if name not in self.task_configs:
            raise UsageError(f"task {self.task} has no recipe section {name!r}")
        return self.task_configs[name]

    @property
    def discriminators(self) -> dict[str, Any]:
        """The ``discriminators:`` section of an adversarial recipe ({} for other tasks)."""
        return self.task_configs.get("discriminators", {})

    @property
    def adversarial_config(self):
        """The parsed ``adversarial:`` section (an AdversarialConfig; None for other tasks)."""
        return self.task_configs.get("adversarial")

    def to_dict(self) -> dict[str, Any]:
        """Plain values that :func:`recipe_from_dict` reads back to an equal recipe."""
        out = {"name": self.name, "task": self.task,
               "model": {"family": self.model["family"], **self.model_config.to_dict()},
               "features": None if self.feature_config is None else self.feature_config.to_dict(),
               "data": to_dict(self.data), "train": to_dict(self.train)}
        for section in self.task_spec.sections:
            out[section.name] = section.dump(self.task_configs[section.name])
        return out


def parse_sections(spec: TaskSpec, sections: dict[str, Any]) -> dict[str, Any]:
    """Every section of task ``spec`` parsed from ``sections`` (name -> mapping; a missing
    or empty one parses from ``{}``). A section of another task, an unknown one, or a
    required one left out is a ConfigError."""
    owners = section_owners()
    for name in sections:
        if spec.section(name) is not None:
            continue
        if name in owners:
            tasks = ", ".join(owners[name])
            raise ConfigError(f"the {name} section belongs to task {tasks}, but this recipe's "
                              f"task is {spec.name}")
        raise ConfigError(f"{name!r} is not a section of any task")
    parsed = {}
    for section in spec.sections:
        raw = sections.get(section.name)
        if raw is None and section.required:
            raise ConfigError(f"task {spec.name} needs a {section.name} section")
        raw = {} if raw is None else coerce(raw, dict, f"recipe.{section.name}")
        parsed[section.name] = section.parse(dict(raw), section.name)
    return parsed


def resolve_features(spec: Any) -> FeatureConfig | None:
    """A preset name, a mapping of FeatureConfig fields (optionally ``preset:`` base), or None."""
    if spec is None:
        return None
    if isinstance(spec, str):
        return get_preset(spec)
    if isinstance(spec, dict):
        spec = dict(spec)
        base = spec.pop("preset", None)
        if base is not None:
            # Through from_dict, so the overriding values are type-checked like any other.
            return FeatureConfig.from_dict({**get_preset(base).to_dict(), **spec, "name": "custom"})
        return FeatureConfig.from_dict(spec)
    raise ConfigError(f"features must be a preset name or a mapping, got {type(spec).__name__}")


def check_consistency(recipe: Recipe) -> None:
    """Cross-section checks: rates, hops and channel counts must agree.

    The model side comes from its config's contract (conditioning channels, hop, rate);
    the task's accepted conditionings are checked here, its own checks after.
    """
    data, features, spec = recipe.data, recipe.feature_config, recipe.task_spec
    if data.kind == "codes":
        _check_codes_recipe(recipe)
        return
    contract = contract_of(recipe.model_config)
    if contract.sample_rate is not None and contract.sample_rate != data.sample_rate:
        raise ConfigError(f"model.sample_rate ({contract.sample_rate}) != data.sample_rate "
                          f"({data.sample_rate})")
    if features is not None and features.sample_rate != data.sample_rate:
        raise ConfigError(f"features are for {features.sample_rate} Hz but data.sample_rate is "
                          f"{data.sample_rate}")
    if spec.conditionings and data.conditioning not in spec.conditionings:
        raise ConfigError(f"task {spec.name} trains on data.conditioning "
                          f"{' or '.join(spec.conditionings)}: set data.conditioning: "
                          f"{spec.conditionings[0]} (got {data.conditioning})")
    local, model_hop = contract.conditioning_channels, contract.hop_length
    if data.conditioning == "none" and local:
        raise ConfigError(f"the model takes {local} conditioning channels but "
                          f"data.conditioning is none")
    if data.conditioning == "mel":
        if features is None:
            raise ConfigError("data.conditioning mel needs a features section")
        if local != features.n_mels or model_hop != features.hop_length:
            raise ConfigError(f"mel conditioning: the model's mel channels/hop_length ({local}/"
                              f"{model_hop or 0}) must equal features n_mels/hop_length "
                              f"({features.n_mels}/{features.hop_length})")
    if data.conditioning == "roll":
        from wavegen.data.midi import PianoRollConfig
        channels = PianoRollConfig(data.sample_rate, data.hop_length).num_channels
        if local != channels or model_hop != data.hop_length:
            raise ConfigError(f"roll conditioning: the model's channels/hop_length ({local}/"
                              f"{model_hop or 0}) must equal the piano roll's "
                              f"{channels}/{data.hop_length}")
    hop = features.hop_length if data.conditioning == "mel" else data.hop_length
    if data.conditioning != "none" and data.crop_samples % hop:
        raise ConfigError(f"data.crop_samples ({data.crop_samples}) must be a multiple of the hop ({hop})")
    step_samples = data.crop_samples * recipe.train.batch_size
    if step_samples > MAX_STEP_SAMPLES:
        raise ConfigError(f"data.crop_samples x train.batch_size = {data.crop_samples} x "
                          f"{recipe.train.batch_size} = {step_samples} samples per step, over "
                          f"the limit of 2^31 = {MAX_STEP_SAMPLES}")


def _check_codes_recipe(recipe: Recipe) -> None:
    """A recipe on ``data.kind codes`` trains a prior over codes whose conditioning is the
    data's; the rest (codebook sizes, hops, fingerprint) is checked against the codes files
    when the datasets are built (:func:`wavegen.train.build.build_datasets`)."""
    data, config = recipe.data, recipe.model_config
    if recipe.task != "likelihood" or not hasattr(config, "upper_ratio"):
        raise ConfigError(f"data.kind codes trains a prior over codes (model.family prior, "
                          f"task likelihood), not family {recipe.model['family']}")
    if config.conditioning != data.conditioning:
        raise ConfigError(f"model.conditioning ({config.conditioning}) must equal "
                          f"data.conditioning ({data.conditioning})")
    if config.level != data.level:
        raise ConfigError(f"model.level ({config.level}) must equal data.level ({data.level})")
    if config.sample_rate != data.sample_rate:
        raise ConfigError(f"model.sample_rate ({config.sample_rate}) != data.sample_rate "
                          f"({data.sample_rate})")
    if data.conditioning == "codes" and data.crop_samples % config.upper_ratio:
        raise ConfigError(f"data.crop_samples ({data.crop_samples} codes) must be a multiple "
                          f"of model.upper_ratio ({config.upper_ratio})")


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``["train.steps=100", ...]`` applied to a raw recipe dict (values parsed as YAML)."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set needs key=value, got {item!r}")
        key, text = item.split("=", 1)
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConfigError(f"--set {key}: cannot parse value {text!r}") from None
        node = raw
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: {part} is not a section")
            node = child
        node[parts[-1]] = value
    return raw


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, override and validate a recipe file; every ConfigError names the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: recipe not found")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (a recipe is UTF-8 YAML)") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: invalid YAML{where}") from None
    try:
        return recipe_from_dict(apply_overrides(_as_mapping(raw), overrides or []))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _as_mapping(raw: Any) -> dict[str, Any]:
    """The parsed YAML of a recipe file: a mapping (an empty file is an empty recipe)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"a recipe must be a YAML mapping (key: value lines), got "
                          f"{type(raw).__name__}")
    return raw


def recipe_from_dict(raw: dict[str, Any]) -> Recipe:
    """Validate a recipe given as plain values (unknown keys and wrong types are errors).

    Top-level keys other than the :class:`Recipe` fields are task sections: a key no
    registered task owns is an unknown key, and a section that is not a mapping is refused
    before anything else is checked.
    """
    raw = _as_mapping(raw)
    owners = section_owners()
    fields = [key for key in RECIPE_KEYS if key != "sections"]
    unknown = sorted(key for key in raw if key not in fields and key not in owners)
    if unknown:
        raise ConfigError(f"recipe: unknown key(s) {', '.join(map(str, unknown))} (known: "
                          f"{', '.join(fields)}; task sections: {', '.join(sorted(owners))})")
    sections = {}
    for key in owners:
        if key in raw:
            value = raw[key]
            sections[key] = None if value is None else coerce(value, dict, f"recipe.{key}")
    plain = {key: value for key, value in raw.items() if key not in owners}
    return from_dict(Recipe, {**plain, "sections": sections}, "recipe")
