"""How similar VLGuard's own test instructions are to its train instructions: the figures behind the
near-duplicate threshold of ``vlguard curate`` (``vlguard.curate.similarity``, docs/curate.md).

    python scripts/curate_similarity.py [VLGUARD_FOLDER] [--queries N] [--examples K]

For the first N test instructions (default 600), the most similar train instruction by Jaccard similarity
of normalised character 5-grams: how many reach each threshold, and K example pairs around 0.6 and 0.7.
VLGUARD_FOLDER defaults to ../shared/data/vlguard (train.json and test.json; no images needed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vlguard.curate.checks import VLGUARD_TEST, VLGUARD_TRAIN, reference_instructions
from vlguard.curate.similarity import NearDuplicateIndex

THRESHOLDS = (0.5, 0.6, 0.65, 0.7, 0.8, 0.9, 1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "folder", nargs="?", default=str(Path(__file__).resolve().parents[2] / "shared/data/vlguard")
    )
    parser.add_argument("--queries", type=int, default=600)
    parser.add_argument("--examples", type=int, default=4)
    args = parser.parse_args(argv)
    instructions = reference_instructions(args.folder)
    train = [item for item in instructions if item[1] == VLGUARD_TRAIN]
    test = [text for text, source, _ in instructions if source == VLGUARD_TEST][: args.queries]
    index = NearDuplicateIndex(train, threshold=min(THRESHOLDS))
    best = []
    for query in test:
        match = index.best(query)
        best.append((match.similarity if match else 0.0, query, match.text if match else ""))
    print(f"{len(test)} test instructions against {len(train)} train instructions (character 5-gram Jaccard)")
    for threshold in THRESHOLDS:
        print(f"  >= {threshold:.2f}: {sum(s >= threshold for s, _, _ in best)}")
    for low, high in ((0.58, 0.62), (0.68, 0.72)):
        print(f"examples with similarity in [{low}, {high}):")
        for similarity, query, other in [b for b in best if low <= b[0] < high][: args.examples]:
            print(f"  {similarity:.2f}  {query!r}\n        {other!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
