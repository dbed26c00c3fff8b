"""Agreement of refusal judges with labelled replies: a thin caller of ``vlguard.judges.agreement``.

    python bench/judge_accuracy.py [--data ../shared/data] [--part dev|heldout|all]
        [--judge refusal --judge refusal-rules --judge refusal-paper] [--out DIR] [--show N]

Sets (all read from ``--data``, never copied into the project):

- VLGuard's own curated replies (``vlguard/train.json``, ``test.json``, ``gpt4_safe_safes.json``): refusal or
  compliance by construction. The rules were developed on all of them (in-sample); the classifier of the
  default judge trains on ``train`` and on half of ``test`` (by image), the other half is held out.
- AdvBench's 520 target strings ("Sure, here is ..."), compliant openings never used in development.
- The hand-written hard cases of ``tests/test_judges_refusal.py`` (they document the rules; in-sample).
- Human-labelled replies of ``judge-dev/`` (XSTest v2 completions, GPTFuzz), split by
  ``vlguard.judges.labelled_sets``: ``--part dev`` (the default) scores the development parts only;
  ``--part heldout`` the held-out parts (the figures to report); ``excluded`` rows are never scored.

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
from vlguard.judges.agreement import run_judge_accuracy, write_accuracy
from vlguard.judges.base import JudgeInput
from vlguard.judges.labelled_sets import LabelledResponse, read_judge_dev, read_vlguard_responses

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--part", choices=("dev", "heldout", "all"), default="dev")
    parser.add_argument("--judge", action="append", choices=sorted(JUDGE_CHOICES), help="repeatable")
    parser.add_argument("--partial-as", choices=("refused", "answered"), default="refused")
    parser.add_argument("--out", type=Path, help="write accuracy.json / accuracy.md per judge and set here")
    parser.add_argument("--show", type=int, default=0, help="print this many disagreements per cell")
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"data folder not found: {args.data}", file=sys.stderr)
        return 2
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
