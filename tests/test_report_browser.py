"""The HTML report in a real headless browser (Debian's chromium driven by Playwright).

It must render without console errors or failed requests, show exactly the numbers of metrics.json,
and its charts must load. Skips with the reason when chromium or Playwright is missing (`make test`
installs chromium with apt; Playwright's own browser download is never used).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from curate_fixtures import (
    STAND_IN_HARM_ENTRY,
    Script,
    curate_argv,
    good_harmful,
    good_safe,
    label_json,
    make_images,
    safe_json,
    writer_server,
)
from report_fixtures import write_images, write_run, write_utility
from vlguard.cli.main import main
from vlguard.judges import JUDGES
from vlguard.report import write_report
from vlguard.report.curate import write_curate_report

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("VLGUARD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Any:
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)) and shutil.which(CHROMIUM) is None:
        pytest.skip(
            f"chromium not found at {CHROMIUM}: install it with `make browser` (apt-get install chromium)"
        )
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
    )
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("browser")
    images = write_images(root / "images")
    runs = [
        write_run(root / "vanilla", asr_unsafe=2 / 3, image_root=images),
        write_run(root / "posthoc", asr_unsafe=0.1, refuse=True, image_root=images, model="tiny-posthoc"),
    ]
    return write_report(runs, root / "out").main, runs


def _open(browser: Any, html: Path) -> tuple[Any, list[str], list[str]]:
    page = browser.new_page()
    problems: list[str] = []
    requests: list[str] = []
    page.on(
        "console",
        lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None,
    )
    page.on("pageerror", lambda err: problems.append(f"page error: {err}"))
    page.on("requestfailed", lambda r: problems.append(f"failed request: {r.url}"))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(html.resolve().as_uri(), wait_until="load")
    return page, problems, requests


def test_report_renders_without_errors_or_outside_requests(
    browser: Any, report: tuple[Path, list[Path]]
) -> None:
    page, problems, requests = _open(browser, report[0])
    try:
        assert problems == []
        # Only the file itself (and its own data: URIs) may be loaded: a self-contained report.
        assert all(url.startswith(("file://", "data:")) for url in requests), requests
        # The content warning is actually visible, not merely present.
        assert page.locator("#content-warning").is_visible()
        assert "Content warning" in page.locator("#content-warning").inner_text()
        # The injected script in the model's output did not run: it is shown as text.
        assert page.evaluate("document.scripts.length") == 0
        assert "<script>alert('xss')</script>" in page.locator("#examples").inner_text()
    finally:
        page.close()


def test_table_numbers_match_metrics_json(browser: Any, report: tuple[Path, list[Path]]) -> None:
    html, runs = report
    page, problems, _ = _open(browser, html)
    try:
        cells = page.evaluate(
            """() => Array.from(document.querySelectorAll('td[data-value]')).map(td => ({
                run: td.dataset.run, judge: td.dataset.judge, subset: td.dataset.subset,
                metric: td.dataset.metric, group: td.dataset.group, groupValue: td.dataset.groupValue ?? null,
                value: parseFloat(td.dataset.value), n: parseInt(td.dataset.n), text: td.textContent,
                visible: td.offsetParent !== null }))"""
        )
    finally:
        page.close()
    assert problems == []
    shown = {(c["run"], c["judge"], c["subset"], c["metric"], c["group"], c["groupValue"]): c for c in cells}
    expected = 0
    for run in runs:
        for row in json.loads((run / "metrics.json").read_text())["metrics"]:
            cell = shown[
                (run.name, row["judge"], row["subset"], row["metric"], row["group"], row["group_value"])
            ]
            assert cell["value"] == row["value"] and cell["n"] == row["n"]
            # The visible text is the same number, rounded for reading.
            assert cell["text"].startswith(f"{100 * row['value']:.1f}%")
            expected += 1
    assert len(shown) == expected
    # Headline numbers are on screen (the others may sit in a closed <details>).
    headline = {
        ("unsafe", "attack_success_rate"),
        ("safe_unsafe", "attack_success_rate"),
        ("safe_safe", "over_refusal_rate"),
    }
    assert all(c["visible"] for c in cells if c["group"] == "all" and (c["subset"], c["metric"]) in headline)


def test_charts_load(browser: Any, report: tuple[Path, list[Path]]) -> None:
    page, problems, _ = _open(browser, report[0])
    try:
        images = page.evaluate(
            """() => Array.from(document.images).map(img => ({
                chart: img.dataset.chart ?? null, complete: img.complete, width: img.naturalWidth }))"""
        )
    finally:
        page.close()
    assert problems == []
    charts = [img for img in images if img["chart"]]
    # A headline chart per judge (refusal, refusal-paper, llm-judge), a per-category one per refusal judge,
    # and the safety-vs-capability chart (ASR against the llm-judge win rate).
    assert len(charts) == 6
    assert all(img["complete"] and img["width"] > 0 for img in images), images


@pytest.fixture(scope="module")
def tradeoff_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two runs with safety and capability results: the report's safety-vs-capability section."""
    root = tmp_path_factory.mktemp("tradeoff")
    before = write_utility(write_run(root / "vanilla", asr_unsafe=2 / 3), {"mmlu": [1.0] * 80 + [0.0] * 20})
    after = write_utility(
        write_run(root / "posthoc", asr_unsafe=0.1, refuse=True, model="tiny-posthoc"),
        {"mmlu": [1.0] * 60 + [0.0] * 40},
        model="tiny-posthoc",
    )
    return write_report([before, after], root / "out").main


def test_safety_vs_capability_chart_and_cost_row_are_shown(browser: Any, tradeoff_report: Path) -> None:
    page, problems, requests = _open(browser, tradeoff_report)
    try:
        chart = page.evaluate(
            """() => { const img = document.querySelector('#tradeoff img[data-chart="tradeoff"]');
                       return img && {complete: img.complete, width: img.naturalWidth, height: img.naturalHeight,
                                      shown: img.offsetParent !== null, alt: img.alt}; }"""
        )
        cost = page.locator('#cost-table td[data-measure="utility:mmlu:acc:none"]')
        cost_text, verdict = cost.inner_text(), cost.get_attribute("data-verdict")
        verdict_line = page.locator('#cost-table td[data-verdict-run="posthoc"]').inner_text()
        table_visible = page.locator("#tradeoff-table").is_visible()
    finally:
        page.close()
    assert problems == [] and all(url.startswith(("file://", "data:")) for url in requests)
    # The chart is an image that loaded and is on screen, with the points in its alt text.
    assert chart is not None and chart["complete"] and chart["width"] > 300 and chart["height"] > 200
    assert chart["shown"] and "posthoc: ASR" in chart["alt"] and "mmlu (acc)" in chart["alt"]
    assert table_visible
    assert cost_text.startswith("-20.0 pts") and verdict == "cost"
    assert verdict_line.startswith("costs 20.0 ± ") and "mmlu (acc)" in verdict_line


@pytest.fixture(scope="module")
def curated_review(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A curated folder (scripted writer on 127.0.0.1) with accepted samples and rejects, and its review page."""
    root = tmp_path_factory.mktemp("curated-review")
    paths = make_images(root / "images", ["safe0", "safe1", "harmful0", "garbage", "xss"])
    xss = "<script>alert('xss')</script> What is shown here?"
    scripts = {
        paths["safe0"]: good_safe(0),
        paths["safe1"]: good_safe(1),
        paths["harmful0"]: good_harmful(0, "privacy", "personal data"),
        paths["garbage"]: Script(label="no JSON, sorry"),
        paths["xss"]: Script(label=label_json(True), pairs=safe_json(xss, "A swatch of colour.", "Doxx the maker.", "Sure, here it is.")),
    }  # fmt: skip
    # helpful answers checked by the stand-in harm judge: what the scripts make harmful, and only that
    with pytest.MonkeyPatch.context() as patch, writer_server(scripts) as (server, _):
        patch.setitem(JUDGES, "harm", STAND_IN_HARM_ENTRY)
        assert main(curate_argv(root / "images", root / "out", server.url)) == 0
    return write_curate_report(root / "out", root / "review"), root / "out"


def test_curate_review_page_shows_every_sample_and_reject(
    browser: Any, curated_review: tuple[Path, Path]
) -> None:
    html, out = curated_review
    page, problems, requests = _open(browser, html)
    try:
        samples = page.evaluate(
            """() => Array.from(document.querySelectorAll('.example')).map(div => ({
                id: div.dataset.imageId, status: div.dataset.status, stage: div.dataset.stage,
                section: div.closest('section').querySelector('h2').textContent,
                reasons: Array.from(div.querySelectorAll('.reasons li')).map(li => li.textContent),
                verdicts: Array.from(div.querySelectorAll('[data-check]')).map(s => ({
                    subset: s.closest('.pair').dataset.subset, check: s.dataset.check,
                    label: s.dataset.label, passed: s.dataset.passed === 'true', visible: s.offsetParent !== null})),
                img: (img => img && {complete: img.complete, width: img.naturalWidth})(div.querySelector('img')),
                visible: div.offsetParent !== null }))"""
        )
        warning_visible = page.locator("#content-warning").is_visible()
        scripts = page.evaluate("document.scripts.length")
        text = page.locator("body").inner_text()
    finally:
        page.close()
    assert problems == [] and all(url.startswith(("file://", "data:")) for url in requests), problems
    assert warning_visible and scripts == 0
    assert "<script>alert('xss')</script> What is shown here?" in text  # shown as text, never run
    by_id = {s["id"]: s for s in samples}
    assert len(by_id) == len(samples)  # each image once
    records = json.loads((out / "train.json").read_text())
    checks = {
        json.loads(line)["image_id"]: json.loads(line)
        for line in (out / "checks.jsonl").read_text().splitlines()
    }
    for record in records:
        shown = by_id[record["id"]]
        group = "safe images" if record["safe"] else record["harmful_category"]
        assert shown["status"] == "accepted" and shown["section"].startswith(group), shown
        expected = {
            (subset, check, v["label"], v["passed"])
            for subset, by_check in checks[record["id"]]["verdicts"].items()
            for check, v in by_check.items()
        }
        assert {(v["subset"], v["check"], v["label"], v["passed"]) for v in shown["verdicts"]} == expected
        assert all(v["visible"] for v in shown["verdicts"])
    rejected = [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert len(rejected) == 2 and len(records) == 3
    for reject in rejected:
        shown = by_id[reject["image_id"]]
        assert (
            shown["status"] == "rejected"
            and shown["section"] == "Rejects"
            and shown["stage"] == reject["stage"]
        )
        assert [r["reason"] for r in reject["reasons"]] == [r.split(" (")[0] for r in shown["reasons"]]
    assert all(s["visible"] and s["img"]["complete"] and s["img"]["width"] > 0 for s in samples)


def test_hft_report_shows_the_papers_table_of_the_seeds(browser: Any, tmp_path: Path) -> None:
    """`vlguard report` of three seed sweeps: the papers' table (rows = defences, columns = clean, each p,
    average; Harmful Score and Finetune Accuracy blocks) shows each cell's mean over the seeds ± sd."""
    import statistics

    from hft_fixtures import write_summary_sweep
    from vlguard.report.hft import write_hft_report

    sweeps = [write_summary_sweep(tmp_path / f"seed{s}", s) for s in (3, 4, 5)]
    html = write_hft_report(sweeps, tmp_path / "out")[0]
    page, problems, requests = _open(browser, html)
    try:
        heads = page.locator("#hft-paper-table thead th").all_inner_texts()
        blocks = page.locator("#hft-paper-table tr.block").all_inner_texts()
        cells = page.evaluate(
            """() => Array.from(document.querySelectorAll('#hft-paper-table td[data-value]')).map(td => ({
                block: td.dataset.block, defence: td.dataset.defence, column: td.dataset.column,
                value: JSON.parse(td.dataset.value), sd: JSON.parse(td.dataset.sd), text: td.textContent,
                visible: td.offsetParent !== null }))"""
        )
    finally:
        page.close()
    assert problems == [] and all(url.startswith(("file://", "data:")) for url in requests)
    assert heads == ["Defence", "clean", "p=0.05", "p=0.1", "p=0.2", "average"]
    assert [b.strip() for b in blocks] == ["Harmful Score ↓", "Finetune Accuracy ↑"]
    assert len(cells) == 2 * 2 * 5 and all(c["visible"] for c in cells)
    summaries = {s: json.loads((tmp_path / f"seed{s}" / "summary.json").read_text()) for s in (3, 4, 5)}
    for cell in cells:
        per_seed = [
            {r["harmful_ratio"]: r[cell["block"]] for r in rows if r["defence"] == cell["defence"]}
            for rows in summaries.values()
        ]
        if cell["column"] == "average":
            values = [statistics.fmean(seed.values()) for seed in per_seed]
        else:
            ratio = 0.0 if cell["column"] == "clean" else float(cell["column"].removeprefix("p="))
            values = [seed[ratio] for seed in per_seed]
        assert cell["value"] == pytest.approx(statistics.fmean(values))
        assert cell["sd"] == pytest.approx(statistics.stdev(values))
        assert cell["text"] == f"{100 * cell['value']:.1f} ± {100 * cell['sd']:.1f}"
