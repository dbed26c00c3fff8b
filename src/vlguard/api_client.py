"""A small OpenAI-compatible chat client: concurrency, retries with backoff + jitter, Retry-After.

Standard library only (``urllib`` + a thread pool), so the API backend and judges add no dependency.

- N requests run concurrently (``max_concurrency`` threads).
- 429, 408, 409 and 5xx answers and connection errors / timeouts are retried up to ``max_retries``
  times. The wait is the server's ``Retry-After`` (seconds or an HTTP date; also ``retry-after-ms``)
  when it sends one, else exponential backoff with full jitter: uniform(0, min(backoff_max,
  backoff_base * 2**attempt)). One request never waits more than ``max_total_wait`` seconds in total:
  when the next wait would exceed it, the request gives up with an error.
- A content-policy refusal (HTTP 400 with a content-policy code, or ``finish_reason="content_filter"``)
  is not an error: ``ChatResult.content_policy`` is set.
- The API key is read from the environment (``api_key_env``) only and sent only in the Authorization
  header. Servers sometimes echo it back, in an error or even in an answer, and not always verbatim:
  JSON-escaped (``\\u0073k-...``, ``\\/``) or URL-encoded. Every string a ``ChatResult`` carries (the
  answer, the error, the finish reason) and every log line is redacted after decoding, in each of
  those encodings, so the key reaches no generations file, judgment, report or log.

A failed request is a ``ChatResult`` with ``error`` set, never an exception, so one bad request
cannot sink a batch.
"""

from __future__ import annotations

import base64
import email.utils
import io
import json
import logging
import os
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from http.client import HTTPException
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlguard.errors import ConfigError
from vlguard.fileio import parse_json
from vlguard.redaction import redact_pattern, redact_url, secret_pattern, url_secrets

if TYPE_CHECKING:
    from PIL.Image import Image

logger = logging.getLogger(__name__)

Message = dict[str, Any]

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524, 529})
# error codes / phrases with which OpenAI-compatible servers (OpenAI, Azure OpenAI, vLLM gateways)
# report a refusal by their content-policy filter
CONTENT_POLICY_CODES = frozenset(
    {"content_policy_violation", "content_filter", "content_policy", "responsible_ai_policy"}
)
CONTENT_POLICY_PHRASES = (
    "content management policy",
    "content_policy",
    "content policy",
    "safety system",
    "content filter",
)
# The public OpenAI endpoint: it answers every request without a key with HTTP 401, after retries.
OPENAI_BASE_URL = "https://api.openai.com/v1"
# Hosts that never serve a request without a key (a local or self-hosted server may need none).
_KEYED_HOSTS = frozenset({"api.openai.com"})


def check_credentials(base_url: str, api_key_env: str, what: str) -> None:
    """``ConfigError`` before any request when ``base_url`` needs an API key and ``api_key_env`` is unset.

    The public OpenAI endpoint needs one: without it every request fails (HTTP 401) after its retries,
    and a run of hundreds of samples records only errors. A local or self-hosted server may need none,
    so other hosts are not checked. ``what`` names the setting for the message (``the openai backend``).
    """
    try:
        host = (urllib.parse.urlsplit(base_url).hostname or "").lower()
    except ValueError:
        return  # the client refuses a malformed URL itself
    if host in _KEYED_HOSTS and not os.environ.get(api_key_env):
        raise ConfigError(
            f"{what} calls {redact_url(base_url)}, which needs an API key in the environment variable "
            f"{api_key_env} (unset); set it, or name another variable with api_key_env=..., or point "
            "base_url=... at a server that needs none"
        )


@dataclass(frozen=True)
class ChatResult:
    """The outcome of one chat request.

    ``text`` is the assistant's answer ("" on error or content-policy refusal); ``error`` is set when
    the request failed (after retries); ``content_policy`` when the API refused on policy grounds.
    """

    text: str
    finish_reason: str | None = None
    error: str | None = None
    content_policy: bool = False
    attempts: int = 1
    # The server's token counts of a successful answer ({"prompt_tokens", "completion_tokens"}), when it
    # reports them (OpenAI's ``usage``); what a paid run cost is computed from them.
    usage: dict[str, int] | None = None


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def parse_retry_after(headers: Mapping[str, str] | Any, now: float | None = None) -> float | None:
    """Seconds to wait from ``Retry-After`` (delta seconds or HTTP date) or ``retry-after-ms``; None if absent."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("Retry-After") or headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = datetime.now(UTC).timestamp() if now is None else now
    return max(0.0, when.timestamp() - current)


def image_data_url(image: Image | bytes | str | Path, mime: str = "image/png") -> str:
    """A base64 data URL for an image: a PIL image (encoded as PNG), raw bytes, or a file path."""
    if isinstance(image, (str, Path)):
        path = Path(image)
        data = path.read_bytes()
        suffix = path.suffix.lower().lstrip(".")
        mime = {
            "jpg": "image/jpeg",
            "jpeg": "image/jpeg",
            "png": "image/png",
            "webp": "image/webp",
            "gif": "image/gif",
        }.get(suffix, mime)
    elif isinstance(image, bytes):
        data = image
    else:
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="PNG")
        data, mime = buffer.getvalue(), "image/png"
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def user_message(text: str, images: Sequence[Image | bytes | str | Path] = ()) -> Message:
    """A user turn: plain text, or ``image_url`` parts (base64 data URLs) followed by the text."""
    if not images:
        return {"role": "user", "content": text}
    parts: list[dict[str, Any]] = [
        {"type": "image_url", "image_url": {"url": image_data_url(im)}} for im in images
    ]
    parts.append({"type": "text", "text": text})
    return {"role": "user", "content": parts}


class ChatClient:
    """Concurrent, retrying client for ``POST {base_url}/chat/completions``.

    ``base_url`` is the API root including the version (``https://api.openai.com/v1``,
    ``http://localhost:8000/v1``). Without the environment variable ``api_key_env`` no Authorization
    header is sent (local servers). ``sleep`` and ``rng`` are injectable for tests.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = 8,
        max_retries: int = 6,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        max_total_wait: float = 600.0,
        timeout: float = 120.0,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url must start with http:// or https:// (got {base_url!r})")
        if max_concurrency < 1:
            raise ConfigError(f"max_concurrency must be at least 1 (got {max_concurrency})")
        if max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0 (got {max_retries})")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.max_concurrency = int(max_concurrency)
        self.max_retries = int(max_retries)
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self.max_total_wait = float(max_total_wait)
        self.timeout = float(timeout)
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()
        # read once; kept private and out of repr / describe / logs
        self.__api_key = os.environ.get(api_key_env) or None
        self.__key_pattern = secret_pattern(self.__api_key) if self.__api_key else None
        # Credentials written into the URL itself come back in connection errors ("nonnumeric port:
        # 'user:pw@host'"): they are redacted like the key.
        self.__url_patterns = [secret_pattern(s) for s in url_secrets(base_url)]

    def __repr__(self) -> str:
        return (
            f"ChatClient(base_url={redact_url(self.base_url)!r}, model={self.model!r}, "
            f"api_key_env={self.api_key_env!r})"
        )

    def describe(self) -> dict[str, Any]:
        """Settings worth recording: never the key (only its variable's name), the URL without credentials."""
        return {
            "base_url": redact_url(self.base_url),
            "model": self.model,
            "api_key_env": self.api_key_env,
            "max_concurrency": self.max_concurrency,
            "max_retries": self.max_retries,
            "max_total_wait": self.max_total_wait,
            "timeout": self.timeout,
        }

    # -- public API ------------------------------------------------------------------------------------
    def complete(self, messages: Sequence[Message], **params: Any) -> ChatResult:
        """One chat completion with retries; ``params`` go into the request body (temperature, ...)."""
        body = {"model": self.model, "messages": list(messages), **params}
        waited = 0.0
        attempt = 0
        while True:
            attempt += 1
            try:
                result = self._post(body)
                # Redacted after decoding, whatever the outcome: a key can come back in an answer too.
                return ChatResult(
                    self._redact(result.text),
                    None if result.finish_reason is None else self._redact(str(result.finish_reason)),
                    None if result.error is None else self._redact(result.error),
                    result.content_policy,
                    attempt,
                    result.usage,
                )
            except _Retryable as err:
                message = self._redact(str(err))
                if attempt > self.max_retries:
                    logger.warning("giving up after %d attempts: %s", attempt, message)
                    return ChatResult(
                        "", error=f"gave up after {attempt} attempts: {message}", attempts=attempt
                    )
                delay = err.retry_after if err.retry_after is not None else self._backoff(attempt)
                if waited + delay > self.max_total_wait:
                    logger.warning(
                        "giving up: next wait %.1fs would exceed max_total_wait: %s", delay, message
                    )
                    return ChatResult(
                        "",
                        error=f"gave up after {attempt} attempts: waiting {delay:.1f}s more would exceed "
                        f"max_total_wait={self.max_total_wait:g}s ({message})",
                        attempts=attempt,
                    )
                logger.info(
                    "retrying in %.2fs (attempt %d/%d): %s", delay, attempt, self.max_retries + 1, message
                )
                self._sleep(delay)
                waited += delay

    def complete_many(self, conversations: Sequence[Sequence[Message]], **params: Any) -> list[ChatResult]:
        """Run every conversation concurrently (``max_concurrency`` at a time); results in input order."""
        if not conversations:
            return []
        workers = min(self.max_concurrency, len(conversations))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vlguard-api") as pool:
            return list(pool.map(lambda messages: self.complete(messages, **params), conversations))

    # -- internals -------------------------------------------------------------------------------------
    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** (attempt - 1)))
        with self._rng_lock:
            return self._rng.uniform(0.0, ceiling)

    def _redact(self, text: str) -> str:
        for pattern in self.__url_patterns:
            text = redact_pattern(text, pattern)
        return redact_pattern(text, self.__key_pattern)

    def _post(self, body: dict[str, Any]) -> ChatResult:
        data = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.__api_key:
            headers["Authorization"] = f"Bearer {self.__api_key}"
        request = urllib.request.Request(
            f"{self.base_url}/chat/completions", data=data, headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as err:
            return self._http_error(err)
        except (urllib.error.URLError, TimeoutError, ConnectionError, HTTPException, OSError) as err:
            reason = getattr(err, "reason", err)
            raise _Retryable(f"connection error: {type(err).__name__}: {reason}") from None
        return self._parse_success(payload)

    def _http_error(self, err: urllib.error.HTTPError) -> ChatResult:
        try:
            # Redact before anything is cut to length: a cut through an echoed key would leave a
            # fragment too short to recognise.
            raw = self._redact(err.read().decode("utf-8", errors="replace"))
        except (OSError, HTTPException):
            raw = ""
        detail, code = _error_detail(raw)
        # Again after decoding: JSON escapes ("\\u0073k-...") only become the key here, and before the cut.
        detail = self._redact(detail)
        if err.code in RETRY_STATUS:
            raise _Retryable(f"HTTP {err.code}: {detail}"[:500], parse_retry_after(err.headers))
        if _is_content_policy(code, detail):
            return ChatResult("", finish_reason="content_filter", content_policy=True)
        return ChatResult("", error=f"HTTP {err.code}: {detail}"[:500])

    def _parse_success(self, payload: bytes) -> ChatResult:
        try:
            # The strict reader: a server's lone surrogate or absurd nesting is a malformed response for
            # this request, not a crash of the run (or text that cannot be written to generations.jsonl).
            data = parse_json(payload.decode("utf-8"))
            choice = data["choices"][0]
        except (ValueError, KeyError, IndexError, TypeError):
            text = self._redact(payload.decode("utf-8", errors="replace"))  # before the cut, as above
            return ChatResult("", error=f"malformed response: {text[:200]!r}")
        message = choice.get("message") or {}
        content = message.get("content")
        if isinstance(content, list):  # some servers answer with content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        text = content if isinstance(content, str) else ""
        finish_reason = choice.get("finish_reason")
        usage = _usage(data.get("usage"))
        if finish_reason == "content_filter":
            return ChatResult(text, finish_reason=finish_reason, content_policy=True, usage=usage)
        if content is None and message.get("refusal"):
            # OpenAI structured refusals: the model declined; that is an answer, not a failure
            return ChatResult(str(message["refusal"]), finish_reason=finish_reason, usage=usage)
        return ChatResult(text, finish_reason=finish_reason, usage=usage)


def _usage(raw: Any) -> dict[str, int] | None:
    """The token counts of an OpenAI-style ``usage`` object (whole, non-negative numbers only), or None."""
    if not isinstance(raw, dict):
        return None
    counts = {
        name: raw[name]
        for name in ("prompt_tokens", "completion_tokens")
        if isinstance(raw.get(name), int) and not isinstance(raw.get(name), bool) and raw[name] >= 0
    }
    return counts or None


def _error_detail(raw: str) -> tuple[str, str]:
    """(message, code) from an OpenAI-style error body ``{"error": {"message", "code", "type"}}``."""
    try:
        data = parse_json(raw)
    except ValueError:
        return raw.strip()[:300], ""
    error = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(error, dict):
        code = str(error.get("code") or error.get("type") or "")
        inner = error.get("innererror")
        if isinstance(inner, dict) and inner.get("code"):
            code = f"{code} {inner['code']}"
        return str(error.get("message") or raw)[:300], code
    return str(error)[:300], ""


def _is_content_policy(code: str, detail: str) -> bool:
    codes = {c.lower() for c in code.split()}
    lowered = detail.lower()
    return bool(codes & CONTENT_POLICY_CODES) or any(phrase in lowered for phrase in CONTENT_POLICY_PHRASES)
