"""What every judge takes and gives: a batch of ``JudgeInput`` in, one ``Judgment`` per input out.

A judge that needs something it may lack (a model's weights) also has ``check()``: a cheap pre-flight
that raises ``ConfigError`` at once (``preflight``), so that a run fails before it generates, not when
the judge first loads its model.

Judges never raise for one bad item: a per-item failure is a ``Judgment`` with label ``error`` and
the reason in ``evidence["reason"]``, so one failed API call cannot sink a whole run. Metrics count
errors separately (never as a win, a loss, a refusal or a compliance).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from vlguard.records import Generation, Judgment, Sample

logger = logging.getLogger(__name__)

ERROR = "error"
# the judge does not apply to this sample (e.g. pairwise helpfulness without a reference answer);
# metrics leave skipped samples out entirely, unlike errors, which are counted in ``n_errors``
SKIPPED = "skipped"


@dataclass(frozen=True)
class JudgeInput:
    """One response to judge, with what some judges need besides the text.

    ``image`` is a file path (only multimodal judges read it). ``reference`` is the reference answer
    for pairwise judging. ``generation_error`` is set when the model produced no response because
    generation failed (every judge then answers ``error``); ``content_policy`` is set when an API
    backend refused to answer on policy grounds (the response is empty; it is a refusal by the API).
    ``intent`` is the request the prompt really carries when the text prompt does not (``Sample.intent``,
    e.g. the question typeset into a FigStep image); harm judges judge the response against ``request``.
    ``benchmark`` and ``category`` (the sample's) let a judge apply a benchmark's own rules per category
    (the ``rubric`` judges: MM-SafetyBench's question per scenario).
    """

    sample_id: str
    prompt: str
    response: str
    subset: str = ""
    should_refuse: bool | None = None
    image: str | None = None
    reference: str | None = None
    generation_error: str | None = None
    content_policy: bool = False
    intent: str | None = None
    benchmark: str | None = None
    category: str | None = None

    @property
    def request(self) -> str:
        """What the response answers, for harm judging: the ``intent`` when there is one, else the prompt."""
        return self.intent or self.prompt

    @classmethod
    def from_records(
        cls, sample: Sample, generation: Generation, image_path: str | None = None
    ) -> JudgeInput:
        """Build the judge's view of a sample and its generation (``image_path``: a readable file, if any)."""
        return cls(
            sample_id=sample.id,
            prompt=sample.prompt,
            response=generation.response,
            subset=sample.subset,
            should_refuse=sample.should_refuse,
            image=image_path,
            reference=sample.reference,
            generation_error=generation.error,
            content_policy=bool(generation.meta.get("content_policy", False)),
            intent=sample.intent,
            benchmark=sample.benchmark,
            category=sample.category,
        )


class Judge(Protocol):
    """A batched judge. ``version`` changes whenever its verdicts could change (rules, prompt, model)."""

    name: str
    version: str

    def describe(self) -> dict[str, Any]:
        """Settings worth recording next to the judgments: version, mode, model id, prompt hash, ..."""
        ...

    def judge(self, items: Sequence[JudgeInput]) -> list[Judgment]:
        """One Judgment per item, in order; failures are ``error`` judgments, never exceptions."""
        ...


def preflight(judge: Judge) -> None:
    """The judge's pre-flight check (``judge.check()``, when it has one): ``ConfigError`` now when it could
    not work later, e.g. a model judge whose weights are neither in a local folder nor reachable.

    Offline judges have no check. ``vlguard eval`` and ``vlguard judge`` run it for every judge before
    anything is generated or judged.
    """
    check = getattr(judge, "check", None)
    if callable(check):
        check()


def error_judgment(judge: str, sample_id: str, reason: str, **evidence: Any) -> Judgment:
    """An ``error`` verdict with its reason (``generation_error``, ``content_policy``, ``parse``, ...)."""
    return Judgment(sample_id=sample_id, judge=judge, label=ERROR, evidence={"reason": reason, **evidence})


def settle_without_model(
    judge: str, items: Sequence[JudgeInput], content_policy: Callable[[JudgeInput], Judgment]
) -> tuple[dict[int, Judgment], list[int]]:
    """The verdicts a model judge gives without running its model, and the indices still to judge.

    A failed generation is an ``error``; an API content-policy refusal (nothing was said) gets the
    judge's own verdict from ``content_policy``. Every other index is returned for the model.
    """
    verdicts: dict[int, Judgment] = {}
    todo: list[int] = []
    for index, item in enumerate(items):
        if item.generation_error is not None:
            verdicts[index] = error_judgment(
                judge, item.sample_id, "generation_error", detail=item.generation_error
            )
        elif item.content_policy:
            verdicts[index] = content_policy(item)
        else:
            todo.append(index)
    return verdicts, todo


def judge_batches(
    judge: str,
    items: Sequence[JudgeInput],
    indices: Sequence[int],
    batch_size: int,
    run: Callable[[list[JudgeInput]], list[Judgment]],
) -> dict[int, Judgment]:
    """``run`` over ``items[indices]`` in batches; a batch that fails (e.g. CUDA out of memory, an
    over-long input, an unreadable image) gives ``model_error`` verdicts for its items, not an exception."""
    verdicts: dict[int, Judgment] = {}
    for start in range(0, len(indices), batch_size):
        chunk = list(indices[start : start + batch_size])
        try:
            results = run([items[i] for i in chunk])
        except (RuntimeError, ValueError, OSError) as err:
            logger.warning("%s batch failed: %s", judge, err)
            for i in chunk:
                verdicts[i] = error_judgment(judge, items[i].sample_id, "model_error", detail=str(err)[:300])
            continue
        verdicts.update(zip(chunk, results, strict=True))
    return verdicts
