"""Write the snapshot of the vLLM API that vlguard depends on, read from a vLLM wheel's source.

vLLM cannot be installed where vlguard's tests run (it needs a CUDA GPU and pins its own torch), so the
tests use a stand-in (``tests/vllm_stand_in``). This script reads the real signatures from the pinned
wheel without importing it (Python's ``ast``), and ``tests/test_vllm_stand_in.py`` checks the stand-in and
vlguard's vLLM tables against the committed snapshot::

    pip download vllm==0.33.0 --no-deps -d /tmp/vllm-wheel
    python scripts/vllm_api_snapshot.py /tmp/vllm-wheel/vllm-0.33.0-*.whl \\
        --out tests/vllm_stand_in/vllm_api_snapshot.json

What it records: the parameters of ``LLM.__init__``, ``LLM.chat``, ``LLM.generate`` and
``LLM.collective_rpc``; the fields of ``EngineArgs`` (where ``LLM(**kwargs)`` goes), ``SamplingParams``
and ``LoRARequest``; the ``max_lora_rank`` values (``MaxLoRARanks``); and the architectures whose model
class (or a base class) sets ``supports_tower_connector_lora = True``.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import zipfile
from pathlib import Path
from typing import Any

MODELS_PACKAGE = "vllm/model_executor/models"


class Source:
    """The Python files of a vLLM wheel (``.whl``) or of an unpacked source folder holding ``vllm/``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._zip = zipfile.ZipFile(path) if path.is_file() else None
        self._trees: dict[str, ast.Module | None] = {}

    def text(self, name: str) -> str | None:
        """The file ``name`` (e.g. ``vllm/sampling_params.py``), or None when absent."""
        if self._zip is not None:
            try:
                return self._zip.read(name).decode("utf-8")
            except KeyError:
                return None
        file = self.path / name
        return file.read_text(encoding="utf-8") if file.is_file() else None

    def tree(self, name: str) -> ast.Module | None:
        if name not in self._trees:
            text = self.text(name)
            self._trees[name] = None if text is None else ast.parse(text, filename=name)
        return self._trees[name]

    def module_file(self, module: str) -> str | None:
        """The file of a dotted module name (``vllm.model_executor.models.llava``)."""
        base = module.replace(".", "/")
        for candidate in (f"{base}.py", f"{base}/__init__.py"):
            if self.text(candidate) is not None:
                return candidate
        return None


def _class(tree: ast.Module, name: str) -> ast.ClassDef:
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node
    raise LookupError(f"class {name} not found")


def _function(cls: ast.ClassDef, name: str) -> ast.FunctionDef:
    for node in cls.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise LookupError(f"{cls.name}.{name} not found")


def parameters(function: ast.FunctionDef) -> list[dict[str, Any]]:
    """Each parameter after ``self``: name, kind (as ``inspect.Parameter.kind`` names it), default source."""
    args = function.args
    positional = [*args.posonlyargs, *args.args]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    out: list[dict[str, Any]] = []
    for index, (arg, default) in enumerate(zip(positional, defaults, strict=True)):
        if index == 0 and arg.arg == "self":
            continue
        kind = "POSITIONAL_ONLY" if index < len(args.posonlyargs) else "POSITIONAL_OR_KEYWORD"
        out.append(_parameter(arg.arg, kind, default))
    if args.vararg is not None:
        out.append(_parameter(args.vararg.arg, "VAR_POSITIONAL", None))
    for arg, kw_default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        out.append(_parameter(arg.arg, "KEYWORD_ONLY", kw_default))
    if args.kwarg is not None:
        out.append(_parameter(args.kwarg.arg, "VAR_KEYWORD", None))
    return out


def _parameter(name: str, kind: str, default: ast.expr | None) -> dict[str, Any]:
    return {"name": name, "kind": kind, "default": None if default is None else ast.unparse(default)}


def class_fields(cls: ast.ClassDef) -> list[dict[str, Any]]:
    """The annotated fields of a dataclass / msgspec struct body, with their default source (or None)."""
    fields = []
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            annotation = ast.unparse(node.annotation)
            if annotation.startswith("ClassVar"):
                continue
            default = None if node.value is None else ast.unparse(node.value)
            fields.append({"name": node.target.id, "default": default})
    return fields


def max_lora_ranks(tree: ast.Module) -> list[int]:
    """The values of ``MaxLoRARanks = Literal[...]`` in ``config/lora.py``."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "MaxLoRARanks" for t in node.targets
        ):
            value = node.value
            assert isinstance(value, ast.Subscript)
            elements = value.slice.elts if isinstance(value.slice, ast.Tuple) else [value.slice]
            return [int(ast.literal_eval(e)) for e in elements]
    raise LookupError("MaxLoRARanks not found")


def _assignment(node: ast.stmt) -> tuple[str, ast.expr] | None:
    """(name, value) of ``name = value`` or ``name: T = value``; None for any other statement."""
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id, node.value
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
        return node.target.id, node.value
    return None


def registry(tree: ast.Module) -> dict[str, tuple[str, str]]:
    """Architecture name -> (module, class) from every ``_*_MODELS`` dict of ``models/registry.py``."""
    found: dict[str, tuple[str, str]] = {}
    for node in tree.body:
        assigned = _assignment(node)
        if assigned is None or not re.fullmatch(r"_[A-Z_]+_MODELS", assigned[0]):
            continue
        table = assigned[1]
        if not isinstance(table, ast.Dict):
            continue
        for key, value in zip(table.keys, table.values, strict=True):
            if isinstance(key, ast.Constant) and isinstance(value, ast.Tuple) and len(value.elts) == 2:
                module, cls = (ast.literal_eval(e) for e in value.elts)
                if isinstance(module, str) and isinstance(cls, str):
                    found.setdefault(str(key.value), (module, cls))
    return found


def _module_name(module: str) -> str:
    return module if module.startswith("vllm.") else f"{MODELS_PACKAGE.replace('/', '.')}.{module}"


def _imported_names(tree: ast.Module, module: str) -> dict[str, tuple[str, str]]:
    """Local name -> (module, name) of ``from ... import`` statements (relative ones resolved)."""
    package = module.rsplit(".", 1)[0]
    names: dict[str, tuple[str, str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            for alias in node.names:
                names[alias.asname or alias.name] = (source, alias.name)
    return names


def sets_tower_connector_lora(
    source: Source, module: str, name: str, seen: set[tuple[str, str]] | None = None
) -> bool:
    """Whether class ``name`` of ``module`` (or the nearest base class that says) sets
    ``supports_tower_connector_lora = True``."""
    seen = set() if seen is None else seen
    if (module, name) in seen:
        return False
    seen.add((module, name))
    file = source.module_file(module)
    tree = source.tree(file) if file is not None else None
    if tree is None:
        return False
    try:
        cls = _class(tree, name)
    except LookupError:
        imported = _imported_names(tree, module).get(name)
        return imported is not None and sets_tower_connector_lora(source, imported[0], imported[1], seen)
    for node in cls.body:
        assigned = _assignment(node)
        if assigned is not None and assigned[0] == "supports_tower_connector_lora":
            return bool(ast.literal_eval(assigned[1]))
    imports = _imported_names(tree, module)
    for base in cls.bases:
        base_name = ast.unparse(base).split("[", 1)[0]
        if "." in base_name:
            continue
        origin = imports.get(base_name, (module, base_name))
        if sets_tower_connector_lora(source, origin[0], origin[1], seen):
            return True
    return False


def snapshot(path: Path) -> dict[str, Any]:
    """The snapshot of the wheel or source folder at ``path``."""
    source = Source(path)

    def tree(name: str) -> ast.Module:
        found = source.tree(name)
        if found is None:
            raise FileNotFoundError(f"{path}: no {name}")
        return found

    version_match = re.search(r"vllm-([^-]+)-", path.name)
    llm = _class(tree("vllm/entrypoints/llm.py"), "LLM")
    methods = {
        method: parameters(_function(llm, method))
        for method in ("__init__", "chat", "generate", "collective_rpc")
    }
    models = registry(tree(f"{MODELS_PACKAGE}/registry.py"))
    tower = sorted(
        arch
        for arch, (module, cls) in models.items()
        if sets_tower_connector_lora(source, _module_name(module), cls)
    )
    return {
        "vllm_version": version_match.group(1) if version_match else None,
        "LLM": methods,
        "EngineArgs": [
            f["name"] for f in class_fields(_class(tree("vllm/engine/arg_utils.py"), "EngineArgs"))
        ],
        "SamplingParams": [
            f
            for f in class_fields(_class(tree("vllm/sampling_params.py"), "SamplingParams"))
            if not f["name"].startswith("_")
        ],
        "LoRARequest": class_fields(_class(tree("vllm/lora/request.py"), "LoRARequest")),
        "max_lora_ranks": max_lora_ranks(tree("vllm/config/lora.py")),
        "tower_connector_lora_architectures": tower,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source", type=Path, help="a vLLM wheel (.whl) or a folder holding its vllm/ package")
    parser.add_argument("--out", type=Path, required=True, help="the JSON file to write")
    args = parser.parse_args()
    args.out.write_text(json.dumps(snapshot(args.source), indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
