"""The Hugging Face backend: any VLM that loads with AutoModelForImageTextToText + AutoProcessor.

Greedy decoding, batched with LEFT padding (right padding changes the greedy output of shorter prompts),
so a batch gives the same texts as one request at a time (exactly in fp32, as the tests check; in bf16 on
a GPU, differently shaped matmuls can round differently and flip a rare near-tie between two tokens). Within the list given to ``generate``,
requests are sorted by prompt length before batching to waste less compute on padding; outputs come
back in request order. A PEFT LoRA adapter is applied on top of the base model without merging, so
the evaluated weights are exactly base + adapter.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vlguard.errors import ConfigError
from vlguard.generation.base import GenerationRequest
from vlguard.records import Generation

logger = logging.getLogger(__name__)

TINY_PREFIX = "tiny"
# Padded batches per generate call: more sort more prompts by length (less padding); fewer lose less
# work when a run is killed (the eval loop appends after every call).
BATCHES_PER_CALL = 4


def resolve_device(device: str = "auto") -> str:
    """``auto`` → this process's CUDA device (``cuda:<LOCAL_RANK>`` under torchrun) or ``cpu``."""
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return "cpu"


def resolve_dtype(dtype: str, device: str) -> str:
    """``auto`` → ``bfloat16`` on CUDA, ``float32`` elsewhere (CPU bf16 matmuls are slow and lossy)."""
    if dtype != "auto":
        if dtype not in ("float32", "bfloat16", "float16"):
            raise ConfigError(f"dtype must be auto, float32, bfloat16 or float16, not {dtype!r}")
        return dtype
    return "bfloat16" if device.startswith("cuda") else "float32"


def is_tiny(model: str) -> bool:
    """Whether ``model`` names the built-in tiny VLM (``tiny`` or ``tiny:<size>``), not a path or Hub id."""
    return model == TINY_PREFIX or model.startswith(TINY_PREFIX + ":")


def tiny_cache_root() -> Path:
    """Where built tiny models live: ``$VLGUARD_CACHE/models`` or ``~/.cache/vlguard/models``."""
    base = os.environ.get("VLGUARD_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "vlguard"
    )
    return Path(base) / "models"


def ensure_tiny_model(
    model: str = TINY_PREFIX, *, seed: int = 0, cache_root: str | Path | None = None
) -> Path:
    """Build the tiny VLM once and return its folder, keyed by its build arguments.

    ``model`` is ``tiny`` or ``tiny:<size>`` (a size of ``vlguard.models.tiny.TINY_SIZES``). The folder
    name holds a hash of (size, seed, tokenizer texts), so other arguments never reuse a stale model.
    Concurrent builders (several ranks) each build into a temporary folder and rename it into place.
    """
    from vlguard.models.tiny import TINY_SIZES, build_tiny_vlm

    size = model.split(":", 1)[1] if ":" in model else "tiny"
    if size not in TINY_SIZES:
        raise ConfigError(f"unknown tiny model size {size!r}; known: {', '.join(sorted(TINY_SIZES))}")
    key = hashlib.sha256(json.dumps({"size": size, "seed": seed, "texts": []}).encode()).hexdigest()[:12]
    root = Path(cache_root) if cache_root is not None else tiny_cache_root()
    target = root / f"tiny-{size}-{key}"
    if (target / "config.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{target.name}.{os.getpid()}.tmp"
    build_tiny_vlm(tmp, size=size, seed=seed)
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
        from huggingface_hub.errors import HfHubHTTPError

        try:
            path = Path(
                snapshot_download(
                    adapter, allow_patterns=["adapter_config.json", "adapter_model.safetensors"]
                )
            )
        except (OSError, ValueError, HfHubHTTPError) as err:
            raise ConfigError(f"cannot load LoRA adapter {adapter!r}: {err}") from err
    if not (path / "adapter_model.safetensors").is_file():
        raise ConfigError(f"adapter folder {adapter} has no adapter_model.safetensors (safetensors only)")
    return path


class HFBackend:
    """Batched greedy generation with a transformers image-text-to-text model.

    ``model`` is a local folder, a Hub id (pinned with ``revision``) or ``tiny`` (the built-in tiny VLM,
    built once and loaded through this same path). ``adapter`` is a PEFT LoRA folder or Hub id, applied
    without merging. ``dtype``/``device`` default to bf16 on CUDA and fp32 on CPU.
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
        generate_kwargs: dict[str, Any] | None = None,
    ) -> None:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        resolved_device = resolve_device(device)
        path = str(ensure_tiny_model(model)) if is_tiny(model) else model
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
            trust_remote_code=trust_remote_code,
            generate_kwargs=generate_kwargs,
        )
        try:
            self.processor = AutoProcessor.from_pretrained(
                path, revision=revision, trust_remote_code=trust_remote_code
            )
            base: Any = AutoModelForImageTextToText.from_pretrained(
                path,
                revision=revision,
                dtype=getattr(torch, self.dtype),
                use_safetensors=True,
                trust_remote_code=trust_remote_code,
            )
        except (OSError, ValueError) as err:
            raise ConfigError(f"cannot load model {model!r} (revision {revision!r}): {err}") from err
        self._use_processor(self.processor)

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
        generate_kwargs: dict[str, Any] | None = None,
    ) -> HFBackend:
        """A backend around a model and processor already in memory (benchmarks, notebooks).

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
            trust_remote_code=False,
            generate_kwargs=generate_kwargs,
        )
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
        trust_remote_code: bool,
        generate_kwargs: dict[str, Any] | None,
    ) -> None:
        """The settings ``describe()`` reports; one place for both constructors."""
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, not {batch_size}")
        self.model_id = model_id
        self.model_path = model_path
        self.revision = revision
        self.adapter = adapter
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.system_prompt = system_prompt
        self.trust_remote_code = trust_remote_code
        # Extra generate() arguments (e.g. min_new_tokens for benchmarks); greedy settings always win.
        self.generate_kwargs = dict(generate_kwargs or {})

    def _use_processor(self, processor: Any) -> None:
        """Check the chat template and set left padding on the processor's tokenizer."""
        if getattr(processor, "chat_template", None) is None:
            raise ConfigError(
                f"model {self.model_id!r} has no chat template in its processor; vlguard needs one to build prompts "
                "(pick a chat/instruct checkpoint or add chat_template.jinja to the model folder)"
            )
        self.tokenizer = getattr(processor, "tokenizer", processor)
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
            "revision": self.revision,
            "adapter": self.adapter,
            "dtype": self.dtype,
            "device": self.device,
            "batch_size": self.batch_size,
            "requests_per_call": self.requests_per_call,
            "max_new_tokens": self.max_new_tokens,
            "generate_kwargs": self.generate_kwargs,
            "decoding": "greedy",
            "system_prompt": self.system_prompt,
            "trust_remote_code": self.trust_remote_code,
        }

    def prompt_text(self, request: GenerationRequest) -> str:
        """The chat-templated prompt; the image placeholder is included only when there is an image."""
        content: list[dict[str, Any]] = []
        if request.image is not None:
            content.append({"type": "image"})
        content.append({"type": "text", "text": request.prompt})
        messages: list[dict[str, Any]] = []
        system = request.system_or(self.system_prompt)
        if system:
            messages.append({"role": "system", "content": [{"type": "text", "text": system}]})
        messages.append({"role": "user", "content": content})
        text: str = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return text

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
        batch: list[int] = []
        for i in order:
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

    @property
    def _eos_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        return set(eos) if isinstance(eos, list) else {int(eos)} if eos is not None else set()

    def _generate_texts(self, texts: list[str], images: list[Any]) -> list[tuple[str, dict[str, Any]]]:
        """Run one padded batch through ``model.generate``; returns (text, meta) per prompt."""
        import torch

        kwargs: dict[str, Any] = {"text": texts, "return_tensors": "pt", "padding": True}
        if images[0] is not None:
            kwargs["images"] = images
        inputs = self.processor(**kwargs).to(self.device)
        if "pixel_values" in inputs and inputs["pixel_values"].is_floating_point():
            inputs["pixel_values"] = inputs["pixel_values"].to(getattr(torch, self.dtype))
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
