"""Task benchmarks through the whole pipeline: the task input reaches the model, answers are scored, and
metrics.json holds accuracy (or the AlpacaEval win rate), with a real model or a real HTTP API."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from api_server import Reply, chat_reply, scripted_server
from vlguard.cli.main import main
from vlguard.evaluate import EvalConfig, run_eval
from vlguard.generation.base import GenerationRequest
from vlguard.generation.openai_api import chat_messages


def _user_text(body: dict[str, Any]) -> str:
    content = body["messages"][-1]["content"]
    return content if isinstance(content, str) else content[-1]["text"]


def test_the_task_input_is_in_the_prompt_of_every_backend(tiny_model_dir: Path) -> None:
    from vlguard.generation.hf import HFBackend

    request = GenerationRequest("sst2:dev:0", "Classify the sentiment.", input="a fine film .")
    text = HFBackend(str(tiny_model_dir)).prompt_text(request)
    assert "Classify the sentiment.\n\na fine film ." in text
    assert chat_messages(request, None)[-1]["content"] == "Classify the sentiment.\n\na fine film ."


def test_sst2_accuracy_end_to_end_through_an_api_model(shared_data: Path, tmp_path: Path) -> None:
    """A scripted model that knows the gold labels answers right on sentences of even length only:
    it can only do so if it receives the sentence, and metrics.json must then hold that exact share."""
    from vlguard.benchmarks import load_benchmark

    gold = {s.input: str(s.reference) for s in load_benchmark("sst2", data=str(shared_data / "sst2")).samples}
    opposite = {"positive": "negative", "negative": "positive"}

    instructions: set[str] = set()

    def respond(body: dict[str, Any], index: int) -> Reply:
        # (no assert in here: a failed handler makes the client retry until its time budget is spent)
        instruction, _, sentence = _user_text(body).partition("\n\n")
        instructions.add(instruction)
        label = gold.get(sentence)
        if label is None:
            return chat_reply("which sentence?")
        return chat_reply(label if len(sentence) % 2 == 0 else opposite[label].capitalize())

    run_dir = tmp_path / "run"
    with scripted_server(respond) as server:
        config = EvalConfig(
            model="sentiment-oracle",
            backend="openai",
            bench="sst2",
            data=str(shared_data / "sst2"),
            limit=60,
            backend_options={"base_url": server.url, "api_key_env": "VLGUARD_NO_KEY"},
            run_dir=str(run_dir),
        )
        metrics = run_eval(config, progress=False)
    assert instructions == {"Analyze the sentiment of the input, and respond only positive or negative"}
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 60 and all(s["input"] and s["should_refuse"] is False for s in samples)
    expected = sum(len(s["input"]) % 2 == 0 for s in samples) / 60
    assert 0 < expected < 1
    [row] = [r for r in metrics["metrics"] if r["metric"] == "accuracy" and r["group"] == "all"]
    assert (row["judge"], row["subset"], row["n"], row["n_errors"]) == ("accuracy", "sst2", 60, 0)
    assert row["value"] == pytest.approx(expected)
    assert row["ci_low"] <= row["value"] <= row["ci_high"]
    assert {r["group_value"] for r in metrics["metrics"] if r["group"] == "category"} == {
        "positive",
        "negative",
    }
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert (
        manifest["benchmark_source"]["file"] == "dev.tsv"
        and manifest["judges"]["accuracy"]["match"] == "exact"
    )

    # The report shows accuracy as a headline number, with its exact value in the page.
    from vlguard.report import write_report

    files = write_report([run_dir], tmp_path / "report")
    markdown = (tmp_path / "report" / "report.md").read_text(encoding="utf-8")
    summary = markdown.split("## Summary", 1)[1].split("### Other metrics", 1)[0]
    assert f"| accuracy (1) | sst2 | Accuracy | {100 * row['value']:.1f}% [" in summary
    html = files.main.read_text(encoding="utf-8")
    cell = re.search(r'data-subset="sst2" data-metric="accuracy" data-group="all" data-value="([^"]+)"', html)
    assert cell is not None and float(cell.group(1)) == row["value"]
    assert "share of task answers that match the gold answer" in html


def test_alpaca_eval_win_rate_against_the_gpt4_turbo_references(shared_data: Path, tmp_path: Path) -> None:
    """The default judge of alpaca-eval is the pairwise llm-judge, shown the file's reference answers."""
    raw = json.loads((shared_data / "alpaca_eval" / "alpaca_eval_gpt4_1106_preview.json").read_text())
    references = {r["instruction"].strip(): r["reference_output"].strip() for r in raw}
    judged: list[str] = []
    mismatched: list[str] = []

    def respond(body: dict[str, Any], index: int) -> Reply:
        text = _user_text(body)
        if not text.startswith("[Question]"):  # the evaluated model
            return chat_reply(f"MODEL ANSWER to: {text}")
        question = re.search(r"\[Question\]\n(.*?)\n\n\[Answer A\]", text, re.S)
        answers = re.search(r"\[Answer A\]\n(.*?)\n\n\[Answer B\]\n(.*?)\n\nWhich answer", text, re.S)
        if question is None or answers is None:
            return chat_reply("unparsable judge prompt")  # an error verdict (asserting here would stall)
        a, b = answers.groups()
        model_is_a = a.startswith("MODEL ANSWER")
        # compared with GPT-4 Turbo's answer, checked after the run
        mismatched.extend(
            [] if (b if model_is_a else a) == references.get(question.group(1)) else [question.group(1)]
        )
        judged.append(question.group(1))
        prefers_model = len(question.group(1)) % 3 == 0
        return chat_reply("[[A]]" if prefers_model == model_is_a else "[[B]]")

    with scripted_server(respond) as server:
        config = EvalConfig(
            model="assistant",
            backend="openai",
            bench="alpaca-eval",
            data=str(shared_data / "alpaca_eval"),
            bench_options={"rows": "701:"},  # the papers' 104 instructions
            limit=30,
            backend_options={"base_url": server.url, "api_key_env": "VLGUARD_NO_KEY"},
            judge_options={
                "llm-judge": {"base_url": server.url, "model": "judge", "api_key_env": "VLGUARD_NO_KEY"}
            },
            run_dir=str(tmp_path / "run"),
        )
        metrics = run_eval(config, progress=False)
    assert config.resolve().judges == ("llm-judge",) and len(judged) == 30 and mismatched == []
    expected = sum(len(q) % 3 == 0 for q in judged) / 30
    [row] = [r for r in metrics["metrics"] if r["metric"] == "helpfulness_win_rate" and r["group"] == "all"]
    assert (row["subset"], row["n"], row["n_errors"]) == ("alpaca-eval", 30, 0)
    assert row["value"] == pytest.approx(expected)


@pytest.mark.parametrize("model", ["tiny-lm", "tiny"])
def test_done_when_sst2_on_a_local_model_writes_accuracy(
    model: str, shared_data: Path, tmp_path: Path, tiny_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`vlguard eval --model tiny-lm --bench sst2 --data ../shared/data/sst2 --limit 40 --run-dir D` (and the
    tiny VLM, text only) writes D/metrics.json with an accuracy metric over the 40 judged answers."""
    run_dir = tmp_path / "D"
    args = ["eval", "--model", model, "--bench", "sst2", "--data", str(shared_data / "sst2"), "--limit", "40"]
    args += ["--run-dir", str(run_dir), "--max-new-tokens", "4", "--batch-size", "8", "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "sst2" in out
    metrics = json.loads((run_dir / "metrics.json").read_text())
    [row] = [r for r in metrics["metrics"] if r["metric"] == "accuracy" and r["group"] == "all"]
    assert row["n"] + row["n_errors"] == 40
    labels = [
        json.loads(line)["label"]
        for line in (run_dir / "judgments" / "accuracy.jsonl").read_text().splitlines()
    ]
    assert len(labels) == 40 and set(labels) <= {"correct", "incorrect"}
    assert row["value"] == pytest.approx(labels.count("correct") / 40)


def test_the_papers_alpaca_prompt_reaches_a_text_model(
    shared_data: Path, tiny_cache: Path, tmp_path: Path
) -> None:
    """With prompt_format=alpaca (base models, as in the papers) the model sees Alpaca's exact prompt."""
    from vlguard.benchmarks import load_benchmark
    from vlguard.generation.hf import HFBackend

    sample = load_benchmark("sst2", data=str(shared_data / "sst2"), rows=1).samples[0]
    backend = HFBackend("tiny-lm", prompt_format="alpaca", max_new_tokens=2)
    prompt = backend.prompt_text(GenerationRequest(sample.id, sample.prompt, input=sample.input))
    assert prompt == (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n### Instruction:\nAnalyze the sentiment "
        "of the input, and respond only positive or negative\n\n### Input:\none long string of cliches .\n\n"
        "### Response:"
    )
    run_dir = tmp_path / "alpaca"
    args = [
        "eval",
        "--model",
        "tiny-lm",
        "--bench",
        "sst2",
        "--data",
        str(shared_data / "sst2"),
        "--limit",
        "8",
    ]
    args += ["--backend-option", "prompt_format=alpaca", "--run-dir", str(run_dir), "--max-new-tokens", "2"]
    assert main([*args, "--no-progress"]) == 0
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["result_fields"]["prompt_format"] == "alpaca"
