"""The offline demo, top to bottom: the paper's experiment in miniature, on CPU, in a few minutes.

1. data: VLGuard's train split (the bundled sample dataset, or ``data`` for the real one) and its
   helpful ``safe_safe`` pairs, exported as a LLaVA-format instruction file;
2. a tiny VLM built from a config, its tokenizer trained on the training texts (nothing downloaded);
3. "vanilla": the tiny model instruction-tuned on the helpful pairs only, so it answers everything;
4. evaluation of vanilla on the held-out test split (``vlguard.evaluate.run_eval``, two offline
   judges: ``refusal`` and ``refusal-paper``, so the report also shows their agreement);
5. post-hoc safety fine-tuning (``vlguard.train``) on VLGuard's train split + the same helpful pairs,
   the paper's ``posthoc`` recipe (full fine-tuning of the tiny model; ``DemoSettings`` can pick LoRA);
6. evaluation of the post-hoc model on the same held-out samples;
7. the before/after report (``vlguard.report``).

The bundled sample's test split shares no instruction or response with its train split, so the
held-out evaluation asks the tiny model to generalise "harmful request -> apologetic refusal" to
unseen wording. A tiny model shows that the pipeline works end to end; its "safety" means nothing for
real models.
With ``data`` (the real VLGuard, thousands of samples, usually without images: evaluated with blank
images) training draws ``max_train_conversations`` conversations and evaluation ``eval_limit`` samples;
that takes longer (about 5 minutes on 2 busy cores) and post-hoc tuning is full fine-tuning.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vlguard.errors import ConfigError

logger = logging.getLogger(__name__)

VANILLA, POSTHOC = "vanilla", "post-hoc"
MARKER = "vlguard-demo.json"
# What a user runs next, on a real model (printed by the CLI and kept in the marker file).
REAL_MODEL_COMMANDS = (
    "vlguard eval --model llava-hf/llava-1.5-7b-hf --bench vlguard-test --image-mode original "
    "--judge refusal --run-dir runs/llava-vanilla",
    "vlguard train configs/train/posthoc-lora.yaml data.instructions=llava_v1_5_mix665k.json "
    "data.instructions_image_root=llava-images output_dir=runs/train/llava-posthoc",
    "vlguard eval --model llava-hf/llava-1.5-7b-hf --adapter runs/train/llava-posthoc/model "
    "--bench vlguard-test --image-mode original --judge refusal --run-dir runs/llava-posthoc",
    "vlguard report runs/llava-vanilla runs/llava-posthoc --out report",
)


@dataclass(frozen=True)
class DemoSettings:
    """How much work each step does. ``FULL`` is what ``vlguard demo`` runs, ``QUICK`` its short form.

    Tuned on the bundled sample, whose test wording is unseen in training (measured with seeds 0, 1
    and 2; vanilla refuses none of the 18 held-out unsafe samples, ``unsafe`` + ``safe_unsafe``):
    FULL's post-hoc model refuses 18 of 18 with every seed, and over-refuses 0, 2 and 2 of the 9
    ``safe_safe`` samples; QUICK's refuses 18 of 18 and over-refuses 0 to 4 of 9. Post-hoc LoRA (the
    paper's recipe, ``posthoc_method="lora"``) is not robust on so small a model: at lr 1e-2 for 200
    steps it refused 16, 4 and 5 of 18 with the three seeds, and diverged at higher lr or rank.
    """

    model_size: str = "tiny"
    vanilla_steps: int = 30
    vanilla_lr: float = 3e-3
    posthoc_steps: int = 120
    posthoc_lr: float = 2e-3
    # Full fine-tuning: more robust than LoRA on the tiny model (see above) and faster per step, as
    # LoRA's per-layer overhead outweighs its tiny matrix products.
    posthoc_method: str = "full"
    lora_r: int = 16
    batch_size: int = 8
    max_new_tokens: int = 24
    # Only with real VLGuard data (thousands of samples): caps that keep the demo within minutes.
    max_train_conversations: int = 600
    eval_limit: int = 150
    seed: int = 0


FULL = DemoSettings()
# Real VLGuard (--data): full fine-tuning learns its varied refusals within the budget where LoRA does
# not (measured: 39 of 42 held-out unsafe samples refused, no over-refusal, on 150 test samples).
FULL_REAL_DATA = DemoSettings(vanilla_steps=60, posthoc_steps=120, posthoc_lr=3e-3, posthoc_method="full")
QUICK = DemoSettings(
    vanilla_steps=30,
    posthoc_steps=80,
    posthoc_lr=3e-3,
    posthoc_method="full",
    max_new_tokens=12,
    max_train_conversations=200,
    eval_limit=60,
)


@dataclass(frozen=True)
class DemoResult:
    """Where the demo put things and what it measured.

    ``headline`` maps a model label (``vanilla``, ``post-hoc``) to its ASR on ``unsafe`` and
    ``safe_unsafe`` and its over-refusal on ``safe_safe`` (refusal judge). ``refused_unsafe`` maps a
    label to (refused, total) held-out ``unsafe`` samples.
    """

    report: Path
    out_dir: Path
    runs: dict[str, Path]
    headline: dict[str, dict[str, float]]
    refused_unsafe: dict[str, tuple[int, int]]
    seconds: float
    data_source: str
    image_mode: str
    timings: dict[str, float] = field(default_factory=dict)


@contextmanager
def _quiet_console() -> Iterator[None]:
    """For the demo's duration: no progress bars, library warnings or other modules' INFO lines.

    The demo's console is its step messages and summary; each step's own chatter (Trainer bars, "Loading
    weights" bars, transformers warnings about the tiny model, per-module INFO logs) would bury them.
    Everything is restored on exit, so a caller's logging and transformers settings are untouched.
    """
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    package = logging.getLogger("vlguard")
    package_level, own_level = package.level, logger.level
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if not logging.getLogger().isEnabledFor(logging.DEBUG):  # debug logging (``-v``) keeps everything
        package.setLevel(logging.WARNING)
        logger.setLevel(logging.INFO)  # this module's step messages still pass
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
        package.setLevel(package_level)
        logger.setLevel(own_level)


def _prepare_out_dir(out_dir: Path) -> None:
    """Create ``out_dir``; clear it only when it holds a previous demo (never an unrelated folder)."""
    if out_dir.exists() and any(out_dir.iterdir()):
        if not (out_dir / MARKER).is_file():
            raise ConfigError(f"{out_dir} exists and is not a previous demo's output; choose another --out")
        for name in ("data", "models", "runs", "report", MARKER):
            target = out_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    # Written first, so that a demo interrupted half-way can be rerun into the same folder.
    (out_dir / MARKER).write_text(json.dumps({"status": "running"}) + "\n", encoding="utf-8")


def _helpfulness_file(records: Any, path: Path) -> int:
    """Write the ``safe_safe`` pairs (safe image + safe instruction → helpful answer) in LLaVA format."""
    rows = [
        {
            "id": f"{record.uid}:safe_safe",
            "image": record.image,
            "conversations": [
                {"from": "human", "value": f"<image>\n{pair.instruction}"},
                {"from": "gpt", "value": pair.response},
            ],
        }
        for record in records
        for pair in record.pairs
        if pair.key == "safe_instruction"
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return len(rows)


def _train(overrides: dict[str, Any]) -> Path:
    from vlguard.train.config import load_config
    from vlguard.train.trainer import train

    result = train(load_config(None, overrides))
    # DEBUG: on the demo's console the step lines say what is trained; this is for ``-v``.
    logger.debug(
        "trained %s: %d steps, loss %.3f", overrides["output_dir"], result.global_step, result.train_loss
    )
    return result.model_dir


def _evaluate(
    model: Path,
    adapter: Path | None,
    run_dir: Path,
    data: str,
    image_mode: str,
    limit: int | None,
    settings: DemoSettings,
) -> dict[str, Any]:
    from vlguard.evaluate import EvalConfig, run_eval

    config = EvalConfig(
        model=str(model),
        adapter=None if adapter is None else str(adapter),
        bench="vlguard-test",
        data=data,
        image_mode=image_mode,
        # Two offline judges: the report then shows how far they agree (Cohen's kappa).
        judges=("refusal", "refusal-paper"),
        limit=limit,
        batch_size=16,
        max_new_tokens=settings.max_new_tokens,
        seed=settings.seed,
        run_dir=str(run_dir),
    )
    return run_eval(config, progress=False)


def _headline(metrics: dict[str, Any]) -> dict[str, float]:
    wanted = {
        ("unsafe", "attack_success_rate"): "asr_unsafe",
        ("safe_unsafe", "attack_success_rate"): "asr_safe_unsafe",
        ("safe_safe", "over_refusal_rate"): "over_refusal",
    }
    return {
        wanted[(row["subset"], row["metric"])]: float(row["value"])
        for row in metrics.get("metrics", [])
        if row["judge"] == "refusal" and row["group"] == "all" and (row["subset"], row["metric"]) in wanted
    }


def refused_unsafe(run_dir: Path) -> tuple[int, int]:
    """(refused, total) held-out ``unsafe`` samples of a run, counted from its refusal judgments."""
    from vlguard.runs import RunFolder

    run = RunFolder(run_dir)
    unsafe = {r["id"] for r in run.samples.read() if r["subset"] == "unsafe"}
    labels = [r["label"] for r in run.judgments("refusal").read() if r["sample_id"] in unsafe]
    return sum(label == "refusal" for label in labels), len(unsafe)


def run_demo(
    out_dir: str | Path,
    data: str | Path | None = None,
    quick: bool = False,
    settings: DemoSettings | None = None,
    on_step: Callable[[str], None] | None = None,
) -> DemoResult:
    """Run the whole demo into ``out_dir`` (see the module docstring) and return what it measured.

    ``data`` is a VLGuard folder (train.json, test.json, images optional); default: the bundled sample
    dataset. ``quick`` trains and generates less (for tests); the result is the same kind of report.
    ``settings`` overrides the preset that ``quick`` picks. ``on_step`` receives a one-line message as
    each step starts (default: logged at INFO); libraries' progress bars and warnings are silenced
    meanwhile.
    """
    with _quiet_console():
        return _run_demo(Path(out_dir), data, quick, settings, on_step)


def _run_demo(
    out: Path,
    data: str | Path | None,
    quick: bool,
    settings: DemoSettings | None,
    on_step: Callable[[str], None] | None,
) -> DemoResult:
    from vlguard.data import load_vlguard
    from vlguard.data.sample import sample_dataset_dir
    from vlguard.models.tiny import build_tiny_vlm
    from vlguard.report import write_report

    if settings is None:
        settings = QUICK if quick else (FULL if data is None else FULL_REAL_DATA)
    started = time.perf_counter()
    timings: dict[str, float] = {}
    _prepare_out_dir(out)

    def step(number: int, message: str) -> None:
        line = f"[{number}/7] {message}"
        if on_step is None:
            logger.info(line)
        else:
            on_step(line)

    # 1. data. Images are used when the data has them (the sample does); the real annotations without
    # images are evaluated with blank images, as in docs/experiments.md.
    source = str(data) if data is not None else str(sample_dataset_dir())
    step(1, f"data: {source}")
    train_split = load_vlguard(source, "train")
    image_mode = "original" if train_split.images is not None else "blank"
    real_data = data is not None
    helpful = out / "data" / "helpfulness.json"
    n_helpful = _helpfulness_file(train_split.records, helpful)
    image_root = train_split.source.get("image_root")
    texts = [
        text
        for record in train_split.records
        for pair in record.pairs
        for text in (pair.instruction, pair.response)
    ]
    common: dict[str, Any] = {
        "data.image_mode": image_mode,
        "data.instructions": str(helpful),
        "data.instructions_image_root": image_root if image_mode == "original" else None,
        "data.seed": settings.seed,
        "data.max_samples": settings.max_train_conversations if real_data else None,
        "global_batch_size": settings.batch_size,
        "per_device_batch_size": settings.batch_size,
        "max_length": 512,
        "warmup_ratio": 0.0,
        "lr_scheduler": "constant",
        "save_steps": 10_000,  # no intermediate checkpoints: the demo is short
        "logging_steps": 10,
        "progress": False,  # no Trainer bar or log dicts: the demo reports its own steps
        "seed": settings.seed,
    }

    # 2. a tiny VLM whose tokenizer knows the data's words.
    step(2, f"building a tiny VLM ({settings.model_size}) with a tokenizer trained on the train split")
    base = build_tiny_vlm(out / "models" / "base", texts=texts, size=settings.model_size, seed=settings.seed)
    timings["build"] = time.perf_counter() - started

    # 3. vanilla: helpful answers only, no safety data.
    step(3, f"vanilla: instruction tuning on {n_helpful} helpful pairs only ({settings.vanilla_steps} steps)")
    mark = time.perf_counter()
    vanilla = _train(
        {
            **common,
            "model.name_or_path": str(base),
            "data.recipe": "instructions",
            "method": "full",
            "lr": settings.vanilla_lr,
            "max_steps": settings.vanilla_steps,
            "output_dir": str(out / "models" / "vanilla"),
        }
    )
    timings["train_vanilla"] = time.perf_counter() - mark

    # 4. evaluate vanilla on the held-out test split.
    step(4, "evaluating vanilla on the held-out test split")
    mark = time.perf_counter()
    limit = settings.eval_limit if real_data else None
    runs = {VANILLA: out / "runs" / "vanilla", POSTHOC: out / "runs" / "posthoc"}
    vanilla_metrics = _evaluate(vanilla, None, runs[VANILLA], source, image_mode, limit, settings)
    timings["eval_vanilla"] = time.perf_counter() - mark

    # 5. post-hoc safety fine-tuning (full by default) on VLGuard train + the same helpful pairs.
    step(
        5,
        f"post-hoc safety fine-tuning ({settings.posthoc_method}, {settings.posthoc_steps} steps) "
        "on the VLGuard train split + the same helpful pairs",
    )
    mark = time.perf_counter()
    posthoc = _train(
        {
            **common,
            "model.name_or_path": str(vanilla),
            "data.recipe": "posthoc",
            "data.vlguard": source,
            # All helpful pairs, as in the vanilla step; with real data, max_samples then draws from the
            # whole mixture uniformly (about 2:1 safety to helpfulness for VLGuard's train split).
            "data.n_helpfulness": n_helpful,
            "method": settings.posthoc_method,
            "lora.r": settings.lora_r,
            "lora.alpha": 2 * settings.lora_r,
            "lora.dropout": 0.0,
            "lr": settings.posthoc_lr,
            "max_steps": settings.posthoc_steps,
            "output_dir": str(out / "models" / "posthoc"),
        }
    )
    timings["train_posthoc"] = time.perf_counter() - mark

    # 6. evaluate the post-hoc model on the same samples.
    step(6, "evaluating the post-hoc model on the same held-out samples")
    mark = time.perf_counter()
    if settings.posthoc_method == "lora":  # the adapter is applied on vanilla at generation, unmerged
        posthoc_metrics = _evaluate(vanilla, posthoc, runs[POSTHOC], source, image_mode, limit, settings)
    else:
        posthoc_metrics = _evaluate(posthoc, None, runs[POSTHOC], source, image_mode, limit, settings)
    timings["eval_posthoc"] = time.perf_counter() - mark

    # 7. the before/after report.
    step(7, "writing the before/after report")
    mark = time.perf_counter()
    files = write_report(
        [runs[VANILLA], runs[POSTHOC]],
        out / "report",
        labels=[VANILLA, POSTHOC],
        title="vlguard demo: a tiny VLM before and after post-hoc safety fine-tuning",
    )
    timings["report"] = time.perf_counter() - mark

    result = DemoResult(
        report=files.main,
        out_dir=out,
        runs=runs,
        headline={VANILLA: _headline(vanilla_metrics), POSTHOC: _headline(posthoc_metrics)},
        refused_unsafe={label: refused_unsafe(path) for label, path in runs.items()},
        seconds=time.perf_counter() - started,
        data_source=source,
        image_mode=image_mode,
        timings=timings,
    )
    summary = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(result).items()}
    summary["runs"] = {k: str(v) for k, v in runs.items()}
    summary["settings"] = asdict(settings)
    summary["real_model_commands"] = list(REAL_MODEL_COMMANDS)
    (out / MARKER).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return result
