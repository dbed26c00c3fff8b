"""Judges: turn generations into labels. Registry ``JUDGES`` maps a name to a ``JudgeEntry``.

- ``refusal``: offline refusal detector (``mode="default"``: rules + a small trained classifier;
  ``"rules"``: the rules alone; ``"paper"``: the reference string list);
- ``refusal-paper``: the same judge in paper mode, so that both can score one run side by side;
- ``harm``: offline harm judge: did the reply give the harmful content asked for (``harmful`` / ``harmless``);
- ``rubric``: offline approximation of a benchmark's own rubric (MM-SafetyBench's question per scenario,
  JailbreakLLMs' evaluator), ``unsafe`` / ``safe``;
- ``llama-guard``: Llama Guard 3 / 3-Vision / 4 through transformers (safe / unsafe + categories);
- ``wildguard``: WildGuard through transformers (refusal / compliance, or safe / unsafe with ``view="harm"``);
- ``beaver-dam``: the Beaver-Dam QA-moderation classifier (safe / unsafe + 14 categories; Harmful Score);
- ``llm-judge``: a chat model on an OpenAI-compatible server or a local ``hf`` model (``mode="pairwise"``
  helpfulness, ``"harm"`` rubric, ``"refusal"`` rubric, or ``"rubric"``: the benchmark's own questions);
- ``cascade``: the offline ``refusal`` judge (``axis="harm"``: the ``harm`` judge), with its uncertain
  replies sent to a model judge;
- ``accuracy``: task accuracy (SST-2, AG News, GSM8K) by the harmful fine-tuning papers' rules.

An entry's target is the judge class, imported (with torch, transformers) only when a judge is made.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vlguard.errors import ConfigError
from vlguard.judges.base import ERROR, SKIPPED, Judge, JudgeInput, error_judgment, preflight
from vlguard.metric_registry import Axis
from vlguard.registry import Entry, Registry, Target, resolve

if TYPE_CHECKING:
    from vlguard.judges.files import judge_jsonl, read_judge_inputs
    from vlguard.judges.refusal import RefusalJudge

# Imported on first use, so that reading the registry (`vlguard --help`, `vlguard ls`) stays cheap.
_LAZY = {
    "RefusalJudge": "vlguard.judges.refusal",
    "judge_jsonl": "vlguard.judges.files",
    "read_judge_inputs": "vlguard.judges.files",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True, kw_only=True)
class JudgeEntry(Entry):
    """A registered judge, callable as its factory: ``entry(**options)`` is ``target(**defaults, **options)``.

    - ``axis``: what its verdicts measure (``refusal``, ``harm``, ``rubric``, ``accuracy``,
      ``win_rate``); a judge whose options change it (``wildguard view=harm``, ``llm-judge mode=...``)
      says so by an ``axis`` attribute, which wins (``judge_axis``);
    - ``labels``: its label family by default (``refusal``, ``classifier``, ``rubric``, ``pairwise``,
      ``accuracy``; metrics decide from the labels actually given, see ``vlguard.metrics``);
    - ``needs_model``: it scores with a model (weights it loads, or a served one), not rules alone;
    - ``options``: default options (the registry name as the judge's name, the cascade's model judge);
      the caller's options override them;
    - ``check``: called with the built judge before any generation, raising a ``VLGuardError`` when it
      cannot run (None: building it is the whole check);
    - ``axis_options``: for a judge that can answer on several axes, the options that make it answer on
      each (a cascade asks its model judge for the cascade's own axis this way).
    """

    axis: Axis
    labels: str
    needs_model: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)
    check: Target | None = None
    axis_options: Mapping[Axis, Mapping[str, Any]] = field(default_factory=dict)

    def __call__(self, *args: Any, **options: Any) -> Judge:
        """Import the judge's class and build it with the default options, then ``options``."""
        judge: Judge = self.load()(*args, **{**self.options, **options})
        return judge


JUDGES: Registry[JudgeEntry] = Registry("judge", JudgeEntry)
# The registry name is the judge's name whatever the mode, so that judgments/<name>.jsonl matches.
JUDGES["refusal"] = JudgeEntry(
    "vlguard.judges.refusal:RefusalJudge",
    "offline refusal judge, rules + a small trained classifier, CPU, explained (refusal / compliance); "
    "mode=rules or mode=paper",
    axis="refusal",
    labels="refusal",
    options={"name": "refusal"},
)
JUDGES["refusal-paper"] = JudgeEntry(
    "vlguard.judges.refusal:RefusalJudge",
    "the reference VLGuard refusal string list, exactly (for parity with published numbers)",
    axis="refusal",
    labels="refusal",
    options={"mode": "paper", "name": "refusal-paper"},
)
JUDGES["harm"] = JudgeEntry(
    "vlguard.judges.harm:HarmJudge",
    "offline harm judge, CPU, explained: did the reply give the harmful content asked for (harmful / harmless)",
    axis="harm",
    labels="rubric",
    options={"name": "harm"},
)
JUDGES["rubric"] = JudgeEntry(
    "vlguard.judges.rubric:RubricJudge",
    "offline approximation of a benchmark's own rubric (MM-SafetyBench per scenario, JailbreakLLMs' "
    "evaluator): unsafe / safe; skips benchmarks without one",
    axis="rubric",
    labels="classifier",
    options={"name": "rubric"},
)
JUDGES["llama-guard"] = JudgeEntry(
    "vlguard.judges.llama_guard:LlamaGuardJudge",
    "Llama Guard 3 / 3-Vision / 4 through transformers: safe / unsafe + category codes",
    axis="harm",
    labels="classifier",
    needs_model=True,
)
JUDGES["wildguard"] = JudgeEntry(
    "vlguard.judges.wildguard:WildGuardJudge",
    "allenai/wildguard through transformers: refusal / compliance (view=harm: safe / unsafe)",
    axis="refusal",
    labels="refusal",
    needs_model=True,
    axis_options={"harm": {"view": "harm"}},
)
JUDGES["beaver-dam"] = JudgeEntry(
    "vlguard.judges.beaver_dam:BeaverDamJudge",
    "PKU-Alignment/beaver-dam-7b QA moderation: safe / unsafe + 14 categories (Harmful Score)",
    axis="harm",
    labels="classifier",
    needs_model=True,
)
JUDGES["llm-judge"] = JudgeEntry(
    "vlguard.judges.llm_judge:LLMJudge",
    "a chat model (OpenAI-compatible server, or backend=hf for a local model): pairwise "
    "helpfulness, harm rubric (mode=harm), refusal rubric (mode=refusal), or the benchmark's own "
    "rubric (mode=rubric: MM-SafetyBench, JailbreakLLMs)",
    axis="win_rate",
    labels="pairwise",
    needs_model=True,
    axis_options={"harm": {"mode": "harm"}, "refusal": {"mode": "refusal"}, "rubric": {"mode": "rubric"}},
)
JUDGES["cascade"] = JudgeEntry(
    "vlguard.judges.cascade:CascadeJudge",
    "refusal judge first; its uncertain replies go to a model judge (default wildguard); "
    "axis=harm: the harm judge first, then a harm model judge (wildguard view=harm, llama-guard, beaver-dam)",
    axis="refusal",
    labels="refusal",
    needs_model=True,
    options={"model_judge": "wildguard"},
)
JUDGES["accuracy"] = JudgeEntry(
    "vlguard.judges.task_accuracy:TaskAccuracyJudge",
    "task accuracy (sst2, agnews, gsm8k) by the papers' rules: correct / incorrect; match=contains for Vaccine's",
    axis="accuracy",
    labels="accuracy",
)


def make_judge(name: str, /, **options: Any) -> Judge:
    """The judge ``name`` with ``options``; ``ConfigError`` for an unknown name or a bad option.

    Judges raise ``TypeError`` / ``ValueError`` for a wrong keyword or value; from the CLI
    (``--judge-option``) that is a user mistake, so it becomes a one-line error naming the judge.
    """
    entry = JUDGES.entry(name)
    try:
        return entry(**options)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"judge {name!r}: bad option(s) {sorted(options)}: {err}") from err


def check_judge(name: str, judge: Judge) -> None:
    """The checks of judge ``name`` before anything is generated or judged: its entry's check on the built
    ``judge`` (when it has one), then the judge's own pre-flight (``judge.check()``: e.g. a model judge's
    weights can be found)."""
    entry = JUDGES.get(name)
    if entry is not None and entry.check is not None:
        resolve(entry.check)(judge)
    preflight(judge)


def judge_axis(name: str, judge: Judge | None = None) -> Axis | None:
    """What judge ``name``'s verdicts measure: the built judge's ``axis`` when it has one (its options
    decide), else its entry's; None for a name no longer registered."""
    refined: Axis | None = getattr(judge, "axis", None)
    if refined is not None:
        return refined
    entry = JUDGES.get(name)
    return entry.axis if entry is not None else None


__all__ = [
    "ERROR",
    "JUDGES",
    "SKIPPED",
    "Judge",
    "JudgeEntry",
    "JudgeInput",
    "RefusalJudge",
    "check_judge",
    "error_judgment",
    "judge_axis",
    "judge_jsonl",
    "make_judge",
    "read_judge_inputs",
]
