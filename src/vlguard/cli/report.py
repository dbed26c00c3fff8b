"""`vlguard report RUN [RUN ...]`: an HTML + markdown report of one run or a comparison of runs."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

FORMATS = ("html", "json", "csv")  # mirrors vlguard.report.FORMATS, kept here so --help stays fast


def register(subparsers: Any) -> None:
    """Add the report command."""
    parser = subparsers.add_parser(
        "report",
        help="write an HTML + markdown report of one run or a before/after comparison",
        description=(
            "Write a self-contained HTML report (report.html, charts and images embedded) and report.md "
            "for one evaluation run, or compare several: the first RUN is the baseline (before), the "
            "others are compared with it (after). A run folder's capability results (`vlguard utility`, "
            "in RUN/utility) are shown next to its safety results: the safety-vs-capability chart and "
            "the cost of each run relative to the baseline. --format json|csv exports the tables instead. "
            "A folder written by `vlguard curate` gets its review page: every sample and reject."
        ),
        epilog=(
            "examples:\n"
            "  vlguard report runs/llava-vanilla\n"
            "  vlguard report runs/llava-vanilla runs/llava-posthoc --label vanilla --label post-hoc\n"
            "  vlguard report runs/a runs/b --format csv --out tables\n"
            "  vlguard report runs/hft/seed0 runs/hft/seed1 runs/hft/seed2   (vlguard hft sweeps: seeds)\n"
            "  vlguard report runs/hft/lr-a runs/hft/lr-b --label 'lr 1e-3' --label 'lr 1e-4'   (shown apart)\n"
            "  vlguard report data/curated   (the review page of vlguard curate's output)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help="run folders written by `vlguard eval` and/or `vlguard utility` (or one `vlguard curate` folder)",
    )
    parser.add_argument(
        "--out",
        default=None,  # text, not a Path: Path("") would be the current folder, and an empty --out a mistake
        help="output folder (default: runs/reports/<run>, or runs/reports/<run>-vs-<run> when comparing)",
    )
    parser.add_argument("--format", choices=FORMATS, default="html", help="html (+ markdown), json or csv")
    parser.add_argument(
        "--label",
        action="append",
        dest="labels",
        metavar="NAME",
        help="name of each run in the report, in RUN order (repeat it; default: the folder names)",
    )
    parser.add_argument("--title", default=None, help="report title")
    parser.add_argument("--examples", type=int, default=3, metavar="N", help="example generations per subset")
    parser.set_defaults(func=run)


def default_out_dir(runs: list[str], labels: list[str] | None) -> Path:
    """``runs/reports/<name>`` or ``runs/reports/<a>-vs-<b>``: never inside a run folder (reports only read)."""
    names = labels if labels else [Path(r).resolve().name for r in runs]
    slug = "-vs-".join(re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_.") or "run" for name in names)
    return Path("runs") / "reports" / slug[:150]


def run(args: argparse.Namespace) -> int:
    """Write the report (or the exported tables) and print where."""
    from vlguard.curate.folder import is_curated_folder
    from vlguard.fileio import check_output_dir
    from vlguard.report import write_report
    from vlguard.report.hft import is_hft_folder

    # before reading anything, for every kind of folder: an empty --out, or a file, is one line
    out = check_output_dir(
        args.out if args.out is not None else default_out_dir(args.runs, args.labels), "--out folder"
    )
    if any(is_curated_folder(r) for r in args.runs):
        return _run_curated(args, out)
    hft = [is_hft_folder(r) for r in args.runs]
    if any(hft):
        return _run_hft(args, out, all(hft))
    files = write_report(
        args.runs,
        out,
        fmt=args.format,
        labels=args.labels,
        title=args.title,
        examples_per_subset=args.examples,
    )
    for path in files.files:
        if path.suffix != ".png":
            print(f"wrote {path}")
    if args.format == "html":
        print(f"open {files.main.resolve().as_uri()} in a browser")
    return 0


def _run_hft(args: argparse.Namespace, out: Path, all_hft: bool) -> int:
    """The report of `vlguard hft` output folders (sweeps that differ by their seed alone are pooled)."""
    from vlguard.errors import VLGuardError
    from vlguard.report.hft import write_hft_report

    if not all_hft:
        raise VLGuardError(
            "mix of vlguard hft output folders and evaluation run folders: report them separately"
        )
    files = write_hft_report(args.runs, out, fmt=args.format, title=args.title, labels=args.labels)
    for path in files:
        if path.suffix != ".png":
            print(f"wrote {path}")
    if args.format == "html":
        print(f"open {files[0].resolve().as_uri()} in a browser")
    return 0


def _run_curated(args: argparse.Namespace, out: Path) -> int:
    """The review page of a `vlguard curate` output folder."""
    from vlguard.errors import VLGuardError
    from vlguard.report.curate import write_curate_report

    if len(args.runs) != 1:
        raise VLGuardError("a curated folder's review page shows one folder: report it alone")
    if args.format != "html":
        raise VLGuardError("a curated folder's review page is HTML only (--format html)")
    path = write_curate_report(args.runs[0], out, title=args.title)
    print(f"wrote {path}")
    print(f"open {path.resolve().as_uri()} in a browser")
    return 0
