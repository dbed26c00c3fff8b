"""`vlguard curate IMAGES_DIR --out DIR`: VLGuard-style safety data for your own images (``vlguard.curate``)."""

from __future__ import annotations

import argparse
from typing import Any

from vlguard.cli.common import judge_options, key_value

EXAMPLES = """examples:
  vlguard curate my_images --out data/curated --model gpt-4o
  vlguard curate my_images --out data/curated --model gpt-4o --taxonomy my_taxonomy.yaml \\
      --labels my_labels.csv --price-per-million-tokens 2.5,10
  vlguard curate my_images --out data/curated --backend openai --model Qwen/Qwen2.5-VL-7B-Instruct \\
      --backend-option base_url=http://localhost:8000/v1
  vlguard curate my_images --out data/curated --backend hf --model Qwen/Qwen2.5-VL-7B-Instruct
  vlguard curate my_images --out data/curated --model gpt-4o --retry-rejects
  vlguard report data/curated          (the review page)
  vlguard data validate data/curated   (then: vlguard train CONFIG data.vlguard=data/curated)
"""


def _prices(text: str) -> tuple[float, float]:
    parts = text.split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        return float(parts[0]), float(parts[1])
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected INPUT,OUTPUT prices (e.g. 2.5,10), got {text!r}"
        ) from None


def register(subparsers: Any) -> None:
    """Add the curate command."""
    from vlguard.generation import BACKENDS

    p = subparsers.add_parser(
        "curate",
        help="build VLGuard-style safety data for your own images (any VLM writes, vlguard's judges check)",
        description=(
            "Label each image of IMAGES_DIR (safe, or harmful with a category of the taxonomy), have the "
            "writer model write its instruction/response pairs as the VLGuard paper describes (a harmful "
            "image: an instruction and a refusal that explains the harm; a safe image: a safe instruction "
            "with a helpful answer and an unsafe instruction with a refusal), check every pair with "
            "vlguard's judges and against the released VLGuard instructions, and write a dataset in the "
            "VLGuard layout (DIR/train.json + DIR/train/) with the rejects and their reasons in "
            "DIR/rejects.jsonl. Rerunning the same command resumes; `vlguard report DIR` shows a review page."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("images_dir", metavar="IMAGES_DIR", help="folder of images (searched recursively)")
    p.add_argument("--out", required=True, help="output folder (the dataset and its records); reruns resume")
    writer = p.add_argument_group("writer model")
    writer.add_argument(
        "--model", required=True, help="the writer VLM: a served model name, local folder or Hub id"
    )
    writer.add_argument(
        "--backend", default="openai", choices=sorted(BACKENDS), help="generation backend (default: openai)"
    )
    writer.add_argument(
        "--backend-option",
        action="append",
        default=[],
        type=key_value,
        metavar="KEY=VALUE",
        help="backend setting, repeatable (e.g. base_url=http://localhost:8000/v1, api_key_env=MY_KEY, "
        "temperature=0.7)",
    )
    writer.add_argument("--max-new-tokens", type=int, default=1024, help="tokens per answer (default 1024)")
    writer.add_argument("--batch-size", type=int, default=8, help="prompts per batch on hf/vllm (default 8)")
    writer.add_argument("--device", default="auto", help="hf/vllm: auto, cpu, cuda, cuda:1, ...")
    writer.add_argument("--dtype", default="auto", help="hf/vllm: auto, float32, bfloat16, float16")
    writer.add_argument(
        "--max-attempts",
        type=int,
        default=3,
        help="answers asked for per step before an image is rejected (default 3: two retries)",
    )
    writer.add_argument(
        "--price-per-million-tokens",
        type=_prices,
        metavar="INPUT,OUTPUT",
        help="US dollars per million input and output tokens, for the cost in the manifest",
    )
    data = p.add_argument_group("data")
    data.add_argument("--taxonomy", help="YAML/JSON taxonomy file (default: VLGuard's categories)")
    data.add_argument(
        "--labels", help="CSV of labels you already have (image, safe, category, subcategory): they win"
    )
    data.add_argument("--limit", type=int, help="curate N images (a stable choice by the hash of their id)")
    data.add_argument("--seed", type=int, default=0, help="seed (recorded; hf/vllm: the torch seed)")
    checks = p.add_argument_group("checks")
    checks.add_argument(
        "--judge-option",
        action="append",
        default=[],
        type=key_value,
        metavar="JUDGE.KEY=VALUE",
        help="setting of a checking judge, repeatable (refusal.mode=rules; llm-judge.model=gpt-4o makes "
        "another model check the unsafe instructions instead of the writer)",
    )
    checks.add_argument(
        "--vlguard-data",
        default="ys-zong/VLGuard",
        help="the released VLGuard data (local folder or Hub id) whose train and test instructions must "
        "not be repeated; 'none' skips that check (default: ys-zong/VLGuard)",
    )
    checks.add_argument(
        "--similarity-threshold",
        type=float,
        default=0.7,
        help="Jaccard similarity of character 5-grams from which two instructions are near-duplicates "
        "(default 0.7; docs/curate.md)",
    )
    run = p.add_argument_group("run")
    run.add_argument("--retry-rejects", action="store_true", help="try the rejected images again")
    p.set_defaults(func=cmd_curate)


def cmd_curate(args: argparse.Namespace) -> int:
    """Run the curation and print what it made."""
    from vlguard.curate import CurateConfig, run_curate

    config = CurateConfig(
        images_dir=args.images_dir,
        out=args.out,
        model=args.model,
        backend=args.backend,
        backend_options=dict(args.backend_option),
        taxonomy=args.taxonomy,
        labels=args.labels,
        retry_rejects=args.retry_rejects,
        seed=args.seed,
        limit=args.limit,
        max_attempts=args.max_attempts,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        device=args.device,
        dtype=args.dtype,
        judge_options=judge_options(args.judge_option),
        vlguard_data=None if args.vlguard_data.lower() == "none" else args.vlguard_data,
        similarity_threshold=args.similarity_threshold,
        price_per_million_tokens=args.price_per_million_tokens,
    )
    result = run_curate(config)
    rejected = sum(result.rejected.values())
    by_stage = ", ".join(f"{stage} {n}" for stage, n in sorted(result.rejected.items()))
    print(f"accepted {result.accepted} image(s) -> {result.out / 'train.json'}")
    print(
        f"rejected {rejected} image(s){f' ({by_stage})' if by_stage else ''} -> {result.out / 'rejects.jsonl'}"
    )
    if result.pending:
        print(f"not finished: {result.pending} image(s); rerun the same command to resume")
    usage = result.usage
    cost = f", ${result.cost_usd:.4f}" if result.cost_usd is not None else ""
    print(
        f"writer: {usage.calls} call(s), {usage.prompt_tokens} prompt + {usage.completion_tokens} "
        f"completion tokens{cost}"
    )
    print(f"review: vlguard report {result.out}")
    return 0
