"""Secrets never reach disk: the one redaction step of every config, manifest and provenance file.

vlguard takes API keys from the environment only (options name the variable: ``api_key_env``), but a
secret can still arrive in a setting: a key-like option (``api_key=sk-...``, rejected by the judge or
backend, but possibly after a config file was written), credentials in a URL
(``base_url=http://user:pw@host/v1``, ``?api-key=...``), a bearer token or a provider key in any text.
``redact(value)`` removes them from any JSON-like value before it is written:

- a mapping key whose name says it holds a secret (``api_key``, ``hf_token``, ``password``,
  ``authorization``, ... by its snake/kebab-case parts: ``max_new_tokens`` is not one) is left out;
  the name of an environment variable (a key with an ``env`` part, ``api_key_env``) is kept;
- in every string: URL credentials (``http://[REDACTED]@host``, ``?api-key=[REDACTED]``), ``KEY=VALUE``
  items with a secret-looking KEY (``api_key=[REDACTED]``, as in ``vlguard hft``'s ``judge_options``),
  ``Bearer`` tokens and provider keys (``sk-...``, ``hf_...``, ``ghp_...``);
- each in any encoding a string may carry it in: a secret found in the text's URL-decoded or
  JSON-unescaped reading is also removed where it is written ``%XX``- or ``\\uXXXX``-encoded.

Redaction is deterministic, so a rerun compares the redacted form of its settings with the redacted
form on disk (``vlguard.runs``, ``vlguard.train``, ``vlguard.hft`` do). The API client
(``vlguard.api_client``) uses the same patterns (``secret_pattern``) for what a server echoes back.
"""

from __future__ import annotations

import functools
import logging
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

logger = logging.getLogger(__name__)

REDACTED = "[REDACTED]"
# Parts of an option name (split at _ - .) that say it holds a secret.
SECRET_WORDS = frozenset(
    {
        "key",
        "apikey",
        "token",
        "secret",
        "password",
        "passwd",
        "authorization",
        "auth",
        "credential",
        "credentials",
    }
)
# Query parameters that carry credentials in some gateways' URLs (Azure's ``api-key``, signed URLs).
_SECRET_QUERY = re.compile(r"(?i)(key|token|secret|password|passwd|sig|signature|auth|credential)")
# Below this length, a key's first and last characters are not redacted on their own (too common).
_MIN_KEY_FOR_PARTS = 12
# Secrets shorter than this are not looked for in free text (a one-letter user name would redact every
# such letter); they are still removed where they stand (the URL's user info, the VALUE of KEY=VALUE).
_MIN_SECRET = 4

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>`]+")
_BEARER = re.compile(r"(?i)\b(bearer)(\s+)([A-Za-z0-9._~+/=-]{8,})")
# Provider key shapes: OpenAI / Anthropic (sk-...), Hugging Face (hf_...), GitHub (ghp_ / gho_ / ...).
_PROVIDER_KEY = re.compile(r"\b(?:sk-[A-Za-z0-9_-]{8,}|hf_[A-Za-z0-9]{16,}|gh[pousr]_[A-Za-z0-9]{16,})")
# KEY=VALUE (an option given as text, a query parameter); the KEY is tested with is_secret_name.
_KEY_VALUE = re.compile(r"([A-Za-z][\w.-]*)(=)([^\s,;&\"'\[\]\)}]+)")
_JSON_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")


def is_secret_name(name: str) -> bool:
    """Whether an option or field named ``name`` holds a secret (``api_key``, ``hf_token``, ``password``).

    Matched on the parts of the snake/kebab/dotted name, so ``max_new_tokens`` is not a secret; a name
    with an ``env`` part names an environment variable (``api_key_env``), which is not a secret either.
    """
    parts = set(re.split(r"[_\-.]", name.lower()))
    return "env" not in parts and bool(parts & SECRET_WORDS)


def _echo_pattern(secret: str) -> str:
    """A regex for ``secret`` as text may carry it: verbatim, JSON-escaped or URL-encoded, per character.

    JSON lets any character be written ``\\uXXXX`` (hex in either case) and ``/`` as ``\\/``; URL
    encoding writes a character as ``%XX`` (UTF-8 bytes). A server may mix them within one string.
    """
    parts = []
    for ch in secret:
        options = [re.escape(ch), rf"(?i:\\u{ord(ch):04x})"] if ord(ch) < 0x10000 else [re.escape(ch)]
        if ch == "/":
            options.append(r"\\/")
        options.append("(?i:" + "".join(f"%{byte:02x}" for byte in ch.encode("utf-8")) + ")")
        parts.append("(?:" + "|".join(options) + ")")
    return "".join(parts)


def secret_pattern(secret: str) -> re.Pattern[str]:
    """What ``redact_pattern`` removes: the secret in every encoding, and its recognisable ends alone.

    Servers also echo a key in part (``sk-abc...xyz``), so the first 8 and last 6 characters of a key of
    at least 12 characters are redacted on their own too.
    """
    alternatives = [_echo_pattern(secret)]
    if len(secret) >= _MIN_KEY_FOR_PARTS:
        alternatives += [_echo_pattern(secret[:8]), _echo_pattern(secret[-6:])]
    return re.compile("|".join(alternatives))


def redact_pattern(text: str, pattern: re.Pattern[str] | None) -> str:
    """``text`` with every match of ``pattern`` (see ``secret_pattern``) replaced by ``[REDACTED]``."""
    return text if pattern is None or not text else pattern.sub(REDACTED, text)


def url_secrets(url: str) -> list[str]:
    """The credentials written into a URL: user name, password, values of secret-looking query parameters."""
    try:
        parts = urllib.parse.urlsplit(url)
        found = [parts.username or "", parts.password or ""]
    except ValueError:  # e.g. an unclosed IPv6 bracket: no structure to read
        return []
    found += [
        v for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True) if _SECRET_QUERY.search(k)
    ]
    return [secret for secret in dict.fromkeys(found) if len(secret) >= _MIN_SECRET]


def redact_url(url: str) -> str:
    """``url`` without credentials: a user name and password, and query values of secret-looking names.

    ``https://user:pw@host/v1?api-key=abc&x=1`` becomes ``https://[REDACTED]@host/v1?api-key=[REDACTED]&x=1``,
    so that a base URL can be recorded in a manifest or a log line.
    """
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        # Unparseable: remove whatever stands before an @ of the authority.
        return re.sub(r"(://)[^/@]*@", rf"\g<1>{REDACTED}@", url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        query = "&".join(
            f"{urllib.parse.quote(k, safe='-_.')}="
            + (REDACTED if _SECRET_QUERY.search(k) else urllib.parse.quote(v, safe="-_.:/"))
            for k, v in pairs
        )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _found_in(text: str) -> list[str]:
    """The secret values written in ``text`` (one reading of it): URL credentials, tokens, KEY=VALUE values."""
    found: list[str] = []
    for url in _URL.findall(text):
        found += url_secrets(url)
    found += [m.group(3) for m in _BEARER.finditer(text)]
    found += _PROVIDER_KEY.findall(text)
    found += [m.group(3) for m in _KEY_VALUE.finditer(text) if is_secret_name(m.group(1))]
    return [s for s in found if len(s) >= _MIN_SECRET and s != REDACTED]


def _readings(text: str) -> list[str]:
    """``text`` and its decoded readings: URL-decoded, JSON-unescaped (where they differ)."""
    readings = [text]
    if "%" in text:
        readings.append(urllib.parse.unquote(text))
    if "\\" in text:
        unescaped = _JSON_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text).replace("\\/", "/")
        readings += [unescaped, urllib.parse.unquote(unescaped)]
    return [r for i, r in enumerate(readings) if r not in readings[:i]]


def redact_text(text: str) -> str:
    """``text`` without secrets (see the module docstring), in any of the encodings it may carry them."""
    if not text:
        return text
    secrets = [s for reading in _readings(text) for s in _found_in(reading)]
    # Where they stand, structurally: the URL's user info and secret query values, KEY=[REDACTED].
    text = _URL.sub(lambda m: redact_url(m.group()), text)
    text = _BEARER.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
    text = _KEY_VALUE.sub(
        lambda m: m.group(1) + m.group(2) + REDACTED if is_secret_name(m.group(1)) else m.group(), text
    )
    # Then every encoding of every secret found in any reading, longest first.
    for secret in sorted(dict.fromkeys(secrets), key=len, reverse=True):
        text = redact_pattern(text, _cached_pattern(secret))
    return text


@functools.lru_cache(maxsize=256)
def _cached_pattern(secret: str) -> re.Pattern[str]:
    return re.compile(_echo_pattern(secret))


@functools.cache
def _warn_left_out(name: str) -> None:
    logger.warning("not recording option %r: it looks like a secret", name)


def redact(value: Any) -> Any:
    """A copy of ``value`` (mappings, lists, tuples, strings, numbers) without secrets.

    Mapping keys named like a secret are left out; every string is ``redact_text``-ed. Other values
    are returned as they are. Apply it to what is written (a manifest, a config, a provenance record),
    and compare a rerun's settings with what is on disk in this redacted form.
    """
    if isinstance(value, Mapping):
        clean: dict[Any, Any] = {}
        for key, item in value.items():
            if isinstance(key, str) and is_secret_name(key):
                _warn_left_out(key)
                continue
            clean[key] = redact(item)
        return clean
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    if isinstance(value, str):
        return redact_text(value)
    return value
