"""Training tasks by name: how a recipe's task is checked, configured and built.

A :class:`TaskSpec` is everything a recipe needs to know about a training objective:

* the recipe **sections** it owns (``adversarial:`` + ``discriminators:`` for GANs,
  ``diffusion:``, ``vq:``), each parsed into a typed value when the recipe is read; a
  section of another task is refused in a recipe of this one;
* which model **kinds** it trains and which ``data.conditioning`` values it accepts;
* an optional **check** of the whole recipe (after the generic cross-section checks);
* **build**: ``build(recipe, model) -> Task``, with the model already constructed.

The registry is open like the model families' (:mod:`wavegen.models.registry`):
:func:`register_task` adds a task at run time and recipes can name it at once.
``wavegen.train.tasks`` registers the four built-in tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from torch import nn

from wavegen.errors import ConfigError
from wavegen.models.protocols import check_kind
from wavegen.utils.registry import add_entry, remove_entry

if TYPE_CHECKING:
    from wavegen.train.recipe import Recipe
    from wavegen.train.tasks.base import Task

#: Top-level recipe keys that are not task sections (the fields of
#: :class:`~wavegen.train.recipe.Recipe`); no task may own a section of these names.
RECIPE_KEYS = ("name", "task", "model", "features", "data", "train", "sections")
#: Values of ``data.conditioning`` (mirrored by :class:`~wavegen.train.recipe.DataConfig`).
CONDITIONINGS = ("none", "mel", "roll", "codes")


def _config_parser(config_class: type) -> Callable[[dict[str, Any], str], Any]:
    def parse(raw: dict[str, Any], where: str) -> Any:
        return config_class.from_dict(raw, where)
    return parse


def _to_dict(value: Any) -> Any:
    return value.to_dict()


@dataclass(frozen=True)
class Section:
    """One top-level recipe section that a task owns.

    Attributes:
        name: the recipe key (``diffusion``).
        parse: ``parse(raw, where) -> value``: the section's mapping (``{}`` when the
            recipe leaves it out) to a typed, validated value; errors are ConfigErrors
            whose message starts with ``where`` (the section name).
        dump: ``dump(value) -> plain values`` that ``parse`` reads back to an equal value
            (``Recipe.to_dict()`` writes it).
        required: a recipe of the task must give the section.
    """

    name: str
    parse: Callable[[dict[str, Any], str], Any]
    dump: Callable[[Any], Any]
    required: bool = False

    @classmethod
    def of(cls, name: str, config_class: type, required: bool = False) -> "Section":
        """The section of a config class with ``from_dict(data, where)`` and ``to_dict()``."""
        return cls(name, _config_parser(config_class), _to_dict, required)


@dataclass(frozen=True)
class TaskSpec:
    """A training task as recipes see it (see the module docstring).

    Attributes:
        name: the recipe's ``task:`` value.
        build: ``build(recipe, model) -> Task``; the model is built (and seeded) already.
        sections: the recipe sections this task owns.
        check: ``check(recipe)`` raising a one-line ConfigError; runs after the generic
            checks of :func:`wavegen.train.recipe.check_consistency`.
        kinds: model kinds (:data:`wavegen.models.protocols.KINDS`) it trains; () = any.
        conditionings: ``data.conditioning`` values it accepts; () = any.
    """

    name: str
    build: Callable[["Recipe", nn.Module], "Task"]
    sections: tuple[Section, ...] = ()
    check: Callable[["Recipe"], None] | None = None
    kinds: tuple[str, ...] = ()
    conditionings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ConfigError(f"a task needs an identifier as its name, got {self.name!r}")
        if not callable(self.build) or (self.check is not None and not callable(self.check)):
            raise ConfigError(f"task {self.name}: build (and check, when given) must be callable")
        object.__setattr__(self, "sections", tuple(self.sections))
        object.__setattr__(self, "kinds", tuple(self.kinds))
        object.__setattr__(self, "conditionings", tuple(self.conditionings))
        names = [section.name for section in self.sections]
        for name in names:
            if not isinstance(name, str) or not name.isidentifier() or name in RECIPE_KEYS:
                raise ConfigError(f"task {self.name}: {name!r} cannot be a recipe section "
                                  f"(an identifier other than {', '.join(RECIPE_KEYS)})")
        if len(set(names)) != len(names):
            raise ConfigError(f"task {self.name}: a section is listed twice in {names}")
        for kind in self.kinds:
            check_kind(kind)
        for conditioning in self.conditionings:
            if conditioning not in CONDITIONINGS:
                raise ConfigError(f"task {self.name}: unknown conditioning {conditioning!r}; "
                                  f"known: {', '.join(CONDITIONINGS)}")

    def section(self, name: str) -> Section | None:
        """The section called ``name`` of this task (None if it owns none of that name)."""
        return next((s for s in self.sections if s.name == name), None)


TASKS: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec, replace: bool = False) -> TaskSpec:
    """Add ``spec`` to :data:`TASKS`; a name already taken is a UsageError unless ``replace``."""
    if not isinstance(spec, TaskSpec):
        raise ConfigError(f"register_task takes a TaskSpec, got {type(spec).__name__}")
    return add_entry(TASKS, spec.name, spec, "task", replace)


def unregister_task(name: str) -> TaskSpec:
    """Remove the task called ``name``; returns it (UsageError if there is none)."""
    return remove_entry(TASKS, name, "task")


def get_task(name: Any) -> TaskSpec:
    """The task called ``name`` (a ConfigError listing the known ones otherwise)."""
    if isinstance(name, str) and name in TASKS:
        return TASKS[name]
    raise ConfigError(f"unknown task {name!r}; known: {', '.join(sorted(TASKS))}")


def section_owners() -> dict[str, list[str]]:
    """Section name -> the (sorted) names of the registered tasks that own it."""
    owners: dict[str, list[str]] = {}
    for spec in TASKS.values():
        for section in spec.sections:
            owners.setdefault(section.name, []).append(spec.name)
    return {name: sorted(tasks) for name, tasks in owners.items()}


__all__ = ["CONDITIONINGS", "RECIPE_KEYS", "Section", "TASKS", "TaskSpec", "get_task",
           "register_task", "section_owners", "unregister_task"]
