"""The report of `vlguard hft` sweeps in the papers' layout (issue 19, item 10): rows = defences, columns =
clean, each harmful ratio and the average; a Harmful Score block and a Finetune Accuracy block; mean ±
spread over seeds; in HTML, markdown and CSV."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path
from typing import Any

import pytest

from hft_fixtures import DEFENCES, RATIOS, summary_value, write_summary_sweep
from vlguard.report.hft import build_hft_report, write_hft_report


@pytest.fixture()
def seeds(tmp_path: Path) -> list[Path]:
    return [write_summary_sweep(tmp_path / f"seed{s}", s) for s in (3, 4, 5)]


def _expected(
    metric: str, defence: str, ratio: float | None, seed_list: tuple[int, ...] = (3, 4, 5)
) -> tuple[float, float]:
    if ratio is None:
        values = [statistics.fmean(summary_value(metric, s, r, defence) for r in RATIOS) for s in seed_list]
    else:
        values = [summary_value(metric, s, ratio, defence) for s in seed_list]
    return statistics.fmean(values), statistics.stdev(values)


def test_papers_table_rows_are_defences_and_columns_clean_ratios_average(seeds: list[Path]) -> None:
    report = build_hft_report(seeds)
    assert report.papers[0].n_seeds == 3
    hs, fa = report.papers[0].blocks
    assert (hs.metric, fa.metric) == ("harmful_score", "finetune_accuracy")
    assert hs.columns == (0.0, 0.05, 0.1, 0.2, None)
    for block in (hs, fa):
        assert [defence for defence, _ in block.rows] == list(DEFENCES)
        for defence, stats in block.rows:
            for ratio, stat in zip(block.columns, stats, strict=True):
                assert stat is not None
                mean, sd = _expected(block.metric, defence, ratio)
                assert stat.mean == pytest.approx(mean) and stat.sd == pytest.approx(sd)


def test_markdown_and_html_show_the_two_blocks(seeds: list[Path], tmp_path: Path) -> None:
    html_path, md_path, *_ = write_hft_report(seeds, tmp_path / "out")
    markdown = md_path.read_text()
    head = "| Defence | clean | p=0.05 | p=0.1 | p=0.2 | average |"
    assert markdown.count(head) == 2
    hs_at = markdown.index("**Harmful Score** ↓")
    fa_at = markdown.index("**Finetune Accuracy** ↑")
    assert hs_at < fa_at < markdown.index("## Every cell")
    mean, sd = _expected("harmful_score", "sft", 0.1)
    sft_hs = markdown[hs_at:fa_at].splitlines()[4]
    assert sft_hs.startswith("| sft | ") and f"| {100 * mean:.1f} ± {100 * sd:.1f} |" in sft_hs
    avg_mean, avg_sd = _expected("finetune_accuracy", "vlguard-mix", None)
    assert markdown[fa_at:].splitlines()[5].endswith(f"| {100 * avg_mean:.1f} ± {100 * avg_sd:.1f} |")
    html = html_path.read_text()
    assert 'id="hft-paper-table"' in html and html.index("hft-paper-table") < html.index('id="hft-table"')
    cell = (
        f'data-block="harmful_score" data-defence="sft" data-column="p=0.1" data-value="{json.dumps(mean)}"'
    )
    assert cell in html


def test_csv_is_the_papers_layout(seeds: list[Path], tmp_path: Path) -> None:
    [path] = write_hft_report(seeds, tmp_path / "csv", fmt="csv")
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    assert list(rows[0]) == [
        "block", "defence", "clean", "clean_sd", "p=0.05", "p=0.05_sd", "p=0.1", "p=0.1_sd", "p=0.2", "p=0.2_sd",
        "average", "average_sd", "n_seeds",
    ]  # fmt: skip
    assert [(r["block"], r["defence"]) for r in rows] == [
        ("harmful_score", "sft"), ("harmful_score", "vlguard-mix"),
        ("finetune_accuracy", "sft"), ("finetune_accuracy", "vlguard-mix"),
    ]  # fmt: skip
    mean, sd = _expected("harmful_score", "vlguard-mix", 0.2)
    assert float(rows[1]["p=0.2"]) == pytest.approx(mean) and float(rows[1]["p=0.2_sd"]) == pytest.approx(sd)
    assert rows[0]["n_seeds"] == "3"
    [exported] = write_hft_report(seeds, tmp_path / "json", fmt="json")
    loaded: dict[str, Any] = json.loads(exported.read_text())
    assert loaded["paper_table"][1]["p=0.2"] == pytest.approx(mean) and len(loaded["rows"]) == 8


def test_one_seed_shows_plain_numbers_and_a_missing_clean_column(tmp_path: Path) -> None:
    """One sweep: no spread; a sweep without p = 0 has no clean column; its average is over its ratios."""
    report = build_hft_report([write_summary_sweep(tmp_path / "one", 7, ratios=(0.1, 0.2))])
    hs = report.papers[0].blocks[0]
    assert hs.columns == (0.1, 0.2, None)
    [sft] = [stats for defence, stats in hs.rows if defence == "sft"]
    assert sft[0] is not None and sft[0].sd is None
    assert sft[2] is not None and sft[2].mean == pytest.approx(
        statistics.fmean(summary_value("harmful_score", 7, r, "sft") for r in (0.1, 0.2))
    )
    markdown = write_hft_report([tmp_path / "one"], tmp_path / "out")[1].read_text()
    assert (
        f"| sft | {100 * sft[0].mean:.1f} | {100 * sft[1].mean:.1f} | {100 * sft[2].mean:.1f} |" in markdown
    )
