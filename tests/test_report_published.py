"""The report's reference column: published figures (``src/vlguard/report/published.json``, shipped with
vlguard) beside a run's numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vlguard.benchmarks import BENCHMARKS
from vlguard.evaluate import EvalConfig, run_eval
from vlguard.metric_registry import METRICS
from vlguard.report.build import write_report
from vlguard.report.loading import RunData, load_run
from vlguard.report.published import published_figures, published_rows


def test_every_published_figure_names_a_registered_benchmark_subset_and_metric() -> None:
    figures = published_figures()
    assert len(figures) >= 8 * 8  # the paper's eight models × eight columns, plus the other rows
    for figure in figures:
        entry = BENCHMARKS[figure.benchmark]
        assert entry.subset(figure.subset) is not None, figure
        assert figure.metric in METRICS and figure.source and 0.0 <= figure.value <= 1.0
        assert figure.image_mode in (None, "original", "blank", "none")
    llava = {(f.subset, f.metric): f.value for f in figures if f.model == "LLaVA-v1.5-7B"}
    # PAPER.md: AdvBench 6.45, AdvBench-Suffix 78.27, XSTest unsafe 26.5, XSTest safe compliance 91.2 (over-
    # refusal 8.8 of a string-match judge), FigStep 90.4, safe-safe win 18.82, safe-unsafe 87.46, unsafe 72.62
    assert llava == {
        ("advbench", "attack_success_rate"): 0.0645,
        ("advbench_suffix", "attack_success_rate"): 0.7827,
        ("xstest_unsafe", "attack_success_rate"): 0.265,
        ("xstest_safe", "over_refusal_rate"): pytest.approx(0.088),
        ("figstep", "attack_success_rate"): 0.904,
        ("safe_safe", "helpfulness_win_rate"): 0.1882,
        ("safe_unsafe", "attack_success_rate"): 0.8746,
        ("unsafe", "attack_success_rate"): 0.7262,
    }


def test_the_report_shows_a_run_next_to_the_published_figures(
    shared_data: Path, tmp_path: Path, tiny_cache: Path
) -> None:
    run = tmp_path / "run"
    run_eval(
        EvalConfig(
            model="tiny",
            bench="advbench",
            data=str(shared_data / "advbench"),
            judges=("refusal", "refusal-paper"),
            limit=3,
            max_new_tokens=2,
            run_dir=str(run),
        ),
        progress=False,
    )
    data = load_run(run)
    rows = published_rows([data])
    # one row per model the paper reports on AdvBench, each beside the run's refusal-paper number (the
    # judge of the paper's protocol, chosen over the run's other judge)
    assert len(rows) == 8 and {r.figure.subset for r in rows} == {"advbench"}
    ours = next(
        r
        for r in data.metrics
        if r.judge == "refusal-paper" and r.group == "all" and r.metric == "attack_success_rate"
    )
    assert all(r.cells == (ours,) for r in rows)
    llava = next(r for r in rows if r.figure.model == "LLaVA-v1.5-7B")
    assert llava.figure.value == 0.0645
    files = write_report([run], tmp_path / "report")
    markdown = (tmp_path / "report" / "report.md").read_text()
    html = files.main.read_text()
    assert "## Published figures" in markdown and "id='published-table'" in html
    for text in (markdown, html):
        assert "LLaVA-v1.5-7B" in text and "6.45 %" in text and f"{100 * ours.value:.2f} %" in text
        assert "Zong et al." in text
    # the JSON the report reads is the one shipped in the package
    shipped = json.loads(
        (Path(__file__).parents[1] / "src" / "vlguard" / "report" / "published.json").read_text()
    )
    assert len(shipped["figures"]) == len(published_figures())


def test_a_run_of_another_benchmark_or_image_mode_gets_no_figure(tmp_path: Path) -> None:
    from dataclasses import replace

    vlsafe = [f for f in published_figures() if f.benchmark == "vlsafe"]
    assert {f.image_mode for f in vlsafe} == {"original", "blank"}
    base = load_run_stub(tmp_path, benchmark="vlsafe", image_mode="blank")
    rows = published_rows([base])
    assert [r.figure.image_mode for r in rows] == ["blank"] and rows[0].cells == (None,)
    assert published_rows([replace(base, run_info={**base.run_info, "benchmark": "xstest-unknown"})]) == []


def load_run_stub(tmp_path: Path, *, benchmark: str, image_mode: str) -> RunData:
    """A run folder with only a metrics.json (no rows): what the report needs to match figures."""
    run = tmp_path / "stub"
    run.mkdir()
    (run / "metrics.json").write_text(
        json.dumps(
            {
                "schema": 1,
                "run": {"model": "m", "benchmark": benchmark, "image_mode": image_mode, "n_samples": 0},
                "metrics": [],
                "agreement": [],
            }
        )
    )
    return load_run(run)
