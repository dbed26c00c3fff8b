"""Data and model for the tiny-scale replication (docs/experiments.md), written to OUT/.

- OUT/safe_safe_train.jsonl: the VLGuard train ``safe_safe`` pairs (safe image + safe instruction →
  answer) in messages format: the helpfulness / instruction-tuning data of the experiment;
- OUT/base: a random-weight tiny VLM whose tokenizer is trained on the VLGuard train texts.

    .venv/bin/python scripts/replicate_tiny_prep.py DATA OUT [--size experiment] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from vlguard.data import load_vlguard
from vlguard.models.tiny import TINY_SIZES, TinyVLMSize, build_tiny_vlm

# Between "tiny" (tests) and "small": what 20 CPU minutes can train for a few epochs on ~4k
# conversations (1.2 M parameters; blank images need no bigger vision tower).
EXPERIMENT_SIZE = TinyVLMSize(
    text_hidden=128, text_layers=4, text_heads=4, vocab_size=2048, max_positions=1024
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", help="VLGuard folder (train.json)")
    parser.add_argument("out", type=Path)
    parser.add_argument(
        "--size", default="experiment", help=f"'experiment' (default) or one of {', '.join(TINY_SIZES)}"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the model's random initial weights")
    args = parser.parse_args()
    train = load_vlguard(args.data, "train", download_images=False)
    rows, texts = [], []
    for record in train.records:
        for pair in record.pairs:
            texts += [pair.instruction, pair.response]
            if record.safe and pair.key == "safe_instruction":
                rows.append(
                    {
                        "id": f"{record.uid}:safe_safe",
                        "images": [record.image],
                        "messages": [
                            {
                                "role": "user",
                                "content": [{"type": "image"}, {"type": "text", "text": pair.instruction}],
                            },
                            {"role": "assistant", "content": [{"type": "text", "text": pair.response}]},
                        ],
                    }
                )
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "safe_safe_train.jsonl").open("w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    shape = EXPERIMENT_SIZE if args.size == "experiment" else TINY_SIZES[args.size]
    build_tiny_vlm(args.out / "base", texts=texts, size=shape, seed=args.seed)
    print(
        f"{len(rows)} safe_safe conversations → {args.out / 'safe_safe_train.jsonl'}; model → {args.out / 'base'}"
    )


if __name__ == "__main__":
    main()
