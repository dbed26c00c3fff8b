"""`vlguard` entry point: builds the argument parser from the command modules and runs one command.

Each module in ``COMMAND_MODULES`` defines ``register(subparsers)``, which adds its parser(s) and sets
``func`` (a callable taking the parsed namespace and returning an exit code). Command modules import
heavy libraries (torch, transformers) inside their functions so that ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from vlguard import __version__
from vlguard.cli.common import take_trailing_overrides
from vlguard.errors import VLGuardError

# name shown in help order -> module that registers it
COMMAND_MODULES: dict[str, str] = {
    "data": "vlguard.cli.data",
    "eval": "vlguard.cli.evaluate",
    "utility": "vlguard.cli.utility",
    "train": "vlguard.cli.train",
    "hft": "vlguard.cli.hft",
    "curate": "vlguard.cli.curate",
    "report": "vlguard.cli.report",
    "demo": "vlguard.cli.demo",
}


def build_parser() -> argparse.ArgumentParser:
    """The ``vlguard`` parser with every command module registered."""
    parser = argparse.ArgumentParser(
        prog="vlguard",
        description="Measure and fix the safety of vision-language models (VLGuard evaluation and safety fine-tuning).",
    )
    parser.add_argument("--version", action="version", version=f"vlguard {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES.values():
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run the command; a ``VLGuardError`` is one line on stderr, not a traceback."""
    parser = build_parser()
    args, unparsed = parser.parse_known_args(argv)
    if unparsed and not take_trailing_overrides(args, unparsed):
        parser.error(f"unrecognized arguments: {' '.join(unparsed)}")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except VLGuardError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output piped into e.g. `head`, which closed early: not an error of ours.
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
