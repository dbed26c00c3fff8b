"""`vlguard data stats|validate|convert|mix`: thin commands over ``vlguard.data``."""

from __future__ import annotations

import argparse
import json
import logging
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SOURCE_HELP = (
    "a local VLGuard folder (train.json / test.json, images in train/ test/ or train.zip test.zip), "
    "a split's JSON file, or a Hub dataset repo id such as ys-zong/VLGuard"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``vlguard data`` and its subcommands."""
    data = subparsers.add_parser(
        "data",
        help="inspect, validate, convert and mix VLGuard data",
        description="Inspect, validate, convert and mix VLGuard data (local folder or Hub dataset).",
    )
    commands = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")

    def show_help(args: argparse.Namespace) -> int:
        data.print_help()
        return 2

    data.set_defaults(func=show_help)

    def source_args(parser: argparse.ArgumentParser, *, split_default: str | None, split_help: str) -> None:
        parser.add_argument(
            "path", metavar="PATH", nargs="?", help=f"{SOURCE_HELP} (default: the bundled sample dataset)"
        )
        parser.add_argument("--split", choices=("train", "test"), default=split_default, help=split_help)
        parser.add_argument("--revision", help="Hub revision (branch, tag or commit) when PATH is a repo id")

    stats = commands.add_parser(
        "stats",
        help="count records and samples per split, subset, category and subcategory",
        description="Count records and samples per split, subset, category and subcategory.",
        epilog="example: vlguard data stats ../shared/data/vlguard --split test --json",
    )
    source_args(stats, split_default=None, split_help="one split (default: every split found)")
    stats.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    stats.add_argument(
        "--skip-invalid", action="store_true", help="count the valid records, report the others"
    )
    stats.set_defaults(func=run_stats)

    validate = commands.add_parser(
        "validate",
        help="check a VLGuard dataset; exit 0 when valid, 1 with the list of problems otherwise",
        description="Check every record (fields, types, instruction keys, duplicate ids, image paths); "
        "with --images also open every image. Exit 0 when valid, 1 with the list of problems otherwise.",
    )
    source_args(validate, split_default=None, split_help="one split (default: every split found)")
    validate.add_argument(
        "--images", action="store_true", help="also open every image (missing, truncated, bombs)"
    )
    validate.add_argument(
        "--image-root", help="folder or zip of the images (default: <split>/ or <split>.zip)"
    )
    validate.set_defaults(func=run_validate)

    convert = commands.add_parser(
        "convert",
        help="export records to the LLaVA conversation format or the chat messages format",
        description="Export one split for training. The turn order of safe images is shuffled with --seed "
        "exactly as VLGuard's convert_to_llava_format.py does (seed 0 reproduces its output).",
        epilog="example: vlguard data convert DATA --format messages --out vlguard_train.jsonl",
    )
    source_args(convert, split_default="train", split_help="split to export (default: train)")
    convert.add_argument("--format", choices=("llava", "messages"), required=True, help="output format")
    convert.add_argument(
        "--out", required=True, type=Path, help="output file: .json (a list) or .jsonl (one per line)"
    )
    convert.add_argument(
        "--seed", type=int, default=0, help="seed of the turn order (default: 0, as the reference)"
    )
    convert.add_argument(
        "--skip-invalid", action="store_true", help="export the valid records, report the others"
    )
    convert.set_defaults(func=run_convert)

    mix = commands.add_parser(
        "mix",
        help="build a posthoc or mixed training mixture of VLGuard and instruction data",
        description="posthoc: VLGuard train + N conversations drawn (seeded) from the instruction data; "
        "mixed: the whole instruction data + VLGuard train, shuffled (seeded). Writes messages-format "
        "JSONL with a 'source' field per line and prints the count per source.",
        epilog="example: vlguard data mix --recipe posthoc --safety DATA --instructions llava_mix.json "
        "--n 5000 --seed 0 --out mix.jsonl",
    )
    mix.add_argument("--recipe", choices=("posthoc", "mixed"), required=True, help="mixture recipe")
    mix.add_argument(
        "--safety",
        required=True,
        help="VLGuard folder or Hub repo id (its train split is used), or a LLaVA/messages .json/.jsonl file",
    )
    mix.add_argument(
        "--instructions",
        required=True,
        help="instruction data: LLaVA or messages .json/.jsonl, or owner/name/file on the Hub",
    )
    mix.add_argument(
        "--n", type=int, default=5000, help="helpfulness conversations drawn for posthoc (default: 5000)"
    )
    mix.add_argument(
        "--seed", type=int, default=0, help="seed of the draw, the shuffle and VLGuard's turn order"
    )
    mix.add_argument("--out", required=True, type=Path, help="output .jsonl file")
    mix.add_argument("--revision", help="Hub revision of --safety")
    mix.add_argument("--instructions-revision", help="Hub revision of --instructions")
    mix.add_argument("--skip-invalid", action="store_true", help="use the valid rows, report the others")
    mix.set_defaults(func=run_mix)


def _default_path(args: argparse.Namespace) -> None:
    if args.path is None:
        from vlguard.data.sample import sample_dataset_dir

        args.path = str(sample_dataset_dir())


def _load(args: argparse.Namespace, split: str, *, skip_invalid: bool, image_root: str | None = None) -> Any:
    from vlguard.data import load_vlguard

    return load_vlguard(
        args.path,
        split,
        revision=args.revision,
        skip_invalid=skip_invalid,
        image_root=image_root,
        # Counting and converting never need the (multi-GB) image zips.
        download_images=image_root is None and getattr(args, "images", False),
    )


def run_stats(args: argparse.Namespace) -> int:
    """Print counts per split, subset, category and subcategory (tables, or one JSON object)."""
    _default_path(args)
    from vlguard.data import dataset_stats

    per_split = {}
    source: dict[str, Any] = {}
    skipped: dict[str, list[str]] = {}
    for split in _file_splits(args):
        dataset = _load(args, split, skip_invalid=args.skip_invalid)
        per_split[split] = dataset_stats(dataset)
        source[split] = dataset.source
        skipped[split] = [str(problem) for problem in dataset.problems]
    totals: Counter[str] = Counter()
    for stats in per_split.values():
        totals.update(stats["samples_by_subset"])
    summary = {
        "path": args.path,
        "splits": per_split,
        "samples_by_subset": dict(totals),
        "samples": sum(totals.values()),
        "source": source,
        "skipped": skipped,
    }
    if args.json:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
        return 0
    _print_tables(summary)
    for split, problems in skipped.items():
        if problems:
            _print_problems(f"{split}: skipped {len(problems)} invalid record(s):", problems)
    return 0


def _print_problems(header: str, problems: Iterable[object]) -> None:
    print(header)
    for problem in problems:
        print(f"  - {problem}")


def _file_splits(args: argparse.Namespace) -> list[str]:
    if args.split:
        return [args.split]
    path = Path(args.path)
    if path.is_file():
        # A single JSON file: its name says the split when it is train.json / test.json.
        return [path.stem if path.stem in ("train", "test") else "test"]
    if path.is_dir():
        found = [s for s in ("train", "test") if (path / f"{s}.json").is_file()]
        if found:
            return found
    return ["train", "test"]


def _print_tables(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    splits: dict[str, dict[str, Any]] = summary["splits"]
    # One column per split keeps the tables narrow enough for an 80-column terminal.
    counts = Table(title=f"VLGuard: {summary['path']}")
    counts.add_column("count")
    for split in splits:
        counts.add_column(split, justify="right")
    rows: list[tuple[str, str, str | None]] = [
        ("images", "records", None),
        ("  safe images", "safe_images", None),
        ("  unsafe images", "unsafe_images", None),
        ("samples", "samples", None),
        *((f"  {subset}", "samples_by_subset", subset) for subset in ("unsafe", "safe_unsafe", "safe_safe")),
        ("reference answers", "references", None),
    ]
    for label, key, sub in rows:
        counts.add_row(label, *(str(s[key][sub] if sub else s[key]) for s in splits.values()))
    console.print(counts)

    categories = Table(title="unsafe images by category / subcategory")
    categories.add_column("category / subcategory")
    for split in splits:
        categories.add_column(split, justify="right")
    names: dict[str, list[str]] = {}
    for s in splits.values():
        for category, subcategory in s["unsafe_category_pairs"]:
            subs = names.setdefault(category, [])
            if subcategory not in subs:
                subs.append(subcategory)
    for category, subs in names.items():
        categories.add_row(
            f"[bold]{category}[/bold]",
            *(str(s["unsafe_by_category"].get(category, 0)) for s in splits.values()),
        )
        for subcategory in subs:
            categories.add_row(
                f"  {subcategory}",
                *(str(s["unsafe_by_subcategory"].get(subcategory, 0)) for s in splits.values()),
            )
    console.print(categories)
    for split, s in splits.items():
        if not s["images_available"]:
            console.print(f"{split}: no images found (annotations only)")


def run_validate(args: argparse.Namespace) -> int:
    """Exit 0 when every split is valid, 1 with the list of problems otherwise."""
    _default_path(args)
    from vlguard.data.vlguard import check_images
    from vlguard.errors import DataValidationError

    failed = False
    for split in _file_splits(args):
        try:
            dataset = _load(args, split, skip_invalid=False, image_root=args.image_root)
        except DataValidationError as err:
            _print_problems(f"{split}: INVALID ({len(err.problems)} problem(s))", err.problems)
            failed = True
            continue
        problems = check_images(dataset) if args.images else []
        if problems:
            _print_problems(f"{split}: INVALID images ({len(problems)} problem(s))", problems)
            failed = True
            continue
        checked = " and images" if args.images else ""
        print(f"{split}: OK: {len(dataset.records)} records{checked}, {len(dataset.samples())} samples")
    return 1 if failed else 0


def run_convert(args: argparse.Namespace) -> int:
    """Export one split to LLaVA or messages format."""
    _default_path(args)
    from vlguard.data.export import to_llava, to_messages, write_json, write_jsonl
    from vlguard.fileio import check_output_file

    check_output_file(args.out, "--out file")  # before loading, not after
    dataset = _load(args, args.split, skip_invalid=args.skip_invalid)
    rows = (
        to_llava(dataset.records, args.seed)
        if args.format == "llava"
        else to_messages(dataset.records, args.seed)
    )
    out = write_jsonl(rows, args.out) if args.out.suffix == ".jsonl" else write_json(rows, args.out)
    print(f"wrote {len(rows)} {args.format} conversations ({args.split}) to {out}")
    if dataset.problems:
        _print_problems(f"skipped {len(dataset.problems)} invalid record(s):", dataset.problems)
    return 0


def run_mix(args: argparse.Namespace) -> int:
    """Build a mixture, write it as JSONL and print the count per source."""
    from vlguard.data.conversations import load_conversations, vlguard_conversations
    from vlguard.data.mix import build_mixture, write_mixture
    from vlguard.data.vlguard import load_vlguard
    from vlguard.fileio import check_output_file

    check_output_file(args.out, "--out file")  # before loading, not after
    safety_path = Path(args.safety)
    if safety_path.suffix in (".json", ".jsonl") and safety_path.name not in ("train.json", "test.json"):
        safety = list(
            load_conversations(
                safety_path, revision=args.revision, skip_invalid=args.skip_invalid
            ).conversations
        )
    else:
        records = load_vlguard(
            args.safety,
            "train",
            revision=args.revision,
            skip_invalid=args.skip_invalid,
            download_images=False,
        ).records
        safety = vlguard_conversations(records, seed=args.seed)
    instructions = load_conversations(
        args.instructions, revision=args.instructions_revision, skip_invalid=args.skip_invalid
    ).conversations
    mixture = build_mixture(args.recipe, safety, list(instructions), n_helpfulness=args.n, seed=args.seed)
    write_mixture(mixture, args.out)
    print(
        f"{args.recipe} mixture (seed {args.seed}): {len(mixture.conversations)} conversations -> {args.out}"
    )
    for source, count in mixture.counts.items():
        print(f"  {source}: {count}")
    return 0
