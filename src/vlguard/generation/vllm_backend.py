"""The vLLM backend (optional, GPUs): ``pip install 'vlguard[vllm]'``.

Uses vLLM's offline chat API (``LLM.chat``), which applies the model's own chat template; images go as
base64 PNG data URLs in OpenAI-style ``image_url`` parts. Greedy decoding (temperature 0). vLLM
schedules the whole list of requests itself (continuous batching), so ``batch_size`` only bounds how
many conversations are handed to it per call. A LoRA adapter is served with ``LoRARequest`` (not merged).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from vlguard.errors import ConfigError
from vlguard.generation.base import GenerationRequest
from vlguard.generation.openai_api import chat_messages
from vlguard.records import Generation

logger = logging.getLogger(__name__)


class VLLMBackend:
    """Greedy generation with vLLM's ``LLM`` engine (imported only when this backend is chosen)."""

    name = "vllm"

    def __init__(
        self,
        model: str,
        *,
        revision: str | None = None,
        adapter: str | None = None,
        dtype: str = "auto",
        device: str = "auto",
        batch_size: int = 256,
        max_new_tokens: int = 256,
        trust_remote_code: bool = False,
        system_prompt: str | None = None,
        max_lora_rank: int = 64,
        **engine_kwargs: Any,
    ) -> None:
        try:
            from vllm import LLM, SamplingParams
        except ImportError as err:
            raise ConfigError(
                "the vllm backend needs the optional vLLM package: pip install 'vlguard[vllm]' "
                f"(import failed: {err})"
            ) from err
        if device not in ("auto", "cuda"):
            raise ConfigError(f"the vllm backend runs on CUDA GPUs only (device={device!r})")
        self.model_id = model
        self.revision = revision
        self.adapter = adapter
        # vLLM's "auto" picks the checkpoint's dtype; bf16 is what the hf backend uses on GPUs.
        self.dtype = "bfloat16" if dtype == "auto" else dtype
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.system_prompt = system_prompt
        self.trust_remote_code = trust_remote_code
        self.llm = LLM(
            model=model,
            revision=revision,
            dtype=self.dtype,
            trust_remote_code=trust_remote_code,
            enable_lora=adapter is not None,
            max_lora_rank=max_lora_rank,
            limit_mm_per_prompt={"image": 1},
            **engine_kwargs,
        )
        self.sampling = SamplingParams(temperature=0.0, max_tokens=max_new_tokens)
        self.lora_request = None
        if adapter is not None:
            from vllm.lora.request import LoRARequest

            from vlguard.generation.hf import safetensors_adapter

            # The same safetensors-only resolution as the hf backend (a Hub id becomes a local folder).
            self.lora_request = LoRARequest("adapter", 1, str(safetensors_adapter(adapter)))

    def describe(self) -> dict[str, Any]:
        """Model id, revision, adapter, dtype and decoding settings (for the manifest)."""
        return {
            "backend": self.name,
            "model": self.model_id,
            "revision": self.revision,
            "adapter": self.adapter,
            "dtype": self.dtype,
            "batch_size": self.batch_size,
            "max_new_tokens": self.max_new_tokens,
            "decoding": "greedy",
            "system_prompt": self.system_prompt,
            "trust_remote_code": self.trust_remote_code,
        }

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Answer every request; outputs in request order."""
        results: list[Generation] = []
        for start in range(0, len(requests), self.batch_size):
            chunk = requests[start : start + self.batch_size]
            outputs = self.llm.chat(
                [chat_messages(r, self.system_prompt) for r in chunk],
                self.sampling,
                use_tqdm=False,
                lora_request=self.lora_request,
            )
            for request, output in zip(chunk, outputs, strict=True):
                completion = output.outputs[0]
                results.append(
                    Generation(
                        sample_id=request.sample_id,
                        response=completion.text.strip(),
                        meta={
                            "prompt_tokens": len(output.prompt_token_ids or []),
                            "completion_tokens": len(completion.token_ids),
                            "finish_reason": completion.finish_reason,
                        },
                    )
                )
        return results
