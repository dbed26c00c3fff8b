"""The cost of the strict JSON reader: ``vlguard.fileio.parse_json`` vs the standard ``json.loads``.

``parse_json`` adds a walk over every container (the depth limit) and, only when the text holds a
surrogate escape, a walk over every string (lone surrogates). Both are timed side by side, in one run,
on the same text: a synthetic instruction dataset in the messages format (the largest files vlguard
reads: LLaVA's mix665k is ~1 GB), and the same with one emoji written as a surrogate pair, which
triggers the string walk::

    PYTHONPATH=src python bench/json_reader.py                 # 50,000 conversations (~115 MB)
    PYTHONPATH=src python bench/json_reader.py --rows 5000 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from vlguard.fileio import parse_json


def synthetic_dataset(rows: int) -> list[dict[str, Any]]:
    """Messages-format conversations of realistic shape: three turns, an image part, a few hundred characters."""
    return [
        {
            "id": str(i),
            "images": [f"coco/train2017/{i:012d}.jpg"],
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image"}, {"type": "text", "text": "What is in this picture? " * 5}],
                },
                {"role": "assistant", "content": [{"type": "text", "text": "A cat sitting on a mat. " * 20}]},
            ]
            * 3,
        }
        for i in range(rows)
    ]


def best_of(repeats: int, function: Callable[[str], Any], text: str) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function(text)
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    plain = json.dumps(synthetic_dataset(args.rows))
    with_pair = plain.replace("A cat", "\\ud83d\\ude00 A cat", 1)
    results = {"rows": args.rows, "megabytes": round(len(plain) / 1e6, 1)}
    for name, text in (("plain", plain), ("with_surrogate_pair", with_pair)):
        standard = best_of(args.repeats, json.loads, text)
        strict = best_of(args.repeats, parse_json, text)
        results[name] = {
            "json_loads_s": round(standard, 3),
            "parse_json_s": round(strict, 3),
            "ratio": round(strict / standard, 2),
        }
    results["median_ratio"] = statistics.median(
        [results[n]["ratio"] for n in ("plain", "with_surrogate_pair")]
    )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
