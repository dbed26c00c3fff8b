"""Helpers shared by the command modules (standard library only, so that ``--help`` stays fast)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

ConfigT = TypeVar("ConfigT")


def is_rank_zero() -> bool:
    """Whether this process prints results: always, unless it is a non-zero rank of a torchrun/accelerate job."""
    from vlguard.distributed import is_main_process  # standard library only

    # every rank runs the command, one reports
    return is_main_process()


def add_recipe_arguments(parser: argparse.ArgumentParser, *, config_help: str, overrides_help: str) -> None:
    """The arguments of a command run from a YAML recipe: ``CONFIG [KEY=VALUE ...]``, ``--print-config``, ``--list-keys``."""
    parser.add_argument("config", nargs="?", help=config_help)
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=overrides_help)
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument(
        "--list-keys", action="store_true", help="list every config key with its default and help"
    )


def take_trailing_overrides(args: argparse.Namespace, unparsed: Sequence[str]) -> bool:
    """Add ``KEY=VALUE`` overrides that came after an option to a recipe command's overrides.

    argparse reads a command's positionals in one run, so in ``vlguard hft CONFIG --print-config
    seed=1`` (or ``... --cells 0/2 seed=1``) the override after the option is left unparsed. A command
    with ``add_recipe_arguments`` takes such leftovers as overrides, in order; False (an argparse usage
    error follows) for any other command, or a leftover that is not ``KEY=VALUE``.
    """
    overrides = getattr(args, "overrides", None)
    if overrides is None or not all("=" in item and not item.startswith("-") for item in unparsed):
        return False
    args.overrides = [*overrides, *unparsed]
    return True


def resolve_recipe(
    args: argparse.Namespace,
    *,
    example: str,
    keys: Callable[[], Iterable[tuple[str, object, str]]],
    load: Callable[[str | None, list[str]], ConfigT],
    dump: Callable[[ConfigT], str],
) -> ConfigT | None:
    """The config of ``CONFIG [KEY=VALUE ...]`` (arguments of ``add_recipe_arguments``), or None when
    ``--list-keys`` / ``--print-config`` asked only for a printout (printed here)."""
    from vlguard.errors import ConfigError

    if args.list_keys:
        for key, default, text in keys():
            print(f"{key} = {default}\n    {text}")
        return None
    if args.config is None:
        raise ConfigError(f"give a config file, e.g. {example}")
    overrides = list(args.overrides)
    # `vlguard train key=value` without a file: the first positional is an override.
    config_path = None if "=" in args.config else args.config
    if config_path is None:
        overrides.insert(0, args.config)
    config = load(config_path, overrides)
    if args.print_config:
        print(dump(config), end="")
        return None
    return config


def key_value(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE parsed as JSON when it is JSON (numbers, true/false, lists), else a string.

    The argparse ``type`` of every repeatable option setting (``--backend-option``, ``--judge-option``, ...).
    """
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    from vlguard.fileio import JsonError, parse_json

    key, raw = text.split("=", 1)
    try:
        value: Any = parse_json(raw)
    except JsonError:
        value = raw
    return key.strip(), value


def judge_options(pairs: Sequence[tuple[str, Any]]) -> dict[str, dict[str, Any]]:
    """``NAME.KEY=VALUE`` pairs (``--judge-option``) → {judge name: {key: value}}."""
    from vlguard.errors import ConfigError

    options: dict[str, dict[str, Any]] = {}
    for dotted, value in pairs:
        if "." not in dotted:
            raise ConfigError(
                f"--judge-option needs JUDGE.KEY=VALUE (e.g. refusal.mode=paper), got {dotted!r}"
            )
        judge, key = dotted.split(".", 1)
        options.setdefault(judge, {})[key] = value
    return options
