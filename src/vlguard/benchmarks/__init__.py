"""Benchmarks by name: ``BENCHMARKS`` maps a name to a ``BenchmarkEntry`` (a loader returning ``BenchmarkData``).

Every loader is called as ``loader(data=None, revision=None, **options)``: ``data`` is a local folder or
file (None = the benchmark's public source, e.g. the Hub dataset ``ys-zong/VLGuard``), ``revision`` pins
that source. Loaders live in their own modules and are imported only when chosen, so listing the
registry (``vlguard ls``) stays fast. Each entry also declares the image mode the benchmark is meant to
be run with (used when none is asked for) and the judges that score it by default (``refusal`` unless
the entry says otherwise, e.g. an accuracy scorer for a task benchmark). Adding a benchmark is one line:
``"name": _lazy("module:function", "one-line description", "original")``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vlguard.benchmarks.base import BenchmarkData
from vlguard.errors import ConfigError
from vlguard.records import ImageMode


@dataclass(frozen=True)
class BenchmarkEntry:
    """A registered benchmark, callable as its loader.

    ``target`` (``"module:function"``) is imported when called; ``image_mode`` is the mode the benchmark
    is meant to be run with; ``attack_in_image`` marks benchmarks whose attack is the image itself
    (FigStep), so any other image mode measures something else than the attack; ``judges`` are the
    judges that score it when none are asked for.
    """

    target: str
    description: str
    image_mode: ImageMode
    attack_in_image: bool = False
    judges: tuple[str, ...] = ("refusal",)

    def __call__(self, **kwargs: Any) -> BenchmarkData:
        """Import the loader and call it with ``kwargs``."""
        module, function = self.target.split(":")
        loader: Callable[..., BenchmarkData] = getattr(importlib.import_module(module), function)
        return loader(**kwargs)


def _lazy(
    target: str,
    description: str,
    image_mode: ImageMode,
    *,
    attack_in_image: bool = False,
    judges: tuple[str, ...] = ("refusal",),
) -> BenchmarkEntry:
    return BenchmarkEntry(target, description, image_mode, attack_in_image, judges)


BENCHMARKS: dict[str, BenchmarkEntry] = {
    "vlguard-test": _lazy(
        "vlguard.benchmarks.vlguard:load_vlguard_test", "VLGuard test set (1,558 prompts)", "original"
    ),
    "vlguard-train": _lazy(
        "vlguard.benchmarks.vlguard:load_vlguard_train", "VLGuard train set as prompts", "original"
    ),
    "figstep": _lazy(
        "vlguard.benchmarks.figstep:load_figstep",
        "FigStep typographic attack (500), option variant=SafeBench-Tiny",
        "original",
        attack_in_image=True,
    ),
    "figstep-tiny": _lazy(
        "vlguard.benchmarks.figstep:load_figstep_tiny",
        "FigStep on SafeBench-Tiny (50)",
        "original",
        attack_in_image=True,
    ),
    "xstest": _lazy(
        "vlguard.benchmarks.xstest:load_xstest", "XSTest over-refusal (250 safe + 200 unsafe)", "none"
    ),
    "vlsafe": _lazy(
        "vlguard.benchmarks.vlsafe:load_vlsafe",
        "VLSafe unsafe queries on COCO images (500); --images COCO train2017, or --image-mode blank",
        "original",
    ),
    "jailbreakllms": _lazy(
        "vlguard.benchmarks.jailbreakllms:load_jailbreakllms",
        "JailbreakLLMs forbidden questions (390, 13 scenarios), option templates=N|all (666 jailbreaks)",
        "none",
    ),
    "mm-safetybench": _lazy(
        "vlguard.benchmarks.mm_safetybench:load_mm_safetybench",
        "MM-SafetyBench (13 scenarios × SD / TYPO / SD+TYPO images; release files + images)",
        "original",
        attack_in_image=True,
    ),
    "spa-vl-harmeval": _lazy(
        "vlguard.benchmarks.spa_vl:load_spa_vl_harmeval",
        "SPA-VL HarmEval (265 harmful image-question pairs, Hub sqrti/SPA-VL)",
        "original",
    ),
    "advbench-suffix": _lazy(
        "vlguard.benchmarks.advbench:load_advbench_suffix",
        "AdvBench (520) + the published transferable GCG suffix (the paper's AdvBench-Suffix)",
        "none",
    ),
    "advbench": _lazy(
        "vlguard.benchmarks.advbench:load_advbench", "AdvBench (520), option suffix=...", "none"
    ),
    # Task benchmarks of the harmful fine-tuning papers (Vaccine / Lisa / Booster): Finetune Accuracy.
    "sst2": _lazy(
        "vlguard.benchmarks.sst2:load_sst2",
        "SST-2 sentiment, validation (872), papers' prompt; accuracy",
        "none",
        judges=("accuracy",),
    ),
    "agnews": _lazy(
        "vlguard.benchmarks.agnews:load_agnews",
        "AG News topics, test rows 0-999 as the papers (rows=all: 7,600); accuracy",
        "none",
        judges=("accuracy",),
    ),
    "gsm8k": _lazy(
        "vlguard.benchmarks.gsm8k:load_gsm8k",
        "GSM8K maths, test rows 0-999 as the papers (rows=all: 1,319); final-number accuracy",
        "none",
        judges=("accuracy",),
    ),
    "alpaca-eval": _lazy(
        "vlguard.benchmarks.alpaca_eval:load_alpaca_eval",
        "AlpacaEval (805) vs GPT-4 Turbo references; win rate (pairwise llm-judge)",
        "none",
        judges=("llm-judge",),
    ),
}


def benchmark_entry(name: str) -> BenchmarkEntry:
    """The registry entry of benchmark ``name``; ``ConfigError`` naming the known ones otherwise."""
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise ConfigError(f"unknown benchmark {name!r}; known: {', '.join(sorted(BENCHMARKS))}") from None


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


def describe_benchmarks() -> dict[str, str]:
    """Name → one-line description, for ``vlguard ls``."""
    return {name: entry.description for name, entry in BENCHMARKS.items()}
