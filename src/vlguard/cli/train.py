"""`vlguard train` (fine-tune a VLM on a YAML recipe) and `vlguard merge` (merge a LoRA adapter)."""

from __future__ import annotations

import argparse
from typing import Any

from vlguard.cli.common import add_recipe_arguments, is_rank_zero, resolve_recipe


def register(subparsers: Any) -> None:
    """Add the train and merge commands."""
    train = subparsers.add_parser(
        "train",
        help="fine-tune a VLM (post-hoc or mixed VLGuard recipes, LoRA or full)",
        description="Fine-tune a vision-language model on a recipe from configs/train/ with dotted "
        "key=value overrides. Runs data-parallel under `accelerate launch` unchanged.",
        epilog="examples:\n"
        "  vlguard train configs/train/tiny-cpu.yaml\n"
        "  vlguard train configs/train/posthoc-lora.yaml model.name_or_path=llava-hf/llava-1.5-7b-hf "
        "data.instructions=llava_v1_5_mix665k.json lr=1e-4 lora.r=64\n"
        "  accelerate launch --config_file configs/accelerate/zero3.yaml -m vlguard.cli.main train "
        "configs/train/posthoc-full.yaml ...",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_recipe_arguments(
        train,
        config_help="YAML recipe (omit with --list-keys)",
        overrides_help="dotted overrides, e.g. lr=1e-5 lora.r=64",
    )
    train.set_defaults(func=run_train)

    merge = subparsers.add_parser(
        "merge",
        help="merge a LoRA adapter into its base model",
        description="Load BASE, apply the adapter saved by `vlguard train` (OUTPUT/model), merge and save "
        "a standalone model (safetensors) with its processor.",
        epilog="example: vlguard merge --base llava-hf/llava-1.5-7b-hf --adapter runs/train/posthoc-lora/model "
        "--out models/llava-posthoc",
    )
    merge.add_argument("--base", required=True, help="base model: Hub repo id or folder")
    merge.add_argument("--adapter", required=True, help="adapter folder (OUTPUT/model of a LoRA run)")
    merge.add_argument("--out", required=True, help="output folder for the merged model")
    merge.add_argument("--revision", help="Hub revision of the base model")
    merge.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"))
    merge.add_argument("--trust-remote-code", action="store_true", help="allow code from the base model repo")
    merge.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    merge.set_defaults(func=run_merge)


def run_train(args: argparse.Namespace) -> int:
    """Resolve the recipe (file + overrides), then train, or print the config / its keys."""
    from vlguard.train.config import describe_fields, dump_config, load_config

    config = resolve_recipe(
        args,
        example="vlguard train configs/train/tiny-cpu.yaml",
        keys=describe_fields,
        load=load_config,
        dump=dump_config,
    )
    if config is None:
        return 0
    from vlguard.preflight import check_train
    from vlguard.train.trainer import train

    check_train(config)  # every setting, LoRA targets included, before the model loads or anything is written
    result = train(config)
    if result.world_size == 1 or is_rank_zero():
        loss = "n/a" if result.train_loss is None else f"{result.train_loss:.4f}"
        print(
            f"trained {result.global_step} steps (mean loss {loss}) on {result.counts}; saved {result.model_dir}"
        )
    return 0


def run_merge(args: argparse.Namespace) -> int:
    """Merge a LoRA adapter into its base model and save it (safetensors)."""
    from vlguard.train.merge import merge_adapter

    out = merge_adapter(
        args.base,  # `tiny` names the built-in tiny VLM, as in `vlguard train`
        args.adapter,
        args.out,
        revision=args.revision,
        dtype=args.dtype,
        trust_remote_code=args.trust_remote_code,
        overwrite=args.overwrite,
    )
    print(f"merged model saved to {out}")
    return 0
