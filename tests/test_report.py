"""`vlguard report` on run folders written per docs/design.md: numbers, deltas, escaping, exports."""

from __future__ import annotations

import csv
import io
import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from report_fixtures import XSS_PROMPT, XSS_RESPONSE, write_images, write_run
from vlguard.cli.main import main
from vlguard.errors import DataValidationError
from vlguard.report import RunFolderError, load_run, write_report
from vlguard.report.charts import build_charts


class _Collector(HTMLParser):
    """Collects every element's tag and attributes, and the page's visible text."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> _Collector:
    collector = _Collector()
    collector.feed(html)
    return collector


def _key(row: dict[str, Any], run: str) -> tuple[Any, ...]:
    return (run, row["judge"], row["subset"], row["metric"], row["group"], row["group_value"])


def _cells(page: _Collector) -> dict[tuple[Any, ...], dict[str, str | None]]:
    cells = {}
    for _, attrs in page.elements:
        if "data-value" in attrs:
            key = (
                attrs["data-run"],
                attrs["data-judge"],
                attrs["data-subset"],
                attrs["data-metric"],
                attrs["data-group"],
                attrs.get("data-group-value"),
            )
            cells[key] = attrs
    return cells


@pytest.fixture
def images(tmp_path: Path) -> Path:
    return write_images(tmp_path / "images")


@pytest.fixture
def before(tmp_path: Path, images: Path) -> Path:
    return write_run(tmp_path / "vanilla", asr_unsafe=2 / 3, image_root=images)


@pytest.fixture
def after(tmp_path: Path, images: Path) -> Path:
    return write_run(
        tmp_path / "posthoc", asr_unsafe=0.1, refuse=True, image_root=images, model="tiny-posthoc"
    )


def test_every_number_of_metrics_json_is_in_the_html_exactly(tmp_path: Path, before: Path) -> None:
    files = write_report([before], tmp_path / "out")
    assert files.main == tmp_path / "out" / "report.html"
    assert (tmp_path / "out" / "report.md").is_file()
    metrics = json.loads((before / "metrics.json").read_text())
    cells = _cells(parse(files.main.read_text(encoding="utf-8")))
    for row in metrics["metrics"]:
        attrs = cells[_key(row, "vanilla")]
        # Exact: the attribute must parse back to the very same double (0.1 + 0.2 included).
        assert float(attrs["data-value"] or "nan") == row["value"]
        assert float(attrs["data-ci-low"] or "nan") == row["ci_low"]
        assert float(attrs["data-ci-high"] or "nan") == row["ci_high"]
        assert int(attrs["data-n"] or -1) == row["n"]
        assert attrs["data-judge-version"] == row["judge_version"]
    assert len(cells) == len(metrics["metrics"])


def test_report_names_what_produced_the_numbers(tmp_path: Path, before: Path) -> None:
    html = write_report([before], tmp_path / "out").main.read_text(encoding="utf-8")
    text = " ".join(parse(html).text)
    for expected in (
        "tiny-vanilla",
        "vlguard-test",
        "original",
        "refusal (default-1)",
        "refusal-paper (paper-1)",
        "0123abc",
    ):
        assert expected in text
    assert "Content warning" in text
    assert "llm-judge (pairwise-1)" in text and "n=2, 1 errors" in text  # helpfulness, with its errors


def test_comparison_shows_deltas_against_the_first_run(tmp_path: Path, before: Path, after: Path) -> None:
    html = write_report([before, after], tmp_path / "out").main.read_text(encoding="utf-8")
    page = parse(html)
    before_rows = {
        _key(r, "vanilla")[1:]: r for r in json.loads((before / "metrics.json").read_text())["metrics"]
    }
    after_rows = {
        _key(r, "posthoc")[1:]: r for r in json.loads((after / "metrics.json").read_text())["metrics"]
    }
    deltas = [attrs for _, attrs in page.elements if "data-delta" in attrs]
    assert len(deltas) == len(after_rows)
    for attrs in deltas:
        assert attrs["data-delta-run"] == "posthoc"
        key = (
            attrs["data-judge"],
            attrs["data-subset"],
            attrs["data-metric"],
            attrs["data-group"],
            attrs.get("data-group-value"),
        )
        assert float(attrs["data-delta"] or "nan") == after_rows[key]["value"] - before_rows[key]["value"]
    text = " ".join(page.text)
    assert "Before / after" in text and "baseline (before)" in text
    # ASR fell from 66.7% to 10.0%: reported as better, in percentage points.
    assert "66.7% → 10.0%" in text
    assert "-56.7 pp, better" in text


def test_comparison_warns_when_settings_or_judge_versions_differ(
    tmp_path: Path, before: Path, images: Path
) -> None:
    other = write_run(tmp_path / "other", image_root=images, image_mode="blank", judge_version="default-2")
    html = write_report([before, other], tmp_path / "out").main.read_text(encoding="utf-8")
    text = " ".join(parse(html).text)
    assert "Image mode differs" in text
    assert "'default-1' in vanilla but 'default-2' in other" in text


def test_model_output_and_data_text_are_escaped(tmp_path: Path, before: Path) -> None:
    out = tmp_path / "out"
    html = write_report([before], out).main.read_text(encoding="utf-8")
    page = parse(html)
    assert not any(tag in ("script", "iframe", "object", "embed") for tag, _ in page.elements)
    assert not any(any(name.startswith("on") for name in attrs) for _, attrs in page.elements)
    # The text survives as text, exactly.
    text = "".join(page.text)
    assert XSS_RESPONSE in text and XSS_PROMPT in text
    # Nothing may be fetched from outside: every image is a data URI, and a CSP forbids the rest.
    for tag, attrs in page.elements:
        if tag == "img":
            assert (attrs["src"] or "").startswith("data:image/")
        assert not (attrs.get("href") or "#").lstrip("#").startswith(("http", "//", "javascript"))
    assert "default-src 'none'" in html
    # Run labels (folder names, --label) are text too, also inside attributes.
    label = '"><script>alert(5)</script>'
    labelled = parse(
        write_report([before], out / "labelled", labels=[label]).main.read_text(encoding="utf-8")
    )
    assert not any(tag == "script" for tag, _ in labelled.elements)
    assert {a["data-run"] for _, a in labelled.elements if "data-value" in a} == {label}
    # Markdown: the response stays inside a code fence (its own ``` cannot close the fence).
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert "````text\n" + XSS_RESPONSE + "\n````" in markdown
    assert "<script>" not in _outside_fences(markdown)


def _outside_fences(markdown: str) -> str:
    """The markdown text that is not inside a fenced code block (what a viewer would render)."""
    outside, fence = [], None
    for line in markdown.splitlines():
        stripped = line.strip()
        if fence is None and stripped.startswith("```"):
            fence = stripped[: len(stripped) - len(stripped.lstrip("`"))]
        elif fence is not None and stripped == fence:
            fence = None
        elif fence is None:
            outside.append(line)
    return "\n".join(outside)


def test_examples_have_thumbnails_from_the_benchmark_source(
    tmp_path: Path, before: Path, after: Path
) -> None:
    html = write_report([before, after], tmp_path / "out", examples_per_subset=2).main.read_text(
        encoding="utf-8"
    )
    page = parse(html)
    examples = [attrs["data-sample-id"] for _, attrs in page.elements if "data-sample-id" in attrs]
    assert len(examples) == 2 + 2 + 2  # two per subset, three subsets
    thumbs = [a for t, a in page.elements if t == "img" and "image of sample" in (a.get("alt") or "")]
    assert len(thumbs) == len(examples)
    # Examples whose verdict changed between the runs come first: every unsafe sample changed here.
    assert "verdict changed" in "".join(page.text)


def test_missing_images_are_reported_not_fatal(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", image_root=tmp_path / "gone")
    html = write_report([run], tmp_path / "out").main.read_text(encoding="utf-8")
    page = parse(html)
    assert "Images are not available" in "".join(page.text)
    assert not [a for t, a in page.elements if t == "img" and "image of sample" in (a.get("alt") or "")]


def test_charts_are_valid_pngs_and_deterministic(before: Path, after: Path) -> None:
    runs = [load_run(before), load_run(after)]
    charts = build_charts(runs)
    slugs = [c.slug for c in charts]
    # One headline chart per judge, one per-category chart per judge (only unsafe ASR has categories).
    assert slugs == [
        "headline-refusal",
        "headline-refusal-paper",
        "headline-llm-judge",
        "category-refusal-unsafe-attack_success_rate",
        "category-refusal-paper-unsafe-attack_success_rate",
    ]
    for chart in charts:
        with Image.open(io.BytesIO(chart.png)) as image:
            assert image.format == "PNG" and image.width > 100
    assert [c.png for c in build_charts(runs)] == [c.png for c in charts]


def test_json_export_matches_metrics_json(tmp_path: Path, before: Path, after: Path) -> None:
    files = write_report([before, after], tmp_path / "out", fmt="json")
    data = json.loads(files.main.read_text())
    assert data["baseline"] == "vanilla"
    exported = {_key(r, r["run"]): r for r in data["metrics"]}
    for run, folder in (("vanilla", before), ("posthoc", after)):
        for row in json.loads((folder / "metrics.json").read_text())["metrics"]:
            got = exported[_key(row, run)]
            assert got["value"] == row["value"] and got["n"] == row["n"]
    assert {r["kappa"] for r in data["agreement"]} == {0.8123456789}


def test_csv_export_round_trips_values(tmp_path: Path, before: Path, after: Path) -> None:
    files = write_report([before, after], tmp_path / "out", fmt="csv")
    assert [p.name for p in files.files] == ["metrics.csv", "agreement.csv", "runs.csv"]
    with files.main.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    expected = json.loads((after / "metrics.json").read_text())["metrics"]
    posthoc = {
        (r["judge"], r["subset"], r["metric"], r["group"], r["group_value"] or None): r
        for r in rows
        if r["run"] == "posthoc"
    }
    assert len(posthoc) == len(expected)
    for row in expected:
        got = posthoc[(row["judge"], row["subset"], row["metric"], row["group"], row["group_value"])]
        assert float(got["value"]) == row["value"]
        assert got["delta_vs_baseline"] != ""


def test_a_torn_last_line_is_ignored(tmp_path: Path, before: Path) -> None:
    with (before / "generations.jsonl").open("a", encoding="utf-8") as handle:
        handle.write('{"sample_id": "u9:unsafe", "respo')  # a run killed mid-write
    run = load_run(before)
    assert "u9:unsafe" not in run.generations and len(run.generations) == 7


def test_bad_run_folders_are_clear_errors(tmp_path: Path, before: Path) -> None:
    with pytest.raises(RunFolderError, match="run folder not found"):
        load_run(tmp_path / "nope")
    (before / "metrics.json").rename(before / "metrics.bak")
    with pytest.raises(RunFolderError, match=r"no metrics\.json"):
        load_run(before)
    data = json.loads((before / "metrics.bak").read_text())
    data["metrics"][3]["value"] = "high"
    (before / "metrics.json").write_text(json.dumps(data))
    with pytest.raises(DataValidationError, match=r"metrics\.json: record metrics\[3\], field 'value'"):
        load_run(before)


def test_cli_writes_the_report_and_exits_2_on_user_mistakes(
    tmp_path: Path, before: Path, after: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli"
    assert main(["report", str(before), str(after), "--out", str(out), "--label", "A", "--label", "B"]) == 0
    assert "wrote" in capsys.readouterr().out
    html = (out / "report.html").read_text(encoding="utf-8")
    assert 'data-run="A"' in html and 'data-run="B"' in html
    assert main(["report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "run folder not found" in err and "Traceback" not in err


@pytest.mark.slow
def test_report_of_a_real_evaluation_run(tmp_path: Path, tiny_model_dir: Path) -> None:
    """A run made by `run_eval` (tiny model, bundled sample, two judges) reports every number exactly."""
    from vlguard.data.sample import sample_dataset_dir
    from vlguard.evaluate import EvalConfig, run_eval

    run_dir = tmp_path / "run"
    metrics = run_eval(
        EvalConfig(
            model=str(tiny_model_dir),
            data=str(sample_dataset_dir()),
            image_mode="original",
            judges=("refusal", "refusal-paper"),
            max_new_tokens=4,
            run_dir=str(run_dir),
        ),
        progress=False,
    )
    files = write_report([run_dir], tmp_path / "out")
    page = parse(files.main.read_text(encoding="utf-8"))
    cells = _cells(page)
    assert len(cells) == len(metrics["metrics"]) > 0
    for row in metrics["metrics"]:
        assert float(cells[_key(row, "run")]["data-value"] or "nan") == row["value"]
    kappas = [a for _, a in page.elements if "data-kappa" in a]
    # One row overall and one per subset, for the one pair of judges.
    assert len(kappas) == len(metrics["agreement"]) == 4
    assert {a["data-subset"] for a in kappas} == {"all", "unsafe", "safe_unsafe", "safe_safe"}
    # The bundled sample has images: every example shows its thumbnail.
    examples = [a for _, a in page.elements if "data-sample-id" in a]
    thumbs = [a for t, a in page.elements if t == "img" and "image of sample" in (a.get("alt") or "")]
    assert len(examples) == 9 and len(thumbs) == 9


def test_a_run_without_generations_still_gets_a_summary(tmp_path: Path, before: Path) -> None:
    for name in ("samples.jsonl", "generations.jsonl"):
        (before / name).unlink()
    html = write_report([before], tmp_path / "out").main.read_text(encoding="utf-8")
    page = parse(html)
    assert len(_cells(page)) == len(json.loads((before / "metrics.json").read_text())["metrics"])
    assert "No examples" in "".join(page.text)


def test_cli_default_output_is_outside_the_run_folders(
    tmp_path: Path, before: Path, after: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["report", str(before), str(after), "--format", "json"]) == 0
    assert (tmp_path / "runs" / "reports" / "vanilla-vs-posthoc" / "report.json").is_file()
    assert not (before / "report").exists()
