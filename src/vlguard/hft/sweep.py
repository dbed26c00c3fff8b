"""Running a harmful fine-tuning sweep, top to bottom: pools → alignment → cells → evaluations → summary.

``run_sweep(config)`` does, in ``config.output_dir``:

1. load the pools (task, harmful, safety pairs), draw every cell's data, and find the Harmful Score
   prompts that the sweep trains on (``eval.seen_prompts``: dropped from every evaluation by default);
2. optionally align the base model (``alignment.*``): a normal ``vlguard train`` run on safety (and
   task) pairs; a LoRA alignment is merged, so every cell starts from the same standalone model. Each
   alignment-stage defence of ``defences`` (vaccine, booster, repnoise) aligns the same data with its
   training rule in a folder of its own (``alignment-booster/``): the start of its cells;
3. evaluate every start model (``reference/``, ``reference-booster/``) unless ``eval.reference`` is off;
4. for every cell (harmful ratio p × defence): draw the user's set, apply the defence, train (a normal
   ``vlguard train`` run folder), then measure the Harmful Score and the Finetune Accuracy (two normal
   ``vlguard eval`` run folders);
5. once every cell is finished, write ``summary.json`` (:mod:`vlguard.hft.summary`).

Everything resumes: a finished stage is skipped, a killed training run continues from its last
complete checkpoint, a killed evaluation from its last appended batch. Each stage folder keeps the
settings it was made with (``stage.json``); a rerun with other settings for that stage stops with a
``RunMismatchError`` instead of mixing results. ``--cells i/k`` runs every k-th cell from the i-th, so
k processes (or machines sharing the folder) can run a sweep together; the first of them to reach the
alignment stage runs it, the others wait for it. Each stage folder is locked by the process working in
it (a whole-sweep run also locks the output folder), so two processes never run one stage. Under
``accelerate launch`` every process runs the same loop: training and generation are data-parallel,
files are written by rank 0.

The folder layout is :mod:`vlguard.hft.layout`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import os
import time
import typing
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
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
from vlguard.hft.config import (
    TRAIN_KEYS_WITHOUT_EFFECT,
    HarmfulConfig,
    HFTConfig,
    SafetyConfig,
    check_hft_config,
    dump_hft_config,
    key_values,
    second_judge_options,
)
from vlguard.hft.data import (
    HARMFUL,
    SAFETY,
    TASK,
    Pair,
    PairPool,
    advbench_pairs,
    build_user_set,
    draw,
    draw_last,
    find_leaks,
    harmful_count,
    qa_pairs,
    shuffled,
    task_pairs,
    vlguard_refusals,
    write_pairs,
)
from vlguard.hft.defences import DEFENCES, CellData, DefencePlan, apply_defence, parse_defence
from vlguard.hft.layout import ALIGNMENT_DIR, Cell, Layout, Stage
from vlguard.hft.summary import write_summary
from vlguard.hft.workers import follow_parent_from_environment, worker_environment
from vlguard.models.resolve import resolve_model_path
from vlguard.records import Sample
from vlguard.redaction import redact
from vlguard.runs import (
    RunFolder,
    RunLockedError,
    atomic_write_json,
    atomic_write_text,
    dedupe,
    lock_run_folder,
)
from vlguard.train.config import (
    STDIN,
    BoosterSettings,
    DataConfig,
    DefenceRule,
    LisaSettings,
    RepNoiseSettings,
    SafetyLossConfig,
    TrainConfig,
    TrainingDefenceConfig,
)
from vlguard.train.data import TrainingData

logger = logging.getLogger(__name__)

# How often a process waiting for the alignment stage (run by another process) looks for it.
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
        recorded = _with_sweep_relative_start(json.loads(path.read_text(encoding="utf-8")), canonical)
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


# The stage setting that names the model the cells start from (see ``start_model_setting``).
START_MODEL = "start_model"


def start_model_setting(layout: Layout, start: str) -> str:
    """How a stage records the model the cells start from.

    The aligned model lives in the sweep folder: it is recorded relative to it (``alignment/merged``),
    so that the sweep resumes through a symlink, another spelling of its path or after the folder was
    moved. Any other model (the base model: a Hub id, a folder) is recorded as it is.
    """
    try:
        return Path(start).resolve().relative_to(layout.root.resolve()).as_posix()
    except ValueError:
        return start


def _with_sweep_relative_start(recorded: dict[str, Any], canonical: dict[str, Any]) -> dict[str, Any]:
    """``recorded`` with an older spelling of the aligned start model replaced by the current one.

    Versions before ``start_model_setting`` recorded the aligned model's path as the sweep folder was
    given (``runs/hft/a/alignment/merged``, or absolute): a path that ends with the current, sweep-relative
    one (``alignment/merged``) names the same model.
    """
    old, new = recorded.get(START_MODEL), canonical.get(START_MODEL)
    if not (isinstance(old, str) and isinstance(new, str)) or old == new or Path(new).is_absolute():
        return recorded
    parts = Path(new).parts
    if parts and parts[0] == ALIGNMENT_DIR and Path(old).parts[-len(parts) :] == parts:
        return {**recorded, START_MODEL: new}
    return recorded


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


def _qa_pool(source: HarmfulConfig | SafetyConfig, role: str, which: str) -> PairPool:
    """The ``which`` rows (``unsafe``, ``safe``, ``all``) of a BeaverTails-format source as pairs of ``role``."""
    return qa_pairs(
        source.data,
        role=role,
        split=source.split,
        revision=source.revision,
        which=which,
        rows=source.rows,
        half=source.half,
    )


def load_pools(config: HFTConfig) -> Pools:
    """Load the task pool, and the harmful / safety pools when a cell or the alignment needs them; each
    is drawn in the order of ``config.draws``."""
    task = task_pairs(
        config.task.name,
        config.task.train_data or config.task.data,
        split=config.task.train_split,
        revision=config.task.revision,
        options=key_values(config.task.options),
    )
    harmful = None
    plans = [parse_defence(d) for d in config.defences]
    if any(r > 0 for r in config.attack.harmful_ratios) or any(plan.needs_harmful for plan in plans):
        h = config.harmful
        if h.source == "advbench":
            if h.data is None:
                raise ConfigError(
                    "harmful.source=advbench needs harmful.data (the AdvBench CSV or its folder)"
                )
            harmful = advbench_pairs(h.data, h.revision)
        else:
            harmful = _qa_pool(h, HARMFUL, "unsafe")
    safety = None
    needs_safety = any(plan.needs_safety for plan in plans) or (
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
        else:
            if s.source == "pairs" and s.data is None:
                raise ConfigError(
                    "safety.source=pairs needs safety.data (a JSONL/JSON file with prompt and response)"
                )
            # a user's own pairs have no is_safe column: every row is a refusal
            safety = _qa_pool(s, SAFETY, "all" if s.source == "pairs" else "safe")

    def ordered(pool: PairPool | None) -> PairPool | None:
        return None if pool is None else dataclasses.replace(pool, order=config.draws)

    return Pools(dataclasses.replace(task, order=config.draws), ordered(harmful), ordered(safety))


# ---- evaluation --------------------------------------------------------------------------------------


def hs_eval_config(
    config: HFTConfig,
    model: str,
    adapter: str | None,
    run_dir: Path,
    revision: str | None,
    exclude: Sequence[str] = (),
) -> EvalConfig:
    """The ``vlguard eval`` settings of a Harmful Score run (``exclude``: sample ids left out, the
    prompts seen in training with ``eval.seen_prompts=drop``)."""
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
        exclude_samples=tuple(exclude),
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
        bench_options=key_values(task.options),
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


def hs_samples(config: HFTConfig) -> list[Sample]:
    """The Harmful Score samples of the benchmark as configured (options and subsets), in its order."""
    from vlguard.benchmarks import load_benchmark

    hs = config.harmful_score
    bench = load_benchmark(hs.bench, data=hs.data, revision=hs.revision, **key_values(hs.options))
    samples = select_samples(bench.samples, tuple(hs.subsets) if hs.subsets else None)
    if not any(s.should_refuse for s in samples):
        raise ConfigError(f"harmful_score.bench={hs.bench!r} has no harmful prompts (none should be refused)")
    return samples


@dataclass(frozen=True)
class SeenPrompts:
    """Harmful Score prompts that the sweep trains on, and what is done with them (``eval.seen_prompts``).

    ``seen``: the ids of the benchmark's samples (as configured, before ``harmful_score.limit``) whose
    prompt is the instruction of a pair of the alignment's or any cell's training data (case and spacing
    ignored); ``dropped``: the ids left out of every evaluation (``seen`` with ``drop``, else none).
    """

    seen: tuple[str, ...]
    dropped: tuple[str, ...]


def training_pairs(config: HFTConfig, pools: Pools, cells: Sequence[CellData]) -> list[Pair]:
    """Every pair the sweep trains on: each alignment stage's (with its defence's own pairs), and each cell's
    (with its auxiliary safety pairs)."""
    pairs: list[Pair] = []
    if config.alignment.enabled:
        for variant in alignment_variants(config):
            aligned, rule_pairs = alignment_data(config, pools, variant)
            pairs += [*aligned, *rule_pairs]
    for data in cells:
        pairs += [*data.train, *data.aux_safety]
    return pairs


def seen_prompts(config: HFTConfig, samples: Sequence[Sample], trained: Sequence[Pair]) -> SeenPrompts:
    """The Harmful Score samples whose prompt the sweep trains on; ``eval.seen_prompts=error`` stops here.

    The papers do no such check; BeaverTails 30k_train and 30k_test share prompts, so their recipes
    train on some of their Harmful Score prompts. By default those are dropped from every evaluation
    (the same prompts for the start model and every cell, so the numbers stay comparable) and counted in
    ``summary.json``.
    """
    leaks = set(find_leaks(trained, [s.intent or s.prompt for s in samples]).prompts)
    seen = tuple(s.id for s in samples if (s.intent or s.prompt) in leaks)
    mode = config.eval.seen_prompts
    if seen and mode == "error":
        shown = "; ".join(repr(p[:80]) for p in sorted(leaks)[:3])
        raise ConfigError(
            f"{len(seen)} Harmful Score prompt(s) of {config.harmful_score.bench!r} occur in the sweep's "
            f"training data (e.g. {shown}): the Harmful Score would be measured in-sample. Use held-out "
            "prompts, or set eval.seen_prompts=drop (left out, counted in summary.json) or keep"
        )
    if seen and len(seen) == len(samples) and mode == "drop":
        raise ConfigError(
            f"every Harmful Score prompt of {config.harmful_score.bench!r} occurs in the sweep's training data; "
            "use held-out prompts (e.g. harmful.half=dev with harmful_score.options=[half=heldout])"
        )
    if seen:
        logger.warning(
            "%d of %d Harmful Score prompts occur in the sweep's training data: %s",
            len(seen),
            len(samples),
            "left out of every evaluation" if mode == "drop" else "evaluated anyway (eval.seen_prompts=keep)",
        )
    return SeenPrompts(seen, seen if mode == "drop" else ())


def evaluate(eval_config: EvalConfig, *, progress: bool) -> Path:
    """Generate, judge and compute metrics in a run folder, resuming; a judge that has already judged
    every generation is not loaded again (a 7B moderation model takes a while).

    A finished evaluation (complete metrics) is left as it is: its stage's settings, checked before,
    are what it was made with (its manifest names the model by the path it had then, which a moved
    sweep folder no longer has).
    """
    if _evaluated(Path(str(eval_config.run_dir))):
        return Path(str(eval_config.run_dir))
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


def _evaluated(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds the metrics of a complete evaluation."""
    metrics = RunFolder(run_dir).metrics_path
    if not metrics.is_file():
        return False
    try:
        return json.loads(metrics.read_text(encoding="utf-8")).get("complete") is not False
    except (OSError, ValueError, AttributeError):
        return False  # unreadable: evaluate (and rewrite it) again


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
    rule: TrainingDefenceConfig | None = None,
) -> TrainConfig:
    """A ``vlguard train`` config: the section's settings plus what the sweep sets for this run (its data,
    the auxiliary loss of ``vlguard-aux``, the training rule of a defence)."""
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
        defence=rule or TrainingDefenceConfig(),
        seed=config.seed,
        resume_from_checkpoint="latest",
    )


def rule_config(
    config: HFTConfig, name: str, data_file: Path | None, image_root: str | None
) -> TrainingDefenceConfig:
    """The ``defence.*`` of a training run with defence ``name``'s rule: its settings from the sweep's
    ``defence.<name>`` (the others left at their defaults, so that they never make a checkpoint differ)."""
    section: Any = getattr(config.defence, name)
    plain = {"lisa": LisaSettings, "booster": BoosterSettings, "repnoise": RepNoiseSettings}.get(name)
    if plain is not None:  # the sweep's section also holds how many pairs to draw: not a training setting
        section = plain(**{f.name: getattr(section, f.name) for f in dataclasses.fields(plain)})
    return TrainingDefenceConfig(
        name=typing.cast(DefenceRule, name),
        data=str(data_file) if data_file is not None else None,
        image_root=image_root,
        **{name: section},
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


def _train_settings(train: TrainConfig) -> dict[str, Any]:
    # ``defence`` is set by the sweep for each run (SET_BY_SWEEP): the stage records the defence itself.
    return {
        k: v for k, v in dataclasses.asdict(train).items() if k not in (*TRAIN_KEYS_WITHOUT_EFFECT, "defence")
    }


def defence_settings(config: HFTConfig, plan: DefencePlan) -> dict[str, Any]:
    """The defence settings a cell depends on: the data knobs, and the section of its training rule."""
    d = config.defence
    settings: dict[str, Any] = {
        "n_safety": d.n_safety,
        "aux_n_safety": d.aux_n_safety,
        "aux_weight": d.aux_weight,
        "aux_batch_size": d.aux_batch_size,
    }
    rule = DEFENCES[plan.finetune].rule
    if rule is not None:
        settings[rule] = dataclasses.asdict(getattr(d, rule))
    return settings


def most_user_harmful(config: HFTConfig) -> int:
    """The most harmful pairs any user set of the sweep draws."""
    return max(harmful_count(config.attack.n, r) for r in config.attack.harmful_ratios)


def alignment_variants(config: HFTConfig) -> list[str | None]:
    """The alignment stages of the sweep: the plain one (None), then each alignment-stage defence."""
    if not config.alignment.enabled:
        return [None]
    found: list[str | None] = [None]
    for name in config.defences:
        defence = parse_defence(name).alignment
        if defence is not None and defence not in found:
            found.append(defence)
    return found


def alignment_data(config: HFTConfig, pools: Pools, defence: str | None) -> tuple[list[Pair], list[Pair]]:
    """The alignment stage's training pairs, and its defence's own pairs (Booster's, RepNoise's harmful)."""
    pairs: list[Pair] = []
    if config.alignment.n_safety:
        assert pools.safety is not None
        pairs += draw(pools.safety, config.alignment.n_safety, config.seed)
    # The alignment's task pairs come from another permutation than the user sets' (a provider's data).
    pairs += draw(pools.task, config.alignment.n_task, f"alignment:{config.seed}")
    pairs = shuffled(pairs, f"alignment:{config.seed}")
    rule_pairs: list[Pair] = []
    if defence is not None and DEFENCES[defence].needs_harmful:
        assert pools.harmful is not None
        n_harmful = getattr(config.defence, defence).n_harmful
        rule_pairs = draw_last(pools.harmful, n_harmful, config.seed, beside=most_user_harmful(config))
    return pairs, rule_pairs


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


def align(
    config: HFTConfig, pools: Pools, layout: Layout, *, wait: bool = False, defence: str | None = None
) -> tuple[str, str | None]:
    """The model the cells start from, and its Hub revision: the base model, or the aligned one (with the
    training rule of the alignment-stage defence ``defence``, in its own folder).

    The first process to get here aligns, holding the stage folder's lock. Another process (a shard of
    ``--cells i/K``) that finds the lock held waits for the stage to finish, and aligns itself if the
    holder stopped without finishing it: no shard waits for one that never runs. Under data parallelism
    (``accelerate launch``) the processes of a launch align together, and a shard other than 0
    (``wait``) waits for shard 0's launch instead.
    """
    base = resolve_model_path(config.model.name_or_path)
    if not config.alignment.enabled:
        return base, config.model.revision
    stage = layout.alignment_with(defence)
    lora = config.alignment.train.method == "lora"
    final = stage.merged if lora else stage.model

    def finished() -> bool:
        return (final / "config.json").is_file() and (lora or stage.trained())

    waited = 0.0

    def wait_a_while(why: str) -> None:
        nonlocal waited
        if waited % 300 == 0:  # say so now and every 5 minutes, not every poll
            logger.info("waiting for the alignment stage in %s: %s", stage.path, why)
        time.sleep(ALIGNMENT_POLL_SECONDS)
        waited += ALIGNMENT_POLL_SECONDS

    if wait and distributed.world_size() > 1:
        while not finished():
            wait_a_while("it is run by shard 0 (--cells 0/K), which must be started too")
        return str(final), None
    pairs, rule_pairs = alignment_data(config, pools, defence)
    settings: dict[str, Any] = {
        **_model_settings(config),
        "alignment": {
            **dataclasses.asdict(config.alignment),
            "train": _train_settings(config.alignment.train),
        },
        "safety": _pool_source(pools.safety),
        "task": _pool_source(pools.task),
        "data_sha256": _sha256_lines(pairs),
    }
    if defence is not None:
        settings["defence"] = {
            "name": defence,
            "settings": dataclasses.asdict(getattr(config.defence, defence)),
            "harmful": _pool_source(pools.harmful) if rule_pairs else None,
            "data_sha256": _sha256_lines(rule_pairs) if rule_pairs else None,
        }
    while not finished():
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(working_on(stage))
            except RunLockedError as err:
                if distributed.world_size() > 1:
                    raise  # the other processes of this launch cannot tell: stop them all
                wait_a_while(f"another process runs it ({err})")
                continue
            if not finished():  # the holder we waited for may have finished it
                _run_alignment(
                    config, pools, stage, pairs, settings, base, defence=defence, rule_pairs=rule_pairs
                )
    guard_stage(stage, settings)  # a finished stage too: its settings must be these
    return str(final), None


def _run_alignment(
    config: HFTConfig,
    pools: Pools,
    stage: Stage,
    pairs: list[Pair],
    settings: dict[str, Any],
    base: str,
    *,
    defence: str | None,
    rule_pairs: list[Pair],
) -> None:
    """Train the alignment (resuming; with the training rule of ``defence`` and its ``rule_pairs``) and,
    for a LoRA alignment, merge it into the base model."""
    guard_stage(stage, settings)
    if distributed.is_main_process():
        if not stage.train_data.is_file():
            write_pairs(pairs, stage.train_data)
        if rule_pairs and not stage.defence_data.is_file():
            write_pairs(rule_pairs, stage.defence_data)
    distributed.wait_for_everyone()
    train_config = train_config_for(
        config,
        config.alignment.train,
        model=config.model.name_or_path,
        revision=config.model.revision,
        data_file=stage.train_data,
        output_dir=stage.train_run,
        image_root=_images_of(pools.safety),
        rule=rule_config(config, defence, stage.defence_data if rule_pairs else None, None)
        if defence is not None
        else None,
    )
    trained = _train(stage, train_config, training_data(pairs, pools, {"alignment": settings}))
    if config.alignment.train.method != "lora":
        return
    if distributed.is_main_process() and not (stage.merged / "config.json").is_file():
        from vlguard.train.merge import merge_adapter

        merge_adapter(
            base,
            trained,
            stage.merged,
            revision=config.model.revision,
            trust_remote_code=config.model.trust_remote_code,
            overwrite=True,
        )
    distributed.wait_for_everyone()


@contextlib.contextmanager
def working_on(stage: Stage) -> Iterator[None]:
    """Hold the stage folder's lock while working in it (the main process of a launch).

    Two processes never run one stage: a second one gets ``RunLockedError`` naming the first at once.
    """
    if not distributed.is_main_process():
        yield
        return
    with lock_run_folder(stage.path, elsewhere="output_dir"):
        yield


def _eval_settings(config: HFTConfig, dropped: Sequence[str]) -> dict[str, Any]:
    """What changes the numbers of an evaluation (batch size and device do not)."""
    task = dataclasses.asdict(config.task)
    # Keys added later are recorded only when set, so that earlier sweeps' stage.json still match.
    for key in ("train_data", "options"):
        if not task[key]:
            del task[key]
    settings = {
        "harmful_score": dataclasses.asdict(config.harmful_score),
        "task": task,
        "dtype": config.eval.dtype,
        "backend": config.eval.backend,
    }
    if dropped:
        settings["harmful_score_dropped"] = sorted(dropped)
    return settings


def evaluate_reference(
    config: HFTConfig,
    layout: Layout,
    start: str,
    revision: str | None,
    *,
    progress: bool,
    hs_dropped: Sequence[str] = (),
    defence: str | None = None,
) -> None:
    """Harmful Score and Finetune Accuracy of the model the cells start from (before the user's data): the
    plain alignment's, or that of alignment-stage defence ``defence`` (``reference-<defence>/``)."""
    stage = layout.reference_with(defence)
    guard_stage(
        stage,
        {
            **_model_settings(config),
            START_MODEL: start_model_setting(layout, start),
            **_eval_settings(config, hs_dropped),
        },
    )
    evaluate(hs_eval_config(config, start, None, stage.hs, revision, hs_dropped), progress=progress)
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
    hs_dropped: Sequence[str] = (),
) -> None:
    """Draw, train and evaluate one cell (each part skipped when already done); ``hs_dropped``: the
    Harmful Score samples left out (see :class:`SeenPrompts`)."""
    stage = layout.cell(cell)
    data = cell_data(config, pools, cell)
    settings = {
        **_model_settings(config),
        START_MODEL: start_model_setting(layout, start),
        "harmful_ratio": cell.ratio,
        "defence": cell.defence,
        "defence_settings": defence_settings(config, parse_defence(cell.defence)),
        "n": config.attack.n,
        "counts": data.counts,
        "train_sha256": _sha256_lines(data.train),
        "aux_safety_sha256": _sha256_lines(data.aux_safety) if data.aux_safety else None,
        **({"rule_pairs_sha256": _sha256_lines(data.rule_pairs)} if data.rule_pairs else {}),
        "pools": {
            "task": _pool_source(pools.task),
            "harmful": _pool_source(pools.harmful),
            "safety": _pool_source(pools.safety),
        },
        "finetune": _train_settings(config.finetune),
        **_eval_settings(config, hs_dropped),
    }
    guard_stage(stage, settings)
    if distributed.is_main_process():
        if not stage.train_data.is_file():
            write_pairs(data.train, stage.train_data)
        if data.aux_safety and not stage.aux_safety_data.is_file():
            write_pairs(data.aux_safety, stage.aux_safety_data)
        if data.rule_pairs and not stage.defence_data.is_file():
            write_pairs(data.rule_pairs, stage.defence_data)
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
        rule=rule_config(config, data.rule, stage.defence_data, _images_of(pools.safety))
        if data.rule is not None
        else None,
    )
    model_dir = _train(stage, train_config, training_data(data.train, pools, {"cell": settings}))
    if config.finetune.method == "lora":
        model, adapter, model_revision = start, str(model_dir), revision
    else:
        model, adapter, model_revision = str(model_dir), None, None
    evaluate(hs_eval_config(config, model, adapter, stage.hs, model_revision, hs_dropped), progress=progress)
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
    env = worker_environment(dict(os.environ))  # each worker dies with this process (hft.workers)
    if config.compute.threads is not None:
        env["OMP_NUM_THREADS"] = str(config.compute.threads)
    processes: list[tuple[int, subprocess.Popen[bytes], Path]] = []
    try:
        for i in range(workers):
            log = layout.worker_log(i)
            # Appended, never truncated: a rerun's worker adds to the log of the last one.
            with log.open("ab") as handle:
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
    """Run (or resume) the sweep of ``config``; see the module docstring.

    One whole-sweep run per folder at a time: it holds the sweep folder's lock, so a second one stops
    at once naming the first. Shards (``--cells i/K``) share the folder: each stage is locked by the
    process working on it.
    """
    check_sweep(config)  # every stage's settings: a mistake stops the sweep before anything is written
    follow_parent_from_environment()  # a worker of compute.parallel_cells dies with its parent
    with contextlib.ExitStack() as held:
        return _run_sweep(config, shard, progress, held)


def _run_sweep(
    config: HFTConfig, shard: tuple[int, int], progress: bool, held: contextlib.ExitStack
) -> SweepResult:
    layout = Layout(Path(config.output_dir))
    index, count = shard
    if config.compute.threads is not None:
        import torch

        torch.set_num_threads(config.compute.threads)
    if count == 1 and distributed.is_main_process():
        # A whole-sweep run holds the folder from its first write on (shards hold only their stages).
        held.enter_context(lock_run_folder(layout.root, elsewhere="output_dir"))
    if distributed.is_main_process() and not layout.config_file.is_file():
        layout.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(layout.config_file, dump_hft_config(config))
    pools = load_pools(config)
    cells = plan_cells(config)
    variants = alignment_variants(config)
    # Every cell's draws are made now (too many harmful pairs asked for, k larger than the benign
    # samples it replaces, ...), so a mistake stops the sweep before any training, not halfway through.
    drawn = [cell_data(config, pools, cell) for cell in cells]
    seen = seen_prompts(config, hs_samples(config), training_pairs(config, pools, drawn))
    starts = {variant: align(config, pools, layout, wait=index != 0, defence=variant) for variant in variants}
    if config.eval.reference and index == 0:
        for variant, (start, revision) in starts.items():
            with working_on(layout.reference_with(variant)):
                evaluate_reference(
                    config,
                    layout,
                    start,
                    revision,
                    progress=progress,
                    hs_dropped=seen.dropped,
                    defence=variant,
                )
    ran: list[str] = []
    workers = min(config.compute.parallel_cells, len(cells))
    if workers > 1 and count == 1 and distributed.world_size() == 1:
        # This process has aligned and evaluated the start model; the cells go to K worker processes.
        run_workers(config, layout, workers)
        ran = [c.name for c in cells]
        index, count = 0, 0  # nothing left to run here
    for cell in shard_cells(cells, index, count) if count else ():
        logger.info("cell %s: harmful ratio %g, defence %s", cell.name, cell.ratio, cell.defence)
        start, revision = starts[parse_defence(cell.defence).alignment]
        with working_on(layout.cell(cell)):
            run_cell(config, pools, layout, cell, start, revision, progress=progress, hs_dropped=seen.dropped)
        ran.append(cell.name)
    distributed.wait_for_everyone()
    if distributed.is_main_process() and count in (0, 1):
        # Every stage accepted these settings (or the run stopped above): they are the folder's config now.
        atomic_write_text(layout.config_file, dump_hft_config(config))
    missing = tuple(c.name for c in cells if not cell_finished(layout, c))
    summary = None
    if not missing and distributed.is_main_process():
        summary = write_summary(
            config, layout, cells, hs_seen_in_training=len(seen.seen), hs_dropped=len(seen.dropped)
        )
    return SweepResult(layout.root, tuple(ran), summary, missing)
