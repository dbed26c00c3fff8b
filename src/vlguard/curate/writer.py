"""The writer: any VLM behind vlguard's generation backends, asked in batches, its answers parsed strictly.

``Writer.run`` takes a list of tasks (a prompt, an image, and the parser its answer must pass) and
hands them to the backend in calls of ``requests_per_call`` requests: padded batches on ``hf``, one
large call on ``vllm``, concurrent requests through ``vlguard.api_client`` on ``openai`` (retries,
backoff and API-key redaction included). An answer that fails to parse, a failed generation or an API
content-policy refusal is asked again with what was wrong appended to the prompt, up to
``max_attempts`` in all; every attempt's raw text and problem is kept, so a task that never succeeds
goes to the rejects file with its raw text, never silently away.

``MeteredBackend`` wraps a backend and sums the token counts its generations report
(``prompt_tokens`` / ``completion_tokens`` in ``Generation.meta``: the hf and vllm backends count
them, the openai backend copies the server's ``usage``), so every call to the writer model, the
unsafe-instruction check's included, is counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from vlguard.curate.parse import ParseError
from vlguard.curate.prompts import SYSTEM, with_retry
from vlguard.errors import VLGuardError
from vlguard.generation.base import GenerationBackend, GenerationRequest
from vlguard.records import Generation

if TYPE_CHECKING:
    from PIL.Image import Image

logger = logging.getLogger(__name__)

T = TypeVar("T")
MAX_RAW_CHARS = 4_000  # of each raw answer kept in the stage files and the rejects file


@dataclass(frozen=True)
class Usage:
    """Calls to a model and the tokens they used (0 when the backend does not report them)."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.calls + other.calls,
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )

    def to_dict(self) -> dict[str, int]:
        """The JSON form (``usage.jsonl`` lines, the manifest's totals)."""
        return {
            "calls": self.calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


class MeteredBackend:
    """A generation backend that counts the calls and tokens of everything it generates."""

    def __init__(self, backend: GenerationBackend) -> None:
        self.backend = backend
        self.name = backend.name
        self._usage = Usage()

    @property
    def loaded(self) -> bool:
        """Whether the wrapped backend has loaded its model (always, unless it is a ``LazyBackend``)."""
        return bool(getattr(self.backend, "loaded", True))

    @property
    def requests_per_call(self) -> int:
        """The wrapped backend's ``requests_per_call``."""
        return self.backend.requests_per_call

    def describe(self) -> dict[str, Any]:
        """The wrapped backend's description."""
        return self.backend.describe()

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """The wrapped backend's answers; their token counts are added to the meter."""
        generations = self.backend.generate(requests)
        self._usage = self._usage + Usage(
            len(generations),
            sum(_count(g.meta.get("prompt_tokens")) for g in generations),
            sum(_count(g.meta.get("completion_tokens")) for g in generations),
        )
        return generations

    def take(self) -> Usage:
        """The usage since the last ``take`` (the meter starts again from zero)."""
        usage, self._usage = self._usage, Usage()
        return usage


class LazyBackend:
    """A generation backend built on first use: settings are checked, and judges built around the writer,
    before any model loads; a resumed run with nothing left to write never loads it."""

    def __init__(self, name: str, factory: Callable[[], GenerationBackend]) -> None:
        self.name = name
        self._factory = factory
        self._backend: GenerationBackend | None = None

    @property
    def loaded(self) -> bool:
        """Whether the backend (and its model) has been built."""
        return self._backend is not None

    def _get(self) -> GenerationBackend:
        if self._backend is None:
            self._backend = self._factory()
        return self._backend

    @property
    def requests_per_call(self) -> int:
        """The backend's ``requests_per_call`` (builds it)."""
        return self._get().requests_per_call

    def describe(self) -> dict[str, Any]:
        """The backend's description (builds it)."""
        return self._get().describe()

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """The backend's answers (builds it on the first call)."""
        return self._get().generate(requests)


@dataclass(frozen=True)
class WriterTask(Generic[T]):
    """One thing to ask the writer: ``key`` names it, ``parse`` turns the answer into a value or raises."""

    key: str
    prompt: str
    image: Image | None
    parse: Callable[[str], T]


@dataclass(frozen=True)
class Attempt:
    """One answer of the writer: its raw text (cut to ``MAX_RAW_CHARS``) and why it was not usable."""

    raw: str
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form kept in the stage files."""
        return {"raw": self.raw, "problem": self.problem}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Attempt:
        """Read back ``to_dict``."""
        return cls(str(d.get("raw", "")), d.get("problem"))


@dataclass(frozen=True)
class WriterOutcome(Generic[T]):
    """The parsed value of a task (None when every attempt failed) and every attempt made."""

    key: str
    value: T | None
    attempts: tuple[Attempt, ...]


class Writer:
    """Asks a backend in batches and retries unusable answers (see the module docstring)."""

    def __init__(self, backend: GenerationBackend, *, max_attempts: int = 3, system: str = SYSTEM) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {max_attempts}")
        self.backend = backend
        self.max_attempts = max_attempts
        self.system = system

    def run(self, tasks: Sequence[WriterTask[T]]) -> list[WriterOutcome[T]]:
        """Every task's outcome, in task order; each unusable answer is asked again (bounded)."""
        attempts: list[list[Attempt]] = [[] for _ in tasks]
        values: list[T | None] = [None] * len(tasks)
        pending = list(range(len(tasks)))
        for round_number in range(1, self.max_attempts + 1):
            if not pending:
                break
            requests = [self._request(tasks[i], attempts[i], round_number) for i in pending]
            generations = self._generate(requests)
            still: list[int] = []
            for i, generation in zip(pending, generations, strict=True):
                attempt, value = _read(generation, tasks[i].parse)
                attempts[i].append(attempt)
                if attempt.problem is None:
                    values[i] = value
                else:
                    still.append(i)
            if still:
                logger.info(
                    "writer: %d of %d answer(s) unusable in round %d", len(still), len(pending), round_number
                )
            pending = still
        return [WriterOutcome(task.key, values[i], tuple(attempts[i])) for i, task in enumerate(tasks)]

    def _request(self, task: WriterTask[T], previous: list[Attempt], round_number: int) -> GenerationRequest:
        prompt = task.prompt
        if previous and previous[-1].problem is not None:
            prompt = with_retry(task.prompt, previous[-1].problem)
        return GenerationRequest(
            sample_id=f"{task.key}#{round_number}", prompt=prompt, image=task.image, system=self.system
        )

    def _generate(self, requests: list[GenerationRequest]) -> list[Generation]:
        generations: list[Generation] = []
        step = max(1, self.backend.requests_per_call)
        for start in range(0, len(requests), step):
            chunk = requests[start : start + step]
            answered = self.backend.generate(chunk)
            if [g.sample_id for g in answered] != [r.sample_id for r in chunk]:
                raise VLGuardError(
                    f"backend {self.backend.name!r} answered {len(answered)} request(s) of {len(chunk)} or "
                    "out of order; nothing of this call was kept"
                )
            generations.extend(answered)
        return generations


def _read(generation: Generation, parse: Callable[[str], T]) -> tuple[Attempt, T | None]:
    """The attempt a generation makes, and the parsed value when it is usable."""
    raw = generation.response[:MAX_RAW_CHARS]
    if generation.error is not None:
        return Attempt(raw, f"the writer model failed to answer: {generation.error[:300]}"), None
    if generation.meta.get("content_policy"):
        return Attempt(raw, "the writer's API refused to answer (content policy)"), None
    try:
        return Attempt(raw), parse(generation.response)
    except ParseError as err:
        return Attempt(raw, str(err)), None
