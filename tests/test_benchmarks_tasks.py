"""Task benchmarks (SST-2, AG News, GSM8K, AlpacaEval): the papers' prompts and rows, training examples,
clear errors for bad files, and the Hub source through a local huggingface_hub cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from huggingface_hub import constants

from vlguard.benchmarks import BENCHMARKS, default_image_mode, default_judges, load_benchmark
from vlguard.benchmarks.agnews import AGNEWS_INSTRUCTION
from vlguard.benchmarks.gsm8k import STEP_BY_STEP_PROMPT
from vlguard.benchmarks.sst2 import SST2_INSTRUCTION
from vlguard.benchmarks.tasks import load_task_examples
from vlguard.cli.main import main
from vlguard.data.sources import DataSourceError
from vlguard.errors import ConfigError, DataValidationError
from vlguard.prompts import alpaca_prompt

TASKS = ("sst2", "agnews", "gsm8k", "alpaca-eval")


def _folder(shared_data: Path, task: str) -> Path:
    return shared_data / task.replace("-", "_")


# --- the real files ---------------------------------------------------------------------------------


def test_registry_entries_default_to_text_only_and_their_scorers() -> None:
    assert {t: default_judges(t) for t in TASKS} == {
        "sst2": ("accuracy",),
        "agnews": ("accuracy",),
        "gsm8k": ("accuracy",),
        "alpaca-eval": ("llm-judge",),
    }
    assert {default_image_mode(t) for t in TASKS} == {"none"}
    assert all(t in BENCHMARKS for t in TASKS)


def test_ls_lists_the_task_benchmarks_and_their_judges(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ls"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for task, judge in (
        ("sst2", "accuracy"),
        ("agnews", "accuracy"),
        ("gsm8k", "accuracy"),
        ("alpaca-eval", "llm-judge"),
    ):
        [line] = [line for line in lines if line.split()[:1] == [task]]
        assert line.split()[1:3] == ["none", judge]
    assert any(line.split()[:1] == ["accuracy"] for line in lines)  # the judge


def test_sst2_is_the_whole_validation_split_with_the_papers_instruction(shared_data: Path) -> None:
    bench = load_benchmark("sst2", data=str(shared_data / "sst2"))
    samples = bench.samples
    assert len(samples) == 872  # the papers' "first 1,000" rows of an 872-row split
    assert {s.prompt for s in samples} == {SST2_INSTRUCTION}
    assert SST2_INSTRUCTION == "Analyze the sentiment of the input, and respond only positive or negative"
    assert sum(s.reference == "positive" for s in samples) == 444
    assert sum(s.reference == "negative" for s in samples) == 428
    first = samples[0]
    assert first.id == "sst2:dev:0" and first.subset == "sst2" and first.benchmark == "sst2"
    assert first.input == "one long string of cliches ." and first.reference == first.category == "negative"
    assert not any(s.should_refuse or s.image for s in samples)
    assert len({s.id for s in samples}) == 872
    assert bench.source["kind"] == "local" and bench.source["file"] == "dev.tsv"
    assert len(bench.source["sha256"]) == 64 and bench.source["rows"] == "0:872"  # the real range
    # The Alpaca prompt the papers generate from, through vlguard.prompts.
    assert alpaca_prompt(first.prompt, first.input).endswith(
        "### Instruction:\nAnalyze the sentiment of the input, and respond only positive or negative\n\n"
        "### Input:\none long string of cliches .\n\n### Response:"
    )


def test_agnews_takes_the_papers_first_1000_test_rows_with_the_hub_text(shared_data: Path) -> None:
    samples = load_benchmark("agnews", data=str(shared_data / "agnews")).samples
    assert [s.id for s in samples] == [f"agnews:test:{i}" for i in range(1000)]
    assert {s.prompt for s in samples} == {AGNEWS_INSTRUCTION}
    assert AGNEWS_INSTRUCTION.splitlines() == [
        "Categorize the news article given in the input into one of the 4 categories:",
        "",
        "World",
        "Sports",
        "Business",
        "Sci/Tech",
    ]
    assert AGNEWS_INSTRUCTION.endswith("Sci/Tech\n")
    # The Hub's ag_news text: title, a space, description (inner spacing kept as in the file).
    assert samples[0].input == (
        "Fears for T N pension after talks Unions representing workers at Turner   Newall say they are "
        "'disappointed' after talks with stricken parent firm Federal Mogul."
    )
    assert samples[0].reference == "Business"
    counts = {c: sum(s.reference == c for s in samples) for c in ("World", "Sports", "Business", "Sci/Tech")}
    assert counts == {"World": 268, "Sports": 274, "Business": 205, "Sci/Tech": 253}
    assert len(load_benchmark("agnews", data=str(shared_data / "agnews"), rows="all").samples) == 7600


def test_gsm8k_gold_answer_and_the_vaccine_question_prompt(shared_data: Path) -> None:
    folder = str(shared_data / "gsm8k")
    samples = load_benchmark("gsm8k", data=folder).samples
    assert len(samples) == 1000 and samples[-1].id == "gsm8k:test:999"
    first = samples[0]
    assert first.prompt.startswith("Janet’s ducks lay 16 eggs per day.") and first.prompt.endswith("market?")
    assert first.input is None and first.category is None
    assert first.reference is not None and first.reference.endswith("\nThe final answer is:  18")
    assert "####" not in first.reference
    vaccine = load_benchmark("gsm8k", data=folder, step_by_step=True, rows=5).samples
    assert [s.prompt for s in vaccine] == [s.prompt + STEP_BY_STEP_PROMPT for s in samples[:5]]
    assert STEP_BY_STEP_PROMPT == "\nFirst think step by step and then answer the final number.\n"
    assert len(load_benchmark("gsm8k", data=folder, rows="all").samples) == 1319


def test_alpaca_eval_has_805_instructions_with_gpt4_turbo_references(shared_data: Path) -> None:
    bench = load_benchmark("alpaca-eval", data=str(shared_data / "alpaca_eval"))
    samples = bench.samples
    assert len(samples) == 805 and samples[0].id == "alpaca-eval:eval:0"
    raw = json.loads((shared_data / "alpaca_eval" / "alpaca_eval_gpt4_1106_preview.json").read_text())
    assert [s.prompt for s in samples] == [r["instruction"] for r in raw]  # as written, like the papers
    assert [s.reference for s in samples] == [r["reference_output"].strip() for r in raw]
    assert bench.references == {s.id: s.reference for s in samples}
    assert {s.category for s in samples} == {"helpful_base", "koala", "oasst", "selfinstruct", "vicuna"}
    # The papers' slice (index > 700).
    papers = load_benchmark("alpaca-eval", data=str(shared_data / "alpaca_eval"), rows="701:").samples
    assert [s.id for s in papers] == [f"alpaca-eval:eval:{i}" for i in range(701, 805)]


def test_rows_option_and_unknown_options(shared_data: Path) -> None:
    folder = str(shared_data / "sst2")
    assert [s.id for s in load_benchmark("sst2", data=folder, rows="10:13").samples] == [
        "sst2:dev:10",
        "sst2:dev:11",
        "sst2:dev:12",
    ]
    assert len(load_benchmark("sst2", data=folder, rows=500).samples) == 500  # Vaccine's first 500
    for bad in (0, "5:2", "x", "1:b", -3, True):
        with pytest.raises(ConfigError, match="rows"):
            load_benchmark("sst2", data=folder, rows=bad)
    with pytest.raises(ConfigError, match="selects none"):
        load_benchmark("sst2", data=folder, rows="900:")
    with pytest.raises(ConfigError, match=r"unknown option\(s\) suffix; accepted: rows"):
        load_benchmark("sst2", data=folder, suffix="x")
    with pytest.raises(ConfigError, match="step_by_step must be true or false"):
        load_benchmark("gsm8k", data=str(shared_data / "gsm8k"), step_by_step="yes")


# --- training examples --------------------------------------------------------------------------------


def test_training_examples_are_seeded_nested_and_from_the_train_split(shared_data: Path) -> None:
    folder = shared_data / "sst2"
    big = load_task_examples("sst2", folder, n=200, seed=3)
    again = load_task_examples("sst2", folder, n=200, seed=3)
    small = load_task_examples("sst2", folder, n=50, seed=3)
    other = load_task_examples("sst2", folder, n=200, seed=4)
    assert big.examples == again.examples  # same seed, same examples, same order
    assert small.examples == big.examples[:50]  # a larger n keeps a smaller one's examples
    assert [e.id for e in other.examples] != [e.id for e in big.examples]
    assert len({e.id for e in big.examples}) == 200
    assert all(e.id.startswith("sst2:train:") and e.task == "sst2" for e in big.examples)
    assert {e.output for e in big.examples} == {"positive", "negative"}
    assert {e.instruction for e in big.examples} == {SST2_INSTRUCTION}
    assert (
        big.source["file"] == "train.tsv" and big.source["n_available"] == 67349 and big.source["seed"] == 3
    )
    # training rows are GLUE's train file, never the evaluation sentences
    dev = {s.input for s in load_benchmark("sst2", data=str(folder)).samples}
    assert not dev & {e.input for e in big.examples}

    example = big.examples[0]
    assert example.to_dict() == {
        "id": example.id,
        "instruction": SST2_INSTRUCTION,
        "input": example.input,
        "output": example.output,
    }
    conversation = example.to_conversation(source="task")
    assert conversation.image is None and conversation.source == "task" and conversation.id == example.id
    user, assistant = conversation.messages
    assert user["content"][0]["text"] == f"{SST2_INSTRUCTION}\n\n{example.input}"
    assert assistant == {"role": "assistant", "content": [{"type": "text", "text": example.output}]}


def test_gsm8k_training_examples_carry_the_answer_prompt(shared_data: Path) -> None:
    examples = load_task_examples("gsm8k", shared_data / "gsm8k", n=20, seed=0, step_by_step=True).examples
    assert all(e.id.startswith("gsm8k:train:") and e.input is None for e in examples)
    assert all("\nThe final answer is: " in e.output and "####" not in e.output for e in examples)
    assert all(e.instruction.endswith(STEP_BY_STEP_PROMPT) for e in examples)
    assert examples[0].to_dict()["input"] == ""  # Alpaca's data writes a missing input as ""
    with pytest.raises(ConfigError, match="n=8000 training examples asked for, but the train split has 7473"):
        load_task_examples("gsm8k", shared_data / "gsm8k", n=8000)


def test_agnews_training_examples_come_from_the_rows_the_papers_never_evaluate(shared_data: Path) -> None:
    folder = shared_data / "agnews"
    with pytest.raises(ConfigError, match="split='holdout'"):
        load_task_examples("agnews", folder, n=10)  # the local folder has no train.csv
    holdout = load_task_examples("agnews", folder, n=300, seed=1, split="holdout")
    rows = [int(e.id.rsplit(":", 1)[1]) for e in holdout.examples]
    assert min(rows) >= 1000 and len(set(rows)) == 300
    evaluated = {s.id for s in load_benchmark("agnews", data=str(folder)).samples}
    assert not evaluated & {e.id for e in holdout.examples}
    assert {e.output for e in holdout.examples} == {"World", "Sports", "Business", "Sci/Tech"}
    assert holdout.source["split"] == "holdout" and holdout.source["n_available"] == 6600


def test_training_examples_refuse_the_evaluation_data(shared_data: Path) -> None:
    with pytest.raises(ConfigError, match="a single file is taken as the dev"):
        load_task_examples("sst2", shared_data / "sst2" / "dev.tsv", n=10)
    with pytest.raises(ConfigError, match="evaluation split"):
        load_task_examples("sst2", shared_data / "sst2", n=10, split="dev")
    # AlpacaEval's folder holds its evaluation set only: training data (Alpaca's) must be given
    with pytest.raises(ConfigError, match=r"no alpaca_data.json .* for the train split of 'alpaca-eval'"):
        load_task_examples("alpaca-eval", shared_data / "alpaca_eval", n=10)
    with pytest.raises(ConfigError, match=r"'alpaca-eval' has no train split on the Hub"):
        load_task_examples("alpaca-eval", None, n=10)
    with pytest.raises(ConfigError, match="no 'validation' split"):
        load_task_examples("sst2", shared_data / "sst2", n=10, split="validation")
    with pytest.raises(ConfigError, match="only for tasks without one"):
        load_task_examples("sst2", shared_data / "sst2", n=10, split="holdout")
    with pytest.raises(ConfigError, match="unknown task"):
        load_task_examples("mnli", shared_data / "sst2")
    with pytest.raises(ConfigError, match="at least one"):
        load_task_examples("sst2", shared_data / "sst2", n=0)


# --- bad files ------------------------------------------------------------------------------------------


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _problems(excinfo: pytest.ExceptionInfo[DataValidationError]) -> list[str]:
    return [str(p) for p in excinfo.value.problems]


def test_a_task_file_with_the_wrong_columns_is_one_clear_problem(tmp_path: Path) -> None:
    bad = _write(tmp_path / "dev.tsv", "text\tlabel\nfine film\t1\ndull film\t0\n")
    with pytest.raises(DataValidationError) as excinfo:
        load_benchmark("sst2", data=str(bad))
    assert _problems(excinfo) == [
        f"{bad}, field 'sentence': missing in every record (the record has: label, text)"
    ]
    assert "GLUE SST-2" in str(excinfo.value)


def test_bad_rows_are_named_by_file_line_and_field(tmp_path: Path) -> None:
    sst2 = _write(tmp_path / "sst2" / "dev.tsv", "label\tsentence\n1\tgood\n2\tbad label\n0\t  \n1\ta\tb\n")
    with pytest.raises(DataValidationError) as excinfo:
        load_benchmark("sst2", data=str(sst2.parent))
    assert _problems(excinfo) == [
        f"{sst2}: record line 5: has 3 tab-separated cells, the header has 2 (label, sentence)"
    ]
    _write(sst2, "label\tsentence\n1\tgood\n2\tbad label\n0\t  \n")
    with pytest.raises(DataValidationError) as excinfo:
        load_benchmark("sst2", data=str(sst2.parent))
    assert _problems(excinfo) == [
        f"{sst2}: record line 3, field 'label': '2' is not a label of this task (0, 1)",
        f"{sst2}: record line 4, field 'sentence': empty value",
    ]

    agnews = _write(
        tmp_path / "agnews" / "test.csv", '"3","Title","Text"\n"5","T","D"\n"1","only two"\n"2","T",""\n'
    )
    with pytest.raises(DataValidationError) as excinfo:
        load_benchmark("agnews", data=str(agnews.parent))
    assert _problems(excinfo) == [
        f"{agnews}: record line 3: has 2 cells, expected 3 (class index, title, description; no header row)"
    ]
    _write(agnews, '"3","Title","Text"\n"5","T","D"\n"2","T",""\n')
    with pytest.raises(DataValidationError) as excinfo:
        load_benchmark("agnews", data=str(agnews.parent))
    assert _problems(excinfo) == [
        f"{agnews}: record line 2, field 'class index': '5' is not a label of this task (1, 2, 3, 4)",
        f"{agnews}: record line 3, field 'description': empty value",
    ]

    gsm8k = _write(
        tmp_path / "gsm8k" / "test.jsonl",
        '{"question": "1+1?", "answer": "2 #### 2"}\n{"question": "2+2?", "answer": "4"}\nnot json\n'
        '{"question": 5, "answer": "#### 5"}\n',
    )
    with pytest.raises(DataValidationError) as excinfo:
        load_benchmark("gsm8k", data=str(gsm8k.parent))
    assert _problems(excinfo) == [f"{gsm8k}: record line 3: not valid JSON: Expecting value at column 1"]
    _write(
        gsm8k,
        '{"question": "1+1?", "answer": "2 #### 2"}\n{"question": "2+2?", "answer": "4"}\n{"question": 5, "answer": "#### 5"}\n',
    )
    with pytest.raises(DataValidationError) as excinfo:
        load_benchmark("gsm8k", data=str(gsm8k.parent))
    assert _problems(excinfo) == [
        f"{gsm8k}: record line 2, field 'answer': has no #### before the final answer",
        f"{gsm8k}: record line 3, field 'question': must be text, not int",
    ]

    alpaca = _write(
        tmp_path / "alpaca_eval" / "alpaca_eval_gpt4_baseline.json",
        json.dumps([{"instruction": "Say hi.", "output": "Hi!"}, {"instruction": "Say bye."}, "text"]),
    )
    with pytest.raises(DataValidationError) as excinfo:
        load_benchmark("alpaca-eval", data=str(alpaca.parent))
    assert _problems(excinfo) == [f"{alpaca}: record item 2: expected a JSON object, got str"]
    _write(alpaca, json.dumps([{"instruction": "Say hi.", "output": "Hi!"}, {"instruction": "Say bye."}]))
    with pytest.raises(DataValidationError) as excinfo:
        load_benchmark("alpaca-eval", data=str(alpaca.parent))
    assert _problems(excinfo) == [
        f"{alpaca}: record item 1, field 'output': missing field (the record has: instruction)"
    ]


def test_texts_are_kept_as_written_and_split_on_newlines_only(tmp_path: Path) -> None:
    # U+2028 and form feeds are line breaks to str.splitlines, but not in a TSV / JSON Lines file.
    sst2 = _write(
        tmp_path / "sst2" / "dev.tsv", "label\tsentence\r\n1\tline\u2028sep and \x0c feed \r\n0\t dull \r\n"
    )
    # fixtures a few rows long: allow_partial (vlguard.benchmarks.counts)
    assert [s.input for s in load_benchmark("sst2", data=str(sst2), allow_partial=True).samples] == [
        "line\u2028sep and \x0c feed ",
        " dull ",
    ]
    gsm8k = _write(
        tmp_path / "gsm8k" / "test.jsonl",
        json.dumps({"question": "a\u2028b?", "answer": "#### 1"}, ensure_ascii=False) + "\n",
    )
    assert load_benchmark("gsm8k", data=str(gsm8k), allow_partial=True).samples[0].prompt == "a\u2028b?"


def test_unreadable_files_and_missing_paths(tmp_path: Path) -> None:
    latin = _write(tmp_path / "latin" / "dev.tsv", "label\tsentence\n1\tcaf\xe9\n".encode("latin-1"))
    with pytest.raises(DataValidationError, match=r"line 2: not UTF-8"):
        load_benchmark("sst2", data=str(latin))
    empty = _write(tmp_path / "empty" / "test.jsonl", "\n\n")
    with pytest.raises(DataValidationError, match="no records"):
        load_benchmark("gsm8k", data=str(empty))
    with pytest.raises(ConfigError, match=r"no test.csv in this folder .*files here: dev.tsv"):
        load_benchmark("agnews", data=str(tmp_path / "latin"))
    with pytest.raises(ConfigError, match="no such file or folder"):
        load_benchmark("sst2", data=str(tmp_path / "nowhere" / "deeper" / "dev.tsv"))
    with pytest.raises(ConfigError, match=r"unsupported file type '\.txt'"):
        load_benchmark("sst2", data=str(_write(tmp_path / "dev.txt", "label\tsentence\n")))
    with pytest.raises(ConfigError, match="revision"):
        load_benchmark("sst2", data=str(latin), revision="main")


def test_cli_reports_a_bad_task_file_in_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _write(tmp_path / "data" / "dev.tsv", "sentence\tlabel\nfine\tpositive\n")
    run_dir = tmp_path / "run"
    code = main(
        ["eval", "--model", "tiny", "--bench", "sst2", "--data", str(bad.parent), "--run-dir", str(run_dir)]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"{bad}: record line 2, field 'label': 'positive' is not a label of this task (0, 1)" in err
    assert not run_dir.exists()


# --- the Hub source, offline ----------------------------------------------------------------------------

COMMIT = "c" * 40


def _parquet(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HF_HUB_CACHE laid out like the task datasets' repositories on the Hub (Parquet / JSON files)."""
    cache = tmp_path / "hub"

    def snapshot(repo: str) -> Path:
        folder = cache / f"datasets--{repo.replace('/', '--')}"
        (folder / "refs").mkdir(parents=True)
        (folder / "refs" / "main").write_text(COMMIT)
        return folder / "snapshots" / COMMIT

    glue = snapshot("nyu-mll/glue")
    _parquet(
        glue / "sst2" / "validation-00000-of-00001.parquet",
        [{"sentence": f"review {i} ", "label": i % 2, "idx": i} for i in range(6)],
    )
    _parquet(
        glue / "sst2" / "train-00000-of-00001.parquet",
        [{"sentence": f"train review {i}", "label": 1, "idx": i} for i in range(30)],
    )
    _parquet(
        snapshot("fancyzhx/ag_news") / "data" / "test-00000-of-00001.parquet",
        [{"text": f"Story {i} text", "label": i % 4} for i in range(1200)],
    )
    _parquet(
        snapshot("openai/gsm8k") / "main" / "test-00000-of-00001.parquet",
        [{"question": "What is 2+3?", "answer": "2+3=<<2+3=5>>5\n#### 5"}],
    )
    alpaca = snapshot("tatsu-lab/alpaca_eval")
    alpaca.mkdir(parents=True)
    (alpaca / "alpaca_eval_gpt4_baseline.json").write_text(
        json.dumps(
            [
                {
                    "instruction": "Name a colour.",
                    "output": "Blue.",
                    "generator": "gpt4_1106_preview",
                    "dataset": "oasst",
                }
            ]
        )
    )
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_hub_sources_are_the_default_and_read_from_the_cache(hub_cache: Path) -> None:
    sst2 = load_benchmark("sst2", allow_partial=True)  # the cache holds a few rows of each split
    assert [(s.id, s.input, s.reference) for s in sst2.samples[:2]] == [
        ("sst2:dev:0", "review 0 ", "negative"),  # the raw text, as the papers prompt it
        ("sst2:dev:1", "review 1 ", "positive"),
    ]
    assert sst2.source["kind"] == "hub" and sst2.source["repo_id"] == "nyu-mll/glue"
    assert sst2.source["commit"] == COMMIT and sst2.source["file"] == "sst2/validation-00000-of-00001.parquet"
    agnews = load_benchmark("agnews", allow_partial=True)
    assert len(agnews.samples) == 1000  # the papers' first 1,000 rows
    assert [(s.input, s.reference) for s in agnews.samples[:4]] == [
        ("Story 0 text", "World"),
        ("Story 1 text", "Sports"),
        ("Story 2 text", "Business"),
        ("Story 3 text", "Sci/Tech"),
    ]
    gsm8k = load_benchmark("gsm8k", allow_partial=True).samples[0]
    assert gsm8k.prompt == "What is 2+3?" and gsm8k.reference == "2+3=<<2+3=5>>5\nThe final answer is:  5"
    alpaca = load_benchmark("alpaca-eval", allow_partial=True).samples
    assert [(s.prompt, s.reference, s.category) for s in alpaca] == [("Name a colour.", "Blue.", "oasst")]
    train = load_task_examples("sst2", n=5, seed=0)
    assert len(train.examples) == 5 and train.source["repo_id"] == "nyu-mll/glue"
    assert {e.output for e in train.examples} == {"positive"}
    # AG News's Hub train split is not in this cache: a clear error, not a traceback.
    with pytest.raises(
        DataSourceError,
        match=r"fancyzhx/ag_news.*data/train-00000-of-00001.parquet.*local huggingface_hub cache",
    ):
        load_task_examples("agnews", n=5)
    assert load_task_examples("agnews", n=5, split="holdout").source["n_available"] == 200


def test_a_hub_file_with_the_wrong_columns_names_the_row(hub_cache: Path) -> None:
    _parquet(
        hub_cache
        / "datasets--nyu-mll--glue"
        / "snapshots"
        / COMMIT
        / "sst2"
        / "validation-00000-of-00001.parquet",
        [{"sentence": "fine", "label": 1}, {"sentence": "odd", "label": 7}],
    )
    with pytest.raises(
        DataValidationError, match=r"record row 1, field 'label': 7 is not a label of this task"
    ):
        load_benchmark("sst2")


def test_alpaca_format_data_trains_for_alpaca_eval(tmp_path: Path) -> None:
    """AlpacaEval as the user's task (issue 19 item 8): Stanford Alpaca's alpaca_data.json (instruction,
    input, output) is its training split; an empty input is no input."""
    rows = [
        {
            "instruction": "Give three tips for staying healthy.",
            "input": "",
            "output": "Eat well, sleep, move.",
        },
        {"instruction": "Translate to French.", "input": "Good morning", "output": "Bonjour"},
    ]
    _write(tmp_path / "alpaca" / "alpaca_data.json", json.dumps(rows))
    loaded = load_task_examples("alpaca-eval", tmp_path / "alpaca", seed=0)
    by_id = {e.id: e for e in loaded.examples}
    assert set(by_id) == {"alpaca-eval:train:0", "alpaca-eval:train:1"}
    assert (by_id["alpaca-eval:train:0"].input, by_id["alpaca-eval:train:1"].input) == (None, "Good morning")
    assert by_id["alpaca-eval:train:1"].output == "Bonjour" and loaded.source["file"] == "alpaca_data.json"
    _write(
        tmp_path / "bad" / "alpaca.json", json.dumps([{"instruction": "Hi", "input": 3, "output": "Hello"}])
    )
    with pytest.raises(DataValidationError, match=r"record item 0, field 'input': must be text, not int"):
        load_task_examples("alpaca-eval", tmp_path / "bad")
