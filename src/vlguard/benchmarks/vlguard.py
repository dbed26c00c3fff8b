"""The VLGuard benchmarks ``vlguard-test`` and ``vlguard-train`` for the evaluation pipeline.

Samples come from ``vlguard.data.load_vlguard`` (ids ``<record uid>:<subset>``); ``references`` are
the GPT-4V answers of ``gpt4_safe_safes.json`` keyed by the ``safe_safe`` sample id (test split).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlguard.benchmarks.base import BenchmarkData
from vlguard.benchmarks.counts import file_count
from vlguard.benchmarks.csv_source import check_options
from vlguard.data.sources import DEFAULT_HUB_REPO
from vlguard.data.vlguard import load_vlguard

OPTIONS = ("image_root", "skip_invalid", "subsets", "download_images")
SUBSETS = ("unsafe", "safe_unsafe", "safe_safe")
# Samples per subset (the paper; docs/design.md): test 442 harmful images + 558 safe images with one
# unsafe and one safe instruction each; train 1,023 harmful images + 977 safe images with two each. The
# small dataset shipped with vlguard (``vlguard.data.sample``) has its own: 9 and 27 per subset.
PUBLISHED_COUNTS = {
    "test.json": {"unsafe": 442, "safe_unsafe": 558, "safe_safe": 558},
    "train.json": {"unsafe": 1023, "safe_unsafe": 977, "safe_safe": 977},
    "bundled sample test.json": dict.fromkeys(SUBSETS, 9),
    "bundled sample train.json": dict.fromkeys(SUBSETS, 27),
}


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
    every = dataset.samples(None)
    part, where = _published_part(data, split)
    return BenchmarkData(
        name=name,
        samples=tuple(samples),
        images=dataset.images,
        source={**dataset.source, "split": split, "skipped": [str(p) for p in dataset.problems]},
        references={sid: text for sid, text in dataset.references.items() if sid in kept},
        counts=tuple(
            file_count(where, subset, sum(s.subset == subset for s in every), PUBLISHED_COUNTS, part=part)
            for subset in SUBSETS
        ),
    )


def _published_part(data: str | Path | None, split: str) -> tuple[str, str]:
    """Which published file ``data`` holds for ``split`` (its ``PUBLISHED_COUNTS`` key), and where it is.

    The Hub dataset and a folder in its layout hold ``<split>.json``; the bundled sample folder its own;
    a JSON file given by path is the user's own file (its name: not checked unless it is ``<split>.json``).
    """
    from vlguard.data.sample import sample_dataset_dir

    filename = f"{split}.json"
    if data is None:
        return filename, f"{DEFAULT_HUB_REPO} {filename}"
    path = Path(data).expanduser()
    if path.is_dir():
        if path.resolve() == sample_dataset_dir().resolve():
            return f"bundled sample {filename}", str(path / filename)
        return filename, str(path / filename)
    if path.is_file():
        return path.name, str(path)
    return filename, f"{data} {filename}"  # a Hub dataset id


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
