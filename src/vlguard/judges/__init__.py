"""Judges: turn generations into labels. Registry ``JUDGES`` maps a name to a factory taking options.

- ``refusal``: offline refusal detector (``mode="default"``: rules + a small trained classifier;
  ``"rules"``: the rules alone; ``"paper"``: the reference string list);
- ``refusal-paper``: the same judge in paper mode, so that both can score one run side by side;
- ``harm``: offline harm judge: did the reply give the harmful content asked for (``harmful`` / ``harmless``);
- ``llama-guard``: Llama Guard 3 / 3-Vision / 4 through transformers (safe / unsafe + categories);
- ``wildguard``: WildGuard through transformers (refusal / compliance, or safe / unsafe with ``view="harm"``);
- ``beaver-dam``: the Beaver-Dam QA-moderation classifier (safe / unsafe + 14 categories; Harmful Score);
- ``llm-judge``: a chat model on an OpenAI-compatible server or a local ``hf`` model (``mode="pairwise"``
  helpfulness, ``"harm"`` rubric or ``"refusal"`` rubric);
- ``cascade``: the offline ``refusal`` judge (``axis="harm"``: the ``harm`` judge), with its uncertain
  replies sent to a model judge;
- ``accuracy``: task accuracy (SST-2, AG News, GSM8K) by the harmful fine-tuning papers' rules.

Factories import their heavy dependencies (torch, transformers) only when called.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vlguard.judges.base import ERROR, SKIPPED, Judge, JudgeInput, error_judgment
from vlguard.judges.files import judge_jsonl, read_judge_inputs
from vlguard.judges.refusal import RefusalJudge


def _refusal(**options: Any) -> Judge:
    # the registry name is the judge's name whatever the mode, so that judgments/<name>.jsonl matches
    return RefusalJudge(**{"name": "refusal", **options})


def _refusal_paper(**options: Any) -> Judge:
    return RefusalJudge(mode="paper", name=options.pop("name", "refusal-paper"), **options)


def _harm(**options: Any) -> Judge:
    from vlguard.judges.harm import HarmJudge

    return HarmJudge(**options)


def _llama_guard(**options: Any) -> Judge:
    from vlguard.judges.llama_guard import LlamaGuardJudge

    return LlamaGuardJudge(**options)


def _llm_judge(**options: Any) -> Judge:
    from vlguard.judges.llm_judge import LLMJudge

    return LLMJudge(**options)


def _wildguard(**options: Any) -> Judge:
    from vlguard.judges.wildguard import WildGuardJudge

    return WildGuardJudge(**options)


def _beaver_dam(**options: Any) -> Judge:
    from vlguard.judges.beaver_dam import BeaverDamJudge

    return BeaverDamJudge(**options)


def _cascade(**options: Any) -> Judge:
    from vlguard.judges.cascade import CascadeJudge

    return CascadeJudge(**options)


def _accuracy(**options: Any) -> Judge:
    from vlguard.judges.task_accuracy import TaskAccuracyJudge

    return TaskAccuracyJudge(**options)


JUDGES: dict[str, Callable[..., Judge]] = {
    "refusal": _refusal,
    "refusal-paper": _refusal_paper,
    "harm": _harm,
    "llama-guard": _llama_guard,
    "wildguard": _wildguard,
    "beaver-dam": _beaver_dam,
    "llm-judge": _llm_judge,
    "cascade": _cascade,
    "accuracy": _accuracy,
}


def make_judge(name: str, /, **options: Any) -> Judge:
    """The judge ``name`` with ``options``; ``ConfigError`` for an unknown name or a bad option.

    Judges raise ``TypeError`` / ``ValueError`` for a wrong keyword or value; from the CLI
    (``--judge-option``) that is a user mistake, so it becomes a one-line error naming the judge.
    """
    from vlguard.errors import ConfigError

    try:
        factory = JUDGES[name]
    except KeyError:
        raise ConfigError(f"unknown judge {name!r}; known: {', '.join(sorted(JUDGES))}") from None
    try:
        return factory(**options)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"judge {name!r}: bad option(s) {sorted(options)}: {err}") from err


__all__ = [
    "ERROR",
    "JUDGES",
    "SKIPPED",
    "Judge",
    "JudgeInput",
    "RefusalJudge",
    "error_judgment",
    "judge_jsonl",
    "make_judge",
    "read_judge_inputs",
]
