"""Name -> entry tables that other code may extend at run time (model families, tasks)."""

from __future__ import annotations

from typing import TypeVar

from wavegen.errors import UsageError

T = TypeVar("T")


def add_entry(table: dict[str, T], name: str, entry: T, what: str, replace: bool = False) -> T:
    """``table[name] = entry``; a name already taken is a UsageError unless ``replace``.
    ``what`` names the kind of entry in the message (e.g. ``"model family"``)."""
    if name in table and not replace:
        raise UsageError(f"{what} {name!r} is already registered (pass replace=True to "
                         f"replace it)")
    table[name] = entry
    return entry


def remove_entry(table: dict[str, T], name: str, what: str) -> T:
    """Remove and return ``table[name]``; a UsageError listing the known names if absent."""
    if name not in table:
        raise UsageError(f"no {what} {name!r} is registered; known: {', '.join(sorted(table))}")
    return table.pop(name)
