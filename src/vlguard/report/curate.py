"""The review page of a curated folder (``vlguard curate``): every sample and every reject, to scan before
training on them.

``write_curate_report(FOLDER, out)`` writes one self-contained ``report.html``: the accepted samples
grouped by category (harmful images by their category, then the safe images), each with its image
(embedded; harmful ones blurred until hovered, as in the evaluation report), its label and who gave it,
its pairs, and each judge's verdict on them; then the rejects, by the stage that rejected them, with
their reasons, near-duplicate matches and the writer's raw answers. It uses the evaluation report's
style sheet, content warning and Content-Security-Policy (no script, no request). Every sample and
verdict carries ``data-*`` attributes with the folder's exact values, for the browser test.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from vlguard import __version__
from vlguard.data.vlguard import SUBSET_OF_KEY
from vlguard.errors import ImageLoadError, VLGuardError
from vlguard.fileio import atomic_write_text, check_output_dir
from vlguard.report.document import CONTENT_WARNING
from vlguard.report.examples import thumbnail
from vlguard.report.html import CSP, e
from vlguard.report.tables import subset_label

SAFE_GROUP = "safe images"
STAGE_TITLES = {
    "image": "the image could not be read",
    "label": "labelling failed",
    "write": "writing the pairs failed",
    "check": "the checks failed",
}
PAIR_ORDER = {"instruction": 0, "safe_instruction": 1, "unsafe_instruction": 2}
EXTRA_CSS = """
.reasons { color: var(--worse); margin: 4px 0; padding-left: 18px; }
.pair { margin: 8px 0 12px; }
.pair-kind { font-size: 12px; color: var(--muted); text-transform: uppercase; letter-spacing: 0.03em; }
.counts td { text-align: right; }
.counts td:first-child { text-align: left; }
"""


def _style_sheet() -> str:
    # The evaluation report's style sheet, read from the same package file (report.html's loader is private).
    return resources.files("vlguard.report").joinpath("templates/report.css").read_text(encoding="utf-8")


class _Thumbnails:
    """Embedded thumbnails from the dataset's images (accepted) or the original folder (rejects)."""

    def __init__(self, dataset_images: Path, original: Path | None) -> None:
        from vlguard.data.images import FolderImageSource

        self.sources = []
        for root in (dataset_images, original):
            if root is not None and root.is_dir():
                try:
                    self.sources.append(FolderImageSource(root))
                except ImageLoadError:
                    continue

    def html(self, path: str, image_id: str, sensitive: bool) -> str:
        for source in self.sources:
            try:
                if not source.exists(path):
                    continue
            except ImageLoadError:
                continue
            made = thumbnail(source, path)
            if made is not None:
                data, mime = made
                uri = f"data:{mime};base64," + base64.b64encode(data).decode("ascii")
                blur = " sensitive" if sensitive else ""
                hint = '<div class="muted">blurred: hover to show</div>' if sensitive else ""
                return (
                    f'<div class="thumb{blur}" tabindex="0"><img src="{uri}" '
                    f'alt="image {e(path)}" data-thumb-for="{e(image_id)}">{hint}</div>'
                )
        return '<div class="thumb"><div class="noimg">image not available</div></div>'


def _verdicts_html(verdicts: dict[str, Any], subset: str) -> str:
    found = []
    for check, verdict in sorted((verdicts.get(subset) or {}).items()):
        passed = bool(verdict.get("passed"))
        found.append(
            f'<span class="label {"good" if passed else "bad"}" data-check="{e(check)}" '
            f'data-judge="{e(verdict.get("judge", ""))}" data-label="{e(verdict.get("label", ""))}" '
            f'data-passed="{"true" if passed else "false"}">'
            f"{e(check)}: {e(verdict.get('label', ''))}</span>"
        )
    return "".join(found)


def _pairs_html(pairs: Sequence[dict[str, Any]], verdicts: dict[str, Any]) -> str:
    parts = []
    for pair in sorted(pairs, key=lambda p: PAIR_ORDER.get(p["key"], 9)):
        subset = SUBSET_OF_KEY.get(pair["key"], pair["key"])
        parts.append(
            f'<div class="pair" data-subset="{e(subset)}"><div class="pair-kind">{e(subset_label(subset))}</div>'
            f'<div class="prompt">{e(pair["instruction"])}</div>'
            f'<div class="answer">{_verdicts_html(verdicts, subset)}<pre>{e(pair["response"])}</pre></div></div>'
        )
    return "".join(parts)


def _label_text(label: dict[str, Any] | None) -> str:
    if label is None:
        return "not labelled"
    what = "safe" if label["safe"] else f"harmful: {label['category']} / {label['subcategory']}"
    return f"{what} (by {label['source']})"


def _reasons_html(reasons: Sequence[dict[str, Any]]) -> str:
    items = []
    for reason in reasons:
        where = f" ({subset_label(reason['subset'])})" if reason.get("subset") else ""
        match = reason.get("match")
        detail = (
            f": {e(match['source'])} {e(match['key'])}, similarity {match['similarity']:.2f}: "
            f"“{e(match['text'])}”"
            if isinstance(match, dict)
            else ""
        )
        items.append(
            f'<li data-reason-check="{e(reason.get("check", ""))}">{e(reason["reason"])}{e(where)}{detail}</li>'
        )
    return f'<ul class="reasons">{"".join(items)}</ul>' if items else ""


def _sample_html(image: Any, thumbs: _Thumbnails) -> str:
    label = image.label
    harmful = label is not None and not label["safe"]
    category = "" if label is None or label["safe"] else label["category"]
    raw = ""
    if image.status == "rejected" and any(a.get("problem") for a in image.attempts):
        raw = (
            f"<details><summary>the writer's answers ({len(image.attempts)} attempt(s))</summary>"
            + "".join(
                f'<div class="muted">{e(a.get("problem") or "usable")}</div>'
                f'<pre class="raw">{e(a.get("raw", ""))}</pre>'
                for a in image.attempts
            )
            + "</details>"
        )
    return (
        f'<div class="example" data-image-id="{e(image.image_id)}" data-status="{e(image.status)}" '
        f'data-stage="{e(image.stage or "")}" data-category="{e(category)}">'
        f"{thumbs.html(image.image, image.image_id, harmful or image.status == 'rejected')}<div>"
        f'<div class="muted">id {e(image.image_id)} · image {e(image.image)} · {e(_label_text(label))}</div>'
        f"{_reasons_html(image.reasons)}{_pairs_html(image.pairs, image.verdicts)}{raw}</div></div>"
    )


def _counts_table(groups: dict[str, list[Any]], rejected: dict[str, list[Any]]) -> str:
    rows = "".join(
        f'<tr data-group="{e(name)}"><td>{e(name)}</td><td data-accepted="{len(items)}">{len(items)}</td></tr>'
        for name, items in groups.items()
    )
    rows += "".join(
        f'<tr data-rejected-stage="{e(stage)}"><td>rejected: {e(STAGE_TITLES.get(stage, stage))}</td>'
        f'<td data-rejected="{len(items)}">{len(items)}</td></tr>'
        for stage, items in rejected.items()
    )
    return f'<table class="counts" id="counts"><tr><th>Group</th><th>Images</th></tr>{rows}</table>'


def _settings_html(manifest: dict[str, Any]) -> str:
    fields = manifest.get("result_fields", {})
    writer = fields.get("writer", {})
    usage = manifest.get("usage", {}).get("total", {})
    cost = (manifest.get("cost") or {}).get("usd")
    taxonomy = manifest.get("taxonomy", {})
    rows = [
        ("writer", f"{writer.get('model')} ({writer.get('backend')})"),
        ("prompts", ", ".join(f"{k} {v}" for k, v in fields.get("prompts", {}).items())),
        ("taxonomy", f"{taxonomy.get('name')} ({taxonomy.get('source')}), sha256 {str(fields.get('taxonomy_sha256'))[:12]}"),
        ("checks", ", ".join(f"{c['name']} ({c['judge']} {c['version']})" for c in fields.get("checks", []))),
        ("near-duplicates", ", ".join(f"{k} {v}" for k, v in fields.get("near_duplicates", {}).items())),
        ("seed", str(fields.get("seed"))),
        ("writer usage", f"{usage.get('calls', 0)} calls, {usage.get('prompt_tokens', 0)} prompt + {usage.get('completion_tokens', 0)} completion tokens"),
        ("cost", "not priced (no --price-per-million-tokens)" if cost is None else f"${cost:.4f}"),
    ]  # fmt: skip
    body = "".join(f"<tr><td>{e(k)}</td><td>{e(v)}</td></tr>" for k, v in rows)
    return f'<table class="settings" id="settings">{body}</table>'


def render_curate_html(folder: str | Path, title: str | None = None) -> str:
    """The review page of a curated folder as one HTML document."""
    from vlguard.curate.folder import CuratedFolder, is_curated_folder, read_images

    if not is_curated_folder(folder):
        raise VLGuardError(f"{folder}: not a folder written by vlguard curate (no manifest of kind curate)")
    curated = CuratedFolder(folder)
    manifest = curated.run.read_manifest() or {}
    images = read_images(curated)
    original = manifest.get("result_fields", {}).get("images_dir")
    thumbs = _Thumbnails(curated.images, Path(original) if isinstance(original, str) else None)
    order = [c["name"] for c in manifest.get("taxonomy", {}).get("categories", [])]
    groups: dict[str, list[Any]] = {name: [] for name in order}
    rejected: dict[str, list[Any]] = {stage: [] for stage in STAGE_TITLES}
    pending = []
    for image in images:
        if image.status == "accepted":
            label = image.label or {}
            groups.setdefault(SAFE_GROUP if label.get("safe") else str(label.get("category")), []).append(
                image
            )
        elif image.status == "rejected":
            rejected.setdefault(image.stage or "check", []).append(image)
        else:
            pending.append(image)
    groups = {name: items for name, items in groups.items() if items}
    if SAFE_GROUP in groups:  # harmful categories first, in taxonomy order, then the safe images
        groups[SAFE_GROUP] = groups.pop(SAFE_GROUP)
    rejected = {stage: items for stage, items in rejected.items() if items}
    title = title or f"Curated data: {Path(folder).resolve().name}"
    sections = [("summary", "Summary", _counts_table(groups, rejected) + _settings_html(manifest))]
    if pending:
        sections[0] = (
            "summary",
            "Summary",
            f"<p class='incomplete' id='pending'>{len(pending)} image(s) are not finished: rerun the "
            "same vlguard curate command to finish them.</p>" + sections[0][2],
        )
    for index, (name, items) in enumerate(groups.items()):
        sections.append(
            (f"group-{index}", f"{name} ({len(items)})", "".join(_sample_html(i, thumbs) for i in items))
        )
    if not groups:
        sections.append(("samples", "Samples", "<p class='note'>No sample was accepted.</p>"))
    reject_html = "".join(
        f"<h3 data-stage-heading='{e(stage)}'>{e(STAGE_TITLES.get(stage, stage))} ({len(items)})</h3>"
        + "".join(_sample_html(i, thumbs) for i in items)
        for stage, items in rejected.items()
    )
    sections.append(("rejects", "Rejects", reject_html or "<p>No image was rejected.</p>"))
    nav = "".join(f'<li><a href="#{sid}">{e(t)}</a></li>' for sid, t, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{e(t)}</h2>{html}</section>' for sid, t, html in sections)
    generated = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)}</title><style>{_style_sheet()}{EXTRA_CSS}</style></head><body>"
        f"<header><h1>{e(title)}</h1>"
        f"<p class='meta'>{len(images)} image(s) in {e(str(folder))}: review them before training.</p>"
        f'<p class="content-warning" role="note" id="content-warning">{e(CONTENT_WARNING)}</p>'
        f"<nav><ul>{nav}</ul></nav></header>{body}"
        f"<footer>Generated by vlguard {e(__version__)} at {e(generated)}.</footer></body></html>\n"
    )


def write_curate_report(folder: str | Path, out_dir: str | Path, *, title: str | None = None) -> Path:
    """Write ``report.html`` (the review page) into ``out_dir``; returns its path."""
    out = check_output_dir(out_dir, "--out folder")
    html = render_curate_html(folder, title)
    return atomic_write_text(out / "report.html", html)
