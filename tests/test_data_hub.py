"""The Hub source, offline: a huggingface_hub cache laid out like the ys-zong/VLGuard dataset repo."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

import huggingface_hub
import pytest
from huggingface_hub import constants

from vlguard.benchmarks import load_benchmark
from vlguard.data import load_vlguard
from vlguard.data.images import ZipImageSource
from vlguard.data.sample import sample_dataset_dir
from vlguard.data.sources import DataSourceError

COMMIT = "a2f85c90e10345dc5e7eceecadd89c1ed982d04f"
OLD_COMMIT = "0" * 40


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HF_HUB_CACHE holding the sample data as two commits of the dataset repo ys-zong/VLGuard."""
    cache = tmp_path / "hub"
    repo = cache / "datasets--ys-zong--VLGuard"
    source = sample_dataset_dir()
    for commit, n_records in ((COMMIT, None), (OLD_COMMIT, 4)):
        snapshot = repo / "snapshots" / commit
        snapshot.mkdir(parents=True)
        for split in ("train", "test"):
            records = json.loads((source / f"{split}.json").read_text())[:n_records]
            (snapshot / f"{split}.json").write_text(json.dumps(records))
        shutil.copy(source / "gpt4_safe_safes.json", snapshot / "gpt4_safe_safes.json")
        with zipfile.ZipFile(snapshot / "test.zip", "w") as archive:
            for image in (source / "test").rglob("*.png"):
                archive.write(image, f"test/{image.relative_to(source / 'test').as_posix()}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    (repo / "refs" / "v0").write_text(OLD_COMMIT)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_load_by_repo_id_goes_through_huggingface_hub(
    hub_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, str, str | None, str | None]] = []
    real_download = huggingface_hub.hf_hub_download

    def spy(repo_id: str, filename: str, **kwargs: Any) -> str:
        calls.append((repo_id, filename, kwargs.get("repo_type"), kwargs.get("revision")))
        return str(real_download(repo_id, filename, **kwargs))

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", spy)
    dataset = load_vlguard("ys-zong/VLGuard", "test")
    assert [c[1] for c in calls] == ["test.json", "gpt4_safe_safes.json", "test.zip"]
    assert all(c[0] == "ys-zong/VLGuard" and c[2] == "dataset" for c in calls)
    assert dataset.source["kind"] == "hub" and dataset.source["repo_id"] == "ys-zong/VLGuard"
    assert dataset.source["commit"] == COMMIT  # refs/main resolved by huggingface_hub
    assert str(hub_cache) in dataset.source["image_root"]
    assert len(dataset.samples()) == 27 and len(dataset.references) == 9
    assert isinstance(dataset.images, ZipImageSource)
    sample = dataset.samples()[0]
    assert sample.image is not None
    assert dataset.images.open(sample.image).size == (64, 64)


def test_revision_selects_the_snapshot(hub_cache: Path) -> None:
    old = load_vlguard("ys-zong/VLGuard", "train", revision="v0")
    assert old.source["commit"] == OLD_COMMIT and old.source["revision"] == "v0"
    assert len(old.records) == 4
    assert old.images is None  # that commit has no train.zip in the cache
    pinned = load_vlguard("ys-zong/VLGuard", "test", revision=COMMIT)
    assert pinned.source["commit"] == COMMIT and len(pinned.records) == 18
    main = load_vlguard("ys-zong/VLGuard", "test")
    assert main.source["sha256"] == pinned.source["sha256"] != old.source["sha256"]


def test_uncached_revision_or_repo_is_a_clear_error(hub_cache: Path) -> None:
    with pytest.raises(
        DataSourceError,
        match=r"ys-zong/VLGuard at revision v9: test\.json is not in the local huggingface_hub cache",
    ):
        load_vlguard("ys-zong/VLGuard", "test", revision="v9")
    with pytest.raises(DataSourceError, match="someone/else"):
        load_vlguard("someone/else", "test")


def test_not_a_path_nor_a_repo_id(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match="no such file or folder"):
        load_vlguard(str(tmp_path / "a" / "b"), "test")
    with pytest.raises(DataSourceError, match="Hub sources only"):
        load_vlguard(sample_dataset_dir(), "test", revision="main")


def test_benchmark_defaults_to_the_hub_dataset(hub_cache: Path) -> None:
    bench = load_benchmark("vlguard-test", allow_partial=True)  # the cached copy holds 27 of 1,558
    assert bench.source["repo_id"] == "ys-zong/VLGuard" and bench.source["commit"] == COMMIT
    assert len(bench.samples) == 27 and bench.images is not None
    assert bench.source["partial"][0]["expected"] == 442
    no_images = load_benchmark("vlguard-test", download_images=False, allow_partial=True)
    assert no_images.images is None
