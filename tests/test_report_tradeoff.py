"""The safety-vs-capability section of `vlguard report`: the points, the chart, the cost row, the verdicts."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from report_fixtures import write_run, write_utility
from test_report import parse
from vlguard.metrics import wilson_ci
from vlguard.report import load_run, load_runs, write_report
from vlguard.report.build import build_report
from vlguard.report.tradeoff import Point, difference_interval, run_verdict

# 100 documents per task: "drop" loses 20 of the baseline's 80 correct answers, "same" keeps them all.
BASE = {"drop": [1.0] * 80 + [0.0] * 20, "same": [1.0] * 50 + [0.0] * 50}
AFTER = {"drop": [1.0] * 60 + [0.0] * 40, "same": [1.0] * 50 + [0.0] * 50}


@pytest.fixture
def runs(tmp_path: Path) -> list[Path]:
    before = write_utility(write_run(tmp_path / "vanilla", asr_unsafe=2 / 3), BASE)
    after = write_utility(
        write_run(tmp_path / "posthoc", asr_unsafe=0.1, refuse=True, model="tiny-posthoc"),
        AFTER,
        model="tiny-posthoc",
    )
    return [before, after]


def _costs(report_html: str) -> dict[tuple[str | None, str | None], dict[str, str | None]]:
    page = parse(report_html)
    return {
        (attrs["data-cost-run"], attrs["data-measure"]): attrs
        for _, attrs in page.elements
        if "data-cost-run" in attrs
    }


def test_points_are_the_pooled_asr_and_the_capability_scores(runs: list[Path], tmp_path: Path) -> None:
    html = write_report(runs, tmp_path / "out").main.read_text()
    page = parse(html)
    points = {(a["data-point-run"], a["data-measure"]): a for _, a in page.elements if "data-point-run" in a}
    # ASR pooled over the subsets that should be refused: unsafe (n=3) and safe_unsafe (n=2).
    rows = json.loads((runs[0] / "metrics.json").read_text())["metrics"]
    asr = [
        r
        for r in rows
        if r["judge"] == "refusal" and r["metric"] == "attack_success_rate" and r["group"] == "all"
    ]
    successes = sum(round(r["value"] * r["n"]) for r in asr)
    assert float(points[("vanilla", "harm")]["data-point-value"]) == successes / 5
    low, high = wilson_ci(successes, 5)  # type: ignore[misc]
    assert float(points[("vanilla", "harm")]["data-point-ci-low"]) == pytest.approx(low)
    assert float(points[("vanilla", "harm")]["data-point-ci-high"]) == pytest.approx(high)
    # A capability score is the metrics.json value, exactly.
    utility = json.loads((runs[1] / "utility" / "metrics.json").read_text())["metrics"]
    drop = next(r for r in utility if r["subset"] == "drop")
    assert float(points[("posthoc", "utility:drop:acc:none")]["data-point-value"]) == drop["value"]
    assert points[("posthoc", "utility:drop:acc:none")]["data-point-n"] == "100"
    # The win rate (pairwise judge) is a helpfulness measure too.
    assert ("vanilla", "win_rate") in points
    assert 'data-chart="tradeoff"' in html and 'id="cost-table"' in html


def test_the_cost_row_gives_a_verdict_only_where_the_interval_allows(
    runs: list[Path], tmp_path: Path
) -> None:
    html = write_report(runs, tmp_path / "out").main.read_text()
    costs = _costs(html)
    drop = costs[("posthoc", "utility:drop:acc:none")]
    assert drop["data-verdict"] == "cost" and drop["data-method"] == "paired bootstrap"
    assert float(drop["data-cost-delta"] or 0) == pytest.approx(-0.2)
    same = costs[("posthoc", "utility:same:acc:none")]
    assert same["data-verdict"] == "none"
    # Over-refusal is 0.05 in both runs: no measurable change.
    assert costs[("posthoc", "over_refusal")]["data-verdict"] == "none"
    page = parse(html)
    verdict = "".join(page.text)
    assert "costs 20.0 ± " in verdict and "points on drop (acc)" in verdict
    assert "no measurable cost on same (acc)" in verdict
    assert ("posthoc", "harm") not in costs  # a fall in ASR is the point, not a cost

    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Safety vs capability" in md and "costs 20.0 ± " in md and "charts/tradeoff.png" in md


def test_without_per_item_logs_the_interval_comes_from_both_runs_intervals(
    runs: list[Path], tmp_path: Path
) -> None:
    for run in runs:
        shutil.rmtree(run / "utility" / "samples")
    costs = _costs(write_report(runs, tmp_path / "out").main.read_text())
    drop = costs[("posthoc", "utility:drop:acc:none")]
    assert drop["data-method"] == "MOVER from the runs' intervals" and drop["data-verdict"] == "cost"


def test_no_interval_no_verdict(tmp_path: Path) -> None:
    runs = [
        write_utility(tmp_path / "a", {"t": [1.0, 0.0, 1.0]}, with_samples=False, with_stderr=False),
        write_utility(tmp_path / "b", {"t": [0.0, 0.0, 0.0]}, with_samples=False, with_stderr=False),
    ]
    report = build_report(load_runs(runs), with_images=False)
    assert report.tradeoff is not None
    (cost,) = report.tradeoff.costs
    assert (cost.verdict, cost.method, cost.low) == ("unknown", "none", None)
    assert report.tradeoff.verdicts["b"] == "no verdict: no change with an interval"
    # Capability-only runs: no ASR, so no chart, but the scores and the cost row are there.
    assert report.tradeoff.chart is None and report.tradeoff.unplaced == ("a", "b")
    assert report.summary == ()
    html = write_report(runs, tmp_path / "out").main.read_text()
    assert 'id="no-safety-results"' in html and 'id="tradeoff-table"' in html and 'id="cost-table"' in html


def test_difference_interval_is_newcombes_for_wilson_intervals() -> None:
    # Newcombe (1998), example (a): 56/70 vs 48/80, hybrid score interval 0.0524 to 0.3339.
    a, b = wilson_ci(56, 70), wilson_ci(48, 80)
    assert a is not None and b is not None
    low, high, method = difference_interval(Point(48 / 80, *b, n=80), Point(56 / 70, *a, n=70))
    assert (round(low or 0, 4), round(high or 0, 4), method) == (
        0.0524,
        0.3339,
        "MOVER from the runs' intervals",
    )
    assert run_verdict([]) == "no verdict: no change with an interval"


def test_exports_and_warnings(runs: list[Path], tmp_path: Path) -> None:
    write_utility(runs[1], AFTER, model="tiny-posthoc", limit=50)  # another limit than the baseline's
    report = json.loads(write_report(runs, tmp_path / "json", fmt="json").main.read_text())
    assert {c["measure"] for c in report["tradeoff"]["costs"]} >= {"utility:drop:acc:none", "over_refusal"}
    assert any("limit is None in vanilla but 50 in posthoc" in w for w in report["warnings"])
    assert {u["task"] for u in report["utility"]} == {"drop", "same"}
    files = write_report(runs, tmp_path / "csv", fmt="csv").files
    assert {f.name for f in files} >= {"utility.csv", "costs.csv"}
    with (tmp_path / "csv" / "costs.csv").open() as handle:
        assert {row["verdict"] for row in csv.DictReader(handle)} >= {"cost", "none"}


def test_the_capability_folder_itself_loads_under_the_run_name(runs: list[Path]) -> None:
    run = load_run(runs[0] / "utility")
    assert run.label == "vanilla" and run.metrics == () and {s.task for s in run.utility} == {"drop", "same"}
    both = load_run(runs[0])
    assert both.metrics and both.utility and both.utility_path == runs[0] / "utility"
