"""The import graph of ``src/vlguard``: no cycles, no arrow from a lower layer to a higher one, no private names.

``LAYERS`` below is the one written-down layer order (docs/design.md points here). A *unit* is a
top-level module (``vlguard.evaluate``) or a top-level package with everything in it (``vlguard.judges``);
each unit sits in one layer, highest first. A module may import from its own unit, from a unit of its
own layer, or from any lower layer; never from a higher one.

What counts as an import, for every rule:

- every ``import`` / ``from ... import`` statement anywhere in a module: at module level, inside
  functions and methods (a deferred import is still a dependency; deferring one only hides a circle),
  and inside ``if TYPE_CHECKING:`` blocks (a type-only import still means that one module knows the
  other; both directions of an arrow are design, whether or not Python runs them);
- ``from package import name`` is an import of the submodule ``package.name`` when there is one, else
  of ``package`` (its ``__init__``);
- the implicit import of a parent package (importing ``vlguard.judges.base`` runs
  ``vlguard/judges/__init__.py`` first) is not counted: a package's ``__init__`` naturally imports its
  own modules;
- module names held in strings (lazy registries, ``python -m vlguard.cli.main`` subprocesses) are not
  imports.

The rules: no cycle between modules, and none between units (two units of one layer may depend on
each other in one direction only); no import from a higher layer; no private name (``_x``, dunders
aside) taken from another module, by ``from m import _x`` or by ``m._x`` on an imported module.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from source_tree import PACKAGE, Module, parse_modules

# The layers of vlguard, highest first. The flow runs down: the CLI drives the recipes, the recipes
# drive the stages, the stages use the data and the models, and everything rests on the records.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("cli",),  # thin argparse commands
    ("curate", "demo", "hft", "report"),  # whole experiments, and the reports that read their folders
    ("evaluate", "utility"),  # the evaluation recipes: safety (run folders) and capability
    ("preflight",),  # the one settings check of every command, before anything loads or is written
    ("judges", "presets", "train"),  # judging generations; evaluation presets; the training recipe
    ("generation",),  # backends that turn requests into generations
    ("benchmarks", "models"),  # benchmark loaders; model builders, loaders and name resolution
    ("data",),  # VLGuard and other data files, images, conversations, mixtures
    ("api_client", "distributed", "metrics", "prompts", "runs"),  # services that know no dataset or model
    (
        "errors",
        "fileio",
        "metric_registry",
        "records",
        "redaction",
        "registry",
        PACKAGE,
    ),  # the foundation (``vlguard`` itself: ``__version__``)
)

# Cycles still present, each with the reason; the test fails once one is gone, so that it is removed here.
KNOWN_CYCLES: dict[frozenset[str], str] = {}


@dataclass(frozen=True)
class Import:
    """One import statement's dependency of ``source`` on ``target`` (both module names)."""

    source: str
    target: str
    line: int
    names: tuple[str, ...] = ()  # names taken from ``target`` (``from target import a, b``)

    def where(self, modules: Mapping[str, Module]) -> str:
        """``src/vlguard/x.py:12``, for messages."""
        return f"{modules[self.source].file}:{self.line}"


def unit_of(module: str) -> str:
    """``vlguard.judges.refusal`` → ``judges``; ``vlguard`` → ``vlguard``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(module: Module, modules: Mapping[str, Module]) -> Iterator[Import]:
    """Every import of a module of the package, wherever it stands in ``module`` (see the module docstring)."""
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    yield Import(module.name, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.name.split(".")
                if not module.is_package:
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if not (target == PACKAGE or target.startswith(PACKAGE + ".")):
                continue
            names: list[str] = []
            for alias in node.names:
                if f"{target}.{alias.name}" in modules:
                    yield Import(module.name, f"{target}.{alias.name}", node.lineno)
                else:
                    names.append(alias.name)
            if names:
                yield Import(module.name, target, node.lineno, tuple(names))


def _module_aliases(module: Module, modules: Mapping[str, Module]) -> dict[str, str]:
    """Local names bound to a module of the package (``import vlguard.x as y``, ``from vlguard import x``)."""
    aliases: dict[str, str] = {}
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname and alias.name in modules:
                    aliases[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                if f"{node.module}.{alias.name}" in modules:
                    aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def all_imports(modules: Mapping[str, Module]) -> list[Import]:
    """The import graph: every import of every module."""
    return [imp for module in modules.values() for imp in imports_of(module, modules)]


def layer_of(unit: str, layers: tuple[tuple[str, ...], ...]) -> int:
    """The index of ``unit``'s layer (0 is the highest)."""
    return next(i for i, layer in enumerate(layers) if unit in layer)


def _cycles(edges: Mapping[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected component of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return [_one_cycle(component, edges) for component in components]


def _one_cycle(component: list[str], edges: Mapping[str, set[str]]) -> list[str]:
    """A cycle through the first node of a strongly connected component: ``[a, b, ..., a]``."""
    members, start = set(component), component[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(edges.get(node, ())):
            if nxt == start:
                return [*paths[node], start]
            if nxt in members and nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                queue.append(nxt)
    raise AssertionError(f"no cycle through {start}")  # unreachable for a strongly connected component


def structure_problems(
    modules: Mapping[str, Module],
    layers: tuple[tuple[str, ...], ...] = LAYERS,
    known_cycles: Collection[frozenset[str]] = (),
) -> list[str]:
    """Every breach of the rules of the module docstring, one line each (empty: the structure is clean).

    A module cycle through exactly the modules of one of ``known_cycles`` is not reported.
    """
    problems: list[str] = []
    imports = all_imports(modules)
    units = {unit_of(name) for name in modules}
    placed = [unit for layer in layers for unit in layer]
    problems += [f"unit {u!r} is in no layer: add it to LAYERS" for u in sorted(units - set(placed))]
    repeated = sorted({u for u in placed if placed.count(u) > 1})
    problems += [f"unit {u!r} is in several layers" for u in repeated]
    if problems:
        return problems

    module_edges: dict[str, set[str]] = {}
    unit_edges: dict[str, set[str]] = {}
    for imp in imports:
        if imp.target not in modules:
            problems.append(f"{imp.where(modules)}: imports {imp.target}, which is no module of the package")
            continue
        if imp.target != imp.source:
            module_edges.setdefault(imp.source, set()).add(imp.target)
        source_unit, target_unit = unit_of(imp.source), unit_of(imp.target)
        if source_unit != target_unit:
            unit_edges.setdefault(source_unit, set()).add(target_unit)
            if layer_of(target_unit, layers) < layer_of(source_unit, layers):
                problems.append(
                    f"{imp.where(modules)}: {imp.source} ({source_unit}, layer {layer_of(source_unit, layers)}) "
                    f"imports {imp.target} ({target_unit}, higher layer {layer_of(target_unit, layers)})"
                )
        private = [n for n in imp.names if n.startswith("_") and not n.startswith("__")]
        if private and imp.target != imp.source:
            problems.append(
                f"{imp.where(modules)}: {imp.source} imports private name(s) {', '.join(private)} from {imp.target}"
            )
    for module in modules.values():
        aliases = _module_aliases(module, modules)
        for node in ast.walk(module.tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                problems.append(
                    f"{module.file}:{node.lineno}: {module.name} uses private name {node.attr} of "
                    f"{aliases[node.value.id]}"
                )
    problems += [
        f"import cycle between modules: {' → '.join(c)}"
        for c in _cycles(module_edges)
        if frozenset(c) not in known_cycles
    ]
    problems += [f"import cycle between units: {' → '.join(c)}" for c in _cycles(unit_edges)]
    return problems


# ---- the checks on vlguard ----------------------------------------------------------------------------


def test_vlguard_has_no_cycle_no_upward_import_and_no_private_import() -> None:
    modules = parse_modules()
    problems = structure_problems(modules, LAYERS, KNOWN_CYCLES)
    assert not problems, "\n".join(problems)
    edges: dict[str, set[str]] = {}
    for imp in all_imports(modules):
        edges.setdefault(imp.source, set()).add(imp.target)
    present = {frozenset(c) for c in _cycles(edges)}
    gone = [sorted(c) for c in KNOWN_CYCLES if c not in present]
    assert not gone, f"these cycles are gone: remove them from KNOWN_CYCLES: {gone}"


def test_the_graph_sees_the_imports_it_must_count() -> None:
    """The walk finds imports deferred into functions and type-only ones, and resolves submodules."""
    modules = parse_modules()
    edges = {(i.source, i.target) for i in all_imports(modules)}
    # `from vlguard.judges import make_judge` in a function:
    assert ("vlguard.evaluate", "vlguard.judges") in edges
    assert ("vlguard.benchmarks.base", "vlguard.data.images") in edges  # under `if TYPE_CHECKING:`
    assert ("vlguard.cli.main", PACKAGE) in edges  # `from vlguard import __version__`
    assert all(unit_of(name) in {u for layer in LAYERS for u in layer} for name in modules)


# ---- the checker itself, on packages made up for the purpose -----------------------------------------


def _package(root: Path, files: dict[str, str]) -> dict[str, Module]:
    for name, text in {"vlguard/__init__.py": "", **files}.items():
        path = root / "src" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return parse_modules(root / "src")


LOW_HIGH = (("high",), ("low",), ("vlguard",))


def test_a_clean_package_passes(tmp_path: Path) -> None:
    modules = _package(
        tmp_path,
        {
            "vlguard/high/__init__.py": "from vlguard.high import a\n",
            "vlguard/high/a.py": "from vlguard.low import helper\nfrom vlguard.high.b import B\n",
            "vlguard/high/b.py": "import vlguard.low as low\nB = low.helper\n",
            "vlguard/low.py": "def helper():\n    return 1\n",
        },
    )
    assert structure_problems(modules, LOW_HIGH) == []


def test_a_cycle_is_found_even_when_deferred_into_a_function(tmp_path: Path) -> None:
    modules = _package(
        tmp_path,
        {
            "vlguard/low/__init__.py": "",
            "vlguard/low/a.py": "from vlguard.low.b import f\n",
            "vlguard/low/b.py": "def f():\n    from vlguard.low import a\n    return a\n",
            "vlguard/high.py": "",
        },
    )
    assert structure_problems(modules, LOW_HIGH) == [
        "import cycle between modules: vlguard.low.a → vlguard.low.b → vlguard.low.a"
    ]


def test_a_type_only_cycle_between_units_is_found(tmp_path: Path) -> None:
    modules = _package(
        tmp_path,
        {
            "vlguard/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from vlguard.b import B\n",
            "vlguard/b.py": "from vlguard.c import C\n",
            "vlguard/c.py": "from vlguard import a\n",
        },
    )
    problems = structure_problems(modules, (("a", "b", "c", "vlguard"),))
    assert "import cycle between modules: vlguard.a → vlguard.b → vlguard.c → vlguard.a" in problems
    assert "import cycle between units: a → b → c → a" in problems


def test_an_upward_import_is_found(tmp_path: Path) -> None:
    modules = _package(
        tmp_path,
        {"vlguard/high.py": "", "vlguard/low.py": "def f():\n    from vlguard.high import thing\n"},
    )
    [problem] = structure_problems(modules, LOW_HIGH)
    assert problem.startswith("src/vlguard/low.py:2: vlguard.low (low, layer 1) imports vlguard.high")


def test_private_names_of_other_modules_are_found(tmp_path: Path) -> None:
    modules = _package(
        tmp_path,
        {
            "vlguard/high.py": "from vlguard.low import _secret, public\nimport vlguard.low as low\nlow._other()\n",
            "vlguard/low.py": "from vlguard import __version__\n",
        },
    )
    problems = structure_problems(modules, LOW_HIGH)
    assert problems == [
        "src/vlguard/high.py:1: vlguard.high imports private name(s) _secret from vlguard.low",
        "src/vlguard/high.py:3: vlguard.high uses private name _other of vlguard.low",
    ]


def test_a_unit_outside_the_layers_is_named(tmp_path: Path) -> None:
    modules = _package(tmp_path, {"vlguard/high.py": "", "vlguard/low.py": "", "vlguard/new.py": ""})
    assert structure_problems(modules, LOW_HIGH) == ["unit 'new' is in no layer: add it to LAYERS"]
