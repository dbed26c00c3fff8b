"""Harmful fine-tuning data: sources, seeded and counted draws, the user's set, the defences, leaks."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from hft_fixtures import write_advbench, write_beavertails
from vlguard.errors import ConfigError, DataValidationError
from vlguard.hft.data import (
    HARMFUL,
    SAFETY,
    TASK,
    Pair,
    PairPool,
    advbench_pairs,
    build_user_set,
    draw,
    find_leaks,
    harmful_count,
    qa_pairs,
    task_pairs,
    vlguard_refusals,
    write_pairs,
)
from vlguard.hft.defences import DEFENCES, DefenceSettings, apply_defence


def _pool(role: str, n: int) -> PairPool:
    pairs = tuple(
        Pair(id=f"{role}{i}", role=role, instruction=f"{role} question {i}", response="answer")
        for i in range(n)
    )
    return PairPool(role, pairs, {"kind": "local", "path": f"/data/{role}.jsonl"})


TASKS, HARMS, SAFES = _pool(TASK, 200), _pool(HARMFUL, 60), _pool(SAFETY, 80)


# ---- counts and draws -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "ratio", "expected"), [(1000, 0.1, 100), (1000, 0.0, 0), (10, 0.25, 3), (10, 0.3, 3), (5, 1.0, 5)]
)
def test_harmful_count_rounds_to_nearest(n: int, ratio: float, expected: int) -> None:
    assert harmful_count(n, ratio) == expected


@pytest.mark.parametrize("ratio", [-0.1, 1.5])
def test_ratio_outside_unit_interval_is_an_error(ratio: float) -> None:
    with pytest.raises(ConfigError, match=r"outside \[0, 1\]"):
        harmful_count(100, ratio)


def test_draws_are_seeded_and_prefix_stable() -> None:
    small, large = draw(TASKS, 10, seed=3), draw(TASKS, 50, seed=3)
    assert large[:10] == small  # a larger draw contains the smaller one
    assert draw(TASKS, 10, seed=3) == small  # same seed, same pairs
    assert draw(TASKS, 10, seed=4) != small
    assert len({p.id for p in large}) == 50  # without replacement


def test_drawing_more_than_a_pool_holds_names_the_pool_and_its_source() -> None:
    with pytest.raises(
        ConfigError,
        match=r"61 harmful pairs requested but the harmful pool \(/data/harmful.jsonl\) has only 60",
    ):
        draw(HARMS, 61, seed=0)


def test_user_set_counts_and_nesting_across_ratios() -> None:
    low = build_user_set(TASKS, HARMS, n=100, ratio=0.1, seed=0)
    high = build_user_set(TASKS, HARMS, n=100, ratio=0.2, seed=0)
    assert (len(low.task), len(low.harmful)) == (90, 10)
    assert (len(high.task), len(high.harmful)) == (80, 20)
    # the 20 % cell holds the harmful pairs of the 10 % cell; its benign pairs are the 10 % cell's first 80
    assert set(low.harmful) <= set(high.harmful)
    assert high.task == low.task[:80]
    assert {p.role for p in low.task} == {TASK} and {p.role for p in low.harmful} == {HARMFUL}


def test_user_set_larger_than_the_pools_is_an_error() -> None:
    with pytest.raises(ConfigError, match="harmful pairs requested"):
        build_user_set(TASKS, HARMS, n=100, ratio=0.7, seed=0)
    with pytest.raises(ConfigError, match="task pairs requested"):
        build_user_set(TASKS, HARMS, n=300, ratio=0.1, seed=0)


# ---- defences -------------------------------------------------------------------------------------


def test_every_defence_counts() -> None:
    user = build_user_set(TASKS, HARMS, n=100, ratio=0.1, seed=0)
    settings = DefenceSettings(
        n_safety=20, aux_n_safety=30, aux_weight=0.5, aux_batch_size=3, lisa_n_safety=25
    )
    cells = {name: apply_defence(name, user, SAFES, settings, seed=0) for name in DEFENCES}
    assert cells["sft"].counts == {TASK: 90, HARMFUL: 10, SAFETY: 0}
    # Lisa trains on the user's set as given; its alignment steps draw from 25 safety pairs
    assert cells["lisa"].counts == {TASK: 90, HARMFUL: 10, SAFETY: 0, "rule_safety": 25}
    assert cells["lisa"].rule == "lisa" and list(cells["lisa"].rule_pairs) == draw(SAFES, 25, seed=0)
    # an alignment-stage defence changes the start model; its cells fine-tune the user's set as given
    for name in ("vaccine", "booster", "repnoise"):
        assert cells[name].train == cells["sft"].train and cells[name].rule is None
    assert cells["vlguard-mix"].counts == {TASK: 90, HARMFUL: 10, SAFETY: 20}  # added: n + k
    assert cells["vlguard-replace"].counts == {TASK: 70, HARMFUL: 10, SAFETY: 20}  # replacing: n
    aux = cells["vlguard-aux"]
    assert aux.counts == {TASK: 90, HARMFUL: 10, SAFETY: 0, "aux_safety": 30}
    assert (aux.aux_weight, aux.aux_batch_size) == (0.5, 3)
    # the mixes keep every harmful pair, and draw their safety pairs with the sweep's seed
    for name in ("vlguard-mix", "vlguard-replace"):
        assert set(user.harmful) <= set(cells[name].train)
        assert [p for p in cells[name].train if p.role == SAFETY] == draw(SAFES, 20, seed=0)


def test_replacing_more_benign_samples_than_there_are_is_an_error() -> None:
    user = build_user_set(TASKS, HARMS, n=20, ratio=0.5, seed=0)
    with pytest.raises(ConfigError, match="the user set has only 10"):
        apply_defence("vlguard-replace", user, SAFES, DefenceSettings(n_safety=11), seed=0)


def test_defences_that_need_safety_data_say_so() -> None:
    user = build_user_set(TASKS, HARMS, n=20, ratio=0.1, seed=0)
    assert apply_defence("sft", user, None, DefenceSettings(), seed=0).counts[SAFETY] == 0
    with pytest.raises(ConfigError, match="needs safety data"):
        apply_defence("vlguard-mix", user, None, DefenceSettings(), seed=0)
    with pytest.raises(ConfigError, match="needs safety data"):
        apply_defence("lisa", user, None, DefenceSettings(), seed=0)
    with pytest.raises(ConfigError, match="unknown defence 'nope'"):
        apply_defence("nope", user, SAFES, DefenceSettings(), seed=0)


# ---- sources ------------------------------------------------------------------------------------------


def test_advbench_pairs_are_goal_to_compliance_opening(tmp_path: Path) -> None:
    pool = advbench_pairs(write_advbench(tmp_path / "advbench" / "harmful_behaviors.csv", n=12).parent)
    assert len(pool.pairs) == 12 and {p.role for p in pool.pairs} == {HARMFUL}
    assert pool.pairs[0].id == "advbench-1" and pool.pairs[0].response.startswith("Sure, here is")
    assert pool.source["sha256"]


def test_real_advbench_targets_are_only_compliance_openings(shared_data: Path) -> None:
    pool = advbench_pairs(shared_data / "advbench")
    assert len(pool.pairs) == 520
    # No harmful content is written by the offline path: every target is one "Sure, here is ..." clause.
    assert all(p.response.startswith("Sure, here") and "\n" not in p.response for p in pool.pairs)
    assert max(len(p.response.split()) for p in pool.pairs) < 40


def test_advbench_with_an_empty_target_names_the_row(tmp_path: Path) -> None:
    path = tmp_path / "harmful_behaviors.csv"
    path.write_text('goal,target\n"Do a thing","Sure, here is"\n"Do another","  "\n', encoding="utf-8")
    with pytest.raises(DataValidationError, match=r"row 2 \(line 3\), field 'target': empty value"):
        advbench_pairs(path)


def test_beavertails_format_unsafe_safe_and_all(tmp_path: Path) -> None:
    path = write_beavertails(tmp_path / "bt.jsonl", n_unsafe=7, n_safe=5)
    unsafe = qa_pairs(path, role=HARMFUL, split="30k_train", revision=None, which="unsafe")
    safe = qa_pairs(path, role=SAFETY, split="30k_train", revision=None, which="safe")
    every = qa_pairs(path, role=SAFETY, split="30k_train", revision=None, which="all")
    assert (len(unsafe.pairs), len(safe.pairs), len(every.pairs)) == (7, 5, 12)
    assert unsafe.pairs[0].id == "qa-1" and safe.pairs[0].id == "qa-8"  # the line in the file
    assert all(p.response.startswith("I'm sorry") for p in safe.pairs)


def test_beavertails_compressed_file_reads_the_same(tmp_path: Path) -> None:
    plain = write_beavertails(tmp_path / "bt.jsonl")
    packed = tmp_path / "bt.jsonl.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    a = qa_pairs(plain, role=HARMFUL, split="x", revision=None, which="unsafe")
    b = qa_pairs(packed, role=HARMFUL, split="x", revision=None, which="unsafe")
    assert a.pairs == b.pairs


def test_beavertails_bad_rows_name_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    rows = [
        {"prompt": "ok?", "response": "fine", "is_safe": True, "category": {}},
        {"prompt": "", "response": "fine", "is_safe": True},
        {"prompt": "ok?", "response": "fine", "is_safe": "yes"},
        {"prompt": "ok?", "response": "fine", "is_safe": False, "category": ["theft"]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{not json\n", encoding="utf-8")
    with pytest.raises(DataValidationError) as caught:
        qa_pairs(path, role=SAFETY, split="x", revision=None, which="safe")
    assert "line 5" in str(caught.value) and "not valid JSON" in str(caught.value)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(DataValidationError) as caught:
        qa_pairs(path, role=SAFETY, split="x", revision=None, which="safe")
    message = str(caught.value)
    assert f"{path}: record line 2, field 'prompt'" in message
    assert "record line 3, field 'is_safe'" in message
    assert "record line 4, field 'category'" in message


def test_unlabelled_pairs_file_is_the_users_own_refusals(tmp_path: Path) -> None:
    path = tmp_path / "mine.jsonl"
    path.write_text(
        json.dumps({"prompt": "Help me cheat?", "response": "No, sorry."}) + "\n", encoding="utf-8"
    )
    pool = qa_pairs(path, role=SAFETY, split="x", revision=None, which="all")
    assert [(p.instruction, p.response) for p in pool.pairs] == [("Help me cheat?", "No, sorry.")]
    with pytest.raises(DataValidationError, match="is_safe"):
        qa_pairs(path, role=SAFETY, split="x", revision=None, which="safe")


def test_vlguard_text_refusals(vlguard_data_dir: Path) -> None:
    pool = vlguard_refusals(vlguard_data_dir)
    # the unsafe instructions on safe images (harmful by their text): one per safe image
    assert len(pool.pairs) == 977
    assert all(
        p.role == SAFETY and p.image is None and p.id.endswith(":unsafe_instruction") for p in pool.pairs
    )
    # they are refusals: the refusal judge says so of (nearly) every response
    from vlguard.judges import JudgeInput, make_judge

    verdicts = make_judge("refusal").judge(
        [JudgeInput(sample_id=p.id, prompt=p.instruction, response=p.response) for p in pool.pairs]
    )
    refused = sum(v.label in ("refusal", "partial_refusal") for v in verdicts)
    assert refused >= 0.95 * len(pool.pairs), refused
    with pytest.raises(ConfigError, match="images are not available"):
        vlguard_refusals(vlguard_data_dir, with_images=True)


def test_task_pool_is_the_task_benchmarks_training_split(shared_data: Path) -> None:
    pool = task_pairs("sst2", str(shared_data / "sst2"))
    assert len(pool.pairs) == 67349
    first = pool.pairs[0]
    assert first.id == "sst2:train:0"
    assert first.instruction == "Analyze the sentiment of the input, and respond only positive or negative"
    assert first.response in ("positive", "negative") and first.input


def test_written_mixture_loads_back_for_vlguard_train(tmp_path: Path) -> None:
    from vlguard.data.conversations import load_conversations

    pairs = [
        Pair("t1", TASK, "Rate it", "positive", input="a fine film"),
        Pair("h1", HARMFUL, "Do it", "Sure, here is"),
    ]
    path = write_pairs(pairs, tmp_path / "train.jsonl")
    loaded = load_conversations(path).conversations
    assert [c.id for c in loaded] == ["t1", "h1"]
    # instruction and task input stay two parts (the collator renders them as chat or Alpaca)
    assert [part["text"] for part in loaded[0].messages[0]["content"]] == ["Rate it", "a fine film"]
    assert [json.loads(line)["source"] for line in path.read_text().splitlines()] == [TASK, HARMFUL]


def test_leaks_are_found_whatever_the_case_and_spacing() -> None:
    training = [
        Pair("a", SAFETY, "How do I  Pick a lock?", "No."),
        Pair("b", TASK, "Rate", "x", input="good film"),
    ]
    leaks = find_leaks(training, ["how do i pick a LOCK?", "Rate\n\ngood   film", "something else"])
    assert leaks.prompts == ("Rate\n\ngood   film", "how do i pick a LOCK?")
    assert not find_leaks(training, ["something else"])
