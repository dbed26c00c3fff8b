"""Things chosen by name: one shape for the benchmark, judge and backend registries.

A registry maps a name to an entry. Every entry has a ``target``, the object it stands for, named
``"package.module:attribute"`` and imported only when used (so ``vlguard ls`` and ``--help`` never
import torch), and a one-line ``description``; its subclass (``BenchmarkEntry``, ``JudgeEntry``,
``BackendEntry``) adds every other fact about the name, so that the CLI, the pipeline and the report
read them from the entry instead of keeping lists of their own.

Registering is one assignment, e.g. ``BENCHMARKS["mine"] = BenchmarkEntry("my_pkg.mine:load", ...)``
(see docs/extending.md). Assigning a bare callable instead of an entry replaces the target of a name
that is already registered and keeps its facts (what a test stub of a backend wants), or registers a
new name with the entry's default facts where every fact has a default.
"""

from __future__ import annotations

import importlib
from collections import UserDict
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, fields, replace
from typing import Any, TypeVar

from vlguard.errors import ConfigError

# What an entry stands for: "package.module:attribute" (imported when used) or the object itself.
Target = str | Callable[..., Any]


def resolve(target: Target) -> Any:
    """The object ``target`` names: ``"package.module:attribute"`` imported now, or the object itself.

    The attribute may be dotted (``"module:Class.method"``).
    """
    if not isinstance(target, str):
        return target
    module, sep, attribute = target.partition(":")
    if not sep or not module or not attribute:
        raise ValueError(f"a target is 'package.module:attribute', not {target!r}")
    found: Any = importlib.import_module(module)
    for part in attribute.split("."):
        found = getattr(found, part)
    return found


@dataclass(frozen=True)
class Entry:
    """A registered name: ``target`` (what it stands for) and a one-line ``description``.

    Calling the entry calls its target (a loader, a judge class, a backend factory) with the arguments.
    """

    target: Target
    description: str

    def load(self) -> Any:
        """The target, imported."""
        return resolve(self.target)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Import the target and call it."""
        return self.load()(*args, **kwargs)


E = TypeVar("E", bound=Entry)


class Registry(UserDict[str, E]):
    """Name → entry of one kind (``kind`` names it in messages: "benchmark", "judge", "backend").

    Ordered as registered (``vlguard ls`` lists in that order). ``entry(name)`` is the lookup that every
    user-facing path goes through: an unknown name is a ``ConfigError`` listing the known ones.
    """

    def __init__(self, kind: str, entry_type: type[E], entries: Mapping[str, E] | None = None) -> None:
        self.kind = kind
        self.entry_type = entry_type
        super().__init__(entries or {})

    def __setitem__(self, name: str, value: E | Callable[..., Any]) -> None:
        if isinstance(value, Entry):
            if not isinstance(value, self.entry_type):
                raise TypeError(
                    f"{self.kind} {name!r}: the registry holds {self.entry_type.__name__} entries, "
                    f"not a {type(value).__name__}"
                )
        elif not callable(value):
            raise TypeError(f"{self.kind} {name!r}: register a {self.entry_type.__name__}, not {value!r}")
        elif name in self.data:
            value = replace(self.data[name], target=value)
        else:
            required = [
                f.name
                for f in fields(self.entry_type)
                if f.default is MISSING
                and f.default_factory is MISSING
                and f.name not in ("target", "description")
            ]
            if required:
                raise TypeError(
                    f"register {self.kind} {name!r} as a {self.entry_type.__name__}: its facts "
                    f"{', '.join(required)} have no default to take for a bare callable"
                )
            value = self.entry_type(value, "")
        self.data[name] = value

    def entry(self, name: str) -> E:
        """The entry of ``name``; ``ConfigError`` naming the known names otherwise."""
        try:
            return self.data[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self.data))}"
            ) from None

    def descriptions(self) -> dict[str, str]:
        """Name → one-line description, in registration order (for ``vlguard ls`` and ``--help``)."""
        return {name: entry.description for name, entry in self.data.items()}
