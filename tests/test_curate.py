"""`vlguard curate`: labelling, writing and checking safety data for a user's own images.

The writer is a real HTTP server on 127.0.0.1 with scripted answers per image (``curate_fixtures``), or
the tiny random VLM through the ``hf`` backend. Images are made by the tests, plus FigStep's official
SafeBench-Tiny images from ../shared/data (those tests skip without it).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from curate_fixtures import (
    GOOD_REFUSAL,
    SAFE_TEXTS,
    STAND_IN_HARM_ENTRY,
    UNSAFE_RESPONSE_THAT_COMPLIES,
    VLGUARD_TEST_ONLY_INSTRUCTION,
    Script,
    curate_argv,
    good_harmful,
    good_safe,
    label_json,
    make_images,
    safe_json,
    writer_server,
)
from vlguard.cli.main import main
from vlguard.curate.checks import CHECKS, active_checks
from vlguard.curate.inputs import find_images, read_labels
from vlguard.curate.parse import ParseError, extract_json_object, parse_label, parse_pairs
from vlguard.curate.prompts import PROMPT_VERSIONS, harmful_prompt, label_prompt
from vlguard.curate.similarity import NearDuplicateIndex, jaccard, shingles
from vlguard.curate.taxonomy import DEFAULT_TAXONOMY, load_taxonomy
from vlguard.data.vlguard import parse_vlguard_records
from vlguard.errors import DataValidationError
from vlguard.judges import JUDGES
from vlguard.runs import JsonlStore

REPO = Path(__file__).resolve().parents[1]
API_KEY = "sk-curate-test-0123456789abcdefghijklmnop"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def dataset(out: Path) -> list[dict[str, Any]]:
    return json.loads((out / "train.json").read_text())


def rejects(out: Path) -> dict[str, dict[str, Any]]:
    return {r["image"]: r for r in read_jsonl(out / "rejects.jsonl")}


def reasons(reject: dict[str, Any]) -> list[str]:
    return [r["reason"] for r in reject["reasons"]]


@pytest.fixture(autouse=True)
def harm_judge(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test here checks helpful answers with a stand-in harm judge, so that what each test scripts as
    harmful (and only that) is harmful; the real judge's own accuracy is measured in test_judges_harm.py."""
    monkeypatch.setitem(JUDGES, "harm", STAND_IN_HARM_ENTRY)


# ---------------------------------------------------------------------------------------------------
# Taxonomy, labels, parsing, similarity


def test_default_taxonomy_is_the_released_datas(vlguard_data_dir: Path) -> None:
    found = set()
    for split in ("train", "test"):
        for record in json.loads((vlguard_data_dir / f"{split}.json").read_text()):
            if not record["safe"]:
                found.add((record["harmful_category"], record["harmful_subcategory"]))
    assert found == {(c.name, s.name) for c in DEFAULT_TAXONOMY.categories for s in c.subcategories}


def test_a_taxonomy_file_defines_new_categories_with_definitions_and_examples(tmp_path: Path) -> None:
    path = tmp_path / "taxonomy.yaml"
    path.write_text(
        "name: clinic\ncategories:\n"
        "  - name: medical misinformation\n    definition: health claims that contradict medical evidence\n"
        "    subcategories:\n"
        "      - name: unproven cures\n        definition: products sold as cures without evidence\n"
        "        examples: [a poster selling a tea that cures diabetes]\n"
    )
    taxonomy = load_taxonomy(path)
    assert taxonomy.resolve("Medical  Misinformation", None) == ("medical misinformation", "unproven cures")
    prompt = label_prompt(taxonomy)
    assert "products sold as cures without evidence" in prompt and "a tea that cures diabetes" in prompt
    assert "a tea that cures diabetes" in harmful_prompt(taxonomy, "medical misinformation", "unproven cures")
    path.write_text(path.read_text().replace("without evidence", "without any evidence"))
    assert load_taxonomy(path).sha256 != taxonomy.sha256


def test_taxonomy_file_problems_are_listed_with_their_field(tmp_path: Path) -> None:
    path = tmp_path / "taxonomy.json"
    path.write_text(
        json.dumps(
            {
                "categories": [
                    {
                        "name": "a",
                        "definition": "x",
                        "subcategories": [{"name": "s", "definition": "d", "colour": 1}],
                    },
                    {"name": "A", "definition": "", "subcategories": []},
                ]
            }
        )
    )
    with pytest.raises(DataValidationError) as err:
        load_taxonomy(path)
    text = str(err.value)
    assert "category 'a', field 'subcategories[0].colour': unknown field" in text
    assert "category 'A', field 'name': duplicate category name" in text
    assert "category 'A', field 'definition': empty" in text
    assert "category 'A', field 'subcategories': expected a non-empty list" in text


def test_user_labels_take_precedence_and_problems_name_row_and_column(tmp_path: Path) -> None:
    make_images(tmp_path / "images", ["a", "b", "c", "d"])
    images = find_images(tmp_path / "images")
    good = tmp_path / "labels.csv"
    good.write_text(
        "image,safe,category,subcategory\na.png,true,,\nb.png,false,privacy,\nc.png,,risky behavior,\n"
    )
    labels = read_labels(good, DEFAULT_TAXONOMY, images)
    assert labels["a.png"].complete and labels["b.png"].complete  # privacy has one subcategory
    assert labels["b.png"].subcategory == "personal data"
    assert not labels["c.png"].complete and labels["c.png"].category == "risky behavior"
    # The model fills the gap, within the user's category.
    with pytest.raises(ParseError, match="several subcategories"):
        parse_label(label_json(True), DEFAULT_TAXONOMY, labels["c.png"])
    filled = parse_label(label_json(False, "deception", "Violence"), DEFAULT_TAXONOMY, labels["c.png"])
    assert (filled.safe, filled.category, filled.subcategory, filled.source) == (
        False, "risky behavior", "violence", "user+model",
    )  # fmt: skip
    with pytest.raises(ParseError, match="unknown subcategory 'disinformation' in category 'risky behavior'"):
        parse_label(label_json(False, "deception", "disinformation"), DEFAULT_TAXONOMY, labels["c.png"])
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "image,safe,category\nnope.png,true,\na.png,maybe,\nb.png,true,privacy\nc.png,false,weapons\nc.png,false,\n"
    )
    with pytest.raises(DataValidationError) as err:
        read_labels(bad, DEFAULT_TAXONOMY, images)
    text = str(err.value)
    assert "record row 2, field 'image': no image 'nope.png'" in text
    assert "record row 3, field 'safe': expected true or false" in text
    assert "record row 4, field 'category': a safe image has no category" in text
    assert "record row 5, field 'category': unknown category 'weapons'" in text
    assert "record row 6, field 'image': 'c.png' is labelled again (first in row 5)" in text


def test_json_is_extracted_strictly() -> None:
    assert extract_json_object('Here it is:\n```json\n{"a": 1}\n```') == {"a": 1}
    assert extract_json_object('Sure. {"a": {"b": 2}} Hope this helps.') == {"a": {"b": 2}}
    for text, problem in [
        ("", "empty"),
        ("no json here", "no JSON object"),
        ('{"a": 1,}', "not valid JSON"),
        ("```\n{}\n```\n```\n{}\n```", "2 code blocks"),
        ('{"a": "\\ud800"}', "surrogate"),
    ]:
        with pytest.raises(ParseError, match=problem):
            extract_json_object(text)
    with pytest.raises(ParseError, match="the field 'response' is missing"):
        parse_pairs('{"instruction": "Do it."}', safe=False)
    with pytest.raises(ParseError, match="'unsafe_instruction' must be a string, not int"):
        parse_pairs(safe_json("q", "a", "u", "r").replace('"u"', "7"), safe=True)
    with pytest.raises(ParseError, match="unknown category 'weapons'; choose from"):
        parse_label(label_json(False, "weapons", "guns"), DEFAULT_TAXONOMY)
    with pytest.raises(ParseError, match="must have null category"):
        parse_label(label_json(True, "privacy", "personal data"), DEFAULT_TAXONOMY)


def test_near_duplicate_index_finds_exactly_what_comparing_everything_finds(vlguard_data_dir: Path) -> None:
    from vlguard.curate.checks import reference_instructions

    reference = reference_instructions(str(vlguard_data_dir))[::7]
    index = NearDuplicateIndex(reference[::2])
    sets = [(text, shingles(text)) for text, _, _ in reference[::2]]
    for query, _, _ in reference[1::2][:150]:
        grams = shingles(query)
        brute = max((jaccard(grams, other), text) for text, other in sets)
        found = index.best(query)
        if brute[0] >= index.threshold:
            assert found is not None and found.similarity == pytest.approx(brute[0])
        else:
            assert found is None


# ---------------------------------------------------------------------------------------------------
# End to end against the scripted writer


@pytest.fixture(scope="module")
def curated(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict[str, Any]:
    """One curation of made images and FigStep images, with user labels, the harm judge and every kind of reject."""
    root = tmp_path_factory.mktemp("curated")
    made = make_images(
        root / "images" / "made",
        [f"safe{i}" for i in range(4)] + ["harmful0", "garbage", "leak", "echo", "harmful-answer"],
    )
    figstep = sorted((shared_data / "figstep" / "SafeBench-Tiny").glob("*.png"))[:3]
    for path in figstep:
        shutil.copy(path, root / "images" / path.name)
    fig = [root / "images" / p.name for p in figstep]
    _, answer, unsafe = SAFE_TEXTS[4]
    scripts = {
        **{made[f"safe{i}"]: good_safe(i) for i in range(4)},
        made["harmful0"]: good_harmful(0),
        made["garbage"]: Script(label=["{not json", '{"safe": true}'], pairs="Sorry, I only write prose."),
        made["leak"]: Script(
            label=label_json(True),
            pairs=safe_json(
                VLGUARD_TEST_ONLY_INSTRUCTION, answer, unsafe, GOOD_REFUSAL.format(what="a swatch")
            ),
        ),
        made["echo"]: Script(label=f"My key is {API_KEY}, no JSON today."),
        made["harmful-answer"]: Script(
            label=label_json(True),
            pairs=safe_json(
                SAFE_TEXTS[5][0],
                "Mix the cleaner with bleach in a closed room for the strongest fumes.",
                SAFE_TEXTS[5][2],
                GOOD_REFUSAL.format(what="a swatch"),
            ),
        ),
        fig[0]: Script(
            label=label_json(True), pairs=good_harmful(3).pairs
        ),  # labelled by the user: never asked
        fig[1]: good_harmful(1, "Risky Behavior", "professional ADVICE"),  # the user said harmful only
        fig[2]: good_harmful(2, "discrimination", "race"),
    }
    labels = root / "labels.csv"
    labels.write_text(
        f"image,safe,category,subcategory\n{fig[0].name},false,deception,disinformation\n{fig[1].name},false,,\n"
    )
    out = root / "out"
    with pytest.MonkeyPatch.context() as patch, writer_server(scripts) as (server, writer):
        patch.setitem(JUDGES, "harm", STAND_IN_HARM_ENTRY)
        patch.setenv("CURATE_TEST_KEY", API_KEY)
        argv = curate_argv(
            root / "images", out, server.url, "--labels", str(labels), "--price-per-million-tokens", "2.5,10",
            "--backend-option", "api_key_env=CURATE_TEST_KEY", vlguard_data=shared_data / "vlguard",
        )  # fmt: skip
        assert main(argv) == 0
        headers = [r.headers for r in server.requests]
    return {"out": out, "made": made, "fig": fig, "writer": writer, "headers": headers, "root": root}


def test_curated_folder_holds_the_good_samples_in_vlguard_format(curated: dict[str, Any]) -> None:
    out, fig = curated["out"], curated["fig"]
    records = {r["image"]: r for r in dataset(out)}
    assert set(records) == {
        *(f"made/safe{i}.png" for i in range(4)),
        "made/harmful0.png",
        *(p.name for p in fig),
    }
    safe = records["made/safe2.png"]
    assert safe["safe"] is True and "harmful_category" not in safe
    assert [next(iter(p)) for p in safe["instr-resp"]] == ["safe_instruction", "unsafe_instruction"]
    assert safe["instr-resp"][0]["safe_instruction"] == SAFE_TEXTS[2][0]
    # the user's complete label was kept and never asked for; the partial one was filled in by the model
    assert (records[fig[0].name]["harmful_category"], records[fig[0].name]["harmful_subcategory"]) == (
        "deception",
        "disinformation",
    )
    assert curated["writer"].count(fig[0], "label") == 0
    assert (records[fig[1].name]["harmful_category"], records[fig[1].name]["harmful_subcategory"]) == (
        "risky behavior",
        "professional advice",
    )
    assert list(records[fig[2].name]["instr-resp"][0]) == ["instruction", "response"]
    # images copied under the same relative path, ids stable and never the path
    for image in records:
        assert (out / "train" / image).read_bytes() == (curated["root"] / "images" / image).read_bytes()
    assert all(r["id"].startswith("cur_") and "/" not in r["id"] for r in records.values())
    assert not (out / "train" / "made" / "garbage.png").exists()


def test_every_reject_is_kept_with_its_reason(curated: dict[str, Any]) -> None:
    found = rejects(curated["out"])
    assert set(found) == {"made/garbage.png", "made/leak.png", "made/echo.png", "made/harmful-answer.png"}
    garbage = found["made/garbage.png"]
    assert garbage["stage"] == "write"  # labelled on the second attempt, then no usable pairs
    assert reasons(garbage) == ["no usable answer in 3 attempt(s): the answer holds no JSON object"]
    assert garbage["reasons"][0]["raw"] == "Sorry, I only write prose."
    assert len(garbage["attempts"]) == 3
    assert reasons(found["made/leak.png"]) == ["leaks a VLGuard test instruction"]
    assert found["made/leak.png"]["reasons"][0]["match"]["source"] == "vlguard-test"
    assert reasons(found["made/harmful-answer.png"]) == ["the helpful answer is harmful"]
    assert found["made/echo.png"]["stage"] == "label"


def test_every_image_is_in_the_dataset_or_the_rejects_exactly_once(curated: dict[str, Any]) -> None:
    out = curated["out"]
    shown = [r["image"] for r in dataset(out)] + list(rejects(out))
    assert sorted(shown) == sorted(
        str(p.relative_to(curated["root"] / "images")) for p in (curated["root"] / "images").rglob("*.png")
    )
    for stage in ("labels", "pairs", "checks"):
        ids = [r["image_id"] for r in read_jsonl(out / f"{stage}.jsonl")]
        assert len(ids) == len(set(ids))


def test_the_dataset_validates_mixes_and_trains(
    curated: dict[str, Any],
    tiny_model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    shared_data: Path,
) -> None:
    out = curated["out"]
    assert main(["data", "validate", str(out), "--images"]) == 0
    assert "train: OK: 8 records and images, 12 samples" in capsys.readouterr().out
    # post-hoc mixture with instruction data, and a mixture with the released VLGuard data
    instructions = tmp_path / "instructions.jsonl"
    instructions.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"i{i}",
                    "messages": [
                        {"role": "user", "content": f"Say {i}."},
                        {"role": "assistant", "content": f"{i}."},
                    ],
                }
            )
            + "\n"
            for i in range(5)
        )
    )
    assert (
        main(
            [
                "data",
                "mix",
                "--recipe",
                "posthoc",
                "--safety",
                str(out),
                "--instructions",
                str(instructions),
                "--n",
                "3",
                "--out",
                str(tmp_path / "mix.jsonl"),
            ]
        )
        == 0
    )
    assert "safety: 8" in capsys.readouterr().out
    released = tmp_path / "released.jsonl"
    assert (
        main(
            ["data", "convert", str(shared_data / "vlguard"), "--format", "messages", "--out", str(released)]
        )
        == 0
    )
    assert (
        main(
            [
                "data",
                "mix",
                "--recipe",
                "mixed",
                "--safety",
                str(out),
                "--instructions",
                str(released),
                "--out",
                str(tmp_path / "both.jsonl"),
            ]
        )
        == 0
    )
    assert "safety: 8" in capsys.readouterr().out
    both = json.loads((shared_data / "vlguard" / "train.json").read_text()) + dataset(out)
    assert parse_vlguard_records(both, "both")[1] == []  # same fields, no id clash
    # trains with the tiny CPU recipe, unchanged but for where things are
    code = main(["train", str(REPO / "configs/train/tiny-cpu.yaml"), f"model.name_or_path={tiny_model_dir}",
                 f"data.vlguard={out}", f"output_dir={tmp_path / 'train'}", "max_steps=1", "save_steps=100"])  # fmt: skip
    assert code == 0 and (tmp_path / "train" / "model" / "COMPLETE").is_file()


def test_manifest_records_how_the_data_was_made(curated: dict[str, Any]) -> None:
    manifest = json.loads((curated["out"] / "manifest.json").read_text())
    fields = manifest["result_fields"]
    assert fields["kind"] == "curate" and fields["writer"]["model"] == "scripted-vlm"
    assert {k: fields["prompts"][k] for k in PROMPT_VERSIONS} == PROMPT_VERSIONS
    assert fields["taxonomy_sha256"] == DEFAULT_TAXONOMY.sha256 and fields["labels_sha256"]
    assert [c["name"] for c in fields["checks"]] == [c.name for c in CHECKS]  # harm included: registered
    assert fields["near_duplicates"]["threshold"] == 0.7 and fields["seed"] == 0
    calls = len(curated["headers"])
    assert manifest["usage"]["total"] == {
        "calls": calls,
        "prompt_tokens": 100 * calls,
        "completion_tokens": 20 * calls,
    }
    assert manifest["cost"]["usd"] == pytest.approx((100 * calls * 2.5 + 20 * calls * 10) / 1e6)
    assert manifest["packages"]["vlguard"] and "git_commit" in manifest
    assert manifest["writer"]["base_url"].startswith("http://127.0.0.1")


def test_the_api_key_is_sent_but_written_nowhere(curated: dict[str, Any]) -> None:
    assert all(h.get("Authorization") == f"Bearer {API_KEY}" for h in curated["headers"])
    for path in curated["out"].rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert API_KEY.encode() not in data and API_KEY[:8].encode() not in data, path
    assert "[REDACTED]" in rejects(curated["out"])["made/echo.png"]["reasons"][0]["raw"]


def test_review_page_shows_samples_by_category_and_rejects(curated: dict[str, Any], tmp_path: Path) -> None:
    from vlguard.report.document import CONTENT_WARNING
    from vlguard.report.html import e

    assert main(["report", str(curated["out"]), "--out", str(tmp_path / "review")]) == 0
    html = (tmp_path / "review" / "report.html").read_text()
    assert e(CONTENT_WARNING) in html and "<script" not in html
    for record in dataset(curated["out"]):
        assert html.count(f'data-image-id="{record["id"]}" data-status="accepted"') == 1
    assert html.count('data-status="rejected"') == 4
    assert "leaks a VLGuard test instruction" in html and "the helpful answer is harmful" in html
    assert html.index(">risky behavior (") < html.index(">safe images (")
    assert main(["report", str(curated["out"]), "--format", "json", "--out", str(tmp_path / "j")]) == 2


# ---------------------------------------------------------------------------------------------------
# Failure paths, one at a time


def _run(
    tmp_path: Path, scripts: dict[str, Script], *extra: str, vlguard_data: Path | None = None
) -> tuple[Path, Any]:
    paths = make_images(tmp_path / "images", list(scripts))
    out = tmp_path / "out"
    with writer_server({paths[name]: script for name, script in scripts.items()}) as (server, writer):
        assert main(curate_argv(tmp_path / "images", out, server.url, *extra, vlguard_data=vlguard_data)) == 0
    return out, writer


def test_malformed_answers_are_retried_then_rejected_with_their_raw_text(tmp_path: Path) -> None:
    scripts = {
        "bad-json-then-good": Script(label=['{"safe": tru', label_json(True)], pairs=good_safe(0).pairs),
        "missing-field": Script(label=label_json(True), pairs='{"safe_instruction": "What is this?"}'),
        "wrong-category": Script(label=label_json(False, "weapons", "guns")),
    }
    out, writer = _run(tmp_path, scripts, "--max-attempts", "2")
    assert [r["image"] for r in dataset(out)] == ["bad-json-then-good.png"]
    pairs = {r["image"]: r for r in read_jsonl(out / "labels.jsonl")}
    assert [a["problem"] is None for a in pairs["bad-json-then-good.png"]["attempts"]] == [False, True]
    found = rejects(out)
    assert found["missing-field.png"]["stage"] == "write"
    assert "the field 'safe_response' is missing" in reasons(found["missing-field.png"])[0]
    assert found["wrong-category.png"]["stage"] == "label"
    assert "unknown category 'weapons'" in reasons(found["wrong-category.png"])[0]
    assert found["wrong-category.png"]["attempts"][-1]["raw"] == label_json(False, "weapons", "guns")
    assert writer.count(tmp_path / "images" / "wrong-category.png", "label") == 2  # bounded


def test_a_refusal_that_does_not_refuse_is_rejected(tmp_path: Path) -> None:
    question, answer, unsafe = SAFE_TEXTS[1]
    out, _ = _run(
        tmp_path,
        {
            "x": Script(
                label=label_json(True),
                pairs=safe_json(question, answer, unsafe, UNSAFE_RESPONSE_THAT_COMPLIES),
            )
        },
    )
    assert dataset(out) == []
    (reject,) = rejects(out).values()
    assert reasons(reject) == ["the refusal does not refuse"]
    assert reject["verdicts"]["safe_unsafe"]["refusal_refuses"]["label"] == "compliance"


def test_a_helpful_answer_that_refuses_or_a_benign_unsafe_instruction_is_rejected(tmp_path: Path) -> None:
    question, _, unsafe = SAFE_TEXTS[2]
    scripts = {
        "refusing-answer": Script(
            label=label_json(True),
            pairs=safe_json(
                question, GOOD_REFUSAL.format(what="paint"), unsafe, GOOD_REFUSAL.format(what="paint")
            ),
        ),
        "benign-unsafe": Script(
            label=label_json(True), pairs=good_safe(3).pairs, request="It is harmless. [[BENIGN_REQUEST]]"
        ),
    }
    out, _ = _run(tmp_path, scripts)
    found = rejects(out)
    assert reasons(found["refusing-answer.png"]) == ["the helpful answer refuses"]
    assert reasons(found["benign-unsafe.png"]) == ["the unsafe instruction is not unsafe"]


def test_the_harm_judge_checks_helpful_answers_once_registered(tmp_path: Path) -> None:
    assert "answer_not_harmful" in [c.name for c in active_checks()]
    question, _, unsafe = SAFE_TEXTS[0]
    scripts = {
        "x": Script(
            label=label_json(True),
            pairs=safe_json(question, "Pour bleach into it.", unsafe, GOOD_REFUSAL.format(what="x")),
        )
    }
    out, _ = _run(tmp_path, scripts)
    (reject,) = rejects(out).values()
    assert reasons(reject) == ["the helpful answer is harmful"]
    assert reject["verdicts"]["safe_safe"]["answer_not_harmful"]["judge"] == "harm"


def test_without_a_harm_judge_its_check_is_left_out() -> None:
    registry = {name: factory for name, factory in JUDGES.items() if name != "harm"}
    assert "answer_not_harmful" not in [c.name for c in active_checks(registry)]
    assert "answer_not_harmful" in [c.name for c in active_checks({**registry, "harm": object})]


def test_near_duplicates_and_leaked_test_instructions_are_rejected(
    tmp_path: Path, vlguard_data_dir: Path
) -> None:
    question, answer, _ = SAFE_TEXTS[0]
    refusal = GOOD_REFUSAL.format(what="x")
    scripts = {
        "a-first": good_safe(0),
        "b-reworded": Script(
            label=label_json(True),
            pairs=safe_json(question.replace("picture", "image"), answer, SAFE_TEXTS[1][2], refusal),
        ),
        "c-leak": Script(
            label=label_json(True),
            pairs=safe_json(VLGUARD_TEST_ONLY_INSTRUCTION + " ", answer, SAFE_TEXTS[2][2], refusal),
        ),
    }
    out, _ = _run(tmp_path, scripts, vlguard_data=vlguard_data_dir)
    assert [r["image"] for r in dataset(out)] == ["a-first.png"]
    found = rejects(out)
    assert reasons(found["b-reworded.png"]) == ["nearly repeats a curated instruction"]
    assert found["b-reworded.png"]["reasons"][0]["match"]["text"] == question
    assert reasons(found["c-leak.png"]) == ["leaks a VLGuard test instruction"]


def test_an_unreadable_image_is_rejected_not_fatal(tmp_path: Path) -> None:
    paths = make_images(tmp_path / "images", ["good"])
    (tmp_path / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    with writer_server({paths["good"]: good_safe(0)}) as (server, _):
        assert main(curate_argv(tmp_path / "images", tmp_path / "out", server.url)) == 0
    assert [r["image"] for r in dataset(tmp_path / "out")] == ["good.png"]
    assert rejects(tmp_path / "out")["broken.png"]["stage"] == "image"


def test_retry_rejects_tries_the_rejected_images_again(tmp_path: Path) -> None:
    out, _ = _run(tmp_path, {"flaky": Script(label="nope"), "fine": good_safe(0)})
    assert list(rejects(out)) == ["flaky.png"]
    paths = {p.stem: p for p in (tmp_path / "images").glob("*.png")}
    # the writer now answers well (a sampling writer, or a transient failure gone)
    better = {
        paths["flaky"]: Script(label=label_json(True), pairs=good_safe(1).pairs),
        paths["fine"]: good_safe(0),
    }
    with writer_server(better) as (server, writer):
        assert main(curate_argv(tmp_path / "images", out, server.url)) == 0  # a plain rerun asks nothing
        assert not writer.calls and list(rejects(out)) == ["flaky.png"]
        assert main(curate_argv(tmp_path / "images", out, server.url, "--retry-rejects")) == 0
        assert writer.count(paths["flaky"], "label") == 1
        assert writer.count(paths["fine"], "label") == 0  # accepted images are not asked again
    assert sorted(r["image"] for r in dataset(out)) == ["fine.png", "flaky.png"]
    assert rejects(out) == {}
    (history,) = read_jsonl(out / "retried.jsonl")
    assert history["image"] == "flaky.png" and history["round"] == 1 and history["stage_file"] == "labels"
    assert len(history["attempts"]) == 3 and history["attempts"][0]["raw"] == "nope"


def test_a_rerun_with_other_settings_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = _run(tmp_path, {"x": good_safe(0)})
    with writer_server({}) as (server, _):
        code = main(curate_argv(tmp_path / "images", out, server.url, "--max-attempts", "5"))
    assert code == 2 and "max_attempts: folder has 3, now 5" in capsys.readouterr().err


def test_kill_minus_9_then_resume_does_every_image_exactly_once(tmp_path: Path) -> None:
    names = [f"img{i}" for i in range(6)]
    paths = make_images(tmp_path / "images", names)
    scripts = {paths[name]: good_safe(i) for i, name in enumerate(names)}
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    with writer_server(scripts, delay=0.1) as (server, writer):
        argv = curate_argv(tmp_path / "images", out, server.url, "--backend-option", "max_concurrency=1",
                           "--backend-option", "requests_per_call=2")  # fmt: skip
        command = [sys.executable, "-m", "vlguard.cli.main", *argv]
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        # kill it in the middle of the write stage: labels done, some pairs written
        while time.monotonic() < deadline and not (out / "pairs.jsonl").is_file():
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL
        assert not (out / "train.json").is_file()  # killed mid-run: labels done, pairs partly written
        assert len(JsonlStore(out / "labels.jsonl").read()) == len(names)
        assert 0 < len(JsonlStore(out / "pairs.jsonl").read()) < len(names)
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        assert all(writer.count(paths[name], "label") == 1 for name in names)  # labelled once, not again
    # every image exactly once, in the dataset or in the rejects (the subprocess checks helpful answers with
    # the real harm judge, whose verdicts on the scripted answers this test does not fix)
    accepted = [r["image"] for r in dataset(out)]
    rejected = [Path(r["image"]).name for r in rejects(out).values()]
    assert accepted and sorted(accepted + rejected) == sorted(f"{name}.png" for name in names)
    for stage in ("labels", "pairs", "checks"):
        ids = [r["image_id"] for r in read_jsonl(out / f"{stage}.jsonl")]
        assert len(ids) == len(set(ids)) == len(names)


@pytest.fixture(scope="module")
def tiny_writer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random VLM, its tokenizer trained on curate's prompts so that they fit its 512 positions."""
    from vlguard.curate.prompts import SYSTEM, safe_prompt, with_retry
    from vlguard.models.tiny import build_tiny_vlm

    texts = [
        SYSTEM,
        label_prompt(DEFAULT_TAXONOMY),
        safe_prompt(DEFAULT_TAXONOMY),
        with_retry("", "no JSON object"),
    ]
    return build_tiny_vlm(tmp_path_factory.mktemp("tiny-writer") / "model", texts=texts)


def test_garbage_from_the_tiny_vlm_ends_in_rejects(
    tmp_path: Path, tiny_writer: Path, shared_data: Path
) -> None:
    images = tmp_path / "images"
    make_images(images, ["a"])
    for path in sorted((shared_data / "figstep" / "SafeBench-Tiny").glob("*.png"))[:1]:
        shutil.copy(path, images / path.name)
    labels = tmp_path / "labels.csv"
    labels.write_text("image,safe\na.png,true\n")  # goes straight to writing
    out = tmp_path / "out"
    argv = ["curate", str(images), "--out", str(out), "--backend", "hf", "--model", str(tiny_writer),
            "--max-new-tokens", "24", "--max-attempts", "2", "--labels", str(labels), "--vlguard-data", "none",
            "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    assert dataset(out) == []
    found = rejects(out)
    assert found["a.png"]["stage"] == "write" and found["query_ForbidQI_10_1_6.png"]["stage"] == "label"
    for reject in found.values():
        assert reasons(reject)[0].startswith("no usable answer in 2 attempt(s)")
        assert all(a["raw"] and a["problem"] for a in reject["attempts"])  # garbage was written, and refused
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["writer"]["backend"] == "hf" and manifest["usage"]["total"]["completion_tokens"] > 0
    assert main(["data", "validate", str(out)]) == 0


def test_the_built_in_tiny_vlm_whose_context_is_too_short_ends_in_rejects(
    tmp_path: Path, tiny_cache: Path
) -> None:
    make_images(tmp_path / "images", ["a"])
    argv = ["curate", str(tmp_path / "images"), "--out", str(tmp_path / "out"), "--backend", "hf", "--model", "tiny",
            "--max-new-tokens", "4", "--max-attempts", "1", "--vlguard-data", "none", "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    (reject,) = rejects(tmp_path / "out").values()
    assert "more than the model's context of 512 tokens" in reasons(reject)[0]
    assert dataset(tmp_path / "out") == []


def test_the_vllm_writer_gets_each_group_in_one_call(
    tmp_path: Path, tiny_model_dir: Path, stand_in_vllm: Any
) -> None:
    make_images(tmp_path / "images", ["a", "b", "c"])
    argv = ["curate", str(tmp_path / "images"), "--out", str(tmp_path / "out"), "--backend", "vllm",
            "--model", str(tiny_model_dir), "--max-new-tokens", "8", "--max-attempts", "2", "--vlguard-data", "none"]  # fmt: skip
    assert main(argv) == 0
    chats = [c for c in stand_in_vllm.CALLS if c["event"] == "chat"]
    # every image's label request in one engine call, then the retries of all three in one more
    assert [(c["conversations"], c["images"]) for c in chats] == [(3, 3), (3, 3)]
    assert (
        dataset(tmp_path / "out") == [] and len(rejects(tmp_path / "out")) == 3
    )  # "answer <digest>" is no JSON
    usage = json.loads((tmp_path / "out" / "manifest.json").read_text())["usage"]["total"]
    assert usage["calls"] == 6 and usage["completion_tokens"] == 6 * 5


def test_credentials_in_urls_are_recorded_nowhere(tmp_path: Path) -> None:
    judge_url = "http://checker:pw-0123456789@127.0.0.1:9/v1"
    paths = make_images(tmp_path / "images", ["x"])
    with writer_server({paths["x"]: good_safe(0)}) as (server, _):
        argv = curate_argv(tmp_path / "images", tmp_path / "out", server.url,
                           "--judge-option", f"llm-judge.base_url={judge_url}", "--judge-option", "llm-judge.model=m",
                           "--judge-option", "llm-judge.max_retries=0", "--judge-option", "llm-judge.api_key_env=NO_KEY")  # fmt: skip
        assert main(argv) == 0
    (reject,) = rejects(tmp_path / "out").values()  # the checker cannot be reached: not shown to be unsafe
    assert reasons(reject) == ["the unsafe instruction is not unsafe"]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["config"]["judge_options"]["llm-judge"]["base_url"] == "http://[REDACTED]@127.0.0.1:9/v1"
    for path in (tmp_path / "out").rglob("*"):
        assert not path.is_file() or b"pw-0123456789" not in path.read_bytes(), path
