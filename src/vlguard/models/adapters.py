"""PEFT LoRA adapters: read and checked before any model loads, applied through one path.

An adapter folder holds ``adapter_config.json`` and ``adapter_model.safetensors`` (vlguard loads
safetensors only). Three mistakes used to surface late, or not at all:

- an odd ``adapter_config.json`` (``{}``, an unknown ``peft_type``, an ``r`` the weights do not have)
  raised ``KeyError`` or a size-mismatch ``RuntimeError`` inside PEFT after the model had loaded:
  :func:`read_adapter` checks the config and the shapes in the safetensors header (no weights read);
- an adapter trained on another base model loaded as a no-op (every key missing, a PEFT warning, and a
  manifest saying the adapter was applied): :func:`check_adapter_base` compares the adapter's
  ``base_model_name_or_path`` with the model before anything loads, and :func:`apply_adapter` refuses an
  adapter none of whose weights reached the model;
- loading differed between the ``hf`` backend, ``vlguard utility`` and ``vlguard merge``: all three call
  :func:`apply_adapter`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlguard.errors import ConfigError
from vlguard.models.resolve import is_tiny, safetensors_adapter, tiny_model_folder

logger = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# PEFT's names for the LoRA tensors of a module (``<module>.<suffix>``).
LORA_SUFFIXES = (".lora_A.weight", ".lora_B.weight", ".lora_embedding_A", ".lora_embedding_B")
PEFT_PREFIX = "base_model.model."
# config.json keys that say nothing about a model's architecture (compared when two folders are).
_VOLATILE_CONFIG_KEYS = frozenset(
    {"transformers_version", "_name_or_path", "torch_dtype", "dtype", "use_cache"}
)


@dataclass(frozen=True)
class LoraAdapter:
    """What a PEFT LoRA adapter folder holds, read from its config and its safetensors header.

    ``lora_modules``: modules with LoRA weights; ``saved_modules``: modules whose weights are saved in
    full (``modules_to_save``), each as named in the checkpoint without PEFT's ``base_model.model.``;
    ``tensors``: every tensor name of the checkpoint as written.
    """

    path: Path
    config: Mapping[str, Any]
    rank: int
    lora_modules: tuple[str, ...]
    saved_modules: tuple[str, ...]
    saved_tensors: tuple[str, ...]
    tensors: tuple[str, ...] = ()

    @property
    def base_model(self) -> str | None:
        """The base model the adapter was trained on (``base_model_name_or_path``), if recorded."""
        value = self.config.get("base_model_name_or_path")
        return str(value) if value else None


def read_adapter(folder: str | Path) -> LoraAdapter:
    """Read ``adapter_config.json`` and the tensor names and shapes of ``adapter_model.safetensors``.

    ``ConfigError`` naming the file and field when the folder is not a readable LoRA adapter: no or
    unreadable config, a ``peft_type`` other than LoRA, ranks that are not positive integers, no LoRA
    weights, or LoRA weights whose rank is none of the config's (``r``, ``rank_pattern``).
    """
    path = Path(folder)
    config_file = path / ADAPTER_CONFIG
    weights_file = path / ADAPTER_WEIGHTS
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no {ADAPTER_CONFIG}; not a PEFT adapter folder") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise ConfigError(f"{config_file}: not readable JSON ({err})") from err
    if not isinstance(config, dict):
        raise ConfigError(f"{config_file}: expected a JSON object, got {type(config).__name__}")
    if config.get("peft_type", "LORA") != "LORA":
        raise ConfigError(
            f"{config_file}, field 'peft_type': {config.get('peft_type')!r} is not a LoRA adapter "
            "(vlguard applies LoRA adapters, peft_type LORA)"
        )
    ranks = _ranks(config, config_file)
    try:
        from safetensors import safe_open

        with safe_open(str(weights_file), framework="pt") as handle:
            names = list(handle.keys())
            shapes = {name: tuple(handle.get_slice(name).get_shape()) for name in names}
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no {ADAPTER_WEIGHTS} (vlguard loads adapters as safetensors only)"
        ) from None
    except Exception as err:  # safetensors raises its own error types for a damaged header
        raise ConfigError(f"{weights_file}: not a readable safetensors file ({err})") from err
    lora_modules: set[str] = set()
    saved_tensors: list[str] = []
    for name in names:
        bare = name.removeprefix(PEFT_PREFIX)
        suffix = next((s for s in LORA_SUFFIXES if bare.endswith(s)), None)
        if suffix is not None:
            lora_modules.add(bare.removesuffix(suffix))
            _check_rank(name, suffix, shapes[name], ranks, weights_file, config_file)
        else:
            saved_tensors.append(bare)
    saved_modules = sorted({t.rsplit(".", 1)[0] for t in saved_tensors})
    return LoraAdapter(
        path=path,
        config=config,
        rank=max(ranks),
        lora_modules=tuple(sorted(lora_modules)),
        saved_modules=tuple(saved_modules),
        saved_tensors=tuple(sorted(saved_tensors)),
        tensors=tuple(names),
    )


def _ranks(config: Mapping[str, Any], config_file: Path) -> set[int]:
    """Every LoRA rank of the adapter: ``r`` and the ``rank_pattern`` values."""
    ranks: list[Any] = [config.get("r")]
    pattern = config.get("rank_pattern") or {}
    if not isinstance(pattern, dict):
        raise ConfigError(f"{config_file}, field 'rank_pattern': expected an object of ranks")
    ranks += list(pattern.values())
    for value in ranks:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            field = "r" if value is ranks[0] else "rank_pattern"
            raise ConfigError(
                f"{config_file}, field '{field}': a LoRA rank must be a positive integer, not {value!r}"
            )
    return set(ranks)


def _check_rank(
    name: str, suffix: str, shape: tuple[int, ...], ranks: set[int], weights_file: Path, config_file: Path
) -> None:
    """A LoRA matrix's rank side (rows of ``lora_A``, columns of ``lora_B``) is one of the config's ranks."""
    if len(shape) != 2:
        raise ConfigError(f"{weights_file}: tensor {name} has shape {list(shape)}, not a matrix")
    rank = shape[0] if suffix in (".lora_A.weight", ".lora_embedding_A") else shape[1]
    if rank not in ranks:
        raise ConfigError(
            f"{weights_file}: tensor {name} has rank {rank}, but {config_file.name} says r="
            f"{'/'.join(map(str, sorted(ranks)))}; the config and the weights are of different adapters"
        )


def model_identity(name: str) -> str:
    """What names one model whatever way it is written: a built-in tiny model's (or its cache folder's)
    folder name, which holds the hash of its build; a local folder's resolved path; else the Hub id."""
    if is_tiny(name):
        return tiny_model_folder(name).name
    path = Path(name).expanduser()
    if path.exists():
        resolved = path.resolve()
        return resolved.name if is_tiny_cache_folder(resolved) else str(resolved)
    return name


def is_tiny_cache_folder(path: Path) -> bool:
    """Whether ``path`` is a built tiny model's cache folder (``tiny-<size>-<hash>``, ``tiny-lm-<size>-<hash>``)."""
    for family in ("tiny-lm", "tiny"):
        if path.name.startswith(family + "-"):
            size = path.name[len(family) + 1 :].rsplit("-", 1)[0]
            try:
                return bool(size) and tiny_model_folder(f"{family}:{size}", cache_root=path.parent) == path
            except ConfigError:  # not a size of this family
                continue
    return False


def _local_folder(name: str) -> Path | None:
    """The folder a model name stands for on this machine (a tiny model's cache folder, built or not)."""
    if is_tiny(name):
        return tiny_model_folder(name)
    path = Path(name).expanduser()
    return path if path.exists() else None


def _architecture(folder: Path) -> dict[str, Any] | None:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(config, dict):
        return None
    return {k: v for k, v in config.items() if k not in _VOLATILE_CONFIG_KEYS}


def check_adapter_base(adapter: LoraAdapter, model: str, what: str = "--adapter") -> None:
    """``ConfigError`` when the adapter was trained on another base model than ``model``.

    Compared by ``model_identity`` (tiny names resolved, local paths resolved); two folders that both
    exist here match when their ``config.json`` describe the same architecture (a copied or moved model,
    or another fine-tune of it: the adapter's weights fit). Undecidable cases (no base recorded, a base
    folder of another machine, a Hub id against a local folder) pass here: ``apply_adapter`` still
    refuses an adapter none of whose weights reach the model.
    """
    base = adapter.base_model
    if base is None or model_identity(model) == model_identity(base):
        return
    folders = [_local_folder(model), _local_folder(base)]
    if all(f is not None and (f / "config.json").is_file() for f in folders):
        found = [_architecture(f) for f in folders if f is not None]
        if found[0] is not None and found[0] == found[1]:
            return
    else:
        hub_ids = all(
            f is None and not Path(n).expanduser().is_absolute()
            for f, n in zip(folders, (model, base), strict=True)
        )
        tiny = (
            is_tiny(model)
            or is_tiny(base)
            or (folders[1] is not None and is_tiny_cache_folder(folders[1].resolve()))
        )
        if not (hub_ids or tiny):
            logger.info(
                "%s %s: trained on %s, applied to %s (not comparable here)", what, adapter.path, base, model
            )
            return
    raise ConfigError(
        f"{what} {adapter.path} was trained on the base model {base}, not on {model}: its weights would "
        "match no module of this model (apply an adapter to the model it was trained on)"
    )


def check_adapter(adapter: str, model: str | None = None, what: str = "--adapter") -> LoraAdapter | None:
    """Check a LoRA adapter before anything loads: a local folder is read (``read_adapter``) and, with
    ``model``, compared with it (``check_adapter_base``). A Hub adapter is checked when it is fetched
    (``apply_adapter``); None is returned for it."""
    path = Path(adapter).expanduser()
    if not path.is_dir():
        return None
    found = read_adapter(path)
    if model is not None:
        check_adapter_base(found, model, what)
    return found


def apply_adapter(model: Any, adapter: str, base: str | None = None, what: str = "--adapter") -> Any:
    """``model`` with the LoRA adapter ``adapter`` (a folder or Hub id) applied, not merged (PEFT).

    The adapter is checked first (``read_adapter``; with ``base``, the name the model was asked for,
    ``check_adapter_base``), and a ``ConfigError`` replaces PEFT's errors: a size mismatch, or an adapter
    none of whose LoRA weights reached the model (trained on another base model).
    """
    from peft import PeftModel

    folder = safetensors_adapter(adapter)
    found = read_adapter(folder)
    if base is not None:
        check_adapter_base(found, base, what)
    try:
        wrapped = PeftModel.from_pretrained(model, str(folder), is_trainable=False)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise ConfigError(f"cannot load LoRA adapter {adapter!r}: {str(err).strip()[:800]}") from err
    # PEFT names a parameter with its adapter name (``...lora_A.default.weight``, ``...lora_embedding_A.default``)
    loaded = {
        re.sub(r"\.default(?=\.|$)", "", name) for name, _ in wrapped.named_parameters() if "lora_" in name
    }
    lora = [t for t in found.tensors if any(t.endswith(s) for s in LORA_SUFFIXES)]
    if lora and not any(t in loaded for t in lora):
        raise ConfigError(
            f"{what} {adapter}: none of its {len(lora)} LoRA weights match a module of the model "
            f"(e.g. {lora[0]}): it was trained on another base model (its config names "
            f"{found.base_model or 'none'}), and applying it would change nothing"
        )
    return wrapped
