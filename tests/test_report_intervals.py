"""How the report states its intervals: Wilson for rates, bootstrap for run differences, old files too."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from report_fixtures import write_images, write_run
from vlguard.evaluate import run_metrics
from vlguard.report import write_report

OLD_NOTE = "percentile bootstrap intervals (method not recorded in this older metrics.json)"


def test_an_older_metrics_json_without_methods_still_loads_and_says_bootstrap(tmp_path: Path) -> None:
    run = write_run(tmp_path / "old", image_root=write_images(tmp_path / "images"))
    assert all("ci_method" not in row for row in json.loads((run / "metrics.json").read_text())["metrics"])
    files = write_report([run], tmp_path / "out")
    assert OLD_NOTE in files.main.read_text(encoding="utf-8")
    assert OLD_NOTE in (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    csv_files = write_report([run], tmp_path / "csv", fmt="csv")
    with csv_files.main.open(encoding="utf-8") as handle:
        assert {row["ci_method"] for row in csv.DictReader(handle)} == {"bootstrap-percentile"}


def test_a_new_run_states_wilson_and_bootstraps_the_before_after_difference(tmp_path: Path) -> None:
    images = write_images(tmp_path / "images")
    before = write_run(tmp_path / "vanilla", image_root=images)
    after = write_run(tmp_path / "posthoc", refuse=True, image_root=images, model="tiny-posthoc")
    for run in (before, after):
        run_metrics(run)  # metrics.json as vlguard writes it now, from the runs' judgments
    rows = json.loads((after / "metrics.json").read_text())["metrics"]
    assert {row["ci_method"] for row in rows} == {"wilson"}

    files = write_report([before, after], tmp_path / "out")
    html = files.main.read_text(encoding="utf-8")
    markdown = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    for text in (html, markdown):
        assert "95% confidence intervals: Wilson score intervals." in text
        assert OLD_NOTE not in text
        # unsafe ASR went from 3/3 to 0/3 on the same three samples: the paired difference is exactly -100 pp
        assert "CI of the difference -100.0 to -100.0 pp (paired bootstrap, n=3)" in text


def test_runs_on_other_samples_get_an_unpaired_difference_and_mixed_methods_are_named(
    tmp_path: Path,
) -> None:
    images = write_images(tmp_path / "images")
    before = write_run(tmp_path / "old", image_root=images)  # metrics.json without methods
    after = write_run(tmp_path / "new", refuse=True, image_root=images)
    # the second run evaluated other samples (renamed ids): nothing to pair
    for name in (
        "samples.jsonl",
        "generations.jsonl",
        "judgments/refusal.jsonl",
        "judgments/refusal-paper.jsonl",
    ):
        path = after / name
        path.write_text(path.read_text().replace('"u1:unsafe"', '"x1:unsafe"'), encoding="utf-8")
        path.write_text(path.read_text().replace('"u2:unsafe"', '"x2:unsafe"'), encoding="utf-8")
        path.write_text(path.read_text().replace('"u3:unsafe"', '"x3:unsafe"'), encoding="utf-8")
    run_metrics(after)
    markdown = (write_report([before, after], tmp_path / "out").main.parent / "report.md").read_text()
    assert "(unpaired bootstrap, n=3)" in markdown
    assert f"{OLD_NOTE} in old" in markdown and "Wilson score intervals in new" in markdown
