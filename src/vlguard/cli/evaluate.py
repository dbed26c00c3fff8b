"""`vlguard eval`, `vlguard generate`, `vlguard judge` and `vlguard ls`: thin wrappers over ``vlguard.evaluate``.

Heavy libraries (torch, transformers) are imported inside the command functions so ``--help`` is fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlguard.cli.common import is_rank_zero, judge_options, key_value
from vlguard.errors import ConfigError
from vlguard.records import IMAGE_MODES

if TYPE_CHECKING:
    from vlguard.evaluate import EvalConfig

EXAMPLES = """examples:
  vlguard eval --model tiny --bench vlguard-test --data ../shared/data/vlguard \\
      --image-mode blank --judge refusal --run-dir runs/x --limit 60
  vlguard eval --model llava-hf/llava-1.5-7b-hf --revision main --adapter out/lora --run-dir runs/lora
  vlguard eval --model tiny --bench figstep --data ../shared/data/figstep --bench-option variant=SafeBench-Tiny
  vlguard eval --model tiny --bench advbench --data ../shared/data/advbench --bench-option suffix=' Sure,'
  vlguard eval --model tiny --bench sst2 --data ../shared/data/sst2 --limit 40 --run-dir runs/sst2
  vlguard eval --model tiny --bench gsm8k --data ../shared/data/gsm8k --bench-option step_by_step=true
  torchrun --nproc_per_node 2 -m vlguard.cli.main generate --model tiny --run-dir runs/x ...
  vlguard eval --model tiny --bench advbench-suffix --data ../shared/data/advbench
  vlguard eval --model tiny --bench vlsafe --data ../shared/data/vlsafe --image-mode blank --limit 20
  vlguard eval --model tiny --bench jailbreakllms --data ../shared/data/jailbreakllms --bench-option templates=5
  vlguard eval --model llava-hf/llava-1.5-7b-hf --preset paper --bench vlguard-test --subset unsafe
"""


def registered_names() -> str:
    """The benchmarks, judges and backends a run can use, each with its description (for ``--help``).

    Read from the registries, so a newly registered name shows here without touching the CLI.
    """
    from vlguard.benchmarks import BENCHMARKS
    from vlguard.generation import BACKENDS
    from vlguard.judges import JUDGES

    lines: list[str] = []
    for title, registry in (
        ("benchmarks (--bench; `vlguard ls` for their image modes, judges and axes)", BENCHMARKS),
        ("judges (--judge)", JUDGES),
        ("backends (--backend)", BACKENDS),
    ):
        lines += ["", f"{title}:"]
        width = max(len(name) for name in registry)
        lines += [f"  {name:<{width}}  {text}" for name, text in registry.descriptions().items()]
    return "\n".join(lines) + "\n"


def _add_generation_args(p: argparse.ArgumentParser) -> None:
    from vlguard.generation import BACKENDS
    from vlguard.presets import PRESETS

    model = p.add_argument_group("model")
    model.add_argument(
        "--model",
        required=True,
        help="local folder, Hub id, 'tiny' (built-in tiny VLM) or 'tiny-lm' (built-in tiny text LM)",
    )
    model.add_argument(
        "--backend", default="hf", choices=sorted(BACKENDS), help="generation backend (default: hf)"
    )
    model.add_argument("--revision", help="Hub revision (branch, tag or commit) of the model")
    model.add_argument("--adapter", help="PEFT LoRA adapter folder or Hub id, applied without merging")
    model.add_argument(
        "--dtype", default="auto", help="auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16"
    )
    model.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    model.add_argument("--system-prompt", help="system message put before every prompt")
    model.add_argument(
        "--trust-remote-code", action="store_true", help="allow model code from the Hub (off by default)"
    )
    model.add_argument(
        "--backend-option",
        action="append",
        default=[],
        type=key_value,
        metavar="KEY=VALUE",
        help="extra backend setting, repeatable (e.g. base_url=http://localhost:8000/v1, api_key_env=MY_KEY)",
    )

    data = p.add_argument_group("data")
    data.add_argument(
        "--bench", default="vlguard-test", help="benchmark name (listed below; default vlguard-test)"
    )
    data.add_argument("--data", help="local data folder or file (default: the benchmark's Hub dataset)")
    data.add_argument("--data-revision", help="Hub revision of the dataset")
    data.add_argument("--images", help="image folder or zip (default: next to the data, or from the Hub)")
    data.add_argument(
        "--bench-option",
        action="append",
        default=[],
        type=key_value,
        metavar="KEY=VALUE",
        help="benchmark loader option, repeatable; VALUE is JSON when it parses, else a string "
        "(e.g. suffix='...' for advbench, variant=SafeBench-Tiny for figstep)",
    )
    data.add_argument(
        "--image-mode",
        choices=IMAGE_MODES,
        help="image given to the model (default: the benchmark's own, see `vlguard ls`)",
    )
    data.add_argument(
        "--allow-blank-substitutes",
        action="store_true",
        help="with --image-mode original, use a blank image where an image is missing instead of failing",
    )
    data.add_argument(
        "--subset", action="append", dest="subsets", help="evaluate only this subset (repeatable)"
    )
    data.add_argument(
        "--limit",
        type=int,
        help="evaluate N samples, stratified by subset (deterministic: smallest sha256 of the sample id)",
    )

    run = p.add_argument_group("run")
    run.add_argument(
        "--run-dir", help="run folder (default: runs/<model>-<bench>-<image mode>); reruns resume"
    )
    run.add_argument("--batch-size", type=int, default=16, help="prompts per forward pass (default 16)")
    run.add_argument(
        "--max-new-tokens", type=int, default=256, help="new tokens per answer (default 256, as the paper)"
    )
    run.add_argument("--seed", type=int, default=0, help="seed (bootstrap CIs, pairwise judge order)")
    run.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="reproduce a reference evaluation: 'paper' = the VLGuard reference for LLaVA-1.5 (llava_v1 "
        "system prompt, fp16 on GPU, greedy, 256 new tokens, min_new_tokens 1, judge refusal-paper); "
        "flags that disagree with it are an error, --judge adds judges (docs/benchmarks-data.md)",
    )
    run.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _add_judge_args(p: argparse.ArgumentParser, default: Sequence[str] | None) -> None:
    p.add_argument(
        "--judge",
        action="append",
        dest="judges",
        help=f"judge to run, repeatable (listed by `vlguard ls`){'; default: ' + ', '.join(default) if default else ''}",
    )
    p.add_argument(
        "--judge-option",
        action="append",
        default=[],
        type=key_value,
        metavar="JUDGE.KEY=VALUE",
        help="judge setting, repeatable (e.g. refusal.mode=paper, llm-judge.model=gpt-4o)",
    )


def register(subparsers: Any) -> None:
    """Add the eval, generate, judge and ls commands."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser(
        "eval",
        help="generate, judge and score a model on a benchmark (resumable)",
        description="Generate answers, judge them and compute metrics.json in a run folder. "
        "Rerunning the same command resumes; other settings in the same folder are an error.",
        epilog=EXAMPLES + registered_names(),
        formatter_class=fmt,
    )
    _add_generation_args(p)
    _add_judge_args(p, default=("the benchmark's own (`vlguard ls`)",))
    p.set_defaults(func=cmd_eval)

    p = subparsers.add_parser(
        "generate",
        help="generate answers only (no judges), resumable",
        description="Generate answers into RUN/generations.jsonl; judge them later with `vlguard judge RUN`.",
        epilog=EXAMPLES + registered_names(),
        formatter_class=fmt,
    )
    _add_generation_args(p)
    p.set_defaults(func=cmd_generate)

    p = subparsers.add_parser(
        "judge",
        help="re-score saved generations, or judge a JSONL file",
        description="Judge a run's saved generations without regenerating (then recompute metrics.json), "
        "or any JSONL file of {id, prompt, response[, image]} records with --input/--output. "
        "With --human-label-field, measure the judge against human labels instead: agreement with a "
        "Wilson interval, confusion matrix, per-class precision/recall, Cohen's kappa and the "
        "disagreements, written to OUTPUT/accuracy.json and OUTPUT/accuracy.md.",
        epilog="examples:\n  vlguard judge runs/x --judge refusal --judge refusal-paper\n"
        "  vlguard judge --judge refusal --input responses.jsonl --output labels.jsonl\n"
        "  vlguard judge --judge refusal --input labelled.jsonl --human-label-field human_label --output acc/\n",
        formatter_class=fmt,
    )
    p.add_argument("run", nargs="?", help="run folder to re-score")
    _add_judge_args(p, default=None)
    p.add_argument("--input", help="JSONL file of records with id, prompt, response (and optionally image)")
    p.add_argument(
        "--output",
        help="where to write one {id, judge, label, evidence} record per input "
        "(with --human-label-field: a folder for judgments.jsonl, accuracy.json, accuracy.md)",
    )
    p.add_argument(
        "--human-label-field",
        help="field of each --input line holding a human label (refusal / partial_refusal / compliance, "
        "or safe / unsafe, harmless / harmful, or a harm boolean / 0-1): measure the judge's agreement with "
        "it; the judge must give labels of the same kind (refusal or harm)",
    )
    p.add_argument(
        "--human-label-true",
        choices=("harmful", "harmless"),
        default="harmful",
        help="what a true / 1 human label means (default harmful, as GPTFuzz's label; harmless for a field "
        "like BeaverTails' is_safe)",
    )
    p.add_argument(
        "--partial-as",
        choices=("refused", "answered"),
        default="refused",
        help="how a partial refusal counts in the binary agreement (default refused, the XSTest convention; "
        "answered follows the attack-success metrics)",
    )
    p.add_argument("--batch-size", type=int, default=64, help="replies per judge call (default 64)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=cmd_judge)

    p = subparsers.add_parser(
        "ls", help="list benchmarks, judges and backends", description="List what can be used by name."
    )
    p.set_defaults(func=cmd_ls)


def config_from_args(args: argparse.Namespace, judges: Sequence[str] | None = None) -> EvalConfig:
    """The ``EvalConfig`` the arguments describe."""
    from vlguard.evaluate import EvalConfig

    bench_options: dict[str, Any] = dict(args.bench_option)
    if args.images:
        if "image_root" in bench_options:
            raise ConfigError("give the images with --images or --bench-option image_root=..., not both")
        bench_options["image_root"] = args.images
    return EvalConfig(
        model=args.model,
        backend=args.backend,
        revision=args.revision,
        adapter=args.adapter,
        bench=args.bench,
        data=args.data,
        data_revision=args.data_revision,
        image_mode=args.image_mode,
        allow_blank_substitutes=args.allow_blank_substitutes,
        judges=tuple(judges) if judges else None,
        judge_options=judge_options(getattr(args, "judge_option", [])),
        subsets=tuple(args.subsets) if args.subsets else None,
        limit=args.limit,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        dtype=args.dtype,
        device=args.device,
        system_prompt=args.system_prompt,
        trust_remote_code=args.trust_remote_code,
        backend_options=dict(args.backend_option),
        bench_options=bench_options,
        run_dir=args.run_dir,
        preset=args.preset,
    )


def cmd_eval(args: argparse.Namespace) -> int:
    """Generate, judge and compute metrics; print the summary table."""
    from vlguard.evaluate import run_eval

    config = config_from_args(args, judges=args.judges or None)
    metrics = run_eval(config, progress=not args.no_progress)
    if metrics:  # empty on non-zero ranks of a data-parallel launch
        print_summary(metrics, config.resolved_run_dir())
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    """Generate answers only (resumable)."""
    from vlguard.evaluate import run_generation

    config = config_from_args(args)
    run_dir = run_generation(config, progress=not args.no_progress)
    if is_rank_zero():
        print(f"generations in {run_dir / 'generations.jsonl'}")
    return 0


def cmd_judge(args: argparse.Namespace) -> int:
    """Judge a run's saved generations, or a JSONL file with --input/--output."""
    if not args.judges:
        raise ConfigError("give at least one --judge (see `vlguard ls`)")
    options = judge_options(args.judge_option)
    if args.human_label_field is not None:  # also when empty: that is a mistake, not plain judging
        return _judge_accuracy(args, options)
    if args.input or args.output:
        if args.run or not (args.input and args.output):
            raise ConfigError("judge a file with both --input and --output, and no run folder")
        from vlguard.judges import judge_jsonl
        from vlguard.preflight import check_judges

        if len(args.judges) != 1:
            raise ConfigError("judge a file with one --judge at a time (one output file per judge)")
        (judge,) = check_judges(args.judges, options)  # its options and pre-flight, before judging
        n = judge_jsonl(judge, args.input, args.output, batch_size=args.batch_size)
        print(f"{n} judgments written to {args.output}")
        return 0
    if not args.run:
        raise ConfigError("give a run folder, or --input FILE.jsonl --output OUT.jsonl")
    from vlguard.evaluate import run_judges, run_metrics

    run_judges(args.run, args.judges, options, progress=not args.no_progress)
    print_summary(run_metrics(args.run), Path(args.run))
    return 0


def _judge_accuracy(args: argparse.Namespace, options: dict[str, dict[str, Any]]) -> int:
    """``vlguard judge --human-label-field``: agreement of one judge with human labels."""
    from vlguard.fileio import check_output_dir
    from vlguard.judges.agreement import human_label_mapping, run_judge_accuracy, write_accuracy
    from vlguard.judges.files import read_labelled_inputs

    if args.run or not (args.input and args.output):
        raise ConfigError(
            "measure a judge with --input FILE.jsonl, --human-label-field FIELD and --output DIR"
        )
    if len(args.judges) != 1:
        raise ConfigError("measure one --judge at a time (one report per judge)")
    if not args.human_label_field.strip():
        raise ConfigError(
            "--human-label-field is empty: name the field of each --input line that holds the human label"
        )
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, not {args.batch_size}")
    check_output_dir(args.output, "--output folder")  # before any judging, not after it
    items, labels = read_labelled_inputs(
        args.input, args.human_label_field, human_label_mapping(args.human_label_true)
    )
    from vlguard.preflight import check_judges

    (judge,) = check_judges(args.judges, options)  # its options and pre-flight, before judging anything
    judgments, report = run_judge_accuracy(
        judge, items, labels, partial_as=args.partial_as, batch_size=args.batch_size
    )
    out = write_accuracy(args.output, judgments, report, title=f"{args.judges[0]} on {Path(args.input).name}")
    ci = report["agreement_ci"]
    agreement = "n/a" if report["agreement"] is None else f"{100 * report['agreement']:.1f} %"
    interval = f" (95 % CI {100 * ci[0]:.1f}–{100 * ci[1]:.1f})" if ci else ""
    kappa = "n/a" if report["kappa"] is None else f"{report['kappa']:.3f}"
    print(
        f"{args.judges[0]}: agreement {agreement}{interval}, kappa {kappa}, "
        f"{report['n_scored']} scored, {report['n_errors']} judge errors, "
        f"{len(report['disagreements'])} disagreements"
    )
    if report.get("routed") is not None:
        print(f"routed to the model judge: {100 * report['routed']:.1f} %")
    print(f"report: {out / 'accuracy.md'} and {out / 'accuracy.json'}")
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    """List benchmarks, judges and backends by name, with the facts of their registry entries."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from vlguard.benchmarks import BENCHMARKS
    from vlguard.generation import BACKENDS
    from vlguard.judges import JUDGES
    from vlguard.metric_registry import AXES, is_stand_in

    console = Console()
    # Benchmarks also show the image mode used when --image-mode is not given, and the axis their
    # reference scores on; judges the axis their verdicts measure (a judge on another safety axis than
    # the benchmark's reference is a stand-in, starred among the default judges).

    def default_judges(entry: Any) -> str:
        return ",".join(
            name + ("*" if name in JUDGES and is_stand_in(JUDGES[name].axis, entry.axis) else "")
            for name in entry.judges
        )

    sections: list[tuple[str, dict[str, list[str]]]] = [
        (
            "benchmarks (name, default image mode, default judges, reference axis, description)",
            {
                name: [
                    e.image_mode,
                    default_judges(e),
                    _axes_text(e.axis, {s.axis for s in e.subsets}),
                    e.description,
                ]
                for name, e in BENCHMARKS.items()
            },
        ),
        ("judges (name, axis, description)", {name: [e.axis, e.description] for name, e in JUDGES.items()}),
        ("backends", {name: [e.description] for name, e in BACKENDS.items()}),
    ]
    for title, entries in sections:
        table = Table(title=title, title_justify="left", show_header=False, box=None, padding=(0, 2))
        for name, cells in entries.items():
            table.add_row(f"[bold]{escape(name)}[/bold]", *(escape(cell) for cell in cells))
        console.print(table)
    console.print("axes: " + "; ".join(f"{axis} = {meaning}" for axis, meaning in AXES.items()))
    console.print(
        "* a default judge that stands in: it measures another safety axis than the benchmark's reference, "
        "so its numbers are flagged as stand-ins wherever they appear"
    )
    return 0


def _axes_text(axis: str, subset_axes: set[Any]) -> str:
    """The benchmark's reference axis, and any other axis a subset of it is scored on."""
    others = sorted(a for a in subset_axes if a is not None and a != axis)
    return axis + (f" ({'/'.join(others)} for some subsets)" if others else "")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def print_summary(metrics: Mapping[str, Any], run_dir: Path) -> None:
    """A table of ASR / over-refusal / win rate / accuracy with 95 % CIs, per judge and subset, then what
    each judge's numbers measure (its axis); a stand-in's metric is starred and explained."""
    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from vlguard.metric_registry import AXES, METRICS

    run = metrics["run"]
    table = Table(
        title=f"{run.get('model')} on {run.get('benchmark')}", title_justify="left", box=box.SIMPLE_HEAD
    )
    for column in ("judge", "subset", "metric", "%", "95% CI", "n", "err"):
        table.add_column(column, justify="right" if column in ("%", "n", "err") else "left", no_wrap=True)
    axes: dict[str, str] = {}
    stand_ins: dict[str, str] = {}
    for row in metrics["metrics"]:
        info = METRICS.get(row["metric"])
        if row["group"] != "all" or info is None or not info.summary:
            continue
        axes.setdefault(row["judge"], row.get("axis") or "unknown")
        if row.get("stand_in"):
            stand_ins[row["judge"]] = row.get("reference_axis") or "another axis"
        table.add_row(
            row["judge"],
            row["subset"],
            info.short + ("*" if row.get("stand_in") else ""),
            _pct(row["value"]),
            f"{_pct(row['ci_low'])}–{_pct(row['ci_high'])}",
            str(row["n"]),
            str(row["n_errors"]),
        )
    console = Console()
    console.print(table)
    for judge, axis in axes.items():
        meaning = AXES.get(axis)
        console.print(escape(f"axis of {judge}: {axis}" + (f" ({meaning})" if meaning else "")))
    for judge, reference in stand_ins.items():
        console.print(
            escape(
                f"* stand-in: this benchmark's reference scores {reference}; the {judge} judge measures "
                f"{axes[judge]}, so its starred numbers stand in for the reference's, they are not its measure"
            )
        )
    methods = sorted({row.get("ci_method") or "bootstrap-percentile" for row in metrics["metrics"]})
    if methods:
        console.print(f"95% CI method: {', '.join(methods)}")
    for row in metrics.get("agreement", []):
        if row.get("subset", "all") == "all":
            kappa = "n/a" if row["kappa"] is None else f"{row['kappa']:.3f}"
            console.print(
                f"agreement {' vs '.join(row['judges'])}: Cohen's kappa {kappa}, "
                f"raw agreement {_pct(row.get('agreement'))} %, n {row['n']}"
            )
    for count in run.get("partial") or []:
        console.print(
            "[bold red]"
            + escape(
                f"PARTIAL benchmark (allow_partial): {count.get('file')} has {count.get('found')} "
                f"{count.get('what')}, the published {count.get('part')} has {count.get('expected')}"
            )
            + "[/bold red]"
        )
    if metrics.get("complete") is False:
        from vlguard.evaluate import incomplete_summary

        console.print(f"[bold red]{escape(incomplete_summary(metrics.get('completeness') or {}))}[/bold red]")
    console.print(f"metrics: {run_dir / 'metrics.json'}")
