"""`vlguard demo`: the offline before/after demo on a tiny model (what `make demo` runs)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the demo command."""
    parser = subparsers.add_parser(
        "demo",
        help="offline demo: a tiny VLM before and after post-hoc safety fine-tuning, with a report",
        description=(
            "Build a tiny VLM, instruction-tune it on helpful data only (vanilla), evaluate it on held-out "
            "VLGuard samples (unseen wording), safety fine-tune it (post-hoc: VLGuard train + the same "
            "helpful data, full fine-tuning), evaluate again and write a before/after report. Offline and on "
            "CPU, about a minute on 2 idle cores (a few with --data). "
            "A tiny model demonstrates the pipeline, not real safety."
        ),
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="a VLGuard folder (train.json, test.json, images optional); default: the bundled sample dataset",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("runs/demo"), help="output folder (default: runs/demo)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="train and generate less (under a minute on the bundled sample)"
    )
    parser.set_defaults(func=run)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:5.1f}%"


def run(args: argparse.Namespace) -> int:
    """Run the demo and print its before/after summary."""
    from vlguard.demo import POSTHOC, REAL_MODEL_COMMANDS, VANILLA, run_demo

    print("vlguard demo: tiny model, CPU, offline (nothing is downloaded)")
    # The demo silences library progress bars and warnings; its own step lines are printed here.
    result = run_demo(
        args.out, data=args.data, quick=args.quick, on_step=lambda line: print(f"  {line}", flush=True)
    )
    print(f"\ndata: {result.data_source} (image mode {result.image_mode}); took {result.seconds:.0f} s")
    print("\nheld-out test samples, refusal judge          vanilla   post-hoc")
    rows = (
        ("attack success rate, unsafe images", "asr_unsafe"),
        ("attack success rate, safe img + unsafe instr.", "asr_safe_unsafe"),
        ("over-refusal, safe img + safe instr.", "over_refusal"),
    )
    for name, key in rows:
        before, after = result.headline[VANILLA].get(key), result.headline[POSTHOC].get(key)
        print(f"  {name:<44} {_pct(before)}   {_pct(after)}")
    for label in (VANILLA, POSTHOC):
        refused, total = result.refused_unsafe[label]
        print(f"  {label} refuses {refused} of {total} held-out unsafe-image samples")
    print(f"\nreport: {result.report}")
    print(f"        open {result.report.resolve().as_uri()} in a browser")
    print(
        "\nNote: a tiny model trained for seconds demonstrates the pipeline (data → training → evaluation → "
        "report), not real safety. Its numbers say nothing about any real model."
    )
    print("\nOn a real model (GPU recommended), the same steps are:")
    for command in REAL_MODEL_COMMANDS:
        print(f"  {command}")
    return 0
