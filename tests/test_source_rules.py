"""Rules on the source of ``src/vlguard`` that keep each decision in one home (see docs/design.md).

- The launcher's topology (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``) is read in
  ``vlguard.distributed`` only: no other module spells those names as a string.
- Built-in tiny models are built in ``vlguard.models`` only: outside it, nothing names
  ``ensure_tiny_model``; callers resolve a model name with ``vlguard.models.resolve.resolve_model_path``.
- No frozen record is changed after it is made: nothing in ``src`` uses ``object.__setattr__`` (or
  ``object.__delattr__``); resolved settings go into a new record.
- No config is typed ``Any``: a function whose name says it makes or reads a config (its name contains
  ``config``) has a return annotation without a top-level ``Any`` (``Any``, ``Any | None``, ``Optional[Any]``);
  and no parameter whose name contains ``config`` is annotated with a top-level ``Any``.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterator, Mapping

from source_tree import Module, functions, parse_modules

TOPOLOGY_VARIABLES = frozenset({"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"})
TOPOLOGY_HOME = "vlguard.distributed"
TINY_BUILDER = "ensure_tiny_model"
MODELS_PACKAGE = "vlguard.models"


def topology_reads(modules: Mapping[str, Module]) -> list[str]:
    """Where a module other than ``vlguard.distributed`` spells a topology variable."""
    return [
        f"{m.file}:{node.lineno}: {node.value!r} (ask vlguard.distributed)"
        for m in modules.values()
        if m.name != TOPOLOGY_HOME
        for node in ast.walk(m.tree)
        if isinstance(node, ast.Constant) and node.value in TOPOLOGY_VARIABLES
    ]


def _names(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            yield node.lineno, node.id
        elif isinstance(node, ast.Attribute):
            yield node.lineno, node.attr
        elif isinstance(node, ast.ImportFrom):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "." in node.value:
            yield node.lineno, node.value.rsplit(".", 1)[-1]  # "pkg.module.name" for monkeypatching


def tiny_builder_uses(modules: Mapping[str, Module]) -> list[str]:
    """Where a module outside ``vlguard.models`` names the tiny-model builder."""
    return [
        f"{m.file}:{line}: {name} (resolve names with vlguard.models.resolve.resolve_model_path)"
        for m in modules.values()
        if not (m.name == MODELS_PACKAGE or m.name.startswith(MODELS_PACKAGE + "."))
        for line, name in _names(m.tree)
        if name == TINY_BUILDER
    ]


def frozen_record_writes(modules: Mapping[str, Module]) -> list[str]:
    """Where a module uses ``object.__setattr__`` / ``object.__delattr__``."""
    return [
        f"{m.file}:{node.lineno}: object.{node.attr} (make a new record instead)"
        for m in modules.values()
        for node in ast.walk(m.tree)
        if isinstance(node, ast.Attribute)
        and node.attr in ("__setattr__", "__delattr__")
        and isinstance(node.value, ast.Name)
        and node.value.id == "object"
    ]


def _is_any(annotation: ast.expr | None) -> bool:
    """Whether ``annotation`` is ``Any`` at its top level (``Any``, ``Any | None``, ``Optional[Any]``, ``"Any"``)."""
    if annotation is None:
        return False
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        return _is_any(ast.parse(annotation.value, mode="eval").body)
    if isinstance(annotation, ast.Name | ast.Attribute):
        return (annotation.id if isinstance(annotation, ast.Name) else annotation.attr) == "Any"
    if isinstance(annotation, ast.BinOp) and isinstance(annotation.op, ast.BitOr):
        return _is_any(annotation.left) or _is_any(annotation.right)
    if isinstance(annotation, ast.Subscript):
        outer = annotation.value
        name = (
            outer.id
            if isinstance(outer, ast.Name)
            else outer.attr
            if isinstance(outer, ast.Attribute)
            else ""
        )
        if name in ("Optional", "Union"):
            inner = annotation.slice
            return any(_is_any(e) for e in (inner.elts if isinstance(inner, ast.Tuple) else [inner]))
    return False


def untyped_configs(modules: Mapping[str, Module]) -> list[str]:
    """Functions that return ``Any`` for a config, and config parameters typed ``Any``."""
    problems = []
    for m in modules.values():
        for fn in functions(m.tree):
            if "config" in fn.name.lower() and _is_any(fn.returns):
                problems.append(f"{m.file}:{fn.lineno}: {fn.name}() returns Any (name the config's type)")
            arguments = [*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs]
            problems += [
                f"{m.file}:{fn.lineno}: {fn.name}({a.arg}: Any) (name the config's type)"
                for a in arguments
                if "config" in a.arg.lower() and _is_any(a.annotation)
            ]
    return problems


# ---- the rules on vlguard ------------------------------------------------------------------------------


def test_only_the_distributed_module_reads_the_launchers_topology() -> None:
    modules = parse_modules()
    assert TOPOLOGY_HOME in modules
    problems = topology_reads(modules)
    assert not problems, "\n".join(problems)


def test_tiny_models_are_built_under_models_only() -> None:
    problems = tiny_builder_uses(parse_modules())
    assert not problems, "\n".join(problems)


def test_no_frozen_record_is_changed_after_it_is_made() -> None:
    problems = frozen_record_writes(parse_modules())
    assert not problems, "\n".join(problems)


def test_no_config_is_typed_any() -> None:
    problems = untyped_configs(parse_modules())
    assert not problems, "\n".join(problems)


# ---- the checks themselves, on made-up modules -----------------------------------------------------------


def _modules(**sources: str) -> dict[str, Module]:
    return {
        name: Module(name, f"src/{name.replace('.', '/')}.py", False, ast.parse(textwrap.dedent(text)))
        for name, text in sources.items()
    }


def test_the_checks_find_what_they_look_for() -> None:
    modules = _modules(
        **{
            "vlguard.distributed": "import os\nRANK = int(os.environ.get('RANK', '0'))\n",
            "vlguard.models.resolve": "def ensure_tiny_model(): ...\n",
            "vlguard.evaluate": (
                "import os\n"
                "from typing import Any, Optional\n"
                "from vlguard.models.resolve import ensure_tiny_model\n"
                "world = os.environ['WORLD_SIZE']\n"
                "class C:\n"
                "    def __post_init__(self):\n"
                "        object.__setattr__(self, 'x', 1)\n"
                "def train_config_for(base: 'Any') -> Any | None: ...\n"
                "def _train(train_config: Optional[Any], data: Any) -> None: ...\n"
                "def fine(config: dict[str, Any]) -> dict[str, Any]: ...\n"
            ),
        }
    )
    assert topology_reads(modules) == ["src/vlguard/evaluate.py:4: 'WORLD_SIZE' (ask vlguard.distributed)"]
    assert [p.split(":")[1] for p in tiny_builder_uses(modules)] == ["3"]
    assert frozen_record_writes(modules) == [
        "src/vlguard/evaluate.py:7: object.__setattr__ (make a new record instead)"
    ]
    assert untyped_configs(modules) == [
        "src/vlguard/evaluate.py:8: train_config_for() returns Any (name the config's type)",
        "src/vlguard/evaluate.py:9: _train(train_config: Any) (name the config's type)",
    ]
