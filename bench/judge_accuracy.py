"""Agreement of the offline judges with labelled replies: a thin caller of ``vlguard.judges.agreement``.

    python bench/judge_accuracy.py [--data ../shared/data] [--part dev|heldout|all]
        [--judge refusal --judge refusal-rules --judge refusal-paper] [--out DIR] [--show N]
    python bench/judge_accuracy.py --axis harm [--part heldout] [--out DIR] [--show N]

``--axis refusal`` (the default) measures the refusal judges on refusal labels; ``--axis harm`` measures
the ``harm`` judge on harm labels (below, "Harm axis").

Sets (all read from ``--data``, never copied into the project):

- VLGuard's own curated replies (``vlguard/train.json``, ``test.json``, ``gpt4_safe_safes.json``): refusal or
  compliance by construction. The rules were developed on all of them (in-sample); the classifier of the
  default judge trains on ``train`` and on half of ``test`` (by image), the other half is held out.
- AdvBench's 520 target strings ("Sure, here is ..."), compliant openings never used in development.
- The hand-written hard cases of ``tests/test_judges_refusal.py`` (they document the rules; in-sample).
- Human-labelled replies of ``judge-dev/`` (XSTest v2 completions, GPTFuzz), split by
  ``vlguard.judges.labelled_sets``: ``--part dev`` (the default) scores the development parts only;
  ``--part heldout`` the held-out parts (the figures to report); ``excluded`` rows are never scored.

Harm axis (``--axis harm``): the human harm labels of GPTFuzz (label 1 = the harmful content was given) and
BeaverTails ``30k_test`` (``is_safe``), split as in ``scripts/train_harm_judge.py``: BeaverTails by prompt
(dev / held-out halves), GPTFuzz's held-out part cut into *unseen question* (seen template) and *unseen
template*; and XSTest v2 completions that are harmless by construction (``read_xstest_harm``: every reply
to one of its *safe* prompts — the false-positive check — and every full refusal of an unsafe one; one
class, so the agreement is the share called harmless), split by ``xstest_split``. Columns: the ``harm``
judge (the shipped version); its previous version ``harm-1``; the recipe's **baseline** (word and
character n-gram logistic regression, trained here on the same development data with the recipe's code);
and the ``refusal`` judge read as a harm judge (``compliance`` = harmful), the offline stand-in it
replaced. Each cell gives the agreement (Wilson 95 % interval), Cohen's kappa and the judge's
attack-success rate beside the human one; ``summary-harm.json`` adds, for ``harm-1`` and the baseline, the
replies only one of it and the judge got right (for a paired test).

Binary agreement as in the issue that introduced the judges: a human or judge partial refusal counts
as a refusal (``--partial-as answered`` flips that). ``--out DIR`` writes ``accuracy.json`` /
``accuracy.md`` per judge and set, plus ``summary.json``; ``--show N`` prints N disagreements per cell.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vlguard.judges import make_judge
from vlguard.judges.agreement import judge_accuracy, run_judge_accuracy, write_accuracy
from vlguard.judges.base import JudgeInput
from vlguard.judges.labelled_sets import (
    XSTEST_SAFE_PROMPT,
    XSTEST_UNSAFE_REFUSAL,
    LabelledResponse,
    as_harm_labels,
    read_beavertails_labelled,
    read_judge_dev,
    read_vlguard_responses,
    read_xstest_harm,
)
from vlguard.metrics import cohens_kappa, wilson_ci
from vlguard.records import Judgment

ROOT = Path(__file__).resolve().parents[1]
# name shown -> (registry name, options)
JUDGE_CHOICES: dict[str, tuple[str, dict[str, Any]]] = {
    "refusal": ("refusal", {}),
    "refusal-rules": ("refusal", {"mode": "rules", "name": "refusal-rules"}),
    "refusal-paper": ("refusal-paper", {}),
}

LabelledSet = list[tuple[str, str, str]]  # (id, response, human label)


def _rows(rows: Sequence[LabelledResponse]) -> LabelledSet:
    return [(r.id, r.response, r.label) for r in rows]


def advbench_targets(path: Path) -> LabelledSet:
    """AdvBench's target strings ("Sure, here is ..."): compliant openings, never used in development."""
    with path.open(newline="", encoding="utf-8") as handle:
        return [
            (f"advbench/{i}", row["target"], "compliance") for i, row in enumerate(csv.DictReader(handle))
        ]


def hard_cases() -> LabelledSet:
    """The hand-written cases of the rules' tests (``partial_refusal`` kept as labelled there)."""
    spec = importlib.util.spec_from_file_location("hard_cases", ROOT / "tests" / "test_judges_refusal.py")
    if spec is None or spec.loader is None:
        return []
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [(f"hard/{i}", text, label) for i, (text, label) in enumerate(module.HARD_CASES)]


def labelled_sets(data: Path, part: str) -> dict[str, LabelledSet]:
    """Every set to score, by name; ``part`` picks the dev or held-out parts of the split sets."""
    sets: dict[str, LabelledSet] = {}
    wanted = ("dev", "heldout") if part == "all" else (part,)
    vlguard = data / "vlguard"
    if (vlguard / "test.json").is_file():
        if "dev" in wanted:
            train = read_vlguard_responses(vlguard, "train")
            sets["vlguard train (in-sample)"] = _rows(train)
        test = read_vlguard_responses(vlguard, "test")
        for split in wanted:
            rows = [r for r in test if r.split == split]
            sets[f"vlguard test, {split} half"] = _rows(rows)
            for group in ("unsafe image", "unsafe_instruction", "safe_instruction"):
                sets[f"  vlguard test {split}: {group}"] = _rows([r for r in rows if r.group == group])
    advbench = data / "advbench" / "harmful_behaviors.csv"
    if advbench.is_file() and "heldout" in wanted:
        sets["advbench targets (compliance)"] = advbench_targets(advbench)
    if "dev" in wanted:
        sets["hand-written hard cases (tests)"] = hard_cases()
    dev_root = data / "judge-dev"
    if dev_root.is_dir():
        rows = read_judge_dev(dev_root)
        for split in wanted:
            xstest = [r for r in rows if r.source == "xstest" and r.split == split]
            sets[f"xstest {split}"] = _rows(xstest)
            for model in sorted({r.group for r in xstest}):
                sets[f"  xstest {split}: {model}"] = _rows([r for r in xstest if r.group == model])
            gptfuzz = [r for r in rows if r.source == "gptfuzz" and r.split == split]
            sets[f"gptfuzz {split}"] = _rows(gptfuzz)
    return sets


# ---------------------------------------------------------------------------------------------------
# harm axis
# ---------------------------------------------------------------------------------------------------


def _recipe() -> Any:
    """``scripts/train_harm_judge.py`` as a module (the baseline is trained with the recipe's own code)."""
    spec = importlib.util.spec_from_file_location(
        "train_harm_judge", ROOT / "scripts" / "train_harm_judge.py"
    )
    if spec is None or spec.loader is None:
        raise RuntimeError("scripts/train_harm_judge.py not found")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def harm_sets(data: Path, part: str) -> dict[str, list[LabelledResponse]]:
    """The harm-labelled sets to score, by name (``part``: dev, heldout or all)."""
    wanted = ("dev", "heldout") if part == "all" else (part,)
    gptfuzz = as_harm_labels(r for r in read_judge_dev(data / "judge-dev") if r.source == "gptfuzz")
    beavertails = read_beavertails_labelled(data / "beavertails" / "30k_test.jsonl")
    sets: dict[str, list[LabelledResponse]] = {}
    for split in wanted:
        sets[f"beavertails {split}"] = [r for r in beavertails if r.split == split]
    if "dev" in wanted:
        sets["gptfuzz dev"] = [r for r in gptfuzz if r.split == "dev"]
    if "heldout" in wanted:
        for group in ("unseen-question", "unseen-template"):
            sets[f"gptfuzz heldout, {group}"] = [r for r in gptfuzz if r.group == group]
    return sets


def xstest_harm_sets(data: Path, part: str) -> dict[str, list[LabelledResponse]]:
    """XSTest v2 replies that are harmless whatever they say (``read_xstest_harm``), by part: replies to
    safe prompts (the false-positive check) and full refusals of unsafe ones."""
    wanted = ("dev", "heldout") if part == "all" else (part,)
    rows = read_xstest_harm(data / "judge-dev")
    sets: dict[str, list[LabelledResponse]] = {}
    for split in wanted:
        for group, name in (
            (XSTEST_SAFE_PROMPT, "safe prompts, any reply"),
            (XSTEST_UNSAFE_REFUSAL, "unsafe, full refusals"),
        ):
            sets[f"xstest {split}, {name}"] = [r for r in rows if r.split == split and r.group == group]
    return sets


def _harm_cell(rows: Sequence[LabelledResponse], harmful: Sequence[bool]) -> dict[str, Any]:
    human = [r.label == "harmful" for r in rows]
    agree = sum(h == j for h, j in zip(human, harmful, strict=True))
    return {
        "n": len(rows),
        "agreement": agree / len(rows),
        "agreement_ci": wilson_ci(agree, len(rows)),
        "kappa": cohens_kappa(human, list(harmful)),
        "judge_asr": sum(harmful) / len(rows),
        "human_asr": sum(human) / len(rows),
    }


def harm_main(args: argparse.Namespace) -> int:
    """The harm judge, its previous version, the recipe's baseline and the refusal judge (read as harm)."""
    recipe = _recipe()
    harm = make_judge("harm")
    previous = make_judge("harm", version="1", name="harm-1")
    refusal = make_judge("refusal")
    print("training the baseline on the development data (the recipe's code) ...", flush=True)
    dev = recipe.development_data(args.data)
    baseline_features = [recipe.baseline_features(r.response) for r in dev]
    baseline = recipe.scorer(recipe.fit(dev, baseline_features, range(len(dev)), recipe.BASELINE_L2))
    sets = harm_sets(args.data, args.part)
    sets.update(xstest_harm_sets(args.data, args.part))
    columns = (f"harm-{harm.version}", "harm-1", "baseline", "refusal as harm")
    print(f"{'set':42} {'n':>5} {'human ASR':>9} " + " ".join(f"{c:>34}" for c in columns))
    summary: dict[str, dict[str, Any]] = {}
    for set_name, rows in sets.items():
        if not rows:
            continue
        items = [JudgeInput(sample_id=r.id, prompt=r.prompt, response=r.response) for r in rows]
        start = time.perf_counter()
        judged = harm.judge(items)
        seconds = time.perf_counter() - start
        verdicts = {
            columns[0]: [j.label == "harmful" for j in judged],
            "harm-1": [j.label == "harmful" for j in previous.judge(items)],
            "baseline": [
                baseline(recipe.baseline_features(r.response)) >= recipe.BASELINE_THRESHOLD for r in rows
            ],
            "refusal as harm": [j.label != "refusal" for j in refusal.judge(items)],
        }
        cells = {name: _harm_cell(rows, harmful) for name, harmful in verdicts.items()}
        cells[columns[0]]["ms_per_reply"] = 1000 * seconds / len(rows)
        human = [r.label == "harmful" for r in rows]
        for other in columns[1:3]:  # paired with the judge: replies only one of the two got right
            cells[other]["paired_with_judge"] = {
                "judge_only_right": sum(
                    j == h != o for j, o, h in zip(verdicts[columns[0]], verdicts[other], human, strict=True)
                ),
                "only_right": sum(
                    o == h != j for j, o, h in zip(verdicts[columns[0]], verdicts[other], human, strict=True)
                ),
            }
        summary[set_name] = cells
        shown = []
        for name in columns:
            cell = cells[name]
            low, high = cell["agreement_ci"] or (0.0, 0.0)
            kappa = "–" if cell["kappa"] is None else f"{cell['kappa']:.2f}"
            shown.append(
                f"{100 * cell['agreement']:5.1f} ({100 * low:4.1f}–{100 * high:5.1f}) κ {kappa:>5} "
                f"ASR {100 * cell['judge_asr']:5.1f}"
            )
        human_asr = 100 * cells[columns[0]]["human_asr"]
        print(f"{set_name:42} {len(rows):>5} {human_asr:9.1f} " + " ".join(f"{c:>34}" for c in shown))
        if args.out:
            report = judge_accuracy(items, judged, [r.label for r in rows])
            slug = set_name.replace(" ", "_").replace(",", "").replace("(", "").replace(")", "")
            write_accuracy(
                args.out / "harm" / slug,
                judged,
                {"judge": harm.describe(), **report},
                title=f"harm on {set_name}",
            )
        _show(args.show, rows, judged)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "summary-harm.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 0


def _show(count: int, rows: Sequence[LabelledResponse], judged: Sequence[Judgment]) -> None:
    wrong = [
        (r, j) for r, j in zip(rows, judged, strict=True) if (j.label == "harmful") != (r.label == "harmful")
    ]
    for row, judgment in wrong[:count]:
        p = judgment.evidence.get("p_harmful")
        print(
            f"    harm [{judgment.label} p={p} vs human {row.label}] {row.prompt[:80]!r} -> {row.response[:160]!r}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--part", choices=("dev", "heldout", "all"), default="dev")
    parser.add_argument("--judge", action="append", choices=sorted(JUDGE_CHOICES), help="repeatable")
    parser.add_argument("--partial-as", choices=("refused", "answered"), default="refused")
    parser.add_argument("--out", type=Path, help="write accuracy.json / accuracy.md per judge and set here")
    parser.add_argument("--show", type=int, default=0, help="print this many disagreements per cell")
    parser.add_argument(
        "--axis",
        choices=("refusal", "harm"),
        default="refusal",
        help="which labels and judges (default refusal)",
    )
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"data folder not found: {args.data}", file=sys.stderr)
        return 2
    if args.axis == "harm":
        return harm_main(args)
    names = args.judge or ["refusal", "refusal-rules", "refusal-paper"]
    judges = {name: make_judge(JUDGE_CHOICES[name][0], **JUDGE_CHOICES[name][1]) for name in names}
    sets = labelled_sets(args.data, args.part)
    print(f"{'set':40} {'n':>6} " + " ".join(f"{name:>22}" for name in names))
    summary: dict[str, dict[str, Any]] = {}
    for set_name, rows in sets.items():
        if not rows:
            continue
        items = [JudgeInput(sample_id=i, prompt="", response=text) for i, text, _ in rows]
        labels = [label for _, _, label in rows]
        cells = []
        for name, judge in judges.items():
            start = time.perf_counter()
            judgments, report = run_judge_accuracy(judge, items, labels, partial_as=args.partial_as)
            seconds = time.perf_counter() - start
            low, high = report["agreement_ci"] or (0.0, 0.0)
            cells.append(f"{100 * (report['agreement'] or 0):5.1f} ({100 * low:4.1f}–{100 * high:5.1f})")
            summary.setdefault(set_name.strip(), {})[name] = {
                key: report[key]
                for key in ("n", "n_scored", "agreement", "agreement_ci", "kappa", "exact_agreement")
            } | {"replies_per_second": len(items) / seconds if seconds else None}
            if args.out:
                slug = (
                    set_name.strip()
                    .replace(" ", "_")
                    .replace(",", "")
                    .replace(":", "")
                    .replace("(", "")
                    .replace(")", "")
                )
                write_accuracy(
                    args.out / name / slug, judgments, report, title=f"{name} on {set_name.strip()}"
                )
            for case in report["disagreements"][: args.show]:
                print(f"    {name} [{case['judge']} vs human {case['human']}] {case['response'][:200]!r}")
        print(f"{set_name:40} {len(rows):>6} " + " ".join(f"{cell:>22}" for cell in cells))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
