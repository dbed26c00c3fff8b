"""Benchmarks by name: ``BENCHMARKS`` maps a name to a loader returning ``BenchmarkData``.

Every loader is called as ``loader(data=None, revision=None, **options)``: ``data`` is a local folder or
file (None = the benchmark's public source, e.g. the Hub dataset ``ys-zong/VLGuard``), ``revision`` pins
that source. Loaders live in their own modules and are imported only when chosen, so listing the
registry (``vlguard ls``) stays fast. Adding a benchmark is one line:
``"name": _lazy("module:function", "one-line description")``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from vlguard.benchmarks.base import BenchmarkData
from vlguard.errors import ConfigError


def _lazy(target: str, description: str) -> Callable[..., BenchmarkData]:
    """A loader that imports ``target`` (``"module:function"``) when called; ``__doc__`` is ``description``."""
    module, function = target.split(":")

    def load(**kwargs: Any) -> BenchmarkData:
        loader: Callable[..., BenchmarkData] = getattr(importlib.import_module(module), function)
        return loader(**kwargs)

    load.__doc__ = description
    load.__qualname__ = load.__name__ = f"{module}.{function}"
    return load


BENCHMARKS: dict[str, Callable[..., BenchmarkData]] = {
    "vlguard-test": _lazy("vlguard.benchmarks.vlguard:load_vlguard_test", "VLGuard test set (1,558 prompts)"),
    "vlguard-train": _lazy("vlguard.benchmarks.vlguard:load_vlguard_train", "VLGuard train set as prompts"),
    "figstep": _lazy("vlguard.benchmarks.figstep:load_figstep", "FigStep typographic attack (500)"),
    "figstep-tiny": _lazy("vlguard.benchmarks.figstep:load_figstep_tiny", "FigStep on SafeBench-Tiny (50)"),
    "xstest": _lazy("vlguard.benchmarks.xstest:load_xstest", "XSTest over-refusal (250 safe + 200 unsafe)"),
    "advbench": _lazy("vlguard.benchmarks.advbench:load_advbench", "AdvBench (520), option suffix=..."),
}


def load_benchmark(
    name: str, data: str | None = None, revision: str | None = None, **options: Any
) -> BenchmarkData:
    """Load benchmark ``name`` from ``data`` (a local path) or its public source pinned to ``revision``."""
    try:
        loader = BENCHMARKS[name]
    except KeyError:
        raise ConfigError(f"unknown benchmark {name!r}; known: {', '.join(sorted(BENCHMARKS))}") from None
    return loader(data=data, revision=revision, **options)


def describe_benchmarks() -> dict[str, str]:
    """Name → one-line description, for ``vlguard ls``."""
    return {name: (loader.__doc__ or "").strip() for name, loader in BENCHMARKS.items()}
