"""Benchmarks by name: ``BENCHMARKS`` maps a name to a ``BenchmarkEntry`` holding every fact about it.

Every loader is called as ``loader(data=None, revision=None, **options)``: ``data`` is a local folder or
file (None = the benchmark's public source, e.g. the Hub dataset ``ys-zong/VLGuard``), ``revision`` pins
that source. Loaders live in their own modules and are imported only when chosen, so listing the
registry (``vlguard ls``) stays fast. The entry says the rest: the image mode the benchmark is meant to
be run with, the judges that score it by default, its subsets (with their report labels and headline
metrics), the axis its reference scores on, its task data and scorer (task benchmarks), and the checks
that run before any model loads. Adding a benchmark is its module plus one entry here (docs/extending.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vlguard.benchmarks.base import BenchmarkData
from vlguard.metric_registry import Axis
from vlguard.records import ImageMode
from vlguard.registry import Entry, Registry, Target, resolve

if TYPE_CHECKING:
    from vlguard.benchmarks.rubric import Rubric

# The check every benchmark with images runs unless its entry says otherwise: the images a run shows
# exist (image mode ``original``) and decode, before the model loads (``vlguard.benchmarks.checks``).
IMAGES_USABLE = "vlguard.benchmarks.checks:images_usable"
ASR = "attack_success_rate"


@dataclass(frozen=True)
class Subset:
    """One subset of a benchmark (``Sample.subset``) as reports show it.

    ``label``: its name in reports ("" = the subset's own name); ``short``: the chart's axis label
    ("" = the label); ``headline``: the metrics the report leads with and charts; ``axis``: the axis the
    reference scores this subset on, when it is not the benchmark's.
    """

    name: str
    label: str = ""
    short: str = ""
    headline: tuple[str, ...] = (ASR,)
    axis: Axis | None = None


@dataclass(frozen=True, kw_only=True)
class BenchmarkEntry(Entry):
    """A registered benchmark, callable as its loader (``target``, ``"module:function"``).

    - ``image_mode``: the mode it is meant to be run with (``original`` or ``none``); a benchmark whose
      mode is ``original`` needs images (``needs_images``);
    - ``axis``: what its reference's headline numbers measure (``refusal``, ``harm``, ``rubric``,
      ``accuracy``, ``win_rate``; see ``vlguard.metric_registry``), for every subset that does not
      declare its own; a judge on another safety axis is a stand-in;
    - ``subsets``: its subsets, their labels and headline metrics;
    - ``attack_in_image``: its attack is the image itself (FigStep), so another image mode measures
      something else than the attack;
    - ``judges``: the judges that score it when none are asked for;
    - ``task`` / ``scorer``: for a task benchmark, its ``TaskSpec`` (``vlguard.benchmarks.tasks``)
      and the function that scores an answer against the gold one (``accuracy`` judge);
    - ``checks``: called before the model loads as ``check(data, samples, image_mode=...,
      allow_blank_substitutes=...)``, raising a ``VLGuardError`` (default: the images exist and decode);
    - ``options_without_images``: loader options for a run from its public source that shows the model
      no image (VLGuard: don't download the image zips);
    - ``rubric``: the reference's own judging rules (a ``vlguard.benchmarks.rubric.Rubric``), which the
      ``rubric`` judge approximates offline and ``llm-judge mode=rubric`` asks a model (MM-SafetyBench:
      a question per scenario; JailbreakLLMs: the official evaluator's question and length rules).

    Calling the entry loads the benchmark and checks its published counts (``vlguard.benchmarks.counts``):
    a short file is an error unless the option ``allow_partial=true`` is given.
    """

    image_mode: ImageMode
    axis: Axis
    subsets: tuple[Subset, ...]
    attack_in_image: bool = False
    judges: tuple[str, ...] = ("refusal",)
    task: Target | None = None
    scorer: Target | None = None
    checks: tuple[Target, ...] = (IMAGES_USABLE,)
    options_without_images: Mapping[str, Any] = field(default_factory=dict)
    rubric: Target | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> BenchmarkData:
        """Import the loader, call it, and check its files against their published counts."""
        from vlguard.benchmarks.counts import ALLOW_PARTIAL, allow_partial_option, check_counts

        allow_partial = allow_partial_option(kwargs.pop(ALLOW_PARTIAL, False))
        data: BenchmarkData = self.load()(*args, **kwargs)
        return check_counts(data.name, data, allow_partial=allow_partial)

    @property
    def needs_images(self) -> bool:
        """Whether the benchmark is meant to be run with its images (image mode ``original``)."""
        return self.image_mode == "original"

    def subset(self, name: str) -> Subset | None:
        """The declared subset ``name`` (None when the benchmark does not declare it)."""
        return next((s for s in self.subsets if s.name == name), None)

    def reference_axis(self, subset: str) -> Axis:
        """The axis the reference scores ``subset`` on (the subset's own, else the benchmark's)."""
        declared = self.subset(subset)
        return declared.axis if declared is not None and declared.axis is not None else self.axis


_VLGUARD_SUBSETS = (
    Subset("unsafe", "unsafe (harmful image)", "unsafe"),
    Subset("safe_unsafe", "safe image + unsafe instruction", "safe+unsafe"),
    Subset(
        "safe_safe",
        "safe image + safe instruction",
        "safe+safe",
        headline=("over_refusal_rate", "helpfulness_win_rate"),
    ),
)
_FIGSTEP_SUBSETS = (Subset("figstep"),)
_ADVBENCH_SUFFIX = Subset("advbench_suffix")

BENCHMARKS: Registry[BenchmarkEntry] = Registry("benchmark", BenchmarkEntry)
BENCHMARKS["vlguard-test"] = BenchmarkEntry(
    "vlguard.benchmarks.vlguard:load_vlguard_test",
    "VLGuard test set (1,558 prompts)",
    image_mode="original",
    axis="refusal",
    subsets=_VLGUARD_SUBSETS,
    options_without_images={"download_images": False},
)
BENCHMARKS["vlguard-train"] = BenchmarkEntry(
    "vlguard.benchmarks.vlguard:load_vlguard_train",
    "VLGuard train set as prompts",
    image_mode="original",
    axis="refusal",
    subsets=_VLGUARD_SUBSETS,
    options_without_images={"download_images": False},
)
BENCHMARKS["figstep"] = BenchmarkEntry(
    "vlguard.benchmarks.figstep:load_figstep",
    "FigStep typographic attack (500), option variant=SafeBench-Tiny",
    image_mode="original",
    axis="refusal",
    subsets=_FIGSTEP_SUBSETS,
    attack_in_image=True,
)
BENCHMARKS["figstep-tiny"] = BenchmarkEntry(
    "vlguard.benchmarks.figstep:load_figstep_tiny",
    "FigStep on SafeBench-Tiny (50)",
    image_mode="original",
    axis="refusal",
    subsets=_FIGSTEP_SUBSETS,
    attack_in_image=True,
)
BENCHMARKS["xstest"] = BenchmarkEntry(
    "vlguard.benchmarks.xstest:load_xstest",
    "XSTest over-refusal (250 safe + 200 unsafe)",
    image_mode="none",
    axis="refusal",
    subsets=(
        Subset("xstest_unsafe"),
        Subset("xstest_safe", headline=("over_refusal_rate",)),
    ),
)
BENCHMARKS["vlsafe"] = BenchmarkEntry(
    "vlguard.benchmarks.vlsafe:load_vlsafe",
    "VLSafe unsafe queries on COCO images (500); --images COCO train2017, or --image-mode blank",
    image_mode="original",
    # DRESS evaluates VLSafe on harmlessness (dresslvlm.github.io: "evaluation on the proposed VLSafe
    # dataset for harmlessness criteria"): the papers' "unsafe rate" is whether the answer is harmful.
    axis="harm",
    subsets=(Subset("vlsafe"), Subset("vlsafe_train", headline=())),
    # Where the reference judges harm: the offline harm judge first, the refusal judge beside it (a stand-in,
    # flagged wherever its number appears). Where the reference asks its own questions (MM-SafetyBench per
    # scenario, JailbreakLLMs' evaluator), the offline ``rubric`` judge approximates them first.
    judges=("harm", "refusal"),
)
BENCHMARKS["jailbreakllms"] = BenchmarkEntry(
    "vlguard.benchmarks.jailbreakllms:load_jailbreakllms",
    "JailbreakLLMs forbidden questions (390, 13 scenarios), option templates=N|all (666 jailbreaks), "
    "release=2023_12_25",
    image_mode="none",
    # The official evaluator asks whether the response "provides some level of answer" (ChatGLMEval.py).
    axis="rubric",
    subsets=(
        Subset("jailbreakllms"),
        Subset("jailbreakllms_template"),
    ),
    judges=("rubric", "harm"),
    rubric="vlguard.benchmarks.jailbreakllms:RUBRIC",
)
BENCHMARKS["mm-safetybench"] = BenchmarkEntry(
    "vlguard.benchmarks.mm_safetybench:load_mm_safetybench",
    "MM-SafetyBench (13 scenarios × SD / TYPO / SD+TYPO images; release files + images)",
    image_mode="original",
    # evaluation.py asks a different question per scenario (harm; refusal to engage; a disclaimer).
    axis="rubric",
    subsets=(
        Subset("sd"),
        Subset("sd_typo"),
        Subset("typo"),
    ),
    attack_in_image=True,
    judges=("rubric", "refusal"),
    rubric="vlguard.benchmarks.mm_safetybench:RUBRIC",
)
BENCHMARKS["spa-vl-harmeval"] = BenchmarkEntry(
    "vlguard.benchmarks.spa_vl:load_spa_vl_harmeval",
    "SPA-VL HarmEval (265 harmful image-question pairs, Hub sqrti/SPA-VL)",
    image_mode="original",
    # "HarmEval ... used to evaluate harmfulness" (sqrtizhang.github.io/SPA-VL); its judge is not named.
    axis="harm",
    subsets=(Subset("spa_vl_harm"),),
    judges=("harm", "refusal"),
)
BENCHMARKS["advbench-suffix"] = BenchmarkEntry(
    "vlguard.benchmarks.advbench:load_advbench_suffix",
    "AdvBench (520) + the published transferable GCG suffix (the paper's AdvBench-Suffix)",
    image_mode="none",
    axis="refusal",
    subsets=(_ADVBENCH_SUFFIX,),
)
BENCHMARKS["advbench"] = BenchmarkEntry(
    "vlguard.benchmarks.advbench:load_advbench",
    "AdvBench (520), option suffix=...",
    image_mode="none",
    axis="refusal",
    subsets=(Subset("advbench"), _ADVBENCH_SUFFIX),
)
BENCHMARKS["beavertails"] = BenchmarkEntry(
    "vlguard.benchmarks.beavertails:load_beavertails_prompts",
    "BeaverTails harmful prompts (unsafe rows of 30k_test; Harmful Score), options max_prompts=N, rows=all, half=dev|heldout",
    image_mode="none",
    axis="harm",  # the papers' Harmful Score: beaver-dam-7b flags the answer as harmful
    subsets=(Subset("beavertails_harmful"),),
    judges=("harm", "refusal"),
)
# Task benchmarks of the harmful fine-tuning papers (Vaccine / Lisa / Booster): Finetune Accuracy.
BENCHMARKS["sst2"] = BenchmarkEntry(
    "vlguard.benchmarks.sst2:load_sst2",
    "SST-2 sentiment, validation (872), papers' prompt; accuracy",
    image_mode="none",
    axis="accuracy",
    subsets=(Subset("sst2", headline=("accuracy",)),),
    judges=("accuracy",),
    task="vlguard.benchmarks.sst2:SPEC",
    scorer="vlguard.benchmarks.sst2:score_sst2",
)
BENCHMARKS["agnews"] = BenchmarkEntry(
    "vlguard.benchmarks.agnews:load_agnews",
    "AG News topics, test rows 0-999 as the papers (rows=all: 7,600); accuracy",
    image_mode="none",
    axis="accuracy",
    subsets=(Subset("agnews", headline=("accuracy",)),),
    judges=("accuracy",),
    task="vlguard.benchmarks.agnews:SPEC",
    scorer="vlguard.benchmarks.agnews:score_agnews",
)
BENCHMARKS["gsm8k"] = BenchmarkEntry(
    "vlguard.benchmarks.gsm8k:load_gsm8k",
    "GSM8K maths, test rows 0-999 as the papers (rows=all: 1,319); final-number accuracy",
    image_mode="none",
    axis="accuracy",
    subsets=(Subset("gsm8k", headline=("accuracy",)),),
    judges=("accuracy",),
    task="vlguard.benchmarks.gsm8k:SPEC",
    scorer="vlguard.benchmarks.gsm8k:score_gsm8k",
)
BENCHMARKS["alpaca-eval"] = BenchmarkEntry(
    "vlguard.benchmarks.alpaca_eval:load_alpaca_eval",
    "AlpacaEval (805) vs GPT-4 Turbo references; win rate (pairwise llm-judge)",
    image_mode="none",
    axis="win_rate",
    subsets=(Subset("alpaca-eval", headline=("helpfulness_win_rate",)),),
    judges=("llm-judge",),
    task="vlguard.benchmarks.alpaca_eval:SPEC",
)


def benchmark_entry(name: str) -> BenchmarkEntry:
    """The registry entry of benchmark ``name``; ``ConfigError`` naming the known ones otherwise."""
    return BENCHMARKS.entry(name)


def load_benchmark(
    name: str, data: str | None = None, revision: str | None = None, **options: Any
) -> BenchmarkData:
    """Load benchmark ``name`` from ``data`` (a local path) or its public source pinned to ``revision``."""
    return benchmark_entry(name)(data=data, revision=revision, **options)


def default_image_mode(name: str) -> ImageMode:
    """The image mode benchmark ``name`` is meant to be run with (``original`` or ``none``)."""
    return benchmark_entry(name).image_mode


def default_judges(name: str) -> tuple[str, ...]:
    """The judges that score benchmark ``name`` when none are asked for."""
    return benchmark_entry(name).judges


def subset_info(name: str) -> Subset | None:
    """The subset ``name`` as the first benchmark declaring it describes it (None: no benchmark does)."""
    for entry in BENCHMARKS.values():
        declared = entry.subset(name)
        if declared is not None:
            return declared
    return None


def headline_metrics() -> tuple[tuple[str, str], ...]:
    """Every (subset, metric) pair a benchmark leads with, in registry order (the report's headline)."""
    pairs: dict[tuple[str, str], None] = {}
    for entry in BENCHMARKS.values():
        for subset in entry.subsets:
            pairs.update(dict.fromkeys((subset.name, metric) for metric in subset.headline))
    return tuple(pairs)


def benchmark_rubric(name: str | None) -> Rubric | None:
    """The reference rubric of benchmark ``name`` (None: it has none, or no such benchmark is registered)."""
    entry = BENCHMARKS.get(name) if name is not None else None
    if entry is None or entry.rubric is None:
        return None
    rubric: Rubric = resolve(entry.rubric)
    return rubric


def rubrics() -> dict[str, Rubric]:
    """Benchmark name → its reference rubric, for every registered benchmark that has one."""
    return {name: rubric for name in BENCHMARKS if (rubric := benchmark_rubric(name)) is not None}


def task_scorer(task: str) -> Callable[..., Any] | None:
    """The answer scorer of ``task`` (a task benchmark's subset or name); None when no benchmark has one."""
    for name, entry in BENCHMARKS.items():
        if entry.scorer is not None and (task == name or entry.subset(task) is not None):
            scorer: Callable[..., Any] = resolve(entry.scorer)
            return scorer
    return None


def scored_tasks() -> tuple[str, ...]:
    """The subsets that a task scorer scores (the ``accuracy`` judge's tasks)."""
    return tuple(s.name for entry in BENCHMARKS.values() if entry.scorer is not None for s in entry.subsets)
