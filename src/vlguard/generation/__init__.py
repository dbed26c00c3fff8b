"""Generation backends by name: ``BACKENDS`` maps a name to a factory returning a ``GenerationBackend``.

Each factory takes the model (path, Hub id, ``tiny`` or ``tiny-lm``) first and keyword settings after it
(``revision``, ``adapter``, ``dtype``, ``device``, ``batch_size``, ``max_new_tokens``, ...). Backends
are imported only when chosen, so the optional ones (``vllm``, and ``openai``'s HTTP client) cost
nothing unless used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vlguard.generation.base import GenerationBackend, GenerationRequest

__all__ = ["BACKENDS", "BACKEND_DESCRIPTIONS", "GenerationBackend", "GenerationRequest", "make_backend"]


def _hf(model: str, **kwargs: Any) -> GenerationBackend:
    from vlguard.generation.hf import HFBackend

    return HFBackend(model, **kwargs)


def _tiny(model: str = "tiny", **kwargs: Any) -> GenerationBackend:
    # The built-in tiny models go through the same hf path as any model; only the name is resolved here.
    from vlguard.generation.hf import HFBackend, is_tiny

    return HFBackend(model if is_tiny(model) else "tiny", **kwargs)


def _openai(model: str, **kwargs: Any) -> GenerationBackend:
    from vlguard.generation.openai_api import OpenAIBackend

    backend: GenerationBackend = OpenAIBackend(model, **kwargs)
    return backend


def _vllm(model: str, **kwargs: Any) -> GenerationBackend:
    from vlguard.generation.vllm_backend import VLLMBackend

    return VLLMBackend(model, **kwargs)


BACKENDS: dict[str, Callable[..., GenerationBackend]] = {
    "hf": _hf,
    "tiny": _tiny,
    "openai": _openai,
    "vllm": _vllm,
}

BACKEND_DESCRIPTIONS: dict[str, str] = {
    "hf": "any transformers VLM (AutoModelForImageTextToText) or text LLM (AutoModelForCausalLM), local or "
    "Hub, optional LoRA; option prompt_format=chat|alpaca",
    "tiny": "the built-in tiny random-weight models (tiny: LLaVA VLM, tiny-lm: Llama text LM), through the hf path",
    "openai": "an OpenAI-compatible chat endpoint (API key from the environment only)",
    "vllm": "vLLM offline engine for GPUs (pip install 'vlguard[vllm]')",
}


def make_backend(name: str, model: str, **kwargs: Any) -> GenerationBackend:
    """The backend ``name`` for ``model``; ``ConfigError`` for an unknown name."""
    from vlguard.errors import ConfigError

    try:
        factory = BACKENDS[name]
    except KeyError:
        raise ConfigError(f"unknown backend {name!r}; known: {', '.join(sorted(BACKENDS))}") from None
    return factory(model, **kwargs)
