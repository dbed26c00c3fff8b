"""Export (LLaVA parity with the reference script, messages format, JSONL), conversations, mixtures."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import pytest

from vlguard.data import load_vlguard
from vlguard.data.conversations import Conversation, load_conversations, vlguard_conversations
from vlguard.data.export import to_llava, to_messages, write_jsonl
from vlguard.data.mix import build_mixture, write_mixture
from vlguard.data.sample import sample_dataset_dir
from vlguard.errors import ConfigError, DataValidationError


def reference_llava(train_data: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """An independent transcription of VLGuard's convert_to_llava_format.py (global RNG, raw dicts)."""
    data = copy.deepcopy(train_data)
    state = random.getstate()
    try:
        random.seed(seed)
        for item in data:
            item["conversations"] = []
            pairs = item["instr-resp"]
            if len(pairs) > 1:
                random.shuffle(pairs)
                for turn, pair in enumerate(pairs[:2]):
                    key = next(iter(pair))
                    human = f"<image>{pair[key]}" if turn == 0 else pair[key]
                    item["conversations"] += [
                        {"from": "human", "value": human},
                        {"from": "gpt", "value": pair["response"]},
                    ]
            else:
                pair = pairs[0]
                item["conversations"] += [
                    {"from": "human", "value": f"<image>{pair['instruction']}"},
                    {"from": "gpt", "value": pair["response"]},
                ]
            item.pop("instr-resp")
    finally:
        random.setstate(state)
    return data


@pytest.mark.parametrize("seed", [0, 7])
def test_llava_parity_with_reference_on_real_train(vlguard_data_dir: Path, seed: int) -> None:
    raw = json.loads((vlguard_data_dir / "train.json").read_text())
    ours = to_llava(load_vlguard(vlguard_data_dir, "train").records, seed=seed)
    expected = reference_llava(raw, seed)
    assert len(ours) == len(expected) == 2000
    # Same content and the same key order as the reference's json.dump output.
    assert json.dumps(ours) == json.dumps(expected)


def test_llava_seed_changes_order_and_is_deterministic(vlguard_data_dir: Path) -> None:
    records = load_vlguard(vlguard_data_dir, "train").records
    assert to_llava(records, seed=0) == to_llava(records, seed=0)
    assert to_llava(records, seed=0) != to_llava(records, seed=1)
    state = random.getstate()
    to_llava(records, seed=3)
    assert random.getstate() == state  # no global RNG side effect


def test_messages_format_follows_llava_turns(vlguard_data_dir: Path) -> None:
    records = load_vlguard(vlguard_data_dir, "train").records
    llava, messages = to_llava(records, seed=5), to_messages(records, seed=5)
    assert len({m["id"] for m in messages}) == len(messages) == 2000
    for record, lv, row in zip(records, llava, messages, strict=True):
        assert row["id"] == record.uid and row["images"] == [record.image]
        turns = row["messages"]
        assert [t["role"] for t in turns] == ["user", "assistant"] * len(record.pairs)
        assert turns[0]["content"][0] == {"type": "image"}
        assert all({"type": "image"} not in t["content"] for t in turns[1:])
        texts = [next(p["text"] for p in t["content"] if p["type"] == "text") for t in turns]
        expected = [
            c["value"].removeprefix("<image>") if k == 0 else c["value"]
            for k, c in enumerate(lv["conversations"])
        ]
        assert texts == expected


def test_write_jsonl_roundtrip(tmp_path: Path) -> None:
    rows = to_messages(load_vlguard(sample_dataset_dir(), "train").records)
    path = write_jsonl(rows, tmp_path / "sub" / "out.jsonl")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == rows
    assert not list(path.parent.glob(".*.tmp"))


# --- conversations --------------------------------------------------------------------------------


LLAVA_ROWS: list[dict[str, Any]] = [
    {
        "id": "000000033471",
        "image": "coco/train2017/000000033471.jpg",
        "conversations": [
            {"from": "human", "value": "<image>\nWhat are the colors of the bus in the image?"},
            {"from": "gpt", "value": "The bus in the image is white and red."},
            {"from": "human", "value": "What feature can be seen on the back of the bus?"},
            {"from": "gpt", "value": "The back of the bus features an advertisement."},
        ],
    },
    {
        "id": 42,
        "image": "gqa/images/1.jpg",
        "conversations": [
            {"from": "human", "value": "Is the sky blue?\n<image>"},
            {"from": "gpt", "value": "Yes."},
        ],
    },
    {
        "id": "text-only",
        "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}],
    },
]


def test_load_llava_format_json(tmp_path: Path) -> None:
    path = tmp_path / "llava.json"
    path.write_text(json.dumps(LLAVA_ROWS))
    dataset = load_conversations(path)
    first, second, third = dataset.conversations
    assert first.id == "000000033471" and first.image == "coco/train2017/000000033471.jpg"
    assert first.messages[0]["content"] == [
        {"type": "image"},
        {"type": "text", "text": "What are the colors of the bus in the image?"},
    ]
    assert [m["role"] for m in first.messages] == ["user", "assistant", "user", "assistant"]
    assert first.messages[2]["content"] == [
        {"type": "text", "text": "What feature can be seen on the back of the bus?"}
    ]
    assert second.id == "42" and second.messages[0]["content"][1]["text"] == "Is the sky blue?"
    assert third.image is None and third.messages[0]["content"] == [{"type": "text", "text": "Hi"}]
    assert dataset.source["kind"] == "local" and len(dataset.source["sha256"]) == 64


def test_load_messages_format_jsonl_matches_export(tmp_path: Path) -> None:
    records = load_vlguard(sample_dataset_dir(), "train").records
    path = write_jsonl(to_messages(records, seed=2), tmp_path / "m.jsonl")
    loaded = load_conversations(path).conversations
    assert list(loaded) == vlguard_conversations(records, seed=2)


def test_llava_export_reads_back_as_the_same_conversations(tmp_path: Path) -> None:
    records = load_vlguard(sample_dataset_dir(), "train").records
    path = tmp_path / "llava.json"
    path.write_text(json.dumps(to_llava(records, seed=4)))
    from_llava = load_conversations(path).conversations
    from_messages = vlguard_conversations(records, seed=4)
    assert [(c.image, c.messages) for c in from_llava] == [(c.image, c.messages) for c in from_messages]


def test_messages_string_content_and_image_without_marker(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    rows = [
        {
            "id": "a",
            "images": ["x.png"],
            "messages": [
                {"role": "user", "content": "Describe."},
                {"role": "assistant", "content": "A cat."},
            ],
        },
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hey"},
            ]
        },
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    first, second = load_conversations(path).conversations
    assert first.messages[0]["content"] == [{"type": "image"}, {"type": "text", "text": "Describe."}]
    assert second.id == "m#1" and second.image is None and second.messages[0]["role"] == "system"


def test_bad_conversations_are_listed(tmp_path: Path) -> None:
    rows = [
        {"id": "a", "conversations": [{"from": "robot", "value": "x"}]},
        {"id": "b", "image": "../../etc/passwd", "conversations": LLAVA_ROWS[2]["conversations"]},
        {
            "id": "c",
            "conversations": [{"from": "gpt", "value": "first"}, {"from": "human", "value": "second"}],
        },
        {"id": "d", "conversations": [{"from": "human", "value": "<image>x"}, {"from": "gpt", "value": "y"}]},
        {"id": "e"},
        LLAVA_ROWS[0],
    ]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(rows))
    with pytest.raises(DataValidationError) as info:
        load_conversations(path)
    assert [(p.record, p.field) for p in info.value.problems] == [
        ("a", "conversations[0].from"),
        ("b", "image"),
        ("c", ""),
        ("d", "image"),
        ("e", ""),
    ]
    assert all(p.file == str(path) for p in info.value.problems)
    assert [c.id for c in load_conversations(path, skip_invalid=True).conversations] == ["000000033471"]


def test_bad_jsonl_line_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"id": 1}\n{oops\n')
    with pytest.raises(DataValidationError, match="line 2"):
        load_conversations(path)
    from vlguard.data.sources import DataSourceError

    with pytest.raises(DataSourceError, match="no such file"):
        load_conversations(tmp_path / "missing.json")


# --- mixtures -------------------------------------------------------------------------------------


def conversations(prefix: str, n: int) -> list[Conversation]:
    return [
        Conversation(
            id=f"{prefix}{k}",
            image=None,
            messages=(
                {"role": "user", "content": [{"type": "text", "text": f"q{k}"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "a"}]},
            ),
        )
        for k in range(n)
    ]


def test_posthoc_mixture_draws_n_with_the_seed() -> None:
    safety, instructions = conversations("s", 10), conversations("i", 50)
    mixture = build_mixture("posthoc", safety, instructions, n_helpfulness=20, seed=3)
    assert mixture.counts == {"safety": 10, "instructions": 20}
    ids = [c.id for c in mixture.conversations]
    assert ids[:10] == [c.id for c in safety]
    drawn = ids[10:]
    assert len(set(drawn)) == 20 and set(drawn) <= {c.id for c in instructions}
    assert drawn == [c.id for c in random.Random(3).sample(instructions, 20)]
    assert [c.source for c in mixture.conversations] == ["safety"] * 10 + ["instructions"] * 20
    again = build_mixture("posthoc", safety, instructions, n_helpfulness=20, seed=3)
    other = build_mixture("posthoc", safety, instructions, n_helpfulness=20, seed=4)
    assert again == mixture and [c.id for c in other.conversations] != ids


def test_posthoc_mixture_too_many_requested() -> None:
    with pytest.raises(ConfigError, match="only 5 conversations"):
        build_mixture("posthoc", conversations("s", 2), conversations("i", 5), n_helpfulness=6)
    with pytest.raises(ConfigError, match=">= 0"):
        build_mixture("posthoc", conversations("s", 2), conversations("i", 5), n_helpfulness=-1)


def test_mixed_mixture_keeps_everything_shuffled() -> None:
    safety, instructions = conversations("s", 10), conversations("i", 30)
    mixture = build_mixture("mixed", safety, instructions, seed=1)
    assert mixture.counts == {"safety": 10, "instructions": 30}
    ids = [c.id for c in mixture.conversations]
    assert sorted(ids) == sorted(c.id for c in safety + instructions)
    assert ids != [c.id for c in instructions + safety]
    assert ids == [c.id for c in build_mixture("mixed", safety, instructions, seed=1).conversations]
    assert ids != [c.id for c in build_mixture("mixed", safety, instructions, seed=2).conversations]
    with pytest.raises(ConfigError, match="unknown mixture recipe"):
        build_mixture("both", safety, instructions)  # type: ignore[arg-type]


def test_write_mixture_from_real_train(vlguard_data_dir: Path, tmp_path: Path) -> None:
    safety = vlguard_conversations(load_vlguard(vlguard_data_dir, "train").records)
    mixture = build_mixture("posthoc", safety, conversations("i", 40), n_helpfulness=25, seed=0)
    assert mixture.counts == {"safety": 2000, "instructions": 25}
    rows = [
        json.loads(line) for line in write_mixture(mixture, tmp_path / "mix.jsonl").read_text().splitlines()
    ]
    assert len(rows) == 2025 and rows[0]["source"] == "safety" and rows[-1]["source"] == "instructions"
    assert rows[0]["images"] == [safety[0].image] and rows[-1]["images"] == []
