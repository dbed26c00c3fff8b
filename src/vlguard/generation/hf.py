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
prompt length before batching to waste less compute on padding; outputs come back in request order. A
PEFT LoRA adapter is applied on top of the base model without merging, so the evaluated weights are
exactly base + adapter.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from vlguard.distributed import local_rank
from vlguard.errors import ConfigError
from vlguard.generation.base import GenerationRequest
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
from vlguard.models.resolve import check_model_reference, resolve_model_path, safetensors_adapter
from vlguard.prompts import PROMPT_FORMATS, alpaca_prompt, user_text
from vlguard.records import Generation

logger = logging.getLogger(__name__)

# Padded batches per generate call: more sort more prompts by length (less padding); fewer lose less
# work when a run is killed (the eval loop appends after every call).
BATCHES_PER_CALL = 4


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


class HFBackend:
    """Batched greedy generation with a transformers VLM or text-only causal LM.

    ``model`` is a local folder, a Hub id (pinned with ``revision``), ``tiny`` (the built-in tiny VLM) or
    ``tiny-lm`` (the built-in tiny text LM), built once and loaded through this same path. ``adapter`` is a
    PEFT LoRA folder or Hub id, applied without merging. ``dtype``/``device`` default to bf16 on CUDA and
    fp32 on CPU. ``prompt_format`` is ``chat`` (the model's chat template) or ``alpaca`` (the Alpaca
    prompt, for base models without a chat template).
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
        batch_size: int = 16,
        max_new_tokens: int = 256,
        trust_remote_code: bool = False,
        system_prompt: str | None = None,
        prompt_format: str = "chat",
        generate_kwargs: dict[str, Any] | None = None,
    ) -> None:
        import torch

        resolved_device = resolve_device(device)
        check_model_reference(model)
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
        )
        kind = detect_kind(path, revision=revision, trust_remote_code=trust_remote_code)
        self.model_kind = kind.name
        self.processor = load_processor(path, kind, revision=revision, trust_remote_code=trust_remote_code)
        self._use_processor(self.processor)
        base: Any = load_model(
            path,
            kind,
            revision=revision,
            dtype=getattr(torch, self.dtype),
            trust_remote_code=trust_remote_code,
        )

        if adapter is not None:
            from peft import PeftModel

            adapter_dir = safetensors_adapter(adapter)
            try:
                base = PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=False)
            except (OSError, ValueError) as err:
                raise ConfigError(f"cannot load LoRA adapter {adapter!r}: {err}") from err
        self.model = base.to(self.device).eval()

    @classmethod
    def from_objects(
        cls,
        model: Any,
        processor: Any,
        *,
        model_id: str = "<in-memory>",
        batch_size: int = 16,
        max_new_tokens: int = 256,
        system_prompt: str | None = None,
        prompt_format: str = "chat",
        generate_kwargs: dict[str, Any] | None = None,
    ) -> HFBackend:
        """A backend around a model and processor (or tokenizer) already in memory (benchmarks, notebooks).

        Generation is the same code as for a loaded model; the model stays on its device and dtype.
        """
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
        )
        self.model_kind = (IMAGE_TEXT_TO_TEXT if sees_images(processor) else CAUSAL_LM).name
        self.processor = processor
        self._use_processor(processor)
        self.model = model.eval()
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
        batch_size: int,
        max_new_tokens: int,
        system_prompt: str | None,
        prompt_format: str,
        trust_remote_code: bool,
        generate_kwargs: dict[str, Any] | None,
    ) -> None:
        """The settings ``describe()`` reports; one place for both constructors."""
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, not {batch_size}")
        if prompt_format not in PROMPT_FORMATS:
            raise ConfigError(
                f"prompt_format must be one of {', '.join(PROMPT_FORMATS)}, not {prompt_format!r}"
            )
        if prompt_format == "alpaca" and system_prompt:
            raise ConfigError("prompt_format=alpaca has no system turn; drop the system prompt or use chat")
        self.model_id = model_id
        self.model_path = model_path
        self.revision = revision
        self.adapter = adapter
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.system_prompt = system_prompt
        self.prompt_format = prompt_format
        self.trust_remote_code = trust_remote_code
        # Extra generate() arguments (e.g. min_new_tokens for benchmarks); greedy settings always win.
        self.generate_kwargs = dict(generate_kwargs or {})
        # Batches that failed and were retried one request at a time (see _run_batch).
        self.stats = {"batch_fallbacks": 0}

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

    def describe(self) -> dict[str, Any]:
        """Model id, revision, adapter, resolved dtype/device and decoding settings (for the manifest)."""
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
            "requests_per_call": self.requests_per_call,
            "max_new_tokens": self.max_new_tokens,
            "generate_kwargs": self.generate_kwargs,
            "decoding": "greedy",
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
        if self.prompt_format == "alpaca":
            if request.image is not None:
                raise ConfigError(
                    f"prompt_format=alpaca is text only (sample {request.sample_id} has an image); use "
                    "--image-mode none or prompt_format=chat"
                )
            if request.system_or(self.system_prompt):
                raise ConfigError(f"prompt_format=alpaca has no system turn (sample {request.sample_id})")
            return alpaca_prompt(request.prompt, request.input)
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

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Answer every request in batches of ``batch_size``; outputs in request order.

        Requests are grouped by whether they carry an image (processors cannot mix both in one call)
        and sorted by prompt length so each batch holds prompts of similar length.
        """
        if not requests:
            return []
        texts = [self.prompt_text(r) for r in requests]
        # One batched (fast-tokenizer) call; token counts group prompts better than character counts.
        lengths = [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]
        order = sorted(range(len(requests)), key=lambda i: (requests[i].image is None, lengths[i], i))
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

    def _generate_texts(self, texts: list[str], images: list[Any]) -> list[tuple[str, dict[str, Any]]]:
        """Run one padded batch through ``model.generate``; returns (text, meta) per prompt."""
        import torch

        inputs = self.model_inputs(texts, images)
        with torch.inference_mode():
            out = self.model.generate(
                **inputs,
                **self.generate_kwargs,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                num_beams=1,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        prompt_len = inputs["input_ids"].shape[1]
        new_tokens = out[:, prompt_len:].tolist()
        n_prompt = inputs["attention_mask"].sum(dim=1).tolist()
        results = []
        eos = self._eos_ids
        for row, n_in in zip(new_tokens, n_prompt, strict=True):
            stop = next((k for k, t in enumerate(row) if t in eos), None)
            kept = row if stop is None else row[:stop]
            text = self.tokenizer.decode(kept, skip_special_tokens=True).strip()
            meta = {
                "prompt_tokens": int(n_in),
                "completion_tokens": len(kept),
                "finish_reason": "stop" if stop is not None else "length",
            }
            results.append((text, meta))
        return results
