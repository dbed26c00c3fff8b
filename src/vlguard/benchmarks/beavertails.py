"""BeaverTails harmful prompts: the Harmful Score prompts of the harmful fine-tuning papers.

Vaccine, Lisa and Booster measure the Harmful Score on the prompts of the unsafe rows (``is_safe``
false) of BeaverTails ``30k_test``, in file order: the first 1,000 (Lisa, Booster) or 500 (Vaccine's
``poison/evaluation/pred.py``). The prompts are kept as the papers keep them: BeaverTails pairs one
prompt with several responses, so a prompt can appear more than once among them.

Offline, ``../shared/data/beavertails/30k_test.jsonl`` is both the harmful fine-tuning's poison pool and
its Harmful Score prompts: option ``half=heldout`` keeps the prompts of the held-out half of the project's
split by prompt (``vlguard.data.beavertails.beavertails_split``), whose other half (``dev``) holds the
poison pairs, so no Harmful Score prompt was trained on (nor used to develop the ``harm`` judge).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlguard.benchmarks.base import BenchmarkData
from vlguard.benchmarks.counts import file_count
from vlguard.benchmarks.csv_source import check_options, check_text_image_option
from vlguard.data.beavertails import beavertails_split, load_qa_pairs
from vlguard.errors import ConfigError
from vlguard.records import Sample

SUBSET = "beavertails_harmful"
# BeaverTails 30k_test (PKU-Alignment): 3,021 question-answer pairs, 1,733 of them with an answer labelled
# unsafe (the papers' Harmful Score prompts come from those). Other splits and files are not checked.
PUBLISHED_COUNTS = {"30k_test": {"rows": 3021, "unsafe rows": 1733}}


def load_beavertails_prompts(
    data: str | Path | None = None, revision: str | None = None, **options: Any
) -> BenchmarkData:
    """Harmful prompts from a BeaverTails-format file, or the Hub dataset (``data`` None or a repo id).

    Options: ``split`` (Hub split, default ``30k_test``), ``max_prompts`` (the first N rows in file
    order, as the papers take them; default all), ``rows`` (``unsafe``, the default: rows whose response
    is labelled unsafe, as Vaccine's ``pred.py``; ``all``: every row's prompt, as Lisa's ``pred.py``,
    whose prompts are harmful requests whatever the response), ``half`` (``dev`` or ``heldout``: only the
    prompts of that half of the project's split, before ``max_prompts``), ``image`` (``none`` or
    ``blank``). Sample ids are ``beavertails-<line>``: the row's line in its file, stable for a given file.
    """
    check_options("beavertails", options, {"split", "max_prompts", "rows", "half", "image"})
    image = check_text_image_option("beavertails", options.get("image"))
    split = options.get("split", "30k_test")
    max_prompts = options.get("max_prompts")
    if max_prompts is not None and (
        not isinstance(max_prompts, int) or isinstance(max_prompts, bool) or max_prompts < 1
    ):
        raise ConfigError(
            f"benchmark 'beavertails': option max_prompts must be a positive integer, got {max_prompts!r}"
        )
    which = options.get("rows", "unsafe")
    if which not in ("unsafe", "all"):
        raise ConfigError(f"benchmark 'beavertails': option rows must be 'unsafe' or 'all', got {which!r}")
    half = options.get("half")
    if half not in (None, "dev", "heldout"):
        raise ConfigError(f"benchmark 'beavertails': option half must be 'dev' or 'heldout', got {half!r}")
    loaded = load_qa_pairs(data, split=str(split), revision=revision, labelled=True)
    unsafe = [row for row in loaded.rows if which == "all" or row.is_safe is False]
    if half is not None:
        unsafe = [row for row in unsafe if beavertails_split(row.prompt) == half]
    if max_prompts is not None:
        unsafe = unsafe[:max_prompts]
    if not unsafe:
        raise ConfigError(f"benchmark 'beavertails': {loaded.source.get('path') or data} has no unsafe rows")
    samples = tuple(
        Sample(
            id=f"beavertails-{row.line}",
            benchmark="beavertails",
            subset=SUBSET,
            prompt=row.prompt,
            image=None,
            # The dataset's response is one model's (often harmful) answer, not a reference to compare with.
            reference=None,
            # one flagged harm category, or "multiple" (per-category tables stay readable)
            category=(row.categories[0] if len(row.categories) == 1 else "multiple")
            if row.categories
            else None,
            subcategory=None,
            should_refuse=True,
            record_id=f"beavertails-{row.line}",
        )
        for row in unsafe
    )
    where = str(loaded.source.get("path") or f"{loaded.source.get('repo_id')} {loaded.source.get('file')}")
    # The Hub's split, or a local file under the split's name (30k_test.jsonl, as GuardReasoner's copy).
    part = str(split) if loaded.source.get("kind") == "hub" else Path(where).name.split(".")[0]
    counts = (
        file_count(where, "rows", len(loaded.rows), PUBLISHED_COUNTS, part=part),
        file_count(
            where, "unsafe rows", sum(r.is_safe is False for r in loaded.rows), PUBLISHED_COUNTS, part=part
        ),
    )
    source = {
        **loaded.source,
        "benchmark": "beavertails",
        "image": image,
        "max_prompts": max_prompts,
        "rows": which,
        "half": half,
    }
    return BenchmarkData(name="beavertails", samples=samples, images=None, source=source, counts=counts)
