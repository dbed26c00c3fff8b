"""Agreement of the refusal judge (default and paper modes) with VLGuard's own labelled responses.

    python bench/judge_accuracy.py [--data ../shared/data/vlguard] [--show 20] [--xstest FILE.csv ...]

VLGuard's responses are curated: every response to an unsafe image and to an ``unsafe_instruction``
is a refusal; every response to a ``safe_instruction`` and every GPT-4V reference answer
(``gpt4_safe_safes.json``) is a compliance. A judge "agrees" when it calls a refusal ``refusal`` and a
compliance ``compliance`` or ``partial_refusal`` (a partial refusal still answers). Also scores the
hand-written hard cases of ``tests/test_judges_refusal.py`` and, held out (never looked at while building
the judge), AdvBench's target strings ("Sure, here is ..."), which are compliant openings. ``--show N`` prints N disagreements per set.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import sys
from pathlib import Path

from vlguard.judges.base import JudgeInput
from vlguard.judges.refusal import RefusalJudge

ROOT = Path(__file__).resolve().parents[1]


def vlguard_responses(data_dir: Path) -> dict[str, list[tuple[str, bool]]]:
    """(response, is_refusal) per labelled set of VLGuard."""
    sets: dict[str, list[tuple[str, bool]]] = {}
    for split in ("train", "test"):
        records = json.loads((data_dir / f"{split}.json").read_text())
        for record in records:
            for pair in record["instr-resp"]:
                if not record["safe"]:
                    sets.setdefault(f"{split} unsafe image (refusal)", []).append((pair["response"], True))
                elif "unsafe_instruction" in pair:
                    sets.setdefault(f"{split} unsafe_instruction (refusal)", []).append(
                        (pair["response"], True)
                    )
                else:
                    sets.setdefault(f"{split} safe_instruction (compliance)", []).append(
                        (pair["response"], False)
                    )
    refs = json.loads((data_dir / "gpt4_safe_safes.json").read_text())
    sets["gpt4_safe_safes (compliance)"] = [(r["response"], False) for r in refs]
    return sets


def advbench_targets(path: Path) -> list[tuple[str, bool]]:
    """AdvBench's 520 target strings ("Sure, here is ..."): compliant openings, never used to build the judge."""
    with path.open(newline="", encoding="utf-8") as handle:
        return [(row["target"], False) for row in csv.DictReader(handle)]


def xstest_completions(path: Path) -> list[tuple[str, bool]]:
    """XSTest v2 model completions with human labels (paul-rottger/exaggerated-safety, ``model_completions/``).

    Only the rows whose final label is ``1_full_compliance`` or ``2_full_refusal``: XSTest's
    ``3_partial_refusal`` mixes "refuse, then offer an alternative" (our ``refusal``) with "refuse, then
    comply" (our ``partial_refusal``), so it has no single counterpart.
    """
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [
        (row["completion"], row["final_label"].startswith("2"))
        for row in rows
        if row["final_label"].startswith(("1", "2"))
    ]


def hard_cases() -> list[tuple[str, bool]]:
    """The hand-written cases of the test file: (response, is_refusal); partial refusals count as answered."""
    spec = importlib.util.spec_from_file_location("hard_cases", ROOT / "tests" / "test_judges_refusal.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [(text, label == "refusal") for text, label in module.HARD_CASES]


def agreement(judge: RefusalJudge, items: list[tuple[str, bool]], show: int) -> tuple[int, int]:
    inputs = [JudgeInput(sample_id=str(i), prompt="", response=text) for i, (text, _) in enumerate(items)]
    judgments = judge.judge(inputs)
    agree = 0
    shown = 0
    for (text, is_refusal), judgment in zip(items, judgments, strict=True):
        if (judgment.label == "refusal") == is_refusal:
            agree += 1
        elif shown < show:
            shown += 1
            print(f"    [{judgment.label}] {text[:300]!r}")
    return agree, len(items)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "vlguard")
    parser.add_argument("--show", type=int, default=0, help="print this many disagreements per set")
    parser.add_argument(
        "--xstest",
        type=Path,
        action="append",
        default=[],
        help="an XSTest v2 completions CSV with human labels (repeatable), e.g. xstest_v2_completions_gpt4.csv",
    )
    args = parser.parse_args()
    if not (args.data / "test.json").is_file():
        print(f"VLGuard annotations not found in {args.data}", file=sys.stderr)
        return 2
    sets = vlguard_responses(args.data)
    advbench = args.data.parent / "advbench" / "harmful_behaviors.csv"
    if advbench.is_file():
        sets["advbench targets (compliance, held out)"] = advbench_targets(advbench)
    for path in args.xstest:
        sets[f"xstest {path.stem.removeprefix('xstest_v2_completions_')} (human labels)"] = (
            xstest_completions(path)
        )
    sets["hand-written hard cases (tests)"] = hard_cases()
    judges = [RefusalJudge("default"), RefusalJudge("paper")]
    print(f"{'set':42} {'n':>6} " + " ".join(f"{j.name:>14}" for j in judges))
    totals = {j.name: [0, 0] for j in judges}
    for name, items in sets.items():
        cells = []
        for judge in judges:
            if args.show:
                print(f"  {judge.name} disagreements on {name}:")
            agree, n = agreement(judge, items, args.show)
            if not name.startswith(("hand-written", "advbench", "xstest")):
                totals[judge.name][0] += agree
                totals[judge.name][1] += n
            cells.append(f"{100 * agree / n:13.1f}%")
        print(f"{name:42} {len(items):>6} " + " ".join(cells))
    n_all = next(iter(totals.values()))[1]
    print(
        f"{'all VLGuard responses':42} {n_all:>6} "
        + " ".join(f"{100 * a / n:13.1f}%" for a, n in totals.values())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
