"""Pipeline manifests: one folder that chains several bundles into one model.

Some audio takes more than one model: a MIDI -> mel model and a vocoder, or a VQ-VAE's
prior and its decoder. A manifest is a folder holding ``pipeline.json``::

    PIPELINE/
      pipeline.json
      midi_to_mel/        a bundle (config.json + model.safetensors)
      vocoder/            a bundle

    {"wavegen_pipeline": 1,
     "description": "MIDI -> mel -> audio",          (optional, free text)
     "stages": [{"bundle": "midi_to_mel"}, {"bundle": "vocoder"}]}

Rules, each checked with a one-line :class:`~wavegen.errors.CheckpointError`:

* ``wavegen_pipeline`` is the format version, 1; no other keys than the three above, and a
  stage has exactly the key ``bundle``;
* ``stages`` is a non-empty list (at most :data:`MAX_STAGES`); the first stage takes what
  the user gives (``--midi``, ``--wav`` / ``--mel``, ``--seconds``), each next one takes the
  previous one's output, and the last one makes audio;
* ``bundle`` is a path relative to the manifest's folder, with ``/`` separators, that stays
  inside that folder once symbolic links are resolved (no absolute paths, no ``..`` out);
  it names a bundle (a folder with ``config.json``) or another manifest, whose stages are
  spliced in at that place (paths inside it are relative to its own folder). A manifest
  that reaches itself again is a cycle;
* each stage's output must be what the next stage takes (same signal kind; for a mel the
  same front-end, for a roll or codes the same channels, hop and rate): this is checked
  when the bundles are loaded (:class:`~wavegen.inference.pipeline.Pipeline`).

``wavegen sample`` and ``wavegen vocode`` take a manifest folder (or its
``pipeline.json``) wherever they take a bundle. :func:`write_manifest` writes one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath
from typing import Any

from wavegen.checkpoint import CONFIG_FILE, resolve_bundle_path
from wavegen.errors import CheckpointError
from wavegen.utils.atomic import atomic_write_text
from wavegen.utils.json_manifest import read_versioned_json

MANIFEST_FILE = "pipeline.json"
FORMAT_VERSION = 1
#: Most stages in one pipeline (nested manifests included).
MAX_STAGES = 64

_KEYS = {"wavegen_pipeline", "stages", "description"}


def named_file(path: str | os.PathLike, name: str) -> Path | None:
    """The file called ``name`` that ``path`` names: ``path`` itself when it is that file, or
    ``path/name`` when ``path`` is a folder holding it; None otherwise. (How a folder of
    models is told by the file it holds: ``pipeline.json`` here, ``hierarchy.json`` for
    :mod:`wavegen.hierarchy`.)"""
    path = Path(path)
    if path.is_file() and path.name == name:
        return path
    if path.is_dir() and (path / name).is_file():
        return path / name
    return None


def contained_path(folder: Path, text: object, where: str, must_exist: bool = True) -> Path:
    """The resolved path that ``text`` (relative to ``folder``, ``/`` separators) names,
    checked to stay inside ``folder`` once symbolic links are resolved, and with
    ``must_exist`` to exist; one-line CheckpointErrors starting with ``where``."""
    relative = PurePosixPath(text) if isinstance(text, str) else None
    if relative is None or not text or relative.is_absolute() or "\\" in text \
            or (len(text) > 1 and text[1] == ":"):
        raise CheckpointError(f"{where}: must be a path relative to the manifest's folder: a "
                              f"relative path with / separators that stays inside the folder, "
                              f"got {text!r}")
    root = folder.resolve()
    target = (folder / Path(*relative.parts)).resolve() if relative.parts else root
    if target != root and root not in target.parents:
        raise CheckpointError(f"{where}: leads outside the manifest's folder {folder} (what "
                              f"it names must lie inside the folder)")
    if must_exist and not target.exists():
        raise CheckpointError(f"{where}: no such bundle in {folder}")
    return target


def manifest_file(path: str | os.PathLike) -> Path | None:
    """The ``pipeline.json`` that ``path`` (a folder or the file itself) names, or None when
    ``path`` is not a manifest."""
    return named_file(path, MANIFEST_FILE)


def is_manifest(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a pipeline manifest (folder or ``pipeline.json``)."""
    return manifest_file(path) is not None


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The parsed, format-checked ``pipeline.json`` of the manifest at ``path``."""
    file = manifest_file(path)
    if file is None:
        raise CheckpointError(f"{path}: no {MANIFEST_FILE} (not a wavegen pipeline)")
    if (file.parent / CONFIG_FILE).exists():
        raise CheckpointError(f"{file.parent}: holds both {CONFIG_FILE} and {MANIFEST_FILE}; a "
                              f"folder is either a bundle or a pipeline")
    data = read_versioned_json(file, "wavegen_pipeline", FORMAT_VERSION, _KEYS, "a manifest")
    stages = data.get("stages")
    if not isinstance(stages, list) or not stages:
        raise CheckpointError(f"{file}: stages must be a non-empty list of "
                              f'{{"bundle": PATH}} objects')
    if not isinstance(data.get("description", ""), str):
        raise CheckpointError(f"{file}: description must be a string")
    for number, stage in enumerate(stages, 1):
        if not isinstance(stage, dict) or set(stage) != {"bundle"}:
            raise CheckpointError(f"{file}: stage {number} must be an object with the one key "
                                  f"'bundle', got {json.dumps(stage)[:80]}")
        if not isinstance(stage["bundle"], str) or not stage["bundle"].strip():
            raise CheckpointError(f"{file}: stage {number}: bundle must be a non-empty path")
    return data


def _stage_path(file: Path, number: int, text: str) -> Path:
    """The folder stage ``number`` of manifest ``file`` names, checked to stay inside."""
    return contained_path(file.parent, text, f"{file}: stage {number} ({text})")


def stage_bundles(path: str | os.PathLike) -> list[Path]:
    """The bundle folders of the manifest at ``path``, in order, nested manifests spliced
    in (see the module docstring for every check)."""
    out: list[Path] = []
    _expand(manifest_file(path) or Path(path) / MANIFEST_FILE, [], out)
    return out


def _expand(file: Path, ancestors: list[Path], out: list[Path]) -> None:
    real = file.resolve()
    if real in ancestors:
        chain = " -> ".join(str(p.parent) for p in [*ancestors, real])
        raise CheckpointError(f"{file}: the pipeline contains itself (cycle: {chain})")
    data = read_manifest(file)
    for number, stage in enumerate(data["stages"], 1):
        target = _stage_path(file, number, stage["bundle"])
        nested = manifest_file(target)
        if nested is not None:
            _expand(nested, [*ancestors, real], out)
        else:
            bundle = resolve_bundle_path(target)
            if not (bundle / CONFIG_FILE).is_file():
                raise CheckpointError(f"{file}: stage {number} ({stage['bundle']}): not a "
                                      f"wavegen bundle (no {CONFIG_FILE}) nor a pipeline")
            out.append(bundle)
        if len(out) > MAX_STAGES:
            raise CheckpointError(f"{file}: more than {MAX_STAGES} stages")


def write_manifest(folder: str | os.PathLike, bundles: list[str], description: str = "") -> Path:
    """Write ``folder/pipeline.json`` naming ``bundles`` (paths relative to ``folder``) in
    order; the folder is created when needed, the file written atomically, and the result
    read back through every check of :func:`stage_bundles`."""
    folder = Path(folder)
    data: dict[str, Any] = {"wavegen_pipeline": FORMAT_VERSION,
                            "stages": [{"bundle": str(PurePosixPath(b))} for b in bundles]}
    if description:
        data["description"] = description
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / MANIFEST_FILE
    atomic_write_text(file, json.dumps(data, indent=2) + "\n")
    try:
        stage_bundles(folder)
    except CheckpointError:
        file.unlink()
        raise
    return file


__all__ = ["MANIFEST_FILE", "FORMAT_VERSION", "MAX_STAGES", "manifest_file", "is_manifest",
           "read_manifest", "stage_bundles", "write_manifest"]
