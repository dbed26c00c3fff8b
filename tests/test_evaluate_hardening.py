"""Evaluation under bad settings and faults: checked before any model loads, one writer per run folder,
incomplete runs flagged, and prompts too long for any model refused."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from api_server import Reply, chat_reply, scripted_server
from vlguard.cli.main import main
from vlguard.data.sample import sample_dataset_dir
from vlguard.errors import ConfigError, DataValidationError
from vlguard.evaluate import EvalConfig, run_eval
from vlguard.records import MAX_PROMPT_CHARS

CLI = [sys.executable, "-m", "vlguard.cli.main"]


@pytest.fixture
def no_model_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to build a generation backend (load a model) fails the test."""
    import vlguard.generation

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a model was loaded before the settings were checked")

    for name in list(vlguard.generation.BACKENDS):
        monkeypatch.setitem(vlguard.generation.BACKENDS, name, refuse)


def _tiny_eval(run_dir: Path, *extra: str) -> list[str]:
    return [
        "eval", "--model", "tiny", "--bench", "vlguard-test", "--data", str(sample_dataset_dir()),
        "--image-mode", "none", "--run-dir", str(run_dir), "--limit", "4", "--max-new-tokens", "2",
        "--no-progress", *extra,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--judge", "nosuch"], "unknown judge 'nosuch'"),
        (["--judge", "refusal", "--judge-option", "refusal.mode=bogus"], "judge 'refusal'.*bogus"),
        (
            ["--judge", "refusal", "--judge-option", "refusl.mode=paper"],
            "'refusl', which is not among the judges",
        ),
        (["--judge", "llm-judge", "--judge-option", "llm-judge.base_url=ftp://x"], "base_url"),
        (["--backend-option", "nosuch=1"], "backend 'hf' has no option 'nosuch'"),
        (["--device", "banana"], "unknown device 'banana'"),
        (["--dtype", "fp8"], "dtype must be"),
    ],
)
def test_bad_settings_fail_before_any_model_loads_or_anything_is_written(
    extra: list[str], message: str, tmp_path: Path, no_model_load: None, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    assert main(_tiny_eval(run_dir, *extra)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert re.search(message, err), err
    assert not run_dir.exists()


def test_cuda_device_without_cuda_is_a_clear_error(
    tmp_path: Path, no_model_load: None, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: --device cuda is valid here")
    assert main(_tiny_eval(tmp_path / "run", "--device", "cuda")) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_missing_local_model_is_named_as_a_missing_folder(
    tmp_path: Path, no_model_load: None, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _tiny_eval(tmp_path / "run")
    args[args.index("tiny")] = str(tmp_path / "runs" / "train" / "x" / "model")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "no such file or folder" in err and "Repo id must be" not in err


def test_run_dir_that_is_a_file(
    tmp_path: Path, no_model_load: None, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "run").write_text("a file")
    assert main(_tiny_eval(tmp_path / "run")) == 2
    assert "run folder is an existing file" in capsys.readouterr().err
    assert (tmp_path / "run").read_text() == "a file"


def _openai_eval(url: str, run_dir: Path, *extra: str) -> list[str]:
    return [
        "eval", "--backend", "openai", "--model", "m", "--backend-option", f"base_url={url}",
        "--backend-option", "max_retries=0", "--backend-option", "max_concurrency=1",
        "--bench", "vlguard-test", "--data", str(sample_dataset_dir()), "--image-mode", "none",
        "--run-dir", str(run_dir), "--limit", "6", "--judge", "refusal", "--no-progress", *extra,
    ]  # fmt: skip


def test_a_second_eval_on_a_busy_run_folder_fails_at_once_and_nothing_is_written_twice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    slow = lambda body, index: Reply(200, chat_reply("I cannot help with that.").body, delay=0.5)  # noqa: E731
    with scripted_server(slow) as server:
        first = subprocess.Popen(
            [*CLI, *_openai_eval(server.url, run_dir)], stderr=subprocess.PIPE, text=True
        )
        try:
            deadline = time.monotonic() + 60
            while not server.requests and time.monotonic() < deadline:
                time.sleep(0.05)  # the first run holds the lock once it generates
            assert server.requests, "the first run never started generating"
            started = time.monotonic()
            assert main(_openai_eval(server.url, run_dir)) == 2
            assert time.monotonic() - started < 10
            err = capsys.readouterr().err
            assert f"in use by another vlguard process (pid {first.pid}" in err and "Traceback" not in err
        finally:
            _, first_err = first.communicate(timeout=120)
        assert first.returncode == 0, first_err
    ids = [json.loads(line)["sample_id"] for line in (run_dir / "generations.jsonl").read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 6
    assert len((run_dir / "judgments" / "refusal.jsonl").read_text().splitlines()) == 6
    # Once the first run has finished, the folder is free again: a rerun resumes (nothing to do).
    with scripted_server(slow) as server:
        assert main(_openai_eval(server.url, run_dir)) == 0
        assert not server.requests


def test_a_generations_line_without_sample_id_on_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    with scripted_server(lambda body, index: chat_reply("Sure.")) as server:
        assert main(_openai_eval(server.url, run_dir)) == 0
        lines = (run_dir / "generations.jsonl").read_text().splitlines()
        broken = json.loads(lines[1])
        del broken["sample_id"]
        (run_dir / "generations.jsonl").write_text(
            "\n".join([lines[0], json.dumps(broken), *lines[2:]]) + "\n"
        )
        before = (run_dir / "generations.jsonl").read_bytes()
        capsys.readouterr()
        assert main(_openai_eval(server.url, run_dir)) == 2
    err = capsys.readouterr().err
    assert "generations.jsonl: line 2, field 'sample_id': missing" in err and "Traceback" not in err
    assert (run_dir / "generations.jsonl").read_bytes() == before


def test_a_partial_run_is_marked_incomplete_in_metrics_the_summary_and_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    with scripted_server(lambda body, index: chat_reply("I cannot help with that.")) as server:
        assert main(_openai_eval(server.url, run_dir, "--limit", "10")) == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["complete"] is True
    assert metrics["completeness"] == {
        "samples": 10,
        "generated": 10,
        "judged": {"refusal": 10},
        "failed": {"generation": 0, "refusal": 0},
    }
    # What a run killed part-way leaves: 4 of 10 generations. Re-judging it must not pass for finished.
    lines = (run_dir / "generations.jsonl").read_text().splitlines()
    (run_dir / "generations.jsonl").write_text("\n".join(lines[:4]) + "\n")
    (run_dir / "judgments" / "refusal.jsonl").unlink()
    capsys.readouterr()
    assert main(["judge", str(run_dir), "--judge", "refusal", "--no-progress"]) == 0
    assert "INCOMPLETE: 4 of 10 samples generated, 4 judged by refusal" in capsys.readouterr().out
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["complete"] is False
    assert metrics["completeness"] == {
        "samples": 10,
        "generated": 4,
        "judged": {"refusal": 4},
        "failed": {"generation": 0, "refusal": 0},
    }
    assert main(["report", str(run_dir), "--out", str(tmp_path / "report")]) == 0
    page = (tmp_path / "report" / "report.html").read_text()
    markdown = (tmp_path / "report" / "report.md").read_text()
    for text in (page, markdown):
        assert "INCOMPLETE: 4 of 10 generated, 4 of 10 judged by refusal" in text
    assert "id='incomplete'" in page and page.index("id='incomplete'") < page.index("summary-table")
    assert markdown.splitlines()[0].endswith("(INCOMPLETE)")


def test_prompt_longer_than_the_cap_fails_before_the_model_loads(
    tmp_path: Path, no_model_load: None, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    records = json.loads((sample_dataset_dir() / "test.json").read_text())
    records[0]["instr-resp"][0][next(iter(records[0]["instr-resp"][0]))] = "x" * (MAX_PROMPT_CHARS + 1)
    (data / "test.json").write_text(json.dumps(records))
    assert main(_tiny_eval(tmp_path / "run", "--data", str(data))) == 2
    err = capsys.readouterr().err
    assert f"record {records[0]['id']}" in err and "instr-resp[0]" in err and "over the limit" in err
    assert not (tmp_path / "run").exists()


def test_check_prompt_lengths_covers_every_benchmark() -> None:
    from vlguard.evaluate import check_prompt_lengths
    from vlguard.records import Sample

    long = Sample("s1", "b", "x", "p", None, None, None, None, False, input="y" * (MAX_PROMPT_CHARS + 1))
    with pytest.raises(DataValidationError) as info:
        check_prompt_lengths([long], "tasks.jsonl")
    (problem,) = info.value.problems
    assert (problem.file, problem.record, problem.field) == ("tasks.jsonl", "s1", "input")


def test_a_prompt_longer_than_the_models_context_is_an_error_without_running_it(tiny_cache: Path) -> None:
    from vlguard.generation import GenerationRequest, make_backend

    backend = make_backend("tiny", "tiny", max_new_tokens=2, batch_size=4)
    context = backend.context_length()  # type: ignore[attr-defined]
    assert context is not None
    calls: list[int] = []
    original = backend._generate_texts  # type: ignore[attr-defined]

    def counting(texts: list[str], images: list[Any]) -> Any:
        calls.append(len(texts))
        return original(texts, images)

    backend._generate_texts = counting  # type: ignore[attr-defined]
    requests = [
        GenerationRequest(sample_id="short", prompt="Hello there."),
        GenerationRequest(sample_id="long", prompt="word " * (4 * context)),
    ]
    short, long = backend.generate(requests)
    assert short.error is None and long.response == ""
    assert long.error is not None and f"more than the model's context of {context:,} tokens" in long.error
    assert calls == [1], "the long prompt was never run"


def test_run_eval_checks_judges_before_generating(tmp_path: Path, no_model_load: None) -> None:
    config = EvalConfig(
        model="tiny", data=str(sample_dataset_dir()), image_mode="none", judges=("refusal", "nosuch"),
        run_dir=str(tmp_path / "run"), limit=2,
    )  # fmt: skip
    with pytest.raises(ConfigError, match="unknown judge 'nosuch'"):
        run_eval(config, progress=False)
    assert not (tmp_path / "run").exists()
