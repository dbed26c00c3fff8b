"""The modules of ``src/vlguard`` as syntax trees, for the tests that check the structure of the code."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "vlguard"


@dataclass(frozen=True)
class Module:
    """One module: its dotted name, its file and its syntax tree."""

    name: str
    file: str  # relative to the folder above the source root: src/vlguard/judges/refusal.py
    is_package: bool
    tree: ast.Module


def parse_modules(src: Path = SRC, package: str = PACKAGE) -> dict[str, Module]:
    """Every module of ``package`` under ``src``, by dotted name (``vlguard.judges.refusal``)."""
    modules: dict[str, Module] = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        name = ".".join(parts)
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        modules[name] = Module(name, str(path.relative_to(src.parent)), is_package, tree)
    return modules


def functions(tree: ast.AST) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    """Every function and method in ``tree``, nested ones included."""
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node
