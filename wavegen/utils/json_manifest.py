"""Reading the small versioned JSON files that tie bundles together.

``pipeline.json`` (:mod:`wavegen.inference.manifest`), ``hierarchy.json``
(:mod:`wavegen.hierarchy`) and the shipped models' ``models.json``
(:mod:`wavegen.pretrained`) share one outer format: a JSON object of at most a few
kilobytes, with a format-version key and a fixed set of keys. :func:`read_versioned_json`
checks that much, each failure a one-line :class:`~wavegen.errors.CheckpointError` naming
the file, and leaves the file's own keys to its reader.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from wavegen.errors import CheckpointError

#: Largest manifest read (they are a few lines).
MAX_BYTES = 1 << 20


def read_versioned_json(file: str | Path, version_key: str, version: int,
                        keys: Iterable[str], what: str,
                        max_bytes: int = MAX_BYTES) -> dict[str, Any]:
    """The JSON object in ``file``, checked: at most ``max_bytes``, valid UTF-8 JSON, an
    object, no key outside ``keys``, and ``version_key`` equal to ``version``.

    ``what`` names the file's role in the messages (``"a manifest"``, ``"an index of
    models"``).
    """
    file = Path(file)
    size = file.stat().st_size
    if size > max_bytes:
        raise CheckpointError(f"{file}: {size:,} bytes, too large for {what} (at most "
                              f"{max_bytes:,})")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{file}: corrupt JSON ({' '.join(str(exc).split())})") from None
    known = sorted(keys)
    if not isinstance(data, dict):
        raise CheckpointError(f"{file}: must be a JSON object with {', '.join(known)}")
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise CheckpointError(f"{file}: unknown key {unknown[0]!r} (known: {', '.join(known)})")
    found = data.get(version_key)
    if found != version or isinstance(found, bool):
        raise CheckpointError(f"{file}: {version_key} must be {version}, got {found!r}")
    return data


__all__ = ["MAX_BYTES", "read_versioned_json"]
