"""The batched generation protocol every backend implements: a list of requests in, a list out.

Each backend also says how much work it wants per call (``requests_per_call``): the eval loop hands it
that many requests at a time and appends the results to the run folder after every call, so a killed
run loses at most one call's work. The right size differs by orders of magnitude between backends: a
few padded batches for ``hf``, hundreds to thousands of conversations for vLLM's continuous batching,
a few times the concurrency limit for an API.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from vlguard.records import Generation

if TYPE_CHECKING:
    from PIL.Image import Image


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt for a backend: the text, the image (already prepared for the image mode) or None.

    ``input`` is the task input that goes with the instruction ``prompt`` (``Sample.input``); backends
    render the two with ``vlguard.prompts.user_text`` (chat) or the Alpaca template.
    """

    sample_id: str
    prompt: str
    image: Image | None = None
    system: str | None = None
    input: str | None = None

    def system_or(self, default: str | None) -> str | None:
        """The system prompt to send: the request's own, else the backend's ``default`` (may be None)."""
        return self.system if self.system is not None else default


class GenerationBackend(Protocol):
    """A model that answers prompts in batches. Outputs are in the order of the requests."""

    name: str

    @property
    def requests_per_call(self) -> int:
        """How many requests this backend wants per ``generate`` call (at least 1).

        The eval loop hands it this many (fewer in the last call) and appends the results after each
        call, so a killed run loses at most this many.
        """
        ...

    def describe(self) -> dict[str, Any]:
        """What the manifest records about this backend: model id, revision, adapter, dtype, settings."""
        ...

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Answer every request; a per-sample failure is a Generation with ``error`` set, not an exception."""
        ...


def requests_per_call_setting(value: int | None, default: int) -> int:
    """A backend's ``requests_per_call``: ``value`` when given (a ``requests_per_call`` backend option),
    else the backend's ``default``; ``ConfigError`` unless it is a positive whole number."""
    from vlguard.errors import ConfigError

    chosen = default if value is None else value
    if isinstance(chosen, bool) or not isinstance(chosen, int) or chosen < 1:
        raise ConfigError(f"requests_per_call must be a whole number of at least 1, not {chosen!r}")
    return chosen
