"""CPU throughput of the offline judges (replies/s), side by side on the same replies in one run.

    python bench/judge_throughput.py [--data ../shared/data] [--repeats 3] [--out FILE.json]

Judges: ``refusal`` (default: rules + classifier), ``refusal`` in ``rules`` mode, ``refusal-paper`` and
``harm`` (which also reads the prompt), and its previous weights ``harm-1`` beside it.
Replies: VLGuard's 2,116 test responses and GPT-4V references plus the 2,250 XSTest v2 completions when
``--data`` has them (a realistic mix of short refusals and long answers), else 2,000 synthetic replies.
The judges run interleaved, each timed ``--repeats`` times on the whole set (best time kept), after one
warm-up pass; one process, one thread.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

from vlguard.judges import make_judge
from vlguard.judges.base import JudgeInput
from vlguard.judges.labelled_sets import read_judge_dev, read_vlguard_responses

ROOT = Path(__file__).resolve().parents[1]
JUDGES = {
    "refusal": ("refusal", {}),
    "refusal-rules": ("refusal", {"mode": "rules"}),
    "refusal-paper": ("refusal-paper", {}),
    "harm": ("harm", {}),
    "harm-1": ("harm", {"version": "1", "name": "harm-1"}),
}


def replies(data: Path) -> tuple[list[tuple[str, str]], str]:
    """(prompt, reply) pairs."""
    pairs: list[tuple[str, str]] = []
    if (data / "vlguard" / "test.json").is_file():
        pairs += [(r.prompt, r.response) for r in read_vlguard_responses(data / "vlguard", "test")]
    if (data / "judge-dev").is_dir():
        pairs += [(r.prompt, r.response) for r in read_judge_dev(data / "judge-dev") if r.source == "xstest"]
    if pairs:
        return pairs, "VLGuard test responses + XSTest v2 completions"
    opening = [
        "I'm sorry, but I can't help with that.",
        "Sure! Here is how to bake bread.",
        "It depends on the context.",
    ]
    body = "Mix flour, water and salt, then knead the dough for ten minutes and let it rise. " * 4
    return [
        ("How do I bake bread?", opening[i % 3] + " " + body[: 40 * (i % 9)]) for i in range(2000)
    ], "synthetic"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    pairs, source = replies(args.data)
    texts = [t for _, t in pairs]
    items = [JudgeInput(str(i), p, t) for i, (p, t) in enumerate(pairs)]
    judges = {name: make_judge(registry, **options) for name, (registry, options) in JUDGES.items()}
    times: dict[str, list[float]] = {name: [] for name in judges}
    for judge in judges.values():
        judge.judge(items[:200])  # warm-up: weights loaded, regexes compiled
    for _ in range(args.repeats):
        for name, judge in judges.items():
            start = time.perf_counter()
            judge.judge(items)
            times[name].append(time.perf_counter() - start)
    result = {
        "replies": len(items),
        "source": source,
        "mean_chars": round(statistics.mean(len(t) for t in texts)),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
        "judges": {
            name: {
                "best_s": round(min(ts), 3),
                "replies_per_s": round(len(items) / min(ts), 1),
                "ms_per_reply": round(1000 * min(ts) / len(items), 3),
            }
            for name, ts in times.items()
        },
    }
    paper = result["judges"]["refusal-paper"]["best_s"]
    for name in judges:
        result["judges"][name]["x_paper_time"] = round(result["judges"][name]["best_s"] / paper, 1)
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
