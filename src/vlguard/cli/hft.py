"""`vlguard hft`: the harmful fine-tuning defence experiment (a thin wrapper over ``vlguard.hft``)."""

from __future__ import annotations

import argparse
from typing import Any

from vlguard.cli.common import add_recipe_arguments, is_rank_zero, resolve_recipe


def register(subparsers: Any) -> None:
    """Add the hft command."""
    parser = subparsers.add_parser(
        "hft",
        help="harmful fine-tuning defence experiment: Harmful Score and Finetune Accuracy per (ratio, defence)",
        description=(
            "Fine-tune a (safety-aligned) model on a user's task data of which a fraction p is harmful, "
            "undefended and with the VLGuard defences, for every p of the sweep; measure the Harmful Score "
            "and the Finetune Accuracy of every cell; write OUTPUT/summary.json. Reruns resume. "
            "`vlguard report OUTPUT` draws the table and the HS-vs-p / FA-vs-p charts."
        ),
        epilog=(
            "examples:\n"
            "  vlguard hft configs/hft/tiny-cpu.yaml output_dir=runs/hft/tiny\n"
            "  vlguard hft configs/hft/vaccine-sst2-llama2-7b.yaml attack.harmful_ratios=[0.0,0.05,0.1,0.2]\n"
            "  vlguard hft CONFIG --cells 0/2 & vlguard hft CONFIG --cells 1/2 & wait; vlguard hft CONFIG\n"
            "  accelerate launch -m vlguard.cli.main hft CONFIG     (data-parallel training and generation)\n"
            "  vlguard hft --list-keys"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_recipe_arguments(
        parser,
        config_help="YAML recipe from configs/hft/ (omit with --list-keys)",
        overrides_help="dotted overrides, e.g. seed=1",
    )
    parser.add_argument(
        "--cells",
        metavar="I/K",
        default=None,
        help="run only every K-th cell from the I-th (0-based), to run K shards at once; rerun without it to "
        "write the summary",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def run(args: argparse.Namespace) -> int:
    """Resolve the config, run (or resume) the sweep, print the summary table."""
    from vlguard.hft.config import dump_hft_config, hft_config_keys, load_hft_config

    config = resolve_recipe(
        args,
        example="vlguard hft configs/hft/tiny-cpu.yaml",
        keys=hft_config_keys,
        load=load_hft_config,
        dump=dump_hft_config,
    )
    if config is None:
        return 0
    from vlguard.hft.summary import read_summary
    from vlguard.hft.sweep import parse_shard, run_sweep

    shard = parse_shard(args.cells) if args.cells else (0, 1)
    result = run_sweep(config, shard=shard, progress=not args.no_progress)
    if not is_rank_zero():
        return 0
    if result.summary is None:
        print(
            f"ran {len(result.cells_run)} cell(s) ({', '.join(result.cells_run) or 'none'}); "
            f"{len(result.missing)} cell(s) not finished yet ({', '.join(result.missing)}): "
            "rerun without --cells once every shard is done to write the summary"
        )
        return 0
    rows = read_summary(result.summary)
    stand_in = any(r.get("harmful_score_stand_in") for r in rows)
    hs_head = "HS* %" if stand_in else "HS %"
    width = max(16, *(len(r["defence"]) for r in rows))  # composed defences: booster+vlguard-mix
    print(f"{'p':>6}  {'defence':<{width}} {hs_head:>7} {'FA %':>7}  n(task/harmful/safety)")
    for r in rows:
        c = r["counts"]
        print(
            f"{r['harmful_ratio']:>6g}  {r['defence']:<{width}} {_pct(r['harmful_score']):>7} "
            f"{_pct(r['finetune_accuracy']):>7}  {c.get('task', 0)}/{c.get('harmful', 0)}/{c.get('safety', 0)}"
            + (f" +{c['aux_safety']} aux" if c.get("aux_safety") else "")
            + (f" +{c['rule_safety']} lisa" if c.get("rule_safety") else "")
        )
    if stand_in:
        judge = rows[0].get("harmful_score_judge")
        print(
            f"* HS with the {judge} judge: a stand-in for a moderation judge (share answered without refusing)"
        )
    seen, dropped = rows[0].get("hs_prompts_seen_in_training", 0), rows[0].get("hs_prompts_dropped", 0)
    if seen:
        print(
            f"{seen} Harmful Score prompt(s) occur in the sweep's training data: "
            + (
                f"left out of every evaluation (HS on {rows[0]['harmful_score_n']})"
                if dropped
                else "evaluated anyway"
            )
        )
    print(f"wrote {result.summary}; report: vlguard report {result.output_dir}")
    return 0
