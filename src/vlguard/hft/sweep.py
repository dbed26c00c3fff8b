"""Running a harmful fine-tuning sweep, top to bottom: pools → alignment → cells → evaluations → summary.

``run_sweep(config)`` does, in ``config.output_dir``:

1. load the pools (task, harmful, safety pairs) and check that no Harmful Score prompt occurs in them;
2. optionally align the base model (``alignment.*``): a normal ``vlguard train`` run on safety (and
   task) pairs; a LoRA alignment is merged, so every cell starts from the same standalone model;
3. evaluate that start model (``reference/``) unless ``eval.reference`` is off;
4. for every cell (harmful ratio p × defence): draw the user's set, apply the defence, train (a normal
   ``vlguard train`` run folder), then measure the Harmful Score and the Finetune Accuracy (two normal
   ``vlguard eval`` run folders);
5. once every cell is finished, write ``summary.json`` (:mod:`vlguard.hft.summary`).

Everything resumes: a finished stage is skipped, a killed training run continues from its last
complete checkpoint, a killed evaluation from its last appended batch. Each stage folder keeps the
settings it was made with (``stage.json``); a rerun with other settings for that stage stops with a
``RunMismatchError`` instead of mixing results. ``--cells i/k`` runs every k-th cell from the i-th, so
k processes (or machines sharing the folder) can run a sweep together; each waits for the alignment
stage, which only shard 0 runs. Under ``accelerate launch`` every process runs the same loop: training
and generation are data-parallel, files are written by rank 0.

The folder layout is :mod:`vlguard.hft.layout`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlguard import distributed
from vlguard.errors import ConfigError, RunMismatchError
from vlguard.evaluate import (
    EvalConfig,
    read_generations,
    run_generation,
    run_judges,
    run_metrics,
    select_samples,
)
from vlguard.hft.config import HFTConfig, check_hft_config, dump_hft_config, key_values, second_judge_options
from vlguard.hft.data import (
    HARMFUL,
    SAFETY,
    TASK,
    Pair,
    PairPool,
    advbench_pairs,
    build_user_set,
    draw,
    find_leaks,
    qa_pairs,
    shuffled,
    task_pairs,
    vlguard_refusals,
    write_pairs,
)
from vlguard.hft.defences import DEFENCES, CellData, apply_defence
from vlguard.hft.layout import Cell, Layout, Stage
from vlguard.hft.summary import write_summary
from vlguard.models.resolve import resolve_model_path
from vlguard.redaction import redact
from vlguard.runs import RunFolder, atomic_write_json, atomic_write_text, dedupe
from vlguard.train.config import STDIN, DataConfig, SafetyLossConfig, TrainConfig
from vlguard.train.data import TrainingData

logger = logging.getLogger(__name__)

# How often a shard waiting for the alignment stage (run by shard 0) looks for it.
ALIGNMENT_POLL_SECONDS = 10.0


def plan_cells(config: HFTConfig) -> list[Cell]:
    """Every cell, ratio by ratio, defences in config order (the order shards are cut from)."""
    return [Cell(ratio, defence) for ratio in config.attack.harmful_ratios for defence in config.defences]


def parse_shard(spec: str) -> tuple[int, int]:
    """``"i/k"`` → ``(i, k)`` with 0 ≤ i < k (``--cells 0/2``: cells 0, 2, 4, ...)."""
    index, sep, count = spec.partition("/")
    try:
        i, k = int(index), int(count)
    except ValueError:
        i, k = -1, 0
    if not sep or k < 1 or not 0 <= i < k:
        raise ConfigError(f"--cells {spec!r}: expected I/K with 0 <= I < K, e.g. 0/2 and 1/2 for two shards")
    return i, k


def shard_cells(cells: Sequence[Cell], index: int, count: int) -> list[Cell]:
    """The cells of shard ``index`` of ``count``: every ``count``-th from the ``index``-th."""
    return list(cells[index::count])


# ---- stage settings ---------------------------------------------------------------------------------


def guard_stage(stage: Stage, settings: dict[str, Any], *, write: bool = True) -> None:
    """Record the settings a stage is made with; stop if the folder was made with other ones."""
    folder, path = stage.path, stage.settings_file
    # without secrets (credentials in a judge's base_url, ...): compared with the file in this form
    canonical = json.loads(json.dumps(redact(settings), sort_keys=True, default=str))
    if path.is_file():
        recorded = json.loads(path.read_text(encoding="utf-8"))
        if recorded != canonical:
            keys = _differing_keys(recorded, canonical)
            shown = ", ".join(keys[:6]) + (f" and {len(keys) - 6} more" if len(keys) > 6 else "")
            raise RunMismatchError(
                f"{folder} was made with other settings (differing: {shown}); use another "
                f"output_dir, or delete {folder} to redo it"
            )
        return
    if write and distributed.is_main_process():
        atomic_write_json(path, canonical)


def _differing_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two JSON values (dicts are compared key by key)."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys: list[str] = []
        for key in sorted(set(a) | set(b)):
            keys += _differing_keys(a.get(key), b.get(key), f"{prefix}{key}.")
        return keys
    return [] if a == b else [prefix.rstrip(".") or "(all)"]


def _sha256_lines(pairs: Sequence[Pair]) -> str:
    digest = hashlib.sha256()
    for pair in pairs:
        digest.update(json.dumps(dataclasses.asdict(pair), sort_keys=True).encode())
    return digest.hexdigest()


# ---- pools -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pools:
    """The three pools of a sweep (None where no stage needs them)."""

    task: PairPool
    harmful: PairPool | None
    safety: PairPool | None


def load_pools(config: HFTConfig) -> Pools:
    """Load the task pool, and the harmful / safety pools when a cell or the alignment needs them."""
    task = task_pairs(
        config.task.name, config.task.data, split=config.task.train_split, revision=config.task.revision
    )
    harmful = None
    if any(r > 0 for r in config.attack.harmful_ratios):
        h = config.harmful
        if h.source == "advbench":
            if h.data is None:
                raise ConfigError(
                    "harmful.source=advbench needs harmful.data (the AdvBench CSV or its folder)"
                )
            harmful = advbench_pairs(h.data, h.revision)
        else:
            harmful = qa_pairs(h.data, role=HARMFUL, split=h.split, revision=h.revision, which="unsafe")
    safety = None
    needs_safety = any(DEFENCES[d].needs_safety for d in config.defences) or (
        config.alignment.enabled and config.alignment.n_safety > 0
    )
    if needs_safety:
        s = config.safety
        if s.source == "vlguard":
            safety = vlguard_refusals(
                s.data or "ys-zong/VLGuard",
                split=s.split if s.split != "30k_train" else "train",
                revision=s.revision,
                with_images=s.with_images,
            )
        elif s.source == "pairs":
            if s.data is None:
                raise ConfigError(
                    "safety.source=pairs needs safety.data (a JSONL/JSON file with prompt and response)"
                )
            safety = qa_pairs(s.data, role=SAFETY, split=s.split, revision=s.revision, which="all")
        else:
            safety = qa_pairs(s.data, role=SAFETY, split=s.split, revision=s.revision, which="safe")
    return Pools(task, harmful, safety)


# ---- evaluation --------------------------------------------------------------------------------------


def hs_eval_config(
    config: HFTConfig, model: str, adapter: str | None, run_dir: Path, revision: str | None
) -> EvalConfig:
    """The ``vlguard eval`` settings of a Harmful Score run."""
    hs = config.harmful_score
    # each judge gets its own options only: judge_options the first, second_judge_options the others
    judge_options = {hs.judge: key_values(hs.judge_options)} if hs.judge_options else {}
    return EvalConfig(
        bench=hs.bench,
        data=hs.data,
        data_revision=hs.revision,
        judges=(hs.judge, *hs.second_judges),
        judge_options={**judge_options, **second_judge_options(hs)},
        subsets=tuple(hs.subsets) if hs.subsets else None,
        limit=hs.limit,
        max_new_tokens=hs.max_new_tokens,
        bench_options=key_values(hs.options),
        **_model_eval_settings(config, model, adapter, run_dir, revision),
    )


def fa_eval_config(
    config: HFTConfig, model: str, adapter: str | None, run_dir: Path, revision: str | None
) -> EvalConfig:
    """The ``vlguard eval`` settings of a Finetune Accuracy run (the task benchmark, its own judges)."""
    task = config.task
    judge_options = key_values(task.judge_options)
    return EvalConfig(
        bench=task.name,
        data=task.data,
        data_revision=task.revision,
        judge_options={name: judge_options for name in _default_judges(task.name)} if judge_options else {},
        limit=task.eval_limit,
        max_new_tokens=task.max_new_tokens,
        **_model_eval_settings(config, model, adapter, run_dir, revision),
    )


def _model_eval_settings(
    config: HFTConfig, model: str, adapter: str | None, run_dir: Path, revision: str | None
) -> dict[str, Any]:
    """The ``EvalConfig`` fields that Harmful Score and Finetune Accuracy runs share: model and compute."""
    # prompt_format only when it is not the default, as `vlguard eval` records it (a result field of the run).
    backend_options = {"prompt_format": config.prompt_format} if config.prompt_format != "chat" else {}
    return {
        "model": model,
        "backend": config.eval.backend,
        "revision": revision,
        "adapter": adapter,
        "batch_size": config.eval.batch_size,
        "seed": config.seed,
        "dtype": config.eval.dtype,
        "device": config.eval.device,
        "trust_remote_code": config.model.trust_remote_code,
        "backend_options": backend_options,
        "run_dir": str(run_dir),
    }


def _default_judges(bench: str) -> tuple[str, ...]:
    from vlguard.benchmarks import default_judges

    return default_judges(bench)


def hs_prompts(config: HFTConfig) -> list[str]:
    """The Harmful Score prompts exactly as evaluated (same benchmark, options, subsets and limit)."""
    from vlguard.benchmarks import load_benchmark

    hs = config.harmful_score
    bench = load_benchmark(hs.bench, data=hs.data, revision=hs.revision, **key_values(hs.options))
    samples = select_samples(bench.samples, tuple(hs.subsets) if hs.subsets else None, hs.limit)
    if not any(s.should_refuse for s in samples):
        raise ConfigError(f"harmful_score.bench={hs.bench!r} has no harmful prompts (none should be refused)")
    return [s.intent or s.prompt for s in samples]


def evaluate(eval_config: EvalConfig, *, progress: bool) -> Path:
    """Generate, judge and compute metrics in a run folder, resuming; a judge that has already judged
    every generation is not loaded again (a 7B moderation model takes a while)."""
    settings = eval_config.resolve()
    run_dir = run_generation(settings, progress=progress)
    if not distributed.is_main_process():
        return run_dir
    run = RunFolder(run_dir)
    generated = set(read_generations(run))
    for judge in settings.judges:
        judged = {r["sample_id"] for r in dedupe(run.judgments(judge).read())}
        if not generated <= judged:
            own = {judge: settings.judge_options[judge]} if judge in settings.judge_options else {}
            run_judges(run_dir, [judge], own, progress=progress)
    run_metrics(run_dir)
    return run_dir


# ---- training ----------------------------------------------------------------------------------------


def _images_of(pool: PairPool | None) -> str | None:
    root = pool.source.get("image_root") if pool is not None and pool.images is not None else None
    return str(root) if root else None


def train_config_for(
    config: HFTConfig,
    base: TrainConfig,
    *,
    model: str,
    revision: str | None,
    data_file: Path,
    output_dir: Path,
    image_root: str | None,
    aux: CellData | None = None,
    aux_file: Path | None = None,
) -> TrainConfig:
    """A ``vlguard train`` config: the section's settings plus what the sweep sets for this run."""
    with_images = image_root is not None
    return dataclasses.replace(
        base,
        model=dataclasses.replace(config.model, name_or_path=model, revision=revision),
        data=DataConfig(
            recipe="instructions",
            vlguard=None,
            instructions=str(data_file),
            instructions_image_root=image_root,
            n_helpfulness=0,
            image_mode="original" if with_images else "none",
            check_images=with_images,
            seed=config.seed,
        ),
        output_dir=str(output_dir),
        # Text-only data never reaches a VLM's projector: training it would only leave parameters
        # without a gradient, which data-parallel training refuses.
        train_projector=base.train_projector and with_images,
        prompt_format=config.prompt_format,
        safety_loss=SafetyLossConfig(
            data=str(aux_file) if aux is not None and aux_file is not None else None,
            image_root=image_root,
            weight=aux.aux_weight if aux is not None else 0.1,
            batch_size=aux.aux_batch_size if aux is not None else 4,
        ),
        seed=config.seed,
        resume_from_checkpoint="latest",
    )


def training_data(pairs: Sequence[Pair], pools: Pools, sources: dict[str, Any]) -> TrainingData:
    """The in-memory training data of ``pairs`` (conversations tagged by role, image roots by role)."""
    found = Counter(p.role for p in pairs)
    return TrainingData(
        conversations=tuple(p.to_conversation() for p in pairs),
        images={TASK: None, HARMFUL: None, SAFETY: pools.safety.images if pools.safety is not None else None},
        counts={role: found[role] for role in (TASK, HARMFUL, SAFETY) if found[role]},
        sources=sources,
    )


def _train(stage: Stage, train_config: TrainConfig, data: TrainingData) -> Path:
    """Train (resuming) in the stage's training run folder, unless it already holds the finished model."""
    from vlguard.train.trainer import train

    if stage.trained():
        return stage.model
    if train_config.data.check_images:
        from vlguard.train.data import check_images

        check_images(data)
    return train(train_config, data=data).model_dir


# ---- stages ------------------------------------------------------------------------------------------


# Training keys that change nothing in the trained weights: left out of a stage's settings, so that
# a rerun may change them (e.g. turn the progress bar off) without a mismatch.
_NOT_RESULTS = (
    "progress",
    "logging_steps",
    "report_to",
    "run_name",
    "dataloader_num_workers",
    "save_steps",
    "save_total_limit",
)


def _train_settings(train: TrainConfig) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(train).items() if k not in _NOT_RESULTS}


def _model_settings(config: HFTConfig) -> dict[str, Any]:
    return {
        "model": dataclasses.asdict(config.model),
        "seed": config.seed,
        "prompt_format": config.prompt_format,
    }


def _pool_source(pool: PairPool | None) -> Any:
    return (
        None
        if pool is None
        else {k: v for k, v in pool.source.items() if k != "path"} | {"n": len(pool.pairs)}
    )


def align(config: HFTConfig, pools: Pools, layout: Layout, *, wait: bool = False) -> tuple[str, str | None]:
    """The model the cells start from, and its Hub revision: the base model, or the aligned one.

    Shards other than 0 (``wait``) do not align: they wait for shard 0 to finish the stage.
    """
    base = resolve_model_path(config.model.name_or_path)
    if not config.alignment.enabled:
        return base, config.model.revision
    stage = layout.alignment
    train_cfg = config.alignment.train
    lora = train_cfg.method == "lora"
    final = stage.merged if lora else stage.model

    def finished() -> bool:
        return (final / "config.json").is_file() and (lora or stage.trained())

    if wait:
        waited = 0.0
        while not finished():
            if waited % 300 == 0:  # say so now and every 5 minutes, not every poll
                logger.info("waiting for the alignment stage (run by shard 0) to finish in %s", stage.path)
            time.sleep(ALIGNMENT_POLL_SECONDS)
            waited += ALIGNMENT_POLL_SECONDS
        return str(final), None
    assert pools.safety is not None or config.alignment.n_safety == 0
    pairs: list[Pair] = []
    if config.alignment.n_safety:
        assert pools.safety is not None
        pairs += draw(pools.safety, config.alignment.n_safety, config.seed)
    # The alignment's task pairs come from another permutation than the user sets' (a provider's data).
    pairs += draw(pools.task, config.alignment.n_task, f"alignment:{config.seed}")
    pairs = shuffled(pairs, f"alignment:{config.seed}")
    settings = {
        **_model_settings(config),
        "alignment": {
            **dataclasses.asdict(config.alignment),
            "train": _train_settings(config.alignment.train),
        },
        "safety": _pool_source(pools.safety),
        "task": _pool_source(pools.task),
        "data_sha256": _sha256_lines(pairs),
    }
    guard_stage(stage, settings)
    if distributed.is_main_process() and not stage.train_data.is_file():
        write_pairs(pairs, stage.train_data)
    distributed.wait_for_everyone()
    train_config = train_config_for(
        config,
        train_cfg,
        model=config.model.name_or_path,
        revision=config.model.revision,
        data_file=stage.train_data,
        output_dir=stage.train_run,
        image_root=_images_of(pools.safety),
    )
    trained = _train(stage, train_config, training_data(pairs, pools, {"alignment": settings}))
    if not lora:
        return str(trained), None
    if distributed.is_main_process() and not (final / "config.json").is_file():
        from vlguard.train.merge import merge_adapter

        merge_adapter(
            base,
            trained,
            final,
            revision=config.model.revision,
            trust_remote_code=config.model.trust_remote_code,
            overwrite=True,
        )
    distributed.wait_for_everyone()
    return str(final), None


def _eval_settings(config: HFTConfig) -> dict[str, Any]:
    """What changes the numbers of an evaluation (batch size and device do not)."""
    return {
        "harmful_score": dataclasses.asdict(config.harmful_score),
        "task": dataclasses.asdict(config.task),
        "dtype": config.eval.dtype,
        "backend": config.eval.backend,
    }


def evaluate_reference(
    config: HFTConfig, layout: Layout, start: str, revision: str | None, *, progress: bool
) -> None:
    """Harmful Score and Finetune Accuracy of the model the cells start from (before the user's data)."""
    stage = layout.reference
    guard_stage(stage, {**_model_settings(config), "start_model": start, **_eval_settings(config)})
    evaluate(hs_eval_config(config, start, None, stage.hs, revision), progress=progress)
    evaluate(fa_eval_config(config, start, None, stage.fa, revision), progress=progress)


def cell_data(config: HFTConfig, pools: Pools, cell: Cell) -> CellData:
    """The training data of a cell: the user's set at the cell's ratio, with the cell's defence."""
    assert pools.harmful is not None or cell.ratio == 0
    harmful = pools.harmful or PairPool(HARMFUL, (), {"kind": "none"})
    user = build_user_set(pools.task, harmful, n=config.attack.n, ratio=cell.ratio, seed=config.seed)
    data = apply_defence(cell.defence, user, pools.safety, config.defence.settings(), config.seed)
    return dataclasses.replace(data, train=tuple(shuffled(data.train, f"{cell.name}:{config.seed}")))


def run_cell(
    config: HFTConfig,
    pools: Pools,
    layout: Layout,
    cell: Cell,
    start: str,
    revision: str | None,
    *,
    progress: bool,
) -> None:
    """Draw, train and evaluate one cell (each part skipped when already done)."""
    stage = layout.cell(cell)
    data = cell_data(config, pools, cell)
    settings = {
        **_model_settings(config),
        "start_model": start,
        "harmful_ratio": cell.ratio,
        "defence": cell.defence,
        "defence_settings": dataclasses.asdict(config.defence),
        "n": config.attack.n,
        "counts": data.counts,
        "train_sha256": _sha256_lines(data.train),
        "aux_safety_sha256": _sha256_lines(data.aux_safety) if data.aux_safety else None,
        "pools": {
            "task": _pool_source(pools.task),
            "harmful": _pool_source(pools.harmful),
            "safety": _pool_source(pools.safety),
        },
        "finetune": _train_settings(config.finetune),
        **_eval_settings(config),
    }
    guard_stage(stage, settings)
    if distributed.is_main_process():
        if not stage.train_data.is_file():
            write_pairs(data.train, stage.train_data)
        if data.aux_safety and not stage.aux_safety_data.is_file():
            write_pairs(data.aux_safety, stage.aux_safety_data)
    distributed.wait_for_everyone()
    train_config = train_config_for(
        config,
        config.finetune,
        model=start,
        revision=revision,
        data_file=stage.train_data,
        output_dir=stage.train_run,
        image_root=_images_of(pools.safety),
        aux=data if data.aux_safety else None,
        aux_file=stage.aux_safety_data,
    )
    model_dir = _train(stage, train_config, training_data(data.train, pools, {"cell": settings}))
    if config.finetune.method == "lora":
        model, adapter, model_revision = start, str(model_dir), revision
    else:
        model, adapter, model_revision = str(model_dir), None, None
    evaluate(hs_eval_config(config, model, adapter, stage.hs, model_revision), progress=progress)
    evaluate(fa_eval_config(config, model, adapter, stage.fa, model_revision), progress=progress)


def cell_finished(layout: Layout, cell: Cell) -> bool:
    """Whether a cell's model is trained and both its evaluations have metrics."""
    stage = layout.cell(cell)
    return stage.trained() and stage.evaluated()


def run_workers(config: HFTConfig, layout: Layout, workers: int) -> None:
    """Run the cells in ``workers`` processes at once (``vlguard hft --cells i/K``), wait for all of them.

    Each worker reads the resolved config (``workers/config.yaml``) and logs to ``workers/shard-<i>.log``;
    with ``compute.threads`` set, each gets that many threads (``OMP_NUM_THREADS``). A failed worker is an
    error naming its log; the others are stopped, and a rerun resumes every cell where it stopped.
    """
    import subprocess
    import sys

    from vlguard.errors import VLGuardError

    folder = layout.workers
    folder.mkdir(parents=True, exist_ok=True)
    config_file = layout.worker_config
    single = dataclasses.replace(config, compute=dataclasses.replace(config.compute, parallel_cells=1))
    # The file says what the workers run (without secrets); they read the config itself from a pipe.
    atomic_write_text(config_file, dump_hft_config(single))
    config_text = dump_hft_config(single, keep_secrets=True).encode("utf-8")
    env = dict(os.environ)
    if config.compute.threads is not None:
        env["OMP_NUM_THREADS"] = str(config.compute.threads)
    processes: list[tuple[int, subprocess.Popen[bytes], Path]] = []
    try:
        for i in range(workers):
            log = layout.worker_log(i)
            with log.open("wb") as handle:
                command = [
                    sys.executable,
                    "-m",
                    "vlguard.cli.main",
                    "hft",
                    STDIN,
                    "--cells",
                    f"{i}/{workers}",
                    "--no-progress",
                ]
                process = subprocess.Popen(
                    command, stdin=subprocess.PIPE, stdout=handle, stderr=subprocess.STDOUT, env=env
                )
                processes.append((i, process, log))
                assert process.stdin is not None
                process.stdin.write(config_text)
                process.stdin.close()
        logger.info("%d cells in %d worker processes (logs: %s)", len(plan_cells(config)), workers, folder)
        failed = [(i, log, p.wait()) for i, p, log in processes]
    finally:
        for _, process, _ in processes:
            if process.poll() is None:
                process.terminate()
                process.wait()
    bad = [(i, log, code) for i, log, code in failed if code != 0]
    if bad:
        i, log, code = bad[0]
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:] or ["(empty log)"]
        raise VLGuardError(
            f"worker {i} of {workers} failed (exit code {code}): {tail[0]} (log: {log}); rerun to resume"
        )


@dataclass(frozen=True)
class SweepResult:
    """What a call of :func:`run_sweep` did: the cells it ran, and the summary when the sweep is complete."""

    output_dir: Path
    cells_run: tuple[str, ...]
    summary: Path | None
    missing: tuple[str, ...]


def check_sweep(config: HFTConfig) -> None:
    """Every setting of every stage, before anything loads, trains or is written (``vlguard.preflight``).

    The config's own rules (``check_hft_config``), the output folder, the base model, the training
    settings of the alignment stage and of the user fine-tuning (ranges, trackers, DeepSpeed config,
    LoRA target modules against the base model's modules: the start model of the cells, when aligned,
    has the same architecture), and the Harmful Score and Finetune Accuracy evaluations as ``vlguard
    eval`` checks them (backend and its options, dtype, device, each judge with its own options and its
    pre-flight). A mistake raises the same error class, prefixed with the stage it belongs to.
    """
    from vlguard.errors import ImageLoadError
    from vlguard.evaluate import check_config
    from vlguard.fileio import check_output_dir
    from vlguard.models.resolve import check_model_reference
    from vlguard.preflight import check_lora_modules, check_train

    check_hft_config(config)
    layout = Layout(check_output_dir(config.output_dir, "output_dir"))
    base, revision = config.model.name_or_path, config.model.revision
    check_model_reference(base, "model.name_or_path")
    stage = layout.cell(plan_cells(config)[0])
    # The training configs of the stages; their model is the base model: the cells' start model (the
    # aligned one) does not exist yet, and has the same architecture.
    finetune = train_config_for(config, config.finetune, model=base, revision=revision,
                                data_file=stage.train_data, output_dir=stage.train_run, image_root=None)  # fmt: skip
    trainings = [("user fine-tuning (finetune.*)", finetune)]
    if config.alignment.enabled:
        aligned = layout.alignment
        alignment = train_config_for(config, config.alignment.train, model=base, revision=revision,
                                     data_file=aligned.train_data, output_dir=aligned.train_run, image_root=None)  # fmt: skip
        trainings.insert(0, ("alignment training (alignment.train.*)", alignment))
    # Cheap checks first, then the LoRA target modules (the model's modules, built without weights).
    checks: list[tuple[str, Callable[[], object]]] = [
        (name, functools.partial(check_train, train, run_folder=False, lora=False))
        for name, train in trainings
    ]
    checks += [
        ("Harmful Score evaluation (harmful_score.*, eval.*)",
         lambda: check_config(hs_eval_config(config, base, None, stage.hs, revision))),
        ("Finetune Accuracy evaluation (task.*, eval.*)",
         lambda: check_config(fa_eval_config(config, base, None, stage.fa, revision))),
    ]  # fmt: skip
    checks += [
        (name, functools.partial(check_lora_modules, train, base))
        for name, train in trainings
        if train.method == "lora"
    ]
    for name, check in checks:
        try:
            check()
        except (ConfigError, ImageLoadError) as err:  # one-message errors: named by their stage
            raise type(err)(f"{name}: {err}") from err


def run_sweep(config: HFTConfig, *, shard: tuple[int, int] = (0, 1), progress: bool = True) -> SweepResult:
    """Run (or resume) the sweep of ``config``; see the module docstring."""
    check_sweep(config)  # every stage's settings: a mistake stops the sweep before anything is written
    layout = Layout(Path(config.output_dir))
    index, count = shard
    if config.compute.threads is not None:
        import torch

        torch.set_num_threads(config.compute.threads)
    if distributed.is_main_process() and not layout.config_file.is_file():
        layout.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(layout.config_file, dump_hft_config(config))
    pools = load_pools(config)
    prompts = hs_prompts(config)
    leaks = find_leaks(
        [
            *pools.task.pairs,
            *(pools.harmful.pairs if pools.harmful else ()),
            *(pools.safety.pairs if pools.safety else ()),
        ],
        prompts,
    )
    if leaks and not config.eval.allow_seen_prompts:
        shown = "; ".join(repr(p[:80]) for p in leaks.prompts[:3])
        raise ConfigError(
            f"{len(leaks.prompts)} Harmful Score prompt(s) of {config.harmful_score.bench!r} also occur in the "
            f"training pools (e.g. {shown}): the Harmful Score would be measured in-sample. Use held-out "
            "prompts, or set eval.allow_seen_prompts=true (recorded in summary.json)"
        )
    cells = plan_cells(config)
    # Every cell's draws are checked now (too many harmful pairs asked for, k larger than the benign
    # samples it replaces, ...), so a mistake stops the sweep before any training, not halfway through.
    for cell in cells:
        cell_data(config, pools, cell)
    start, revision = align(config, pools, layout, wait=index != 0)
    if config.eval.reference and index == 0:
        evaluate_reference(config, layout, start, revision, progress=progress)
    ran: list[str] = []
    workers = min(config.compute.parallel_cells, len(cells))
    if workers > 1 and count == 1 and distributed.world_size() == 1:
        # This process has aligned and evaluated the start model; the cells go to K worker processes.
        run_workers(config, layout, workers)
        ran = [c.name for c in cells]
        index, count = 0, 0  # nothing left to run here
    for cell in shard_cells(cells, index, count) if count else ():
        logger.info("cell %s: harmful ratio %g, defence %s", cell.name, cell.ratio, cell.defence)
        run_cell(config, pools, layout, cell, start, revision, progress=progress)
        ran.append(cell.name)
    distributed.wait_for_everyone()
    if distributed.is_main_process() and count in (0, 1):
        # Every stage accepted these settings (or the run stopped above): they are the folder's config now.
        atomic_write_text(layout.config_file, dump_hft_config(config))
    missing = tuple(c.name for c in cells if not cell_finished(layout, c))
    summary = None
    if not missing and distributed.is_main_process():
        summary = write_summary(config, layout, cells, hs_seen_in_training=len(leaks.prompts))
    return SweepResult(layout.root, tuple(ran), summary, missing)
