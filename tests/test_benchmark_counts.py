"""Published counts: every benchmark's real file, cut short into tmp_path, is an error naming the file, the
expected and the found count; ``allow_partial=true`` runs it anyway and the run says so (manifest,
metrics.json, CLI summary, report). MM-SafetyBench and SPA-VL (not available offline) are checked on
fixtures in tests/test_benchmarks_mm.py."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from vlguard.benchmarks import BENCHMARKS, load_benchmark
from vlguard.benchmarks.counts import check_counts
from vlguard.cli.main import main
from vlguard.errors import ConfigError, DataValidationError
from vlguard.evaluate import EvalConfig, run_eval
from vlguard.report.build import write_report


def _lines(source: Path, keep: int, *, header: bool = True) -> bytes:
    """The first ``keep`` data lines of a line-per-record file (and its header)."""
    lines = source.read_bytes().splitlines(keepends=True)
    return b"".join(lines[: keep + (1 if header else 0)])


def _copy_cut(source: Path, target: Path, cut: Callable[[Path], bytes]) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(cut(source))
    return target


def _json_items(source: Path, keep: int) -> bytes:
    return json.dumps(json.loads(source.read_text(encoding="utf-8"))[:keep]).encode()


def _font_or_skip() -> None:
    from vlguard.benchmarks.figstep import find_figstep_font

    try:
        find_figstep_font()
    except Exception as err:  # the loader needs the font to render; the parity tests say how to install it
        pytest.skip(f"FigStep font missing ({err})")


# benchmark, options, real file (under ../shared/data), file name in the data folder, how it is cut, the
# message's "found ... expected" part
CASES = [
    ("xstest", {}, "xstest/xstest_prompts.csv", "xstest_prompts.csv", lambda p: _lines(p, 100),
     r"50 xstest_safe, the published xstest_prompts\.csv has 250"),
    ("advbench", {}, "advbench/harmful_behaviors.csv", "harmful_behaviors.csv", lambda p: _lines(p, 100),
     r"100 behaviours, the published harmful_behaviors\.csv has 520"),
    ("advbench-suffix", {}, "advbench/harmful_behaviors.csv", "harmful_behaviors.csv", lambda p: _lines(p, 519),
     r"519 behaviours, the published harmful_behaviors\.csv has 520"),
    ("figstep", {}, "figstep/safebench.csv", "safebench.csv", lambda p: _lines(p, 100),
     r"100 questions, the published safebench\.csv has 500"),
    ("figstep-tiny", {}, "figstep/SafeBench-Tiny.csv", "SafeBench-Tiny.csv", lambda p: _lines(p, 49),
     r"49 questions, the published SafeBench-Tiny\.csv has 50"),
    ("vlsafe", {}, "vlsafe/examine_sampled_500_VLSafe.jsonl", "examine_sampled_500_VLSafe.jsonl",
     lambda p: _lines(p, 100, header=False), r"100 queries, the published examine_sampled_500_VLSafe\.jsonl has 500"),
    ("vlsafe", {"split": "train"}, "vlsafe/VLSafe_harmlessness_alignment.jsonl",
     "VLSafe_harmlessness_alignment.jsonl", lambda p: _lines(p, 2999, header=False),
     r"2,999 queries, the published VLSafe_harmlessness_alignment\.jsonl has 3,000"),
    ("vlsafe", {"split": "train"}, "vlsafe/VLSafe_harmlessness_alignment.jsonl",
     "train/VLSafe_harmlessnss_alignment.jsonl", lambda p: _lines(p, 100, header=False),
     r"100 queries, the published VLSafe_harmlessnss_alignment\.jsonl has 3,000"),
    ("jailbreakllms", {}, "jailbreakllms/forbidden_question_set.csv", "forbidden_question_set.csv",
     lambda p: _lines(p, 100), r"100 questions, the published forbidden_question_set\.csv has 390"),
    ("beavertails", {}, "beavertails/30k_test.jsonl", "30k_test.jsonl", lambda p: _lines(p, 1000, header=False),
     r"1,000 rows, the published 30k_test has 3,021"),
    ("sst2", {}, "sst2/dev.tsv", "dev.tsv", lambda p: _lines(p, 100), r"100 rows, the published sst2 dev has 872"),
    ("agnews", {}, "agnews/test.csv", "test.csv", lambda p: _lines(p, 1500, header=False),
     r"1,500 rows, the published agnews test has 7,600"),
    ("gsm8k", {}, "gsm8k/test.jsonl", "test.jsonl", lambda p: _lines(p, 1200, header=False),
     r"1,200 rows, the published gsm8k test has 1,319"),
    ("alpaca-eval", {}, "alpaca_eval/alpaca_eval_gpt4_1106_preview.json", "alpaca_eval_gpt4_1106_preview.json",
     lambda p: _json_items(p, 100), r"100 rows, the published alpaca-eval eval has 805"),
    ("vlguard-test", {}, "vlguard/test.json", "test.json", lambda p: _json_items(p, 100),
     r"the published test\.json has 442"),
    ("vlguard-train", {}, "vlguard/train.json", "train.json", lambda p: _json_items(p, 100),
     r"the published train\.json has 1,023"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("bench", "options", "real", "name", "cut", "message"),
    CASES,
    ids=[f"{c[0]}-{c[3]}" for c in CASES],
)
def test_a_cut_real_file_is_an_error_unless_allowed(
    shared_data: Path,
    tmp_path: Path,
    bench: str,
    options: dict[str, str],
    real: str,
    name: str,
    cut: Callable[[Path], bytes],
    message: str,
) -> None:
    if bench.startswith("figstep"):
        _font_or_skip()
    data = tmp_path / "data"
    path = _copy_cut(shared_data / real, data / name, cut)
    if bench == "vlguard-test":  # the GPT-4V references of the records kept
        kept = {r["id"] for r in json.loads(path.read_text(encoding="utf-8"))}
        references = json.loads(
            (shared_data / "vlguard" / "gpt4_safe_safes.json").read_text(encoding="utf-8")
        )
        (data / "gpt4_safe_safes.json").write_text(json.dumps([r for r in references if r["id"] in kept]))
    by_file = bench == "beavertails"  # its loader takes the file itself
    # the complete file loads: its counts are the published ones
    whole = load_benchmark(bench, data=str(shared_data / (real if by_file else Path(real).parent)), **options)
    assert whole.source["counts"] and all(c["found"] == c["expected"] for c in whole.source["counts"])
    assert "partial" not in whole.source
    where = str(path if by_file else data)
    with pytest.raises(DataValidationError) as info:
        load_benchmark(bench, data=where, **options)
    text = str(info.value)
    assert re.search(message, text), text
    assert str(path) in text and "allow_partial=true" in text
    partial = load_benchmark(bench, data=where, allow_partial=True, **options)
    assert partial.samples and partial.source["partial"]
    assert all(c["found"] != c["expected"] for c in partial.source["partial"])


def test_a_question_file_cut_inside_its_last_cell_fails(shared_data: Path, tmp_path: Path) -> None:
    """Issue 18: forbidden_question_set.csv cut inside its last cell loaded 59 questions, the last truncated."""
    lines = (
        (shared_data / "jailbreakllms" / "forbidden_question_set.csv").read_bytes().splitlines(keepends=True)
    )
    cut = b"".join(lines[:59]) + lines[59][: len(lines[59]) // 2]  # header, 58 rows, half of the 59th
    (tmp_path / "forbidden_question_set.csv").write_bytes(cut)
    with pytest.raises(
        DataValidationError, match=r"59 questions, the published forbidden_question_set\.csv has 390"
    ):
        load_benchmark("jailbreakllms", data=str(tmp_path))


def test_every_benchmark_with_files_knows_its_published_counts(shared_data: Path) -> None:
    """Each registered benchmark's loader reports its published counts on the real data (the two without
    offline data are checked on fixtures in test_benchmarks_mm.py)."""
    covered = {case[0] for case in CASES} | {"mm-safetybench", "spa-vl-harmeval"}
    assert covered == set(BENCHMARKS)


def test_allow_partial_is_a_bool(shared_data: Path) -> None:
    with pytest.raises(ConfigError, match="allow_partial must be true or false, not 'yes'"):
        load_benchmark("advbench", data=str(shared_data / "advbench"), allow_partial="yes")
    assert check_counts(
        "x", load_benchmark("advbench", data=str(shared_data / "advbench")), allow_partial=False
    )


def test_a_partial_run_says_so_in_metrics_the_summary_and_the_report(
    shared_data: Path, tmp_path: Path, tiny_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "advbench"
    _copy_cut(
        shared_data / "advbench" / "harmful_behaviors.csv",
        data / "harmful_behaviors.csv",
        lambda p: _lines(p, 40),
    )
    run = tmp_path / "run"
    argv = ["eval", "--model", "tiny", "--bench", "advbench", "--data", str(data), "--limit", "4",
            "--max-new-tokens", "2", "--run-dir", str(run), "--no-progress"]  # fmt: skip
    assert main(argv) == 2  # the short file stops the run before the model loads
    assert "40 behaviours, the published harmful_behaviors.csv has 520" in capsys.readouterr().err
    assert not run.exists()
    assert main([*argv, "--bench-option", "allow_partial=true"]) == 0
    assert "PARTIAL benchmark (allow_partial)" in capsys.readouterr().out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["run"]["partial"] == [
        {"part": "harmful_behaviors.csv", "file": str(data / "harmful_behaviors.csv"), "what": "behaviours",
         "found": 40, "expected": 520}
    ]  # fmt: skip
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["result_fields"]["bench_options"] == {"allow_partial": True}
    files = write_report([run], tmp_path / "report")
    html = files.main.read_text()
    markdown = (tmp_path / "report" / "report.md").read_text()
    for text in (html, markdown.replace("\\_", "_")):  # markdown escapes the underscores
        assert "ran on PART of its benchmark (allow_partial)" in text
        assert "has 40 behaviours, the published harmful_behaviors.csv has 520" in text


def test_a_complete_run_has_no_partial_notice(shared_data: Path, tmp_path: Path, tiny_cache: Path) -> None:
    metrics = run_eval(
        EvalConfig(
            model="tiny",
            bench="advbench",
            data=str(shared_data / "advbench"),
            limit=2,
            max_new_tokens=2,
            run_dir=str(tmp_path / "run"),
        ),
        progress=False,
    )
    assert "partial" not in metrics["run"]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert [c["found"] for c in manifest["benchmark_source"]["counts"]] == [520]
