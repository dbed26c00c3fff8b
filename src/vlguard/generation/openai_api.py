"""The ``openai`` backend: any OpenAI-compatible chat endpoint (OpenAI, vLLM serve, TGI, Ollama, ...).

Images go as base64 PNG data URLs in ``image_url`` parts; requests run concurrently with retries
(see ``vlguard.api_client``). The API key comes from the environment variable ``api_key_env`` only.

A content-policy refusal by the API is recorded as a response, not an error: ``response=""``,
``error=None``, ``meta={"finish_reason": "content_filter", "content_policy": True}``. The API refused to
answer, which is what a safe model does, so the refusal judge labels it ``refusal`` (with
``evidence.content_policy``); a request that failed after its retries has ``error`` set instead.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from vlguard.api_client import (
    OPENAI_BASE_URL,
    ChatClient,
    ChatResult,
    Message,
    check_credentials,
    user_message,
)
from vlguard.errors import ConfigError
from vlguard.generation.base import GenerationRequest, requests_per_call_setting
from vlguard.prompts import user_text
from vlguard.records import Generation

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = OPENAI_BASE_URL
# Requests per generate call, in multiples of the concurrency limit: a call lasts as long as its slowest
# request while the other slots idle, so a few rounds per call keep the slots busier; the eval loop
# appends after each call, so this is also at most how many paid answers a kill can lose.
CONCURRENCY_ROUNDS_PER_CALL = 4


def check_settings(settings: Mapping[str, Any]) -> None:
    """The backend's settings before anything runs (its ``BackendEntry.check``): the API key's variable
    is set when the endpoint needs one (``vlguard.api_client.check_credentials``)."""
    check_credentials(
        str(settings.get("base_url", DEFAULT_BASE_URL)),
        str(settings.get("api_key_env", "OPENAI_API_KEY")),
        "the openai backend",
    )


class OpenAIBackend:
    """Generation through an OpenAI-compatible ``/chat/completions`` endpoint.

    ``model`` is the served model name. ``max_tokens_param`` names the length limit in the request
    (``max_tokens``; newer OpenAI models want ``max_completion_tokens``). ``extra_params`` are added to
    every request body (e.g. ``{"seed": 0}``). ``requests_per_call`` (default: 4 × ``max_concurrency``)
    is how many requests the eval loop hands over per call.
    """

    name = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        max_concurrency: int = 8,
        api_key_env: str = "OPENAI_API_KEY",
        system_prompt: str | None = None,
        max_retries: int = 6,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        max_total_wait: float = 600.0,
        timeout: float = 120.0,
        max_tokens_param: str = "max_tokens",
        extra_params: dict[str, Any] | None = None,
        revision: str | None = None,
        adapter: str | None = None,
        batch_size: int | None = None,  # accepted for a uniform backend interface; concurrency governs
        requests_per_call: int | None = None,
        client: ChatClient | None = None,
    ) -> None:
        if revision is not None or adapter is not None:
            raise ConfigError(
                "the openai backend serves a model by name: --revision and --adapter do not apply"
            )
        self.model = model
        self.max_new_tokens = int(max_new_tokens)
        self.temperature = float(temperature)
        self.system_prompt = system_prompt
        self.max_tokens_param = max_tokens_param
        self.extra_params = dict(extra_params or {})
        self.client = client or ChatClient(
            base_url,
            model,
            api_key_env=api_key_env,
            max_concurrency=int(max_concurrency),
            max_retries=int(max_retries),
            backoff_base=float(backoff_base),
            backoff_max=float(backoff_max),
            max_total_wait=float(max_total_wait),
            timeout=float(timeout),
        )
        self.requests_per_call = requests_per_call_setting(
            requests_per_call, CONCURRENCY_ROUNDS_PER_CALL * self.client.max_concurrency
        )

    def describe(self) -> dict[str, Any]:
        """Endpoint, model and decoding settings for the manifest (the key's env variable name, never the key)."""
        return {
            "backend": self.name,
            "model": self.model,
            **{k: v for k, v in self.client.describe().items() if k != "model"},
            "max_new_tokens": self.max_new_tokens,
            "requests_per_call": self.requests_per_call,
            "temperature": self.temperature,
            "system_prompt": self.system_prompt,
            "extra_params": self.extra_params,
        }

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Answer every request concurrently; failures are Generations with ``error`` set."""
        params = {
            self.max_tokens_param: self.max_new_tokens,
            "temperature": self.temperature,
            **self.extra_params,
        }
        results = self.client.complete_many(
            [chat_messages(r, self.system_prompt) for r in requests], **params
        )
        return [_to_generation(r.sample_id, result) for r, result in zip(requests, results, strict=True)]


def chat_messages(request: GenerationRequest, default_system: str | None) -> list[Message]:
    """OpenAI-format messages for a request: an optional system turn, then the user turn.

    The image (if any) goes as a base64 PNG data URL part before the text; the text is the instruction
    and its task input (``vlguard.prompts.user_text``). Shared by the ``openai`` and
    ``vllm`` backends, which both speak this format.
    """
    messages: list[Message] = []
    system = request.system_or(default_system)
    if system:
        messages.append({"role": "system", "content": system})
    images = [request.image] if request.image is not None else []
    messages.append(user_message(user_text(request.prompt, request.input), images))
    return messages


def _to_generation(sample_id: str, result: ChatResult) -> Generation:
    meta: dict[str, Any] = {"finish_reason": result.finish_reason, "attempts": result.attempts}
    if result.usage:
        meta.update(result.usage)  # prompt_tokens / completion_tokens, as the hf and vllm backends give them
    if result.content_policy:
        return Generation(
            sample_id, "", None, {**meta, "finish_reason": "content_filter", "content_policy": True}
        )
    if result.error is not None:
        return Generation(sample_id, "", result.error, meta)
    return Generation(sample_id, result.text, None, meta)
