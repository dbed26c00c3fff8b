"""Model names → local folders: the one place that resolves what ``--model`` / ``name_or_path`` names.

A model name is a built-in tiny model (``tiny`` / ``tiny:<size>``: the tiny LLaVA VLM; ``tiny-lm`` /
``tiny-lm:<size>``: the tiny Llama text LM), a local folder, or a Hub repo id. :func:`resolve_model_path`
turns it into what loaders take (a tiny model is built once, into a cache keyed by its build arguments);
:func:`check_model_reference` catches a mistyped folder before anything loads; :func:`safetensors_adapter`
finds a LoRA adapter's safetensors folder (local, or fetched from the Hub without pickles).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vlguard.errors import ConfigError

TINY_VLM = "tiny"
TINY_LM = "tiny-lm"
# A Hub repo id: ``name`` or ``owner/name`` (what huggingface_hub accepts), never a path with more parts.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def resolve_model_path(name: str) -> str:
    """What a loader takes for ``name``: a built-in tiny model's folder (built once, cached), else ``name``."""
    return str(ensure_tiny_model(name)) if is_tiny(name) else name


def check_model_reference(name: str, what: str = "model") -> None:
    """``ConfigError`` when ``name`` is neither an existing local path nor shaped like a Hub repo id.

    A mistyped local folder (``runs/train/x/model``) would otherwise reach huggingface_hub, whose
    answer ("Repo id must be in the form 'repo_name' or 'namespace/repo_name'") hides the real
    mistake: the folder does not exist.
    """
    if is_tiny(name) or Path(name).expanduser().exists():
        return
    if not _HUB_ID.match(name):
        raise ConfigError(f"{what} {name!r}: no such file or folder (and not a Hub repo id like owner/name)")


def _tiny_family(model: str) -> str | None:
    """``tiny`` / ``tiny-lm`` when ``model`` names a built-in tiny model (optionally ``:<size>``)."""
    family = model.split(":", 1)[0]
    return family if family in (TINY_VLM, TINY_LM) else None


def is_tiny(model: str) -> bool:
    """Whether ``model`` names a built-in tiny model, not a path or Hub id.

    ``tiny`` / ``tiny:<size>`` is the tiny LLaVA VLM; ``tiny-lm`` / ``tiny-lm:<size>`` the tiny Llama text LM.
    """
    return _tiny_family(model) is not None


def tiny_cache_root() -> Path:
    """Where built tiny models live: ``$VLGUARD_CACHE/models`` or ``~/.cache/vlguard/models``."""
    base = os.environ.get("VLGUARD_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "vlguard"
    )
    return Path(base) / "models"


def _tiny_builder(family: str, size: str, seed: int) -> tuple[dict[str, Any], Callable[[Path], Path]]:
    """The cache-key fields and the build function of a tiny model (ConfigError for an unknown size)."""
    if family == TINY_LM:
        from vlguard.models.tiny_lm import TINY_LM_SIZES, build_tiny_lm, corpus_digest

        if size not in TINY_LM_SIZES:
            raise ConfigError(f"unknown tiny-lm size {size!r}; known: {', '.join(sorted(TINY_LM_SIZES))}")
        key = {"family": family, "size": size, "seed": seed, "corpus": corpus_digest()}
        return key, lambda folder: build_tiny_lm(folder, size=size, seed=seed)
    from vlguard.models.tiny import TINY_SIZES, build_tiny_vlm

    if size not in TINY_SIZES:
        raise ConfigError(f"unknown tiny model size {size!r}; known: {', '.join(sorted(TINY_SIZES))}")
    # The VLM's key predates tiny-lm: unchanged, so existing caches stay valid.
    return {"size": size, "seed": seed, "texts": []}, lambda folder: build_tiny_vlm(
        folder, size=size, seed=seed
    )


def _tiny_target(model: str, seed: int, cache_root: str | Path | None) -> tuple[Path, Callable[[Path], Path]]:
    """The cache folder of a built-in tiny model, and the function that builds it there."""
    family = _tiny_family(model)
    if family is None:
        raise ConfigError(
            f"{model!r} is not a built-in tiny model (tiny, tiny:<size>, tiny-lm, tiny-lm:<size>)"
        )
    size = model.split(":", 1)[1] if ":" in model else "tiny"
    fields, build = _tiny_builder(family, size, seed)
    key = hashlib.sha256(json.dumps(fields).encode()).hexdigest()[:12]
    root = Path(cache_root) if cache_root is not None else tiny_cache_root()
    return root / f"{family}-{size}-{key}", build


def tiny_model_folder(model: str = TINY_VLM, *, seed: int = 0, cache_root: str | Path | None = None) -> Path:
    """The cache folder a built-in tiny model is (or will be) built in, without building it.

    Its name holds a hash of the build arguments, so it names one model wherever the cache is.
    """
    return _tiny_target(model, seed, cache_root)[0]


def ensure_tiny_model(model: str = TINY_VLM, *, seed: int = 0, cache_root: str | Path | None = None) -> Path:
    """Build a built-in tiny model once and return its folder, keyed by its build arguments.

    ``model`` is ``tiny`` / ``tiny:<size>`` (the tiny VLM, sizes of ``vlguard.models.tiny.TINY_SIZES``) or
    ``tiny-lm`` / ``tiny-lm:<size>`` (the tiny text LM, ``vlguard.models.tiny_lm.TINY_LM_SIZES``). The folder
    name holds a hash of the build arguments, so other arguments never reuse a stale model.
    Concurrent builders (several ranks) each build into a temporary folder and rename it into place.
    """
    target, build = _tiny_target(model, seed, cache_root)
    if (target / "config.json").is_file():
        return target
    root = target.parent
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{target.name}.{os.getpid()}.tmp"
    build(tmp)
    try:
        os.rename(tmp, target)
    except OSError:
        # Another process won the race; its folder is identical (same build arguments).
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return target


def safetensors_adapter(adapter: str) -> Path:
    """A local folder holding the LoRA adapter as safetensors: ``adapter`` itself or its Hub snapshot.

    PEFT falls back to a pickled ``adapter_model.bin`` when there is no safetensors file (also for a
    Hub id); vlguard loads safetensors only, so a Hub adapter is fetched with just the safetensors
    files and PEFT is handed the local folder.
    """
    path = Path(adapter)
    if not path.is_dir():
        from huggingface_hub import snapshot_download

        from vlguard.data.sources import hub_errors

        with hub_errors(
            f"cannot load LoRA adapter {adapter!r}", adapter, repo_type="model", error=ConfigError
        ):
            path = Path(
                snapshot_download(
                    adapter, allow_patterns=["adapter_config.json", "adapter_model.safetensors"]
                )
            )
    if not (path / "adapter_model.safetensors").is_file():
        raise ConfigError(f"adapter folder {adapter} has no adapter_model.safetensors (safetensors only)")
    return path
