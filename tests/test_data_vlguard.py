"""VLGuard loading on the real annotations (../shared/data/vlguard) and on the bundled sample dataset."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from vlguard.benchmarks import load_benchmark
from vlguard.data import dataset_stats, load_vlguard, samples_from_records
from vlguard.data.images import prepare_image
from vlguard.data.sample import sample_dataset_dir
from vlguard.errors import ConfigError, ImageLoadError
from vlguard.records import SUBSETS

TEST_SUBCATEGORIES = {
    "sexually explicit": 111,
    "personal data": 69,
    "violence": 68,
    "political": 57,
    "race": 40,
    "professional advice": 34,
    "sex": 31,
    "disinformation": 18,
    "other": 14,
}


def test_real_test_split_counts(vlguard_data_dir: Path) -> None:
    dataset = load_vlguard(vlguard_data_dir, "test")
    by_subset = Counter(s.subset for s in dataset.samples())
    assert by_subset == {"unsafe": 442, "safe_unsafe": 558, "safe_safe": 558}
    unsafe = [r for r in dataset.records if not r.safe]
    assert Counter(r.subcategory for r in unsafe) == TEST_SUBCATEGORIES
    assert len(dataset.records) == 1000
    assert dataset.problems == ()


def test_real_train_split_counts(vlguard_data_dir: Path) -> None:
    dataset = load_vlguard(vlguard_data_dir, "train")
    samples = dataset.samples()
    assert len(samples) == 2977
    assert sum(not r.safe for r in dataset.records) == 1023
    assert sum(r.safe for r in dataset.records) == 977
    assert all(len(r.pairs) == 2 for r in dataset.records if r.safe)
    assert Counter(s.subset for s in samples) == {"unsafe": 1023, "safe_unsafe": 977, "safe_safe": 977}


@pytest.mark.parametrize("split", ["train", "test"])
def test_real_sample_ids_unique_stable_and_not_image_paths(vlguard_data_dir: Path, split: str) -> None:
    raw = json.loads((vlguard_data_dir / f"{split}.json").read_text())
    samples = load_vlguard(vlguard_data_dir, split).samples()
    ids = [s.id for s in samples]
    assert len(ids) == len(set(ids))
    assert ids == [s.id for s in load_vlguard(vlguard_data_dir, split).samples()]  # stable across loads
    images = {r["image"] for r in raw}
    for sample in samples:
        record_uid, subset = sample.id.rsplit(":", 1)
        assert subset == sample.subset and record_uid == sample.record_id
        assert sample.image is not None and sample.image not in sample.id and sample.id not in images
    # Every first occurrence keeps its file id exactly: '<id>:<subset>'.
    first_ids = {r["id"] for r in raw}
    assert {s.record_id for s in samples if "#" not in s.record_id} == first_ids


def test_real_train_duplicate_id_gets_numbered_uid(vlguard_data_dir: Path) -> None:
    raw = json.loads((vlguard_data_dir / "train.json").read_text())
    duplicated = [rid for rid, n in Counter(r["id"] for r in raw).items() if n > 1]
    assert duplicated, "the real train.json has a duplicated id (Ads_303871); this test guards its handling"
    records = load_vlguard(vlguard_data_dir, "train").records
    for rid in duplicated:
        same = [r for r in records if r.id == rid]
        assert [r.uid for r in same] == [rid] + [f"{rid}#{n}" for n in range(2, len(same) + 1)]
        # Each record keeps its own instructions, in file order.
        expected = [
            [next(v for k, v in p.items() if k != "response") for p in r["instr-resp"]]
            for r in raw
            if r["id"] == rid
        ]
        assert [[p.instruction for p in r.pairs] for r in same] == expected


def test_real_samples_carry_text_and_refusal_target(vlguard_data_dir: Path) -> None:
    raw = json.loads((vlguard_data_dir / "test.json").read_text())
    samples = {s.id: s for s in load_vlguard(vlguard_data_dir, "test").samples()}
    key_subset = {
        "instruction": "unsafe",
        "unsafe_instruction": "safe_unsafe",
        "safe_instruction": "safe_safe",
    }
    for record in raw:
        for pair in record["instr-resp"]:
            key = next(k for k in pair if k != "response")
            sample = samples[f"{record['id']}:{key_subset[key]}"]
            assert sample.prompt == pair[key] and sample.reference == pair["response"]
            assert sample.image == record["image"] and sample.benchmark == "vlguard-test"
            assert sample.should_refuse is (key != "safe_instruction")
            assert sample.category == record.get("harmful_category")
            assert sample.subcategory == record.get("harmful_subcategory")


def test_real_references_keyed_by_safe_safe_sample_id(vlguard_data_dir: Path) -> None:
    dataset = load_vlguard(vlguard_data_dir, "test")
    raw = json.loads((vlguard_data_dir / "gpt4_safe_safes.json").read_text())
    assert len(dataset.references) == len(raw) == 558
    safe_safe_ids = {s.id for s in dataset.samples(["safe_safe"])}
    assert set(dataset.references) == safe_safe_ids
    assert all(dataset.references[f"{r['id']}:safe_safe"] == r["response"] for r in raw)


def test_real_loads_without_images_and_records_source(vlguard_data_dir: Path) -> None:
    dataset = load_vlguard(vlguard_data_dir, "test")
    assert dataset.images is None
    assert dataset.source["kind"] == "local"
    assert set(dataset.source["sha256"]) == {"test.json", "gpt4_safe_safes.json"}
    assert all(len(h) == 64 for h in dataset.source["sha256"].values())
    sample = dataset.samples()[0]
    blank = prepare_image(sample, dataset.images, "blank")
    assert blank is not None and blank.size == (336, 336)
    sized = prepare_image(sample, dataset.images, "blank", blank_size=(224, 200))
    assert sized is not None and sized.size == (224, 200)
    assert prepare_image(sample, dataset.images, "none") is None
    with pytest.raises(ImageLoadError, match=f"image {sample.image} of sample {sample.id} is missing"):
        prepare_image(sample, dataset.images, "original")
    substitute = prepare_image(sample, dataset.images, "original", allow_blank_substitutes=True)
    assert substitute is not None and substitute.getextrema() == ((255, 255),) * 3


def test_subset_filter_and_unknown_subset(vlguard_data_dir: Path) -> None:
    dataset = load_vlguard(vlguard_data_dir, "test")
    assert len(dataset.samples(["unsafe", "safe_unsafe"])) == 1000
    assert {s.subset for s in dataset.samples(["safe_safe"])} == {"safe_safe"}
    with pytest.raises(ConfigError, match="unknown subset"):
        dataset.samples(["harmful"])


def test_real_benchmark_loader(vlguard_data_dir: Path) -> None:
    bench = load_benchmark("vlguard-test", data=str(vlguard_data_dir))
    assert bench.name == "vlguard-test" and len(bench.samples) == 1558
    assert bench.images is None and bench.source["split"] == "test"
    assert set(bench.references) == {s.id for s in bench.samples if s.subset == "safe_safe"}
    only_safe_safe = load_benchmark("vlguard-test", data=str(vlguard_data_dir), subsets=["safe_safe"])
    assert len(only_safe_safe.samples) == len(only_safe_safe.references) == 558
    train = load_benchmark("vlguard-train", data=str(vlguard_data_dir))
    assert len(train.samples) == 2977 and train.references == {}
    with pytest.raises(ConfigError, match="unknown option"):
        load_benchmark("vlguard-test", data=str(vlguard_data_dir), image_mode="blank")


def test_samples_from_records_matches_dataset_view(vlguard_data_dir: Path) -> None:
    dataset = load_vlguard(vlguard_data_dir, "test")
    flat = samples_from_records(dataset.records, benchmark="vlguard-test")
    assert flat == dataset.samples()


# --- the bundled sample dataset -------------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "test"])
def test_sample_dataset_is_valid_and_covers_the_taxonomy(split: str) -> None:
    dataset = load_vlguard(sample_dataset_dir(), split)
    stats = dataset_stats(dataset)
    assert all(stats["samples_by_subset"][s] > 0 for s in SUBSETS)
    # All 4 categories and the 9 subcategories of the real test split.
    assert set(stats["unsafe_by_subcategory"]) == set(TEST_SUBCATEGORIES)
    assert set(stats["unsafe_by_category"]) == {"privacy", "risky behavior", "deception", "discrimination"}
    assert dataset.images is not None
    for record in dataset.records:
        image = dataset.images.open(record.image)
        assert image.size[0] * image.size[1] <= 128 * 128


def test_sample_dataset_images_and_references() -> None:
    dataset = load_vlguard(sample_dataset_dir(), "test")
    assert set(dataset.references) == {s.id for s in dataset.samples(["safe_safe"])}
    sample = dataset.samples()[0]
    original = prepare_image(sample, dataset.images, "original")
    assert original is not None and original.mode == "RGB"
    blank = prepare_image(sample, dataset.images, "blank")
    assert blank is not None and blank.size == original.size != (336, 336)
    assert blank.getextrema() == ((255, 255),) * 3


def test_sample_dataset_is_small_and_reproducible(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = sample_dataset_dir()
    assert sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) < 1_000_000
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "scripts" / "make_sample_data.py"
    spec = importlib.util.spec_from_file_location("make_sample_data", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "OUT", tmp_path)
    module.main()
    shipped = sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())
    regenerated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert shipped == regenerated
    assert all((folder / p).read_bytes() == (tmp_path / p).read_bytes() for p in shipped)
