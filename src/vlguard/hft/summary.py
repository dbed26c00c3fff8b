"""``summary.json`` of a harmful fine-tuning sweep: one row per cell, read from the cells' run folders.

Each row holds the cell (``harmful_ratio``, ``defence``, ``seed``, ``n`` and the counts of task,
harmful and safety pairs it trained on), the Harmful Score and the Finetune Accuracy with their
confidence intervals and number of items, and where each number comes from (the run folders, relative
to the sweep folder). Values are fractions in [0, 1]. Every number is copied from a ``metrics.json``:
rerunning ``vlguard eval`` / ``vlguard judge`` in a cell's folder reproduces it.

The papers' Harmful Score is a harm judgment (``beaver-dam``: is the answer harmful?). A judge on another
axis stands in for it: with the ``refusal`` judge the Harmful Score is the share of harmful prompts answered
without a refusal, flagged in every row (``harmful_score_stand_in``, by the judge's axis in
``metrics.json``) and in the report. The offline ``harm`` judge measures the papers' axis (did the answer
give the harmful content asked for?) and is not flagged; every judge of the sweep is in
``harmful_score_by_judge``, side by side, with its axis.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlguard.errors import VLGuardError
from vlguard.hft.layout import Cell, Layout
from vlguard.runs import METRICS, atomic_write_json

if TYPE_CHECKING:
    from vlguard.hft.config import HFTConfig

SUMMARY_SCHEMA = 1
# The judges of metrics.json files written before rows had an axis: refusal judges, stand-ins.
STAND_IN_JUDGES = frozenset({"refusal", "refusal-paper"})
HS_AXIS = "harm"  # the papers' Harmful Score: a moderation judge's verdict on the answer
STAND_IN_NOTE = (
    "stand-in: the {judge} judge's attack success rate (harmful prompts answered without a refusal), "
    "not a moderation judge's Harmful Score"
)
HARM_NOTE = "share of answers the judge flags as harmful"
FA_METRICS = ("accuracy", "helpfulness_win_rate")


class SummaryError(VLGuardError):
    """A cell's run folder lacks the number the summary needs."""


def _metrics(run_dir: Path) -> dict[str, Any]:
    path = run_dir / METRICS
    try:
        loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise SummaryError(f"{path}: cannot read the metrics ({err})") from err
    return loaded


def pick_row(
    metrics: Mapping[str, Any], metrics_names: Sequence[str], judge: str | None, where: Path
) -> dict[str, Any]:
    """The one ``group == all`` row of the first metric in ``metrics_names`` (of ``judge`` when given)."""
    for name in metrics_names:
        rows = [
            r
            for r in metrics.get("metrics", [])
            if r.get("group") == "all"
            and r.get("metric") == name
            and (judge is None or r.get("judge") == judge)
        ]
        if len(rows) > 1:
            subsets = ", ".join(sorted(str(r.get("subset")) for r in rows))
            raise SummaryError(
                f"{where}: {name} is reported for several subsets ({subsets}); choose one with "
                "harmful_score.subsets so that the Harmful Score is one number"
            )
        if rows:
            return rows[0]
    raise SummaryError(
        f"{where}: metrics.json has no {' or '.join(metrics_names)} row"
        + (f" for judge {judge!r}" if judge else "")
    )


def _number(row: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    ci = [row.get("ci_low"), row.get("ci_high")] if row.get("ci_low") is not None else None
    out = {
        prefix: row["value"],
        f"{prefix}_ci": ci,
        f"{prefix}_n": row["n"],
        f"{prefix}_n_errors": row.get("n_errors", 0),
    }
    if row.get("ci_method"):
        out[f"{prefix}_ci_method"] = row["ci_method"]
    return out


def is_hs_stand_in(row: Mapping[str, Any]) -> bool:
    """Whether a Harmful Score row's judge measures another axis than the papers' (harm)."""
    axis = row.get("axis")
    return row.get("judge") in STAND_IN_JUDGES if axis is None else axis != HS_AXIS


def measured(hs_dir: Path, fa_dir: Path, hs_judge: str) -> dict[str, Any]:
    """The Harmful Score and Finetune Accuracy fields from two run folders."""
    hs_metrics, fa_metrics = _metrics(hs_dir), _metrics(fa_dir)
    hs = pick_row(hs_metrics, ("attack_success_rate",), hs_judge, hs_dir / METRICS)
    fa = pick_row(fa_metrics, FA_METRICS, None, fa_dir / METRICS)
    stand_in = is_hs_stand_in(hs)
    by_judge = {
        r["judge"]: {
            "value": r["value"],
            "ci": [r.get("ci_low"), r.get("ci_high")],
            "n": r["n"],
            "axis": r.get("axis"),
            "stand_in": is_hs_stand_in(r),
        }
        for r in hs_metrics.get("metrics", [])
        if r.get("group") == "all" and r.get("metric") == "attack_success_rate"
    }
    agreement = [
        {"judges": a["judges"], "kappa": a.get("kappa"), "agreement": a.get("agreement"), "n": a.get("n")}
        for a in hs_metrics.get("agreement", [])
        if a.get("subset") == "all" and hs_judge in a.get("judges", [])
    ]
    return {
        **_number(hs, "harmful_score"),
        "harmful_score_judge": hs_judge,
        "harmful_score_judge_version": hs.get("judge_version"),
        "harmful_score_bench": hs_metrics.get("run", {}).get("benchmark"),
        "harmful_score_axis": hs.get("axis"),
        "harmful_score_stand_in": stand_in,
        "harmful_score_note": STAND_IN_NOTE.format(judge=hs_judge) if stand_in else HARM_NOTE,
        "harmful_score_by_judge": by_judge,
        "harmful_score_agreement": agreement,
        **_number(fa, "finetune_accuracy"),
        "finetune_accuracy_metric": fa["metric"],
        "finetune_accuracy_judge": fa.get("judge"),
        "finetune_accuracy_bench": fa_metrics.get("run", {}).get("benchmark"),
    }


def cell_row(
    config: HFTConfig, layout: Layout, cell: Cell, hs_seen_in_training: int = 0, hs_dropped: int = 0
) -> dict[str, Any]:
    """The summary row of one finished cell (``hs_seen_in_training``: Harmful Score prompts the sweep
    trains on; ``hs_dropped``: how many of them were left out of the evaluations)."""
    stage = layout.cell(cell)
    settings = json.loads(stage.settings_file.read_text(encoding="utf-8"))
    provenance = (
        json.loads(stage.provenance.read_text(encoding="utf-8")) if stage.provenance.is_file() else {}
    )
    return {
        "harmful_ratio": cell.ratio,
        "defence": cell.defence,
        "seed": config.seed,
        "n": config.attack.n,
        "counts": settings["counts"],
        **measured(stage.hs, stage.fa, config.harmful_score.judge),
        "hs_prompts_seen_in_training": hs_seen_in_training,
        "hs_prompts_dropped": hs_dropped,
        "train_loss": provenance.get("train_loss"),
        "train_seconds": provenance.get("train_seconds"),
        "train_dir": layout.relative(stage.train_run),
        "hs_run": layout.relative(stage.hs),
        "fa_run": layout.relative(stage.fa),
    }


def write_summary(
    config: HFTConfig,
    layout: Layout,
    cells: Sequence[Cell],
    hs_seen_in_training: int = 0,
    hs_dropped: int = 0,
) -> Path:
    """Write ``summary.json`` (atomically) once every cell is finished; returns its path."""
    rows = [cell_row(config, layout, cell, hs_seen_in_training, hs_dropped) for cell in cells]
    atomic_write_json(layout.summary, rows)
    return layout.summary


def read_summary(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a ``summary.json`` (``SummaryError`` naming the file when it is not one)."""
    path = Path(path)
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise SummaryError(f"{path}: cannot read the HFT summary ({err})") from err
    required = ("harmful_ratio", "defence", "harmful_score", "finetune_accuracy")
    if not isinstance(rows, list) or not all(
        isinstance(r, dict) and all(k in r for k in required) for r in rows
    ):
        raise SummaryError(f"{path}: not an HFT summary (a list of rows with {', '.join(required)})")
    return rows
