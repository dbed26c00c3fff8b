"""Generation backends by name: ``BACKENDS`` maps a name to a ``BackendEntry`` holding every fact about it.

Each backend is called with the model (path, Hub id, ``tiny`` or ``tiny-lm``) first and keyword settings
after it (``revision``, ``adapter``, ``dtype``, ``device``, ``batch_size``, ``max_new_tokens``, ...). Backends
are imported only when chosen, so the optional ones (``vllm``, and ``openai``'s HTTP client) cost
nothing unless used. Adding a backend is its module plus one entry here (docs/extending.md).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vlguard.errors import ConfigError
from vlguard.generation.base import GenerationBackend, GenerationRequest
from vlguard.registry import Entry, Registry, Target, resolve

__all__ = [
    "BACKENDS",
    "BackendEntry",
    "GenerationBackend",
    "GenerationRequest",
    "backend_entry",
    "check_backend_options",
    "make_backend",
]


@dataclass(frozen=True, kw_only=True)
class BackendEntry(Entry):
    """A registered backend, callable as ``entry(model, **settings)`` → a ``GenerationBackend``.

    - ``options_from``: the class whose constructor keywords are the backend's options (checked by
      ``check_backend_options`` before anything loads); None: the target's own signature. The built-in
      entries name it, so it stays when a stub replaces their target (``BACKENDS["hf"] = stub``);
    - ``local_weights``: it loads the model's weights in this process, so it takes ``dtype``,
      ``device`` and ``trust_remote_code``, which are checked (with the model and adapter references)
      before anything loads;
    - ``model_is_reference``: ``--model`` is a path or Hub id to check (False: the backend builds its own
      model from the name, as ``tiny`` does);
    - ``resolves_auto_dtype``: ``dtype=auto`` is resolved here (bf16 on GPU, fp32 on CPU) and the run
      records the resolved dtype; False: ``auto`` is recorded as given (vLLM picks the model's own);
    - ``check``: called with the backend's keyword settings before anything loads or is sent, raising a
      ``VLGuardError`` when it could not work (``openai``: the API key's variable is set when the
      endpoint needs one); None: nothing beyond its options.
    """

    options_from: Target | None = None
    local_weights: bool = False
    model_is_reference: bool = True
    resolves_auto_dtype: bool = False
    check: Target | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> GenerationBackend:
        """Import the backend and build it."""
        backend: GenerationBackend = self.load()(*args, **kwargs)
        return backend


def tiny_backend(model: str = "tiny", **kwargs: Any) -> GenerationBackend:
    """The ``hf`` backend on a built-in tiny model (``tiny`` or ``tiny-lm``; any other name means ``tiny``)."""
    from vlguard.generation.hf import HFBackend
    from vlguard.models.resolve import is_tiny

    return HFBackend(model if is_tiny(model) else "tiny", **kwargs)


BACKENDS: Registry[BackendEntry] = Registry("backend", BackendEntry)
BACKENDS["hf"] = BackendEntry(
    "vlguard.generation.hf:HFBackend",
    "any transformers VLM (AutoModelForImageTextToText) or text LLM (AutoModelForCausalLM), local or "
    "Hub, optional LoRA; option prompt_format=chat|alpaca|alpaca-newline",
    options_from="vlguard.generation.hf:HFBackend",
    local_weights=True,
    resolves_auto_dtype=True,
)
BACKENDS["tiny"] = BackendEntry(
    "vlguard.generation:tiny_backend",
    "the built-in tiny random-weight models (tiny: LLaVA VLM, tiny-lm: Llama text LM), through the hf path",
    options_from="vlguard.generation.hf:HFBackend",
    local_weights=True,
    model_is_reference=False,
    resolves_auto_dtype=True,
)
BACKENDS["openai"] = BackendEntry(
    "vlguard.generation.openai_api:OpenAIBackend",
    "an OpenAI-compatible chat endpoint (API key from the environment only)",
    options_from="vlguard.generation.openai_api:OpenAIBackend",
    check="vlguard.generation.openai_api:check_settings",
)
BACKENDS["vllm"] = BackendEntry(
    "vlguard.generation.vllm_backend:VLLMBackend",
    "vLLM offline engine for GPUs (pip install 'vlguard[vllm]')",
    options_from="vlguard.generation.vllm_backend:VLLMBackend",
    local_weights=True,
)


def backend_entry(name: str) -> BackendEntry:
    """The registry entry of backend ``name``; ``ConfigError`` naming the known ones otherwise."""
    return BACKENDS.entry(name)


def check_backend_options(name: str, options: Mapping[str, Any]) -> None:
    """``ConfigError`` for an unknown backend, for an option its constructor does not take, or when its
    entry's ``check`` refuses the settings (e.g. no API key for an endpoint that needs one).

    Run before any model loads, so that a mistyped ``--backend-option`` is one line at once, not a
    ``TypeError`` traceback after the benchmark and the model have loaded.
    """
    entry = backend_entry(name)
    _check_signature(name, entry, options)
    if entry.check is not None:
        resolve(entry.check)(options)


def _check_signature(name: str, entry: BackendEntry, options: Mapping[str, Any]) -> None:
    parameters = inspect.signature(resolve(entry.options_from or entry.target)).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return  # it takes any keyword (e.g. a factory that passes them on): it checks its own options
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
    check_backend_options(name, kwargs)
    try:
        return backend_entry(name)(model, **kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"cannot create the {name!r} backend: {err}") from err
