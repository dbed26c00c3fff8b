"""The batched generation protocol every backend implements: a list of requests in, a list out."""

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

    def describe(self) -> dict[str, Any]:
        """What the manifest records about this backend: model id, revision, adapter, dtype, settings."""
        ...

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Answer every request; a per-sample failure is a Generation with ``error`` set, not an exception."""
        ...
