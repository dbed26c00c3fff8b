"""`vlguard demo --quick` end to end: a report is written and post-hoc fine-tuning makes the tiny
model refuse more held-out unsafe samples than the vanilla model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vlguard.cli.main import main
from vlguard.errors import ConfigError


def _refused_unsafe(run_dir: Path) -> tuple[int, int]:
    """Counted straight from the run folder's files, independently of the demo's own summary."""
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    unsafe = {s["id"] for s in samples if s["subset"] == "unsafe"}
    labels = {
        j["sample_id"]: j["label"]
        for j in map(json.loads, (run_dir / "judgments" / "refusal.jsonl").read_text().splitlines())
    }
    return sum(labels[i] == "refusal" for i in unsafe), len(unsafe)


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from transformers.utils import logging as hf_logging

    out = tmp_path / "demo"
    before = (hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled())
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    # The demo silences transformers only for its own duration.
    assert (hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()) == before
    captured = capsys.readouterr()
    printed = captured.out
    # A clean console: the demo's own step lines, no Trainer / weight-loading progress bars or log dicts.
    assert "[1/7]" in printed and "[7/7]" in printed
    console = captured.out + captured.err
    assert "it/s]" not in console and "s/it]" not in console and "'train_runtime'" not in console
    report = out / "report" / "report.html"
    assert report.is_file() and (out / "report" / "report.md").is_file()
    assert str(report) in printed
    assert (
        "demonstrates the pipeline" in printed and "vlguard eval --model llava-hf/llava-1.5-7b-hf" in printed
    )

    vanilla, posthoc = out / "runs" / "vanilla", out / "runs" / "posthoc"
    refused_before, n = _refused_unsafe(vanilla)
    refused_after, n_after = _refused_unsafe(posthoc)
    assert n == n_after > 0
    assert refused_after > refused_before

    # Held out: evaluated on the test split, trained on the train split (no shared record).
    evaluated = {
        json.loads(line)["record_id"] for line in (vanilla / "samples.jsonl").read_text().splitlines()
    }
    train_ids = {
        r["id"]
        for r in json.loads(
            (
                Path(json.loads((out / "vlguard-demo.json").read_text())["data_source"]) / "train.json"
            ).read_text()
        )
    }
    assert evaluated and not evaluated & train_ids

    # The report compares the two runs: the post-hoc adapter and the vanilla model are both named.
    html = report.read_text(encoding="utf-8")
    assert 'data-run="vanilla"' in html and 'data-run="post-hoc"' in html
    assert "models/posthoc/model" in html  # the adapter that produced the post-hoc numbers


def test_demo_refuses_to_clear_a_folder_it_did_not_write(tmp_path: Path) -> None:
    from vlguard.demo import run_demo

    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not a previous demo's output"):
        run_demo(tmp_path, quick=True)
    assert (tmp_path / "precious.txt").read_text() == "keep me"
