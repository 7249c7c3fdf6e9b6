"""Models shipped inside the package: music out of the box, nothing downloaded.

A few trained models travel with wavegen itself, under this folder. List them, then use one
by name wherever a bundle path would go::

    wavegen models                      # name, verb, size, availability, description
    wavegen models --json               # the same as a JSON list
    wavegen sample --model piano --midi song.mid -o song.wav
    wavegen vocode --model piano-vocoder --wav take.wav -o resynth.wav

``--model NAME`` replaces the positional bundle path of ``wavegen sample`` and ``wavegen
vocode`` (give one or the other, not both); everything else about the command is unchanged.
A model is used by one verb: a generator (``sample``) or a vocoder (``vocode``); naming it
with the other verb is a one-line error that says which command to use. Each model's folder
may hold a ``MODEL_CARD.md`` (what it was trained on, how well it does, its limits);
``wavegen models`` tells where they are. wavegen never downloads anything: a model whose
folder is missing (an install without the model files) is listed as ``missing`` and using
it is a one-line :class:`~wavegen.errors.CheckpointError`.

The index is ``models.json`` in this folder::

    {"wavegen_models": 1,
     "models": [{"name": "piano", "path": "piano", "verb": "sample",
                 "description": "MIDI -> piano audio, 16 kHz"}]}

Rules, each checked with a one-line :class:`~wavegen.errors.CheckpointError`:

* ``wavegen_models`` is the format version, 1; no other top-level keys than the two above,
  and a model has the keys ``name``, ``path``, ``verb`` and optionally ``description``;
* ``name`` is non-empty, made of letters, digits, ``.``, ``_`` and ``-``, and unique;
* ``verb`` is ``sample`` or ``vocode``;
* ``path`` is relative to the index's folder, with ``/`` separators, and stays inside that
  folder once symbolic links are resolved (the rule of pipeline manifests,
  :func:`wavegen.inference.manifest.contained_path`); it names a bundle folder (with
  ``config.json``) or a pipeline folder (with ``pipeline.json``).

Library use: :func:`read_index` lists the models (:class:`PretrainedModel`) and
:func:`resolve_model` gives the folder of one, ready for :func:`wavegen.sample.sample` or
:func:`wavegen.vocode.load_vocoder`. Importing this module imports no torch (reading the
index does, through the shared path check of :mod:`wavegen.inference.manifest`).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from wavegen.errors import CheckpointError, UsageError

#: The folder of the shipped models and of their index (looked up at call time, so tests
#: can point it elsewhere).
PRETRAINED_DIR = Path(__file__).parent
INDEX_FILE = "models.json"
FORMAT_VERSION = 1
#: The verbs a model can be used by, with what each kind of model is called.
VERBS = {"sample": "generator", "vocode": "vocoder"}
#: The file that makes a folder a usable model: a bundle's config, or a pipeline manifest
#: (:data:`wavegen.checkpoint.CONFIG_FILE`, :data:`wavegen.inference.manifest.MANIFEST_FILE`).
MODEL_FILES = ("config.json", "pipeline.json")
CARD_FILE = "MODEL_CARD.md"

_KEYS = {"wavegen_models", "models"}
_MODEL_KEYS = {"name", "path", "verb", "description"}
_REQUIRED_MODEL_KEYS = {"name", "path", "verb"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class PretrainedModel:
    """One entry of the index: ``path`` is the model's folder (resolved, inside the
    index's folder), ``verb`` the command that uses it (``sample`` or ``vocode``)."""

    name: str
    path: Path
    verb: str
    description: str

    @property
    def card(self) -> Path | None:
        """The model's ``MODEL_CARD.md``, or None when its folder has none."""
        card = self.path / CARD_FILE
        return card if card.is_file() else None

    @property
    def size_bytes(self) -> int:
        """Bytes of all files under the model's folder (recursively; 0 when it is missing).
        A pipeline's size includes the bundles inside its folder."""
        if not self.path.is_dir():
            return 0
        total = 0
        for root, _, files in os.walk(self.path):
            for name in files:
                try:
                    total += os.stat(os.path.join(root, name)).st_size
                except OSError:  # a dangling link: nothing to count
                    pass
        return total

    @property
    def available(self) -> bool:
        """Whether the folder exists and holds a bundle's config.json or a pipeline.json."""
        return self.path.is_dir() and any((self.path / name).is_file() for name in MODEL_FILES)


def read_index(directory: str | os.PathLike | None = None) -> list[PretrainedModel]:
    """The models of the index ``models.json`` in ``directory`` (default
    :data:`PRETRAINED_DIR`), in the index's order, format-checked (see the module
    docstring); the models' folders need not exist."""
    from wavegen.inference.manifest import contained_path
    from wavegen.utils.json_manifest import read_versioned_json

    folder = Path(PRETRAINED_DIR if directory is None else directory)
    file = folder / INDEX_FILE
    if not file.is_file():
        raise CheckpointError(f"{file}: missing (the index of the models shipped with wavegen)")
    data = read_versioned_json(file, "wavegen_models", FORMAT_VERSION, _KEYS,
                               "an index of models")
    entries = data.get("models")
    if not isinstance(entries, list):
        raise CheckpointError(f"{file}: models must be a list of objects with name, path and "
                              f"verb")
    models: list[PretrainedModel] = []
    seen: set[str] = set()
    for number, entry in enumerate(entries, 1):
        where = f"{file}: model {number}"
        if not isinstance(entry, dict):
            raise CheckpointError(f"{where}: must be an object with name, path and verb, got "
                                  f"{json.dumps(entry)[:80]}")
        unknown = sorted(set(entry) - _MODEL_KEYS)
        if unknown:
            raise CheckpointError(f"{where}: unknown key {unknown[0]!r} (known: "
                                  f"{', '.join(sorted(_MODEL_KEYS))})")
        absent = sorted(_REQUIRED_MODEL_KEYS - set(entry))
        if absent:
            raise CheckpointError(f"{where}: no {absent[0]!r}")
        name = entry["name"]
        if not isinstance(name, str) or not name:
            raise CheckpointError(f"{where}: name must be a non-empty string, got {name!r}")
        if not _NAME.fullmatch(name):
            raise CheckpointError(f"{where}: name {name!r} may hold only letters, digits, '.', "
                                  f"'_' and '-' (and starts with a letter or digit)")
        if name in seen:
            raise CheckpointError(f"{where}: name {name!r} is used twice (names are unique)")
        seen.add(name)
        verb = entry["verb"]
        if verb not in VERBS:
            raise CheckpointError(f"{where} ({name}): verb must be one of "
                                  f"{', '.join(VERBS)}, got {verb!r}")
        description = entry.get("description", "")
        if not isinstance(description, str):
            raise CheckpointError(f"{where} ({name}): description must be a string")
        path = contained_path(folder, entry["path"], f"{where} ({name}): path", must_exist=False)
        models.append(PretrainedModel(name, path, verb, " ".join(description.split())))
    return models


def find_model(name: str) -> PretrainedModel:
    """The index entry called ``name``; an unknown name is a one-line UsageError that lists
    the known ones."""
    models = read_index()
    for model in models:
        if model.name == name:
            return model
    if not models:
        raise UsageError(f"unknown model {name!r}: no models are shipped with this wavegen")
    raise UsageError(f"unknown model {name!r}; shipped models: "
                     f"{', '.join(m.name for m in models)} (see 'wavegen models')")


def resolve_model(name: str, verb: str | None = None) -> Path:
    """The folder of the shipped model ``name`` (a bundle or a pipeline), to use wherever a
    bundle path goes.

    An unknown name is a one-line UsageError listing the known ones. With ``verb``
    (``sample`` or ``vocode``), a model meant for the other verb is a UsageError that names
    the right command. A model whose folder is missing or holds neither config.json nor
    pipeline.json is a one-line CheckpointError (nothing is downloaded).
    """
    if verb is not None and verb not in VERBS:
        raise ValueError(f"verb must be one of {', '.join(VERBS)}, got {verb!r}")
    model = find_model(name)
    if verb is not None and model.verb != verb:
        raise UsageError(f"{name} is a {VERBS[model.verb]}, not a {VERBS[verb]}: use "
                         f"`wavegen {model.verb} --model {name}`")
    if not model.available:
        what = "does not exist" if not model.path.is_dir() else \
            f"holds neither {' nor '.join(MODEL_FILES)}"
        raise CheckpointError(f"model {name!r} is not installed: its folder {model.path} {what} "
                              f"(wavegen downloads nothing; reinstall wavegen with its model "
                              f"files)")
    return model.path
