"""`vlguard utility`: what safety fine-tuning costs in capability, through lm-eval / lmms-eval.

A thin wrapper over ``vlguard.utility.run_utility``; the engines and torch are imported only when the
command runs, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlguard.presets import PRESETS
from vlguard.utility.suites import SUITES, suite_help

if TYPE_CHECKING:
    from vlguard.utility import UtilityConfig

EXAMPLES = """suites:
{suites}

examples:
  vlguard utility --model llava-hf/llava-1.5-7b-hf --suite quick --run-dir runs/llava-vanilla
  vlguard utility --model llava-hf/llava-1.5-7b-hf --adapter runs/train/posthoc-lora/model \\
      --suite paper --run-dir runs/llava-posthoc
  vlguard utility --model meta-llama/Llama-2-7b-chat-hf --tasks mmlu,gsm8k --limit 100 --run-dir runs/llama
  vlguard utility --model tiny --tasks my_task --include-path my_tasks/ --run-dir runs/x
  vlguard utility --model llava-hf/llava-1.5-7b-hf --preset paper --suite paper --run-dir runs/llava-paper
  vlguard report runs/llava-vanilla runs/llava-posthoc     # safety vs capability, and the cost row

Results go to RUN/utility/ (manifest, per-task records, the engine's sample logs, metrics.json), beside
the safety results of `vlguard eval --run-dir RUN`. Rerunning resumes: finished tasks are skipped.
"""


def register(subparsers: Any) -> None:
    """Add the utility command."""
    p = subparsers.add_parser(
        "utility",
        help="capability benchmarks (MMLU, ScienceQA, MMBench, ...) through lm-eval / lmms-eval",
        description=(
            "Measure what safety fine-tuning costs in capability: run a suite of capability tasks on a "
            "model (+ adapter) with lmms-eval (VLMs) or lm-eval (text LLMs) as the engine, into the run "
            "folder of the model's safety evaluation."
        ),
        epilog=EXAMPLES.format(suites=suite_help()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    model = p.add_argument_group("model (the same arguments as `vlguard eval`)")
    model.add_argument(
        "--model",
        required=True,
        help="local folder, Hub id, 'tiny' (built-in tiny VLM) or 'tiny-lm' (tiny text LM)",
    )
    model.add_argument("--revision", help="Hub revision (branch, tag or commit) of the model")
    model.add_argument("--adapter", help="PEFT LoRA adapter folder or Hub id, applied without merging")
    model.add_argument(
        "--dtype", default="auto", help="auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16"
    )
    model.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    model.add_argument(
        "--trust-remote-code", action="store_true", help="allow model code from the Hub (off by default)"
    )
    model.add_argument("--system-prompt", help="system message put before every prompt")
    model.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="a reference evaluation's model settings (paper: LLaVA's llava_v1 system prompt, fp16 on GPU), "
        "as for `vlguard eval --preset`",
    )

    tasks = p.add_argument_group("tasks")
    what = tasks.add_mutually_exclusive_group(required=True)
    what.add_argument("--suite", choices=sorted(SUITES), help="a named suite (listed below)")
    what.add_argument(
        "--tasks", help="comma-separated task names of the engine (e.g. mmlu,gsm8k), or of --include-path"
    )
    tasks.add_argument(
        "--limit", type=int, help="documents per task (per subtask of a group), overriding the suite's"
    )
    tasks.add_argument(
        "--num-fewshot", type=int, help="few-shot examples per prompt, overriding the tasks' own"
    )
    tasks.add_argument("--include-path", help="folder of extra task files, in the engine's own YAML format")
    tasks.add_argument(
        "--engine",
        choices=("lm-eval", "lmms-eval"),
        help="default: lmms-eval for image-text-to-text models, lm-eval for causal LMs",
    )
    tasks.add_argument(
        "--chat-template",
        action="store_true",
        help="lm-eval: format prompts with the tokenizer's chat template (lmms-eval always does)",
    )

    run = p.add_argument_group("run")
    run.add_argument("--run-dir", help="run folder (default: runs/<model>); results in RUN/utility/")
    run.add_argument("--batch-size", type=int, default=16, help="requests per forward pass (default 16)")
    run.add_argument("--seed", type=int, default=0, help="seed of the engines' sampling and few-shot choice")
    run.add_argument(
        "--bootstrap-iters",
        type=int,
        default=1000,
        help="the engines' bootstrap resamples for the stderr of non-mean metrics (default 1000; 0: none, "
        "as in lm-eval's evaluator)",
    )
    p.set_defaults(func=cmd_utility)


def config_from_args(args: argparse.Namespace) -> UtilityConfig:
    """The ``UtilityConfig`` the arguments describe."""
    from vlguard.utility import UtilityConfig

    tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip()) if args.tasks else ()
    return UtilityConfig(
        model=args.model,
        revision=args.revision,
        adapter=args.adapter,
        dtype=args.dtype,
        device=args.device,
        trust_remote_code=args.trust_remote_code,
        suite=args.suite,
        tasks=tasks,
        limit=args.limit,
        num_fewshot=args.num_fewshot,
        include_path=args.include_path,
        engine=args.engine,
        chat_template=args.chat_template,
        batch_size=args.batch_size,
        seed=args.seed,
        bootstrap_iters=args.bootstrap_iters,
        run_dir=args.run_dir,
        system_prompt=args.system_prompt,
        preset=args.preset,
    )


def cmd_utility(args: argparse.Namespace) -> int:
    """Run the tasks and print each task's score."""
    from vlguard.utility import UtilityFolder, run_utility

    config = config_from_args(args)
    metrics = run_utility(config)
    print_scores(metrics, UtilityFolder(config.resolved_run_dir()).path)
    return 0


def _score(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.1f}" if unit == "fraction" else f"{value:.2f}"


def print_scores(metrics: Mapping[str, Any], folder: Path) -> None:
    """A table of every task's primary score with its 95 % interval and n."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    run = metrics["run"]
    table = Table(
        title=f"{run.get('model')} ({run.get('engine')} {run.get('engine_version')})",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    for column in ("task", "metric", "score", "95% CI", "n", "failed"):
        table.add_column(
            column, justify="right" if column in ("score", "n", "failed") else "left", no_wrap=True
        )
    for row in metrics["metrics"]:
        if row["group"] != "all" or not row.get("primary"):
            continue
        unit = row.get("unit", "fraction")
        interval = (
            f"{_score(row['ci_low'], unit)}–{_score(row['ci_high'], unit)}"
            if row.get("ci_low") is not None
            else "-"
        )
        metric = row["metric"] + (f" ({row['filter']})" if row.get("filter") not in (None, "none") else "")
        metric += " %" if unit == "fraction" else ""
        table.add_row(
            row["subset"], metric, _score(row["value"], unit), interval, str(row["n"]), str(row["n_errors"])
        )
    console = Console()
    console.print(table)
    console.print(f"metrics: {folder / 'metrics.json'}")
