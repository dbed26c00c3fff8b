"""The VLGuard benchmarks ``vlguard-test`` and ``vlguard-train`` for the evaluation pipeline.

Samples come from ``vlguard.data.load_vlguard`` (ids ``<record uid>:<subset>``); ``references`` are
the GPT-4V answers of ``gpt4_safe_safes.json`` keyed by the ``safe_safe`` sample id (test split).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlguard.benchmarks.base import BenchmarkData
from vlguard.benchmarks.csv_source import check_options
from vlguard.data.sources import DEFAULT_HUB_REPO
from vlguard.data.vlguard import load_vlguard

OPTIONS = ("image_root", "skip_invalid", "subsets", "download_images")


def load_vlguard_benchmark(
    split: str, data: str | Path | None = None, revision: str | None = None, **options: Any
) -> BenchmarkData:
    """One split of VLGuard as a benchmark, from ``data`` (a local folder or file) or the Hub.

    ``data=None`` means the public Hub dataset ``ys-zong/VLGuard`` (at ``revision``). Options:
    ``image_root`` (folder or zip of the images), ``skip_invalid`` (load the valid records only),
    ``subsets`` (e.g. ``["unsafe"]``), ``download_images`` (default True for Hub sources).
    """
    name = f"vlguard-{split}"
    check_options(name, options, OPTIONS)
    dataset = load_vlguard(
        DEFAULT_HUB_REPO if data is None else data,
        split,
        revision=revision,
        skip_invalid=bool(options.get("skip_invalid", False)),
        image_root=options.get("image_root"),
        download_images=bool(options.get("download_images", True)),
    )
    samples = dataset.samples(options.get("subsets"))
    kept = {s.id for s in samples}
    return BenchmarkData(
        name=name,
        samples=tuple(samples),
        images=dataset.images,
        source={**dataset.source, "split": split, "skipped": [str(p) for p in dataset.problems]},
        references={sid: text for sid, text in dataset.references.items() if sid in kept},
    )


def load_vlguard_test(
    data: str | Path | None = None, revision: str | None = None, **options: Any
) -> BenchmarkData:
    """VLGuard's test split: 442 unsafe, 558 safe_unsafe, 558 safe_safe samples (+ GPT-4V references)."""
    return load_vlguard_benchmark("test", data, revision, **options)


def load_vlguard_train(
    data: str | Path | None = None, revision: str | None = None, **options: Any
) -> BenchmarkData:
    """VLGuard's train split as evaluation prompts: 2,977 samples."""
    return load_vlguard_benchmark("train", data, revision, **options)
