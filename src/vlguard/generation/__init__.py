"""Generation backends by name: ``BACKENDS`` maps a name to a factory returning a ``GenerationBackend``.

Each factory takes the model (path, Hub id, ``tiny`` or ``tiny-lm``) first and keyword settings after it
(``revision``, ``adapter``, ``dtype``, ``device``, ``batch_size``, ``max_new_tokens``, ...). Backends
are imported only when chosen, so the optional ones (``vllm``, and ``openai``'s HTTP client) cost
nothing unless used.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from vlguard.generation.base import GenerationBackend, GenerationRequest

__all__ = [
    "BACKENDS",
    "BACKEND_DESCRIPTIONS",
    "GenerationBackend",
    "GenerationRequest",
    "check_backend_options",
    "make_backend",
]


def _hf(model: str, **kwargs: Any) -> GenerationBackend:
    from vlguard.generation.hf import HFBackend

    return HFBackend(model, **kwargs)


def _tiny(model: str = "tiny", **kwargs: Any) -> GenerationBackend:
    # The built-in tiny models go through the same hf path as any model; only the name is resolved here.
    from vlguard.generation.hf import HFBackend
    from vlguard.models.resolve import is_tiny

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


# The class each backend name builds (module, class name): its constructor's keywords are the options
# the backend takes, checked by ``check_backend_options`` without importing torch or loading anything.
BACKEND_CLASSES: dict[str, tuple[str, str]] = {
    "hf": ("vlguard.generation.hf", "HFBackend"),
    "tiny": ("vlguard.generation.hf", "HFBackend"),
    "openai": ("vlguard.generation.openai_api", "OpenAIBackend"),
    "vllm": ("vlguard.generation.vllm_backend", "VLLMBackend"),
}


def check_backend_options(name: str, options: Mapping[str, Any]) -> None:
    """``ConfigError`` for an unknown backend, or for an option its constructor does not take.

    Run before any model loads, so that a mistyped ``--backend-option`` is one line at once, not a
    ``TypeError`` traceback after the benchmark and the model have loaded.
    """
    from vlguard.errors import ConfigError

    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}; known: {', '.join(sorted(BACKENDS))}")
    if name not in BACKEND_CLASSES:
        return  # a backend registered without its class: its factory checks its own options
    module, class_name = BACKEND_CLASSES[name]
    parameters = inspect.signature(getattr(importlib.import_module(module), class_name)).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    # `client` is a programmatic hook (tests inject a client); not an option a user can give.
    accepted = {n for n, p in parameters.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL} - {
        "model",
        "client",
    }
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ConfigError(
            f"backend {name!r} has no option {', '.join(repr(u) for u in unknown)}; "
            f"its options: {', '.join(sorted(accepted))}"
        )


def make_backend(name: str, model: str, **kwargs: Any) -> GenerationBackend:
    """The backend ``name`` for ``model``; ``ConfigError`` for an unknown name or option, or a bad value.

    Backends raise ``TypeError`` / ``ValueError`` for a wrong option value (``max_concurrency=many``);
    from the CLI (``--backend-option``) that is a user mistake, so it becomes a one-line error.
    """
    from vlguard.errors import ConfigError

    check_backend_options(name, kwargs)
    try:
        return BACKENDS[name](model, **kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"cannot create the {name!r} backend: {err}") from err
