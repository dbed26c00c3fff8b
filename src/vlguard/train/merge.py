"""Merge a LoRA adapter into its base model and save a standalone model (safetensors)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from vlguard.errors import ConfigError
from vlguard.fileio import check_output_dir
from vlguard.models.loading import detect_kind, load_model, load_processor, save_processor
from vlguard.models.resolve import check_model_reference, resolve_model_path, safetensors_adapter

logger = logging.getLogger(__name__)


def merge_adapter(
    base: str,
    adapter: str | Path,
    out: str | Path,
    *,
    revision: str | None = None,
    dtype: str = "auto",
    trust_remote_code: bool = False,
    overwrite: bool = False,
) -> Path:
    """Load ``base``, apply the PEFT adapter in ``adapter``, merge it and save to ``out``.

    ``base`` is a VLM or a text-only causal LM (its config picks the auto class). The processor (or tokenizer) is taken from the adapter folder when it has one (vlguard saves it there), else from
    the base model. ``dtype=auto`` keeps the base model's saved dtype. The model is written to a
    temporary folder and renamed, so ``out`` never holds a half-written model. Weights are read from
    safetensors only, as ``vlguard eval`` does: a pickled adapter (``adapter_model.bin``) or base model
    can run code when loaded, so it is refused before anything loads.
    """
    import torch

    from vlguard.models.adapters import apply_adapter, check_adapter_base, read_adapter

    out = check_output_dir(out, "--out folder")
    adapter = Path(adapter)
    if not (adapter / "adapter_config.json").is_file():
        raise ConfigError(f"{adapter}: no adapter_config.json; not a LoRA adapter folder")
    adapter = safetensors_adapter(str(adapter))  # refuses a pickle-only adapter
    check_model_reference(base, "--base")
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} already exists; pass --overwrite or choose another --out")
    # the config, its ranks against the weights, and the base it was trained on: before anything loads
    check_adapter_base(read_adapter(adapter), base, "--adapter")
    # `tiny` names the built-in tiny VLM, as in `vlguard train`: built only once every input is checked.
    requested, base = base, resolve_model_path(base)
    torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
    kind = detect_kind(base, revision=revision, trust_remote_code=trust_remote_code)
    model = load_model(base, kind, revision=revision, dtype=torch_dtype, trust_remote_code=trust_remote_code)
    merged = apply_adapter(model, str(adapter), requested).merge_and_unload()
    # vlguard saves the processor (or, for a text-only LM, the tokenizer) beside the adapter.
    saved_here = any(
        (adapter / name).is_file() for name in ("processor_config.json", "tokenizer_config.json")
    )
    processor = load_processor(
        str(adapter) if saved_here else base,
        kind,
        revision=None if saved_here else revision,
        trust_remote_code=trust_remote_code,
        model_config=base,
    )
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    merged.save_pretrained(tmp, safe_serialization=True)
    save_processor(processor, tmp, base, revision)
    (tmp / "vlguard_merge.json").write_text(
        json.dumps(
            {"base": base, "base_revision": revision, "adapter": str(adapter), "model_kind": kind.name},
            indent=2,
        )
        + "\n"
    )
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    logger.info("merged %s into %s → %s", adapter, base, out)
    return out
