"""The Hugging Face backend: any VLM (AutoModelForImageTextToText) or text-only LLM (AutoModelForCausalLM).

The model's config picks the auto class (``vlguard.models.loading``): a VLM loads with its processor, a
text-only LM with its tokenizer, and both go through the same prompt rendering, batching and decoding.
Prompts are rendered with the model's chat template (``prompt_format="chat"``, the default) or with the
Stanford Alpaca template (``prompt_format="alpaca"``, exact strings from ``vlguard.prompts``, for base
models without a chat template, as the harmful fine-tuning papers use them). A text-only model cannot see
images: a request with an image is a ``ConfigError`` (evaluate it with image mode ``none``).

Greedy decoding, batched with LEFT padding (right padding changes the greedy output of shorter prompts),
so a batch gives the same texts as one request at a time (exactly in fp32, as the tests check; in bf16 on
a GPU, differently shaped matmuls can round differently and flip a rare near-tie between two tokens).
Each prompt's images go to the processor as their own list (``[[image], [image], ...]``), which every
processor reads as one image per prompt. Within the list given to ``generate``, requests are sorted by
prompt length, longest first, before batching to waste less compute on padding (and to meet an
out-of-memory batch at once); outputs come back in request order. The eval loop also asks the backend
for an order of the whole pending set (``order_requests``), so the sorting spans more than one call. A
PEFT LoRA adapter is applied on top of the base model without merging, so the evaluated weights are
exactly base + adapter.

Speed options (recorded with their effective values by ``describe()``):

- ``cache_implementation``: ``dynamic`` (default; transformers' cache that grows every step) or
  ``static`` (preallocated; on CUDA, transformers 5.24 then compiles the decoding step with CUDA graphs,
  ``torch.compile(mode="reduce-overhead")``). The static cache is sized in steps of
  ``STATIC_CACHE_STEP`` tokens so batches of similar length reuse one compiled graph. An architecture
  that cannot decode that way (``static_cache_problem``) falls back to ``dynamic`` with the reason logged
  and recorded. ``generate_kwargs={"disable_compile": True}`` keeps the static cache uncompiled.
- ``attn_implementation``: ``sdpa``, ``eager`` or ``flash_attention_2`` (when the flash-attn package is
  installed); None keeps transformers' choice for the model.
- ``batch_size="auto"``: on CUDA, as many prompts as the free memory holds KV cache for
  (``batch_size_for_memory``); elsewhere the default of 16.

Decoding follows ``vlguard.generation.decoding``: greedy, with the model's own generation-config settings
that change greedy decoding (``repetition_penalty``, ...) applied, as ``generate`` does; the manifest
records them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from vlguard.distributed import local_rank
from vlguard.errors import ConfigError
from vlguard.generation.base import GenerationRequest
from vlguard.generation.decoding import greedy_settings
from vlguard.models.loading import (
    CAUSAL_LM,
    IMAGE_TEXT_TO_TEXT,
    detect_kind,
    load_model,
    load_processor,
    sees_images,
    starts_with_bos,
    tokenizer_of,
)
from vlguard.models.resolve import check_model_reference, resolve_model_path
from vlguard.prompts import PROMPT_FORMATS, alpaca_prompt, is_alpaca, user_text
from vlguard.records import Generation

logger = logging.getLogger(__name__)

# Padded batches per generate call: more sort more prompts by length (less padding); fewer lose less
# work when a run is killed (the eval loop appends after every call).
BATCHES_PER_CALL = 4
DEFAULT_BATCH_SIZE = 16
CACHE_IMPLEMENTATIONS = ("dynamic", "static")
# The KV cache when none is asked for. "static" (compiled decoding on CUDA) becomes the default once a
# GPU measurement shows it faster (bench/eval_throughput.py --gpu-7b, docs/benchmarks.md): flip it here.
DEFAULT_CACHE_IMPLEMENTATION = "dynamic"
ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2")
# A static cache holds prompt + new tokens rounded up to a multiple of this: batches whose lengths fall in
# the same step share one cache shape, hence one compiled decoding graph (no recompilation).
STATIC_CACHE_STEP = 256
# batch_size=auto: the prompt length budgeted per sequence (a LLaVA-1.5 prompt is 576 image tokens plus
# the text; longer ones are met by halving a batch that runs out of memory), the share of the free
# memory given to the KV cache (the rest: activations, the vision tower, allocator slack), the largest
# batch chosen, and its granularity.
AUTO_BATCH_PROMPT_TOKENS = 1024
AUTO_BATCH_MEMORY_FRACTION = 0.85
AUTO_BATCH_MAX = 256
AUTO_BATCH_MULTIPLE = 8
# generate() arguments the backend sets from its own options (so an option is never silently overridden).
_OPTION_GENERATE_KWARGS = {
    "cache_implementation": "cache_implementation",
    "max_cache_len": "cache_implementation",
}

if TYPE_CHECKING:
    from transformers import PretrainedConfig


DEVICE_TYPES = ("cpu", "cuda", "mps")


def resolve_device(device: str = "auto") -> str:
    """``auto`` → this process's CUDA device (``cuda:<LOCAL_RANK>`` under torchrun) or ``cpu``.

    Any other value is checked: ``ConfigError`` for an unknown device, or a CUDA / MPS device this
    machine or this torch build does not have (checked before any model loads).
    """
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return f"cuda:{local_rank()}"
        return "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if parsed.type not in DEVICE_TYPES:
        raise ConfigError(f"device {device!r} is not supported; use auto, cpu, cuda, cuda:N or mps")
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {device!r}: CUDA is not available (this torch build has no CUDA support, or no GPU "
                "is visible); use --device cpu or auto"
            )
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(
            f"device {device!r}: MPS is not available on this machine; use --device cpu or auto"
        )
    return device


def resolve_dtype(dtype: str, device: str) -> str:
    """``auto`` → ``bfloat16`` on CUDA, ``float32`` elsewhere (CPU bf16 matmuls are slow and lossy)."""
    if dtype != "auto":
        if dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError(f"dtype must be auto, float32, bfloat16 or float16, not {dtype!r}")
        return dtype
    return "bfloat16" if device.startswith("cuda") else "float32"


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """``text`` up to where the first of the stop strings begins (all of it when none occurs)."""
    cut = len(text)
    for stop in stops:
        if stop:
            found = text.find(stop)
            if found != -1:
                cut = min(cut, found)
    return text[:cut]


def kv_cache_bytes_per_token(text_config: PretrainedConfig, dtype_bytes: int) -> int:
    """Bytes of KV cache one token takes in every layer: keys and values × KV heads × head size.

    ``text_config`` is the language model's config (``num_hidden_layers``, ``num_key_value_heads`` or
    ``num_attention_heads``, ``head_dim`` or ``hidden_size / num_attention_heads``). Sliding-window layers
    are counted in full: an upper bound.
    """
    layers = int(text_config.num_hidden_layers)
    heads = int(text_config.num_attention_heads)
    kv_heads = int(getattr(text_config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(text_config, "head_dim", None) or text_config.hidden_size // heads)
    return 2 * layers * kv_heads * head_dim * dtype_bytes


def batch_size_for_memory(
    free_bytes: int,
    bytes_per_token: int,
    tokens_per_sequence: int,
    *,
    fraction: float = AUTO_BATCH_MEMORY_FRACTION,
    largest: int = AUTO_BATCH_MAX,
    multiple: int = AUTO_BATCH_MULTIPLE,
) -> int:
    """The batch whose KV cache fits ``fraction`` of ``free_bytes``: ``tokens_per_sequence`` tokens each
    at ``bytes_per_token``; rounded down to a ``multiple`` (when at least one), between 1 and ``largest``."""
    per_sequence = bytes_per_token * tokens_per_sequence
    if per_sequence <= 0:
        raise ValueError(f"bytes per sequence must be positive, not {per_sequence}")
    fits = int(free_bytes * fraction) // per_sequence
    if fits >= multiple:
        fits -= fits % multiple
    return max(1, min(largest, fits))


def static_cache_problem(model: Any) -> str | None:
    """Why ``model`` cannot decode with a compiled static cache, or None when it can.

    As transformers 5.24 decides it: a model that keeps its own cache ignores ``cache_implementation``
    (``_supports_default_dynamic_cache``); a model whose class declares ``_can_compile_fullgraph = False``
    breaks the compiled decoding step into pieces (graph breaks, no single CUDA graph); and the static
    cache must be buildable from the text config.
    """
    from transformers import StaticCache

    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # under a PEFT adapter
    name = type(base).__name__
    if not base._supports_default_dynamic_cache():
        return f"{name} keeps a cache of its own; transformers ignores cache_implementation for it"
    if not getattr(base, "_can_compile_fullgraph", False):
        return (
            f"{name} declares _can_compile_fullgraph = False in transformers: its decoding step does not "
            "compile into one graph"
        )
    try:
        StaticCache(config=base.config.get_text_config(decoder=True), max_cache_len=8)
    except (ValueError, TypeError, AttributeError, NotImplementedError) as err:
        return f"transformers cannot build a static cache for {name}: {err}"
    return None


def is_compile_failure(err: BaseException) -> bool:
    """Whether ``err`` comes from ``torch.compile`` building a graph (not from running the model)."""
    from torch._dynamo.exc import BackendCompilerFailed, InternalTorchDynamoError

    return isinstance(err, (BackendCompilerFailed, InternalTorchDynamoError))


def check_attn_implementation(value: str | None) -> None:
    """``ConfigError`` unless ``value`` is None or an attention implementation that can load here."""
    if value is None:
        return
    if value not in ATTN_IMPLEMENTATIONS:
        raise ConfigError(
            f"attn_implementation must be one of {', '.join(ATTN_IMPLEMENTATIONS)}, not {value!r}"
        )
    if value == "flash_attention_2":
        from transformers.utils import is_flash_attn_2_available

        if not is_flash_attn_2_available():
            raise ConfigError(
                "attn_implementation=flash_attention_2 needs the flash-attn package and a CUDA GPU it "
                "supports (pip install flash-attn); use sdpa"
            )


class HFBackend:
    """Batched greedy generation with a transformers VLM or text-only causal LM.

    ``model`` is a local folder, a Hub id (pinned with ``revision``), ``tiny`` (the built-in tiny VLM) or
    ``tiny-lm`` (the built-in tiny text LM), built once and loaded through this same path. ``adapter`` is a
    PEFT LoRA folder or Hub id, applied without merging. ``dtype``/``device`` default to bf16 on CUDA and
    fp32 on CPU. ``prompt_format`` is ``chat`` (the model's chat template), ``alpaca`` (the Alpaca prompt,
    for base models without a chat template) or ``alpaca-newline`` (Booster's: a newline after
    ``### Response:``). ``batch_size`` (or ``auto``), ``cache_implementation`` and ``attn_implementation``
    are the speed options of the module docstring.
    """

    name = "hf"

    def __init__(
        self,
        model: str,
        *,
        revision: str | None = None,
        adapter: str | None = None,
        dtype: str = "auto",
        device: str = "auto",
        batch_size: int | str = DEFAULT_BATCH_SIZE,
        max_new_tokens: int = 256,
        trust_remote_code: bool = False,
        system_prompt: str | None = None,
        prompt_format: str = "chat",
        generate_kwargs: dict[str, Any] | None = None,
        cache_implementation: str = DEFAULT_CACHE_IMPLEMENTATION,
        attn_implementation: str | None = None,
    ) -> None:
        import torch

        resolved_device = resolve_device(device)
        check_model_reference(model)
        check_attn_implementation(attn_implementation)
        path = resolve_model_path(model)
        self._set_settings(
            model_id=model,
            model_path=path,
            revision=revision,
            adapter=adapter,
            device=resolved_device,
            dtype=resolve_dtype(dtype, resolved_device),
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            system_prompt=system_prompt,
            prompt_format=prompt_format,
            trust_remote_code=trust_remote_code,
            generate_kwargs=generate_kwargs,
            cache_implementation=cache_implementation,
        )
        kind = detect_kind(path, revision=revision, trust_remote_code=trust_remote_code)
        self.model_kind = kind.name
        self.processor = load_processor(path, kind, revision=revision, trust_remote_code=trust_remote_code)
        self._use_processor(self.processor)
        load_kwargs = {} if attn_implementation is None else {"attn_implementation": attn_implementation}
        base: Any = load_model(
            path,
            kind,
            revision=revision,
            dtype=getattr(torch, self.dtype),
            trust_remote_code=trust_remote_code,
            **load_kwargs,
        )

        if adapter is not None:
            from vlguard.models.adapters import apply_adapter

            base = apply_adapter(base, adapter, model)
        self.model = base.to(self.device).eval()
        self._settle_runtime()

    @classmethod
    def from_objects(
        cls,
        model: Any,
        processor: Any,
        *,
        model_id: str = "<in-memory>",
        batch_size: int | str = DEFAULT_BATCH_SIZE,
        max_new_tokens: int = 256,
        system_prompt: str | None = None,
        prompt_format: str = "chat",
        generate_kwargs: dict[str, Any] | None = None,
        cache_implementation: str = DEFAULT_CACHE_IMPLEMENTATION,
        attn_implementation: str | None = None,
    ) -> HFBackend:
        """A backend around a model and processor (or tokenizer) already in memory (benchmarks, notebooks).

        Generation is the same code as for a loaded model; the model stays on its device and dtype
        (``attn_implementation``, when given, is switched on the model itself).
        """
        check_attn_implementation(attn_implementation)
        self = cls.__new__(cls)
        param = next(model.parameters())
        self._set_settings(
            model_id=model_id,
            model_path=model_id,
            revision=None,
            adapter=None,
            device=str(param.device),
            dtype=str(param.dtype).removeprefix("torch."),
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            system_prompt=system_prompt,
            prompt_format=prompt_format,
            trust_remote_code=False,
            generate_kwargs=generate_kwargs,
            cache_implementation=cache_implementation,
        )
        self.model_kind = (IMAGE_TEXT_TO_TEXT if sees_images(processor) else CAUSAL_LM).name
        self.processor = processor
        self._use_processor(processor)
        if attn_implementation is not None:
            try:
                model.set_attn_implementation(attn_implementation)
            except (ValueError, ImportError) as err:
                raise ConfigError(f"attn_implementation={attn_implementation}: {err}") from err
        self.model = model.eval()
        self._settle_runtime()
        return self

    def _set_settings(
        self,
        *,
        model_id: str,
        model_path: str,
        revision: str | None,
        adapter: str | None,
        device: str,
        dtype: str,
        batch_size: int | str,
        max_new_tokens: int,
        system_prompt: str | None,
        prompt_format: str,
        trust_remote_code: bool,
        generate_kwargs: dict[str, Any] | None,
        cache_implementation: str,
    ) -> None:
        """The settings ``describe()`` reports; one place for both constructors."""
        if batch_size != "auto" and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
        ):
            raise ConfigError(f"batch_size must be a whole number of at least 1 or auto, not {batch_size!r}")
        if prompt_format not in PROMPT_FORMATS:
            raise ConfigError(
                f"prompt_format must be one of {', '.join(PROMPT_FORMATS)}, not {prompt_format!r}"
            )
        if is_alpaca(prompt_format) and system_prompt:
            raise ConfigError(
                f"prompt_format={prompt_format} has no system turn; drop the system prompt or use chat"
            )
        if cache_implementation not in CACHE_IMPLEMENTATIONS:
            raise ConfigError(
                f"cache_implementation must be one of {', '.join(CACHE_IMPLEMENTATIONS)}, "
                f"not {cache_implementation!r}"
            )
        clashing = sorted(set(generate_kwargs or {}) & set(_OPTION_GENERATE_KWARGS))
        if clashing:
            raise ConfigError(
                f"generate_kwargs cannot set {', '.join(clashing)}: use the backend option "
                f"{_OPTION_GENERATE_KWARGS[clashing[0]]}= instead"
            )
        self.model_id = model_id
        self.model_path = model_path
        self.revision = revision
        self.adapter = adapter
        self.device = device
        self.dtype = dtype
        self.requested_batch_size = batch_size
        self.batch_size = DEFAULT_BATCH_SIZE if batch_size == "auto" else int(batch_size)
        self.batch_size_rule: dict[str, Any] | None = None
        self.max_new_tokens = max_new_tokens
        self.system_prompt = system_prompt
        self.prompt_format = prompt_format
        self.trust_remote_code = trust_remote_code
        # Extra generate() arguments (e.g. min_new_tokens for benchmarks); greedy settings always win.
        self.generate_kwargs = dict(generate_kwargs or {})
        # Strings that end an answer (lmms-eval's ``until``), set per task with ``overrides``.
        self.stop_strings: tuple[str, ...] = ()
        self.requested_cache_implementation = cache_implementation
        self.cache_implementation = cache_implementation
        self.cache_fallback: str | None = None
        # Set when compiling the decoding step failed: decoding goes on uncompiled (see _generate_texts).
        self.compile_fallback: str | None = None
        # Batches that failed and were retried one request at a time (see _run_batch).
        self.stats = {"batch_fallbacks": 0}

    def _settle_runtime(self) -> None:
        """Once the model is loaded: the static-cache fallback and an ``auto`` batch size."""
        if self.cache_implementation == "static":
            problem = static_cache_problem(self.model)
            if problem is not None:
                logger.warning(
                    "cache_implementation=static is not possible: %s; using the dynamic cache", problem
                )
                self.cache_implementation = "dynamic"
                self.cache_fallback = problem
        if self.requested_batch_size == "auto":
            self.batch_size, self.batch_size_rule = self._auto_batch_size()
            logger.info("batch_size=auto: %d (%s)", self.batch_size, self.batch_size_rule)

    def _auto_batch_size(self) -> tuple[int, dict[str, Any]]:
        """The batch the device's free memory holds a KV cache for (CUDA); the default elsewhere."""
        if not self.device.startswith("cuda"):
            return DEFAULT_BATCH_SIZE, {
                "rule": f"the default on {self.device} (memory is sized on CUDA only)"
            }
        import torch

        device = torch.device(self.device)
        free, _total = torch.cuda.mem_get_info(device)
        # Memory this process's allocator holds but does not use is free for the cache too.
        free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        text_config = self.model.config.get_text_config(decoder=True)
        per_token = kv_cache_bytes_per_token(
            text_config, torch.tensor([], dtype=getattr(torch, self.dtype)).element_size()
        )
        context = self.context_length()
        prompt = AUTO_BATCH_PROMPT_TOKENS if context is None else min(context, AUTO_BATCH_PROMPT_TOKENS)
        tokens = prompt + self.max_new_tokens
        size = batch_size_for_memory(free, per_token, tokens)
        return size, {
            "rule": "KV cache of the free CUDA memory",
            "free_bytes": int(free),
            "kv_bytes_per_token": per_token,
            "tokens_per_sequence": tokens,
            "memory_fraction": AUTO_BATCH_MEMORY_FRACTION,
        }

    def _use_processor(self, processor: Any) -> None:
        """Check the chat template (chat format) and set left padding on the tokenizer."""
        self.tokenizer = tokenizer_of(processor)
        self.accepts_images = sees_images(processor)
        template = getattr(processor, "chat_template", None)
        if self.prompt_format == "chat" and not template:
            raise ConfigError(
                f"model {self.model_id!r} has no chat template; vlguard needs one to build chat prompts: "
                "use --backend-option prompt_format=alpaca for a base model without one, pick a "
                "chat/instruct checkpoint, or add chat_template.jinja to the model folder"
            )
        # Left padding: every prompt ends right where generation starts, so batching is output-neutral.
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    @property
    def requests_per_call(self) -> int:
        """Requests per ``generate`` call: a few padded batches (``batch_size`` × ``BATCHES_PER_CALL``)."""
        return self.batch_size * BATCHES_PER_CALL

    @contextlib.contextmanager
    def overrides(
        self, *, max_new_tokens: int | None = None, stop_strings: Sequence[str] = ()
    ) -> Iterator[None]:
        """Answer with another ``max_new_tokens`` and these ``stop_strings`` inside the block (a capability
        task's own settings); the loaded settings come back after it."""
        saved = self.max_new_tokens, self.stop_strings
        self.max_new_tokens = saved[0] if max_new_tokens is None else max_new_tokens
        self.stop_strings = tuple(s for s in stop_strings if s)
        try:
            yield
        finally:
            self.max_new_tokens, self.stop_strings = saved

    @property
    def compiled_decoding(self) -> bool:
        """Whether transformers compiles the decoding step: a static cache on CUDA, compile not disabled."""
        return (
            self.cache_implementation == "static"
            and self.device.startswith("cuda")
            and not self.generate_kwargs.get("disable_compile")
            and self.compile_fallback is None
        )

    def decoding_settings(self) -> dict[str, Any]:
        """The settings that change greedy decoding, as ``generate`` applies them: the model's own
        generation config, overridden by ``generate_kwargs`` (``vlguard.generation.decoding``)."""
        return greedy_settings({**self.model.generation_config.to_dict(), **self.generate_kwargs})

    def describe(self) -> dict[str, Any]:
        """Model id, revision, adapter, resolved dtype/device, the effective speed and decoding settings
        (for the manifest)."""
        return {
            "backend": self.name,
            "model": self.model_id,
            "model_path": self.model_path,
            "model_kind": self.model_kind,
            "revision": self.revision,
            "adapter": self.adapter,
            "dtype": self.dtype,
            "device": self.device,
            "batch_size": self.batch_size,
            "batch_size_auto": self.batch_size_rule,
            "requests_per_call": self.requests_per_call,
            "max_new_tokens": self.max_new_tokens,
            "generate_kwargs": self.generate_kwargs,
            "decoding": "greedy",
            "decoding_settings": self.decoding_settings(),
            "model_decoding_defaults": greedy_settings(self.model.generation_config.to_dict()),
            "cache_implementation": self.cache_implementation,
            "cache_implementation_requested": self.requested_cache_implementation,
            "cache_fallback_reason": self.cache_fallback,
            "compiled_decoding": self.compiled_decoding,
            "compile_fallback_reason": self.compile_fallback,
            "attn_implementation": getattr(self.model.config, "_attn_implementation", None),
            "prompt_format": self.prompt_format,
            "system_prompt": self.system_prompt,
            "trust_remote_code": self.trust_remote_code,
        }

    def prompt_text(self, request: GenerationRequest) -> str:
        """The prompt as text: chat-templated (image placeholder only with an image) or Alpaca."""
        if request.image is not None and not self.accepts_images:
            raise ConfigError(
                f"model {self.model_id!r} is a text-only {self.model_kind} model and cannot see images "
                f"(sample {request.sample_id}); evaluate it with --image-mode none"
            )
        if is_alpaca(self.prompt_format):
            if request.image is not None:
                raise ConfigError(
                    f"prompt_format={self.prompt_format} is text only (sample {request.sample_id} has an "
                    "image); use --image-mode none or prompt_format=chat"
                )
            if request.system_or(self.system_prompt):
                raise ConfigError(
                    f"prompt_format={self.prompt_format} has no system turn (sample {request.sample_id})"
                )
            return alpaca_prompt(request.prompt, request.input, self.prompt_format)
        text = user_text(request.prompt, request.input)
        system = request.system_or(self.system_prompt)
        messages: list[dict[str, Any]] = []
        if self.accepts_images:
            # VLM templates take a list of typed parts.
            content: list[dict[str, Any]] = [{"type": "image"}] if request.image is not None else []
            content.append({"type": "text", "text": text})
            if system:
                messages.append({"role": "system", "content": [{"type": "text", "text": system}]})
            messages.append({"role": "user", "content": content})
        else:
            # Text-only LLM templates (Llama, Qwen, Mistral, ...) expect plain string content.
            if system:
                messages.append({"role": "system", "content": system})
            messages.append({"role": "user", "content": text})
        rendered: str = self.processor.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False
        )
        return rendered

    def order_requests(self, requests: Sequence[GenerationRequest], with_image: Sequence[bool]) -> list[int]:
        """The order to answer ``requests`` in (indices): with images first, then longest prompt first.

        The eval loop asks this of the whole pending set before cutting it into calls, so every padded
        batch holds prompts of similar length, not only the batches within one call. ``requests`` carry
        no image (loading every image up front would cost memory for nothing); ``with_image`` says which
        will have one.
        """
        if not requests:
            return []
        lengths = self._token_lengths([self.prompt_text(r) for r in requests])
        return sorted(range(len(requests)), key=lambda i: (not with_image[i], -lengths[i], i))

    def _token_lengths(self, texts: list[str]) -> list[int]:
        # One batched (fast-tokenizer) call; token counts group prompts better than character counts.
        return [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Answer every request in batches of ``batch_size``; outputs in request order.

        Requests are grouped by whether they carry an image (processors cannot mix both in one call)
        and sorted by prompt length, longest first, so each batch holds prompts of similar length, a
        batch too big for the device fails at once, and a static cache sized by the first batch serves
        the later ones.
        """
        if not requests:
            return []
        texts = [self.prompt_text(r) for r in requests]
        lengths = self._token_lengths(texts)
        order = sorted(range(len(requests)), key=lambda i: (requests[i].image is None, -lengths[i], i))
        results: list[Generation | None] = [None] * len(requests)
        context = self.context_length()
        batch: list[int] = []
        for i in order:
            if context is not None and lengths[i] > context:
                # Never run it: the model was not made to attend that far, and on the way it could allocate
                # memory quadratic in the length (a 3 MB prompt asked for terabytes) before failing.
                results[i] = Generation(
                    sample_id=requests[i].sample_id,
                    response="",
                    error=f"prompt too long: {lengths[i]:,} tokens, more than the model's context of "
                    f"{context:,} tokens",
                )
                continue
            if batch and (
                len(batch) == self.batch_size
                or (requests[batch[0]].image is None) != (requests[i].image is None)
            ):
                self._run_batch(batch, requests, texts, results)
                batch = []
            batch.append(i)
        if batch:
            self._run_batch(batch, requests, texts, results)
        return [g for g in results if g is not None]

    def _run_batch(
        self,
        batch: list[int],
        requests: Sequence[GenerationRequest],
        texts: list[str],
        results: list[Generation | None],
    ) -> None:
        import torch

        try:
            outs = self._generate_texts([texts[i] for i in batch], [requests[i].image for i in batch])
        except torch.cuda.OutOfMemoryError:
            if len(batch) == 1:
                raise
            # Too big for the device: halve the batch (outputs do not depend on batch composition).
            logger.warning("out of memory with a batch of %d; retrying in halves", len(batch))
            torch.cuda.empty_cache()
            half = len(batch) // 2
            self._run_batch(batch[:half], requests, texts, results)
            self._run_batch(batch[half:], requests, texts, results)
            return
        except (RuntimeError, ValueError) as err:
            if len(batch) > 1:
                self.stats["batch_fallbacks"] += 1
                logger.warning("batch failed (%s); retrying its requests one at a time", err)
                for i in batch:
                    self._run_batch([i], requests, texts, results)
                return
            logger.warning("generation failed for %s: %s", requests[batch[0]].sample_id, err)
            results[batch[0]] = Generation(
                sample_id=requests[batch[0]].sample_id, response="", error=f"{type(err).__name__}: {err}"
            )
            return
        for i, (response, meta) in zip(batch, outs, strict=True):
            results[i] = Generation(sample_id=requests[i].sample_id, response=response, meta=meta)

    def context_length(self) -> int | None:
        """The most tokens the language model attends to (``max_position_embeddings``), if its config says."""
        config = getattr(self.model, "config", None)
        for candidate in (getattr(config, "text_config", None), config):
            value = getattr(candidate, "max_position_embeddings", None)
            if isinstance(value, int) and value > 0:
                return value
        return None

    @property
    def _eos_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        return set(eos) if isinstance(eos, list) else {int(eos)} if eos is not None else set()

    def model_inputs(self, texts: list[str], images: list[Any]) -> Any:
        """The padded batch for ``model.generate``: token ids, attention mask and, with images, pixel inputs.

        Each prompt's image goes in its own list: a flat list would be read by some processors (Gemma 3,
        Mllama, SmolVLM) as all the images of one prompt.
        """
        import torch

        kwargs: dict[str, Any] = {
            "text": texts,
            "return_tensors": "pt",
            "padding": True,
            "add_special_tokens": not starts_with_bos(self.tokenizer, texts[0]),
        }
        if images[0] is not None:
            kwargs["images"] = [[image] for image in images]
        inputs = self.processor(**kwargs).to(self.device)
        for key in list(inputs.keys()):
            if key.startswith("pixel_values") and inputs[key].is_floating_point():
                inputs[key] = inputs[key].to(getattr(torch, self.dtype))
        return inputs

    def _cache_kwargs(self, prompt_tokens: int) -> dict[str, Any]:
        """``generate()``'s cache arguments: a static cache rounded up to ``STATIC_CACHE_STEP`` tokens."""
        if self.cache_implementation != "static":
            return {}
        needed = prompt_tokens + self.max_new_tokens
        size = -(-needed // STATIC_CACHE_STEP) * STATIC_CACHE_STEP
        context = self.context_length()
        if context is not None:
            size = max(needed, min(size, context))
        return {"cache_implementation": "static", "max_cache_len": size}

    def _generate_texts(self, texts: list[str], images: list[Any]) -> list[tuple[str, dict[str, Any]]]:
        """Run one padded batch through ``model.generate``; returns (text, meta) per prompt.

        With ``stop_strings``, generation of a sequence stops as soon as its text ends with one
        (transformers' ``StopStringCriteria``), and the text is cut where the first one begins.
        """
        import torch

        inputs = self.model_inputs(texts, images)
        stop_kwargs: dict[str, Any] = {}
        if self.stop_strings:
            stop_kwargs = {"stop_strings": list(self.stop_strings), "tokenizer": self.tokenizer}
        arguments = {
            **inputs,
            **self.generate_kwargs,
            **self._cache_kwargs(int(inputs["input_ids"].shape[1])),
            **stop_kwargs,
            "max_new_tokens": self.max_new_tokens,
            "do_sample": False,
            "num_beams": 1,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if self.compile_fallback is not None:
            arguments["disable_compile"] = True
        with torch.inference_mode():
            try:
                out = self.model.generate(**arguments)
            except Exception as err:
                if self.compile_fallback is not None or not is_compile_failure(err):
                    raise
                # torch.compile could not build the decoding step (a missing compiler, an unsupported op):
                # the static cache still works uncompiled. Said in the log and in describe(), not silently.
                self.compile_fallback = f"{type(err).__name__}: {str(err)[:500]}"
                logger.warning(
                    "compiling the decoding step failed (%s); decoding uncompiled from now on",
                    self.compile_fallback,
                )
                out = self.model.generate(**arguments, disable_compile=True)
        prompt_len = inputs["input_ids"].shape[1]
        new_tokens = out[:, prompt_len:].tolist()
        n_prompt = inputs["attention_mask"].sum(dim=1).tolist()
        results = []
        eos = self._eos_ids
        pad = self.tokenizer.pad_token_id
        for row, n_in in zip(new_tokens, n_prompt, strict=True):
            stop = next((k for k, t in enumerate(row) if t in eos), None)
            kept = row if stop is None else row[:stop]
            finish = "stop" if stop is not None else "length"
            raw = self.tokenizer.decode(kept, skip_special_tokens=True)
            if self.stop_strings and stop is None:
                cut = cut_at_stop(raw, self.stop_strings)
                if cut != raw:
                    # Stopped by a stop string: the rest of the row is the batch's padding.
                    while kept and kept[-1] == pad:
                        kept = kept[:-1]
                    raw, finish = cut, "stop"
            meta = {"prompt_tokens": int(n_in), "completion_tokens": len(kept), "finish_reason": finish}
            results.append((raw.strip(), meta))
        return results
