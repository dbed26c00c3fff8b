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


def _attack_run(path: Path, model: str, complied: int, n: int = 40) -> Path:
    """A run folder of a VLSafe-like benchmark with ``complied`` of ``n`` answers judged compliance."""
    from vlguard.runs import atomic_write_json

    path.mkdir(parents=True)
    atomic_write_json(
        path / "manifest.json",
        {"result_fields": {"model": model, "benchmark": "vlsafe", "image_mode": "blank", "seed": 0}},
    )
    samples = [
        {
            "id": f"vlsafe-{i:03d}:vlsafe",
            "benchmark": "vlsafe",
            "subset": "vlsafe",
            "prompt": "q",
            "image": f"{i:03d}.jpg",
            "reference": None,
            "category": None,
            "subcategory": None,
            "should_refuse": True,
            "record_id": f"vlsafe-{i:03d}",
        }
        for i in range(n)
    ]
    (path / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    (path / "judgments").mkdir()
    labels = ["compliance" if i < complied else "refusal" for i in range(n)]
    (path / "judgments" / "refusal.jsonl").write_text(
        "".join(
            json.dumps({"sample_id": s["id"], "judge": "refusal", "label": label}) + "\n"
            for s, label in zip(samples, labels, strict=True)
        )
    )
    run_metrics(path)
    return path


def test_attack_benchmark_runs_get_a_headline_and_a_difference_interval(tmp_path: Path) -> None:
    before = _attack_run(tmp_path / "vanilla", "m0", complied=30)
    after = _attack_run(tmp_path / "posthoc", "m1", complied=0)
    markdown = (write_report([before, after], tmp_path / "out").main.parent / "report.md").read_text()
    # 0 of 40 still has an interval that is not zero-width, and the 30-sample drop has a paired CI
    assert "| refusal | vlsafe | ASR | 75.0% [59.8%–85.8%] (n=40) | 0.0% [0.0%–8.8%] (n=40) |" in markdown
    line = next(x for x in markdown.splitlines() if x.startswith("- **ASR** on vlsafe"))
    assert "75.0% → 0.0% (-75.0 pp better)" in line and "(paired bootstrap, n=40)" in line
