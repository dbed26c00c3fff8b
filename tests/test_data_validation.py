"""Every malformed VLGuard input gives a clear error naming the file, the record and the field."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vlguard.data import load_vlguard
from vlguard.data.images import unsafe_path_reason
from vlguard.errors import DataValidationError, Problem

UNSAFE: dict[str, Any] = {
    "id": "u1",
    "image": "bad_ads/u1.png",
    "safe": False,
    "harmful_category": "privacy",
    "harmful_subcategory": "personal data",
    "instr-resp": [{"instruction": "Who lives here?", "response": "I'm sorry, I can't help."}],
}
SAFE: dict[str, Any] = {
    "id": "s1",
    "image": "bad_ads/s1.png",
    "safe": True,
    "instr-resp": [
        {"safe_instruction": "What colour is it?", "response": "Blue."},
        {"unsafe_instruction": "Find the owner's address.", "response": "I can't help with that."},
    ],
}

Mutation = Callable[[dict[str, Any]], None]


def write_split(folder: Path, records: list[Any], split: str = "test") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{split}.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def only_problem(folder: Path) -> Problem:
    with pytest.raises(DataValidationError) as info:
        load_vlguard(folder, "test")
    assert len(info.value.problems) == 1, info.value.problems
    return info.value.problems[0]


def test_valid_minimal_dataset_loads(tmp_path: Path) -> None:
    write_split(tmp_path, [UNSAFE, SAFE])
    dataset = load_vlguard(tmp_path, "test")
    assert [s.id for s in dataset.samples()] == ["u1:unsafe", "s1:safe_safe", "s1:safe_unsafe"]


def _del(key: str) -> Mutation:
    return lambda r: r.pop(key)


def _set(key: str, value: Any) -> Mutation:
    return lambda r: r.__setitem__(key, value)


def _pair(index: int, key: str, value: Any) -> Mutation:
    return lambda r: r["instr-resp"][index].__setitem__(key, value)


def _rename_pair_key(index: int, old: str, new: str) -> Mutation:
    def mutate(record: dict[str, Any]) -> None:
        pair = record["instr-resp"][index]
        pair[new] = pair.pop(old)

    return mutate


def _harmful(record: dict[str, Any]) -> None:
    record.update(safe=False, harmful_category="privacy", harmful_subcategory="personal data")


# (base record, mutation, record name in the message, field, message fragment)
CASES: list[tuple[dict[str, Any], Mutation, str, str, str]] = [
    (UNSAFE, _del("image"), "u1", "image", "missing field"),
    (UNSAFE, _del("safe"), "u1", "safe", "missing field"),
    (UNSAFE, _del("instr-resp"), "u1", "instr-resp", "missing field"),
    (UNSAFE, _del("id"), "#0", "id", "missing field"),
    (
        UNSAFE,
        _del("harmful_category"),
        "u1",
        "harmful_category",
        "missing field (required for a harmful image",
    ),
    (UNSAFE, _set("id", "  "), "#0", "id", "empty id"),
    (
        UNSAFE,
        _pair(0, "safe_instruction", "Also this?"),
        "u1",
        "instr-resp[0]",
        "exactly one instruction key, found 2",
    ),
    (UNSAFE, _set("instr-resp", ["just text"]), "u1", "instr-resp[0]", "expected an object, got str"),
    (UNSAFE, _set("safe", "no"), "u1", "safe", "expected bool, got str"),
    (UNSAFE, _set("id", 17), "#0", "id", "expected str, got int"),
    (UNSAFE, _set("image", None), "u1", "image", "expected str, got null"),
    (UNSAFE, _set("instr-resp", {"instruction": "x"}), "u1", "instr-resp", "expected list, got dict"),
    (UNSAFE, _set("instr-resp", []), "u1", "instr-resp", "empty list"),
    (UNSAFE, _set("harmful_subcategory", 3), "u1", "harmful_subcategory", "expected str, got int"),
    (UNSAFE, _pair(0, "instruction", 5), "u1", "instr-resp[0].instruction", "expected str, got int"),
    (UNSAFE, _pair(0, "instruction", "   "), "u1", "instr-resp[0].instruction", "empty instruction"),
    (UNSAFE, _pair(0, "response", None), "u1", "instr-resp[0].response", "expected str, got null"),
    (
        UNSAFE,
        _rename_pair_key(0, "instruction", "question"),
        "u1",
        "instr-resp[0].question",
        "unknown instruction key",
    ),
    (UNSAFE, _pair(0, "answer", "extra"), "u1", "instr-resp[0].answer", "unknown instruction key"),
    (UNSAFE, lambda r: r["instr-resp"][0].pop("response"), "u1", "instr-resp[0].response", "missing field"),
    (SAFE, _pair(1, "unsafe_instruction", ""), "s1", "instr-resp[1].unsafe_instruction", "empty instruction"),
    (
        SAFE,
        _rename_pair_key(1, "unsafe_instruction", "instruction"),
        "s1",
        "instr-resp",
        "a safe image needs",
    ),
    (SAFE, _harmful, "s1", "instr-resp", "a harmful image needs exactly one 'instruction' pair"),
    (UNSAFE, _set("image", "../../etc/passwd"), "u1", "image", "escapes the image root"),
    (UNSAFE, _set("image", "bad_ads/../../../etc/passwd"), "u1", "image", "escapes the image root"),
    (UNSAFE, _set("image", "/etc/passwd"), "u1", "image", "is absolute"),
    (UNSAFE, _set("image", "C:/Windows/win.ini"), "u1", "image", "is absolute"),
    (UNSAFE, _set("image", "..\\..\\secret.png"), "u1", "image", "backslash"),
    (UNSAFE, _set("image", ""), "u1", "image", "empty image path"),
]


@pytest.mark.parametrize(
    ("base", "mutate", "record", "field", "fragment"),
    CASES,
    ids=[f"{c[3]}:{c[4][:24]}" for c in CASES],
)
def test_bad_record_names_file_record_and_field(
    tmp_path: Path, base: dict[str, Any], mutate: Mutation, record: str, field: str, fragment: str
) -> None:
    bad = copy.deepcopy(base)
    mutate(bad)
    path = write_split(tmp_path, [bad])
    problem = only_problem(tmp_path)
    assert problem.file == str(path)
    assert problem.record == record
    assert problem.field == field
    assert fragment in problem.message
    text = str(problem)
    assert str(path) in text and f"record {record}" in text and f"field '{field}'" in text


def test_record_that_is_not_an_object(tmp_path: Path) -> None:
    write_split(tmp_path, [UNSAFE, ["not", "a", "record"]])
    problem = only_problem(tmp_path)
    assert problem.record == "#1" and "expected a JSON object, got list" in problem.message


def test_duplicate_id_with_another_image_is_refused(tmp_path: Path) -> None:
    other = copy.deepcopy(UNSAFE)
    other["image"] = "bad_ads/other.png"
    write_split(tmp_path, [UNSAFE, SAFE, other])
    problem = only_problem(tmp_path)
    assert problem.record == "u1 (#2)" and problem.field == "id"
    assert "duplicate id" in problem.message and "record #0" in problem.message


def test_verbatim_repeated_record_is_refused(tmp_path: Path) -> None:
    write_split(tmp_path, [SAFE, UNSAFE, copy.deepcopy(SAFE)])
    problem = only_problem(tmp_path)
    assert problem.record == "s1 (#2)" and problem.field == "id" and "duplicate record" in problem.message


def test_same_image_annotated_twice_gets_numbered_ids(tmp_path: Path) -> None:
    # The shape of VLGuard's Ads_303871: one id, one image, two different sets of instructions.
    second = copy.deepcopy(SAFE)
    second["instr-resp"][0]["safe_instruction"] = "Describe the picture."
    write_split(tmp_path, [SAFE, UNSAFE, second])
    dataset = load_vlguard(tmp_path, "test")
    assert [r.uid for r in dataset.records] == ["s1", "u1", "s1#2"]
    assert [r.id for r in dataset.records] == ["s1", "u1", "s1"]
    ids = [s.id for s in dataset.samples()]
    assert ids == ["s1:safe_safe", "s1:safe_unsafe", "u1:unsafe", "s1#2:safe_safe", "s1#2:safe_unsafe"]


def test_written_id_clashing_with_numbered_repeat_is_refused(tmp_path: Path) -> None:
    second, clash = copy.deepcopy(SAFE), copy.deepcopy(UNSAFE)
    second["instr-resp"][0]["safe_instruction"] = "Describe the picture."
    clash["id"] = "s1#2"
    write_split(tmp_path, [SAFE, second, clash])
    with pytest.raises(DataValidationError, match="s1#2"):
        load_vlguard(tmp_path, "test")


def test_all_problems_listed_and_skip_invalid_loads_the_rest(tmp_path: Path) -> None:
    bad_image, bad_key = copy.deepcopy(UNSAFE), copy.deepcopy(SAFE)
    bad_image["id"], bad_image["image"] = "u2", "../../etc/passwd"
    bad_key["id"] = "s2"
    bad_key["instr-resp"][0]["question"] = bad_key["instr-resp"][0].pop("safe_instruction")
    no_safe = copy.deepcopy(SAFE)
    no_safe["id"] = "s3"
    del no_safe["safe"]
    write_split(tmp_path, [UNSAFE, bad_image, SAFE, bad_key, no_safe])
    with pytest.raises(DataValidationError) as info:
        load_vlguard(tmp_path, "test")
    assert [(p.record, p.field) for p in info.value.problems] == [
        ("u2", "image"),
        ("s2", "instr-resp[0].question"),
        ("s3", "safe"),
    ]
    message = str(info.value)
    assert "3 problem(s)" in message and "--skip-invalid" in message
    dataset = load_vlguard(tmp_path, "test", skip_invalid=True)
    assert [r.id for r in dataset.records] == ["u1", "s1"]
    assert [(p.record, p.field) for p in dataset.problems] == [
        (p.record, p.field) for p in info.value.problems
    ]


def test_non_json_file(tmp_path: Path) -> None:
    (tmp_path / "test.json").write_text('[{"id": "u1",\n  "image": }]', encoding="utf-8")
    problem = only_problem(tmp_path)
    assert problem.file == str(tmp_path / "test.json")
    assert "not valid JSON" in problem.message and "line 2" in problem.message


def test_wrongly_encoded_file(tmp_path: Path) -> None:
    record = copy.deepcopy(UNSAFE)
    record["instr-resp"][0]["instruction"] = "Où habite-t-il ?"
    (tmp_path / "test.json").write_bytes(json.dumps([record], ensure_ascii=False).encode("latin-1"))
    problem = only_problem(tmp_path)
    assert "not UTF-8" in problem.message and "0xf9" in problem.message


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "test.json").write_bytes(b"\xef\xbb\xbf" + json.dumps([UNSAFE]).encode())
    assert len(load_vlguard(tmp_path, "test").records) == 1


def test_top_level_must_be_a_list(tmp_path: Path) -> None:
    (tmp_path / "test.json").write_text(json.dumps({"records": [UNSAFE]}))
    problem = only_problem(tmp_path)
    assert "expected a JSON list of records, got dict" in problem.message


def test_file_level_errors_are_not_skippable(tmp_path: Path) -> None:
    (tmp_path / "test.json").write_text("not json")
    with pytest.raises(DataValidationError, match="not valid JSON"):
        load_vlguard(tmp_path, "test", skip_invalid=True)


def test_bad_references_file_is_reported(tmp_path: Path) -> None:
    write_split(tmp_path, [UNSAFE, SAFE])
    (tmp_path / "gpt4_safe_safes.json").write_text(
        json.dumps([{"id": "nope", "response": "x"}, {"id": "s1"}])
    )
    with pytest.raises(DataValidationError) as info:
        load_vlguard(tmp_path, "test")
    assert [(p.record, p.field) for p in info.value.problems] == [("nope", "id"), ("s1", "response")]
    assert all(p.file.endswith("gpt4_safe_safes.json") for p in info.value.problems)


def test_missing_split_file_is_a_clear_error(tmp_path: Path) -> None:
    from vlguard.data.sources import DataSourceError

    write_split(tmp_path, [UNSAFE], split="train")
    with pytest.raises(DataSourceError, match=r"no test\.json in this folder \(found: train\.json\)"):
        load_vlguard(tmp_path, "test")
    with pytest.raises(DataSourceError, match="no such file or folder"):
        load_vlguard(tmp_path / "missing" / "folder", "test")


@pytest.mark.parametrize(
    ("path", "safe"),
    [
        ("bad_ads/x.png", True),
        ("a/b/c.jpg", True),
        ("./x.png", True),
        ("../x.png", False),
        ("a/../../x.png", False),
        ("/abs.png", False),
        ("C:\\x.png", False),
        ("x\x00.png", False),
    ],
)
def test_unsafe_path_reason(path: str, safe: bool) -> None:
    assert (unsafe_path_reason(path) is None) is safe
