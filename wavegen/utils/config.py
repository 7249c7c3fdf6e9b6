"""Typed construction of config dataclasses from plain dicts (JSON, YAML recipes).

``from_dict(cls, data, where)`` refuses unknown keys and values of the wrong type with a
one-line :class:`~wavegen.errors.ConfigError` naming the key (``model.layers must be int,
got str 'ten'``). It accepts JSON's spellings: an int where a float is expected, a list
where a tuple is expected, ``null`` for optional fields. Supported annotations: ``int``,
``float``, ``str``, ``bool``, ``X | None``, ``tuple[T, ...]``, ``list[T]``, ``Literal``
values, unions of those, nested config dataclasses, and ``dict``/``Any`` (taken as is).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import math
import types
import typing
from typing import Any

from wavegen.errors import ConfigError


def from_dict(cls: type, data: Any, where: str | None = None) -> Any:
    """Build dataclass ``cls`` from ``data`` (a mapping), checking keys and types."""
    where = where or cls.__name__
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} "
                          f"(known: {', '.join(sorted(fields))})")
    values = {key: coerce(value, hints[key], f"{where}.{key}") for key, value in data.items()}
    return cls(**values)


def to_dict(obj: Any) -> Any:
    """A dataclass (possibly nested) as plain JSON-able values (tuples become lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) < 40 else text[:37] + '...'}"


def coerce(value: Any, annotation: Any, where: str) -> Any:
    """``value`` checked against ``annotation`` (converted where JSON spells it differently)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if annotation is dict or origin in (dict, collections.abc.Mapping):
        if isinstance(value, dict):
            return value
        raise ConfigError(f"{where} must be a mapping, got {_describe(value)}")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in args:
            if option is type(None):
                continue
            try:
                return coerce(value, option, where)
            except ConfigError as exc:
                errors.append(str(exc))
        names = " or ".join(_type_name(a) for a in args)
        hint = next((h for a in args if (h := _spelling_hint(value, a))), "")
        raise ConfigError(f"{where} must be {names}, got {_describe(value)}{hint}")
    if origin is typing.Literal:
        if value in args:
            return value
        raise ConfigError(f"{where} must be one of {', '.join(map(repr, args))}, got {value!r}")
    if origin in (tuple, list, collections.abc.Sequence):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {_describe(value)}")
        if origin is tuple and args and args[-1] is not Ellipsis:  # tuple[A, B]: fixed length
            if len(value) != len(args):
                raise ConfigError(f"{where} must be a list of {len(args)} values, got "
                                  f"{len(value)}")
            return tuple(coerce(v, t, f"{where}[{i}]") for i, (v, t) in enumerate(zip(value, args)))
        item_type = args[0] if args else Any
        items = [coerce(v, item_type, f"{where}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        return from_dict(annotation, value, where)
    if annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"{where} must be finite, got {value!r}")
            return float(value)
    elif annotation is str:
        if isinstance(value, str):
            return value
    else:
        return value
    raise ConfigError(f"{where} must be {_type_name(annotation)}, got {_describe(value)}"
                      f"{_spelling_hint(value, annotation)}")


def _spelling_hint(value: Any, annotation: Any) -> str:
    """How to write ``value`` so that it is read as an ``annotation`` ('' if no idea)."""
    if annotation not in (int, float):
        return ""
    number = value
    if isinstance(value, str):
        try:
            number = float(value.strip().replace("_", ""))
        except ValueError:
            return ""
    if isinstance(number, bool) or not isinstance(number, (int, float)) \
            or not math.isfinite(number):
        return ""
    if annotation is int:
        if number != int(number) or abs(number) > 2 ** 63:
            return ""
        return f" (write it as a whole number: {int(number)})"
    return f" (YAML reads {value} as text; write {float(number)!r})"


def _type_name(annotation: Any) -> str:
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


class DictConfig:
    """Mixin for a dataclass config: ``to_dict()`` to plain values and ``from_dict()`` back,
    with unknown keys and wrong types as ConfigErrors naming the key (what a model family's
    config class needs for bundles and recipes)."""

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str | None = None):
        return from_dict(cls, data, where or cls.__name__)


def from_preset(cls: type, presets: dict[str, Any], name: str, overrides: dict[str, Any],
                what: str) -> Any:
    """``cls`` built from the preset ``presets[name]`` (a ``cls`` instance or a mapping of its
    fields) with ``overrides`` applied, type-checked like any config; an unknown name is a
    ConfigError listing the presets (``what`` names the family, e.g. ``"HiFi-GAN"``)."""
    try:
        base = presets[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown {what} preset {name!r}; choose one of "
                          f"{', '.join(presets)}") from None
    values = base.to_dict() if hasattr(base, "to_dict") else dict(base)
    return from_dict(cls, {**values, **overrides}, f"{cls.__name__} preset {name!r}")
