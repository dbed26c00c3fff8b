"""Load the model under test for an engine, with the same model arguments as ``vlguard eval``.

A VLM (any model that takes images, or ``tiny``) is loaded by vlguard's ``hf`` backend and wrapped for
lmms-eval. A text LLM (``AutoModelForCausalLM``, or ``tiny-lm``) is loaded by vlguard's shared loader
(``vlguard.models.loading``: safetensors only, ``trust_remote_code`` off unless asked), a LoRA adapter
applied without merging from its safetensors file, and handed to lm-eval's ``HFLM`` as a loaded model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from vlguard.generation.hf import resolve_device, resolve_dtype
from vlguard.models.resolve import resolve_model_path

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelArgs:
    """The model arguments shared with ``vlguard eval``."""

    model: str
    revision: str | None = None
    adapter: str | None = None
    dtype: str = "auto"
    device: str = "auto"
    trust_remote_code: bool = False
    batch_size: int = 16
    system_prompt: str | None = None

    def path(self) -> str:
        """Where the weights are: the built-in tiny model's folder, a local folder, or the Hub id."""
        return resolve_model_path(self.model)

    def resolved(self) -> tuple[str, str]:
        """(device, dtype) with ``auto`` resolved: bf16 on CUDA, fp32 on CPU."""
        device = resolve_device(self.device)
        return device, resolve_dtype(self.dtype, device)


def model_kind(args: ModelArgs) -> str:
    """``vlm`` for a model that takes images, ``llm`` for a text-only causal LM (from the config alone)."""
    from vlguard.models.loading import detect_kind

    kind = detect_kind(args.path(), revision=args.revision, trust_remote_code=args.trust_remote_code)
    return "vlm" if kind.sees_images else "llm"


def load_for_lmms_eval(args: ModelArgs) -> tuple[Any, dict[str, Any]]:
    """A VLM through vlguard's ``hf`` backend, wrapped as an lmms-eval model; and its description."""
    from vlguard.generation.hf import HFBackend
    from vlguard.utility.lmms_model import DEFAULT_MAX_NEW_TOKENS, VLGuardLMMS

    backend = HFBackend(
        args.model,
        revision=args.revision,
        adapter=args.adapter,
        dtype=args.dtype,
        device=args.device,
        batch_size=args.batch_size,
        max_new_tokens=DEFAULT_MAX_NEW_TOKENS,
        trust_remote_code=args.trust_remote_code,
        system_prompt=args.system_prompt,
    )
    description = backend.describe()
    description["max_new_tokens"] = f"the task's own, else {DEFAULT_MAX_NEW_TOKENS}"
    return VLGuardLMMS(backend), description


def load_for_lm_eval(args: ModelArgs) -> tuple[Any, dict[str, Any]]:
    """A causal LM (+ LoRA adapter) loaded with vlguard's rules, wrapped in lm-eval's ``HFLM``; and its
    description."""
    import torch
    from lm_eval.models.huggingface import HFLM

    from vlguard.models.loading import CAUSAL_LM, load_model, load_processor

    device, dtype = args.resolved()
    path = args.path()
    # vlguard's one loading path: safetensors only, trust_remote_code only when asked.
    tokenizer = load_processor(
        path, CAUSAL_LM, revision=args.revision, trust_remote_code=args.trust_remote_code
    )
    model: Any = load_model(
        path,
        CAUSAL_LM,
        revision=args.revision,
        dtype=getattr(torch, dtype),
        trust_remote_code=args.trust_remote_code,
    )
    if args.adapter is not None:
        from vlguard.models.adapters import apply_adapter

        model = apply_adapter(model, args.adapter, args.model)
    model = model.to(device).eval()
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=args.batch_size)
    description = {
        "backend": "hf-causal-lm",
        "model": args.model,
        "model_path": path,
        "revision": args.revision,
        "adapter": args.adapter,
        "dtype": dtype,
        "device": device,
        "batch_size": args.batch_size,
        "decoding": "the task's own (lm-eval: greedy unless the task samples)",
        "system_prompt": args.system_prompt,
        "trust_remote_code": args.trust_remote_code,
    }
    return lm, description
