"""``run_utility``: run capability tasks through lm-eval / lmms-eval into a run folder.

Results go into ``RUN/utility/`` (see docs/design.md), next to the safety results that ``vlguard eval``
writes into ``RUN/``, so ``vlguard report RUN_A RUN_B`` shows both::

    RUN/utility/manifest.json        what was run: model, adapter, engine name + version, seed, versions
    RUN/utility/tasks/<task>.json     one per finished task: the engine's numbers, task versions, n-shot
    RUN/utility/samples/<task>.jsonl  the engine's own per-sample logs
    RUN/utility/engine/               files that tasks write themselves (lmms-eval submission files)
    RUN/utility/metrics.json          per-task scores with n and 95 % intervals (rebuilt every run)

A task's record is written (atomically) after its sample log, so it marks the task as finished: a
rerun skips finished tasks and a killed run redoes only the task it was on. Tasks can be added to a
folder later (``quick`` first, ``paper`` tasks after); a task already there with other settings
(limit, few-shot) is an error naming them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlguard.errors import ConfigError, RunMismatchError
from vlguard.fileio import JsonError, parse_json, read_text
from vlguard.redaction import redact
from vlguard.runs import (
    CorruptRunFileError,
    JsonlStore,
    RunFolder,
    atomic_write_json,
    build_manifest,
    check_manifest,
    lock_run_folder,
    package_versions,
)
from vlguard.utility.engines import (
    ENGINE_FOR_KIND,
    ENGINES,
    check_task_names,
    evaluate_task,
    require_engine,
    task_manager,
)
from vlguard.utility.models import ModelArgs, load_for_lm_eval, load_for_lmms_eval, model_kind
from vlguard.utility.results import metric_rows, sample_lines, task_file_name, task_record
from vlguard.utility.suites import LM_EVAL, SUITES, TaskSpec

if TYPE_CHECKING:
    from vlguard.presets import PresetSettings

logger = logging.getLogger(__name__)

UTILITY_DIR = "utility"
METRICS_SCHEMA = 1


@dataclass(frozen=True)
class UtilityConfig:
    """Everything that defines a capability run.

    The model arguments are those of ``vlguard eval``. ``suite`` (``quick``, ``paper``) or ``tasks``
    (engine task names) says what to run; ``limit`` / ``num_fewshot`` override every task's own.
    ``include_path`` adds a folder of task files in the engine's own YAML format. ``engine`` None
    picks lmms-eval for image-text-to-text models and lm-eval for causal LMs. ``chat_template`` makes
    lm-eval format prompts with the tokenizer's chat template (lmms-eval prompts always go through the
    VLM's chat template). ``run_dir`` is the run folder (results in ``run_dir/utility``).
    ``system_prompt`` is put before every prompt (lmms-eval: the system turn of the VLM's chat template;
    lm-eval: its ``system_instruction``). ``preset`` (``paper``, see ``vlguard.presets``) fills in the
    reference evaluation's model settings as for ``vlguard eval``: its system prompt (LLaVA's llava_v1)
    and dtype; the tasks keep their own generation settings. Explicit settings that disagree with it are
    a ``ConfigError``.
    """

    model: str
    revision: str | None = None
    adapter: str | None = None
    dtype: str = "auto"
    device: str = "auto"
    trust_remote_code: bool = False
    suite: str | None = None
    tasks: tuple[str, ...] = ()
    limit: int | None = None
    num_fewshot: int | None = None
    include_path: str | None = None
    engine: str | None = None
    chat_template: bool = False
    batch_size: int = 16
    seed: int = 0
    bootstrap_iters: int = 1000
    run_dir: str | None = None
    system_prompt: str | None = None
    preset: str | None = None

    def __post_init__(self) -> None:
        if self.suite is None and not self.tasks:
            raise ConfigError(f"give a suite ({', '.join(SUITES)}) or engine task names")
        if self.suite is not None and self.tasks:
            raise ConfigError("give a suite or task names, not both")
        if self.suite is not None and self.suite not in SUITES:
            raise ConfigError(f"unknown suite {self.suite!r}; known: {', '.join(SUITES)}")
        if self.engine is not None and self.engine not in ENGINES:
            raise ConfigError(f"unknown engine {self.engine!r}; known: {', '.join(ENGINES)}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be a positive number of documents, not {self.limit}")
        if self.num_fewshot is not None and self.num_fewshot < 0:
            raise ConfigError(f"num_fewshot must be 0 or more, not {self.num_fewshot}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, not {self.batch_size}")
        if self.bootstrap_iters < 0:
            # 0 is the engines' own "no bootstrap" (no interval for non-mean metrics); below is a mistake.
            raise ConfigError(
                f"bootstrap_iters must be 0 (no bootstrap interval) or more, not {self.bootstrap_iters}"
            )
        if len(set(self.tasks)) != len(self.tasks):
            raise ConfigError("a task is named twice")
        if self.preset is not None:
            self._preset_settings(self.preset)  # explicit settings that disagree with it fail here, at once

    def resolve(self) -> UtilityConfig:
        """A new config with the preset's system prompt and dtype filled in (itself when there is no preset).

        The resolved settings are what a run uses and its manifest records; the config itself stays what
        was asked for (a frozen record is never changed).
        """
        if self.preset is None:
            return self
        settings = self._preset_settings(self.preset)
        return dataclasses.replace(self, system_prompt=settings.system_prompt, dtype=settings.dtype)

    def _preset_settings(self, name: str) -> PresetSettings:
        """The preset's system prompt and dtype, checked against explicit settings as ``vlguard eval`` does."""
        from vlguard.presets import apply_preset, get_preset

        preset = get_preset(name)
        return apply_preset(
            preset,
            backend="hf",  # capability runs load the model through vlguard's hf path
            device=self.device,
            system_prompt=self.system_prompt,
            max_new_tokens=preset.max_new_tokens,  # the tasks set their own answer lengths
            dtype=self.dtype,
            judges=None,
            backend_options={},
        )

    def model_args(self) -> ModelArgs:
        """The model arguments, as ``vlguard eval`` takes them."""
        return ModelArgs(
            model=self.model,
            revision=self.revision,
            adapter=self.adapter,
            dtype=self.dtype,
            device=self.device,
            trust_remote_code=self.trust_remote_code,
            batch_size=self.batch_size,
            system_prompt=self.system_prompt,
        )

    def task_specs(self, engine: str) -> list[TaskSpec]:
        """The tasks to run on ``engine``, with ``limit`` / ``num_fewshot`` overrides applied."""
        if self.suite is not None:
            specs = list(SUITES[self.suite].tasks[engine])
        else:
            specs = [TaskSpec(task) for task in self.tasks]
        return [
            dataclasses.replace(
                spec,
                limit=self.limit if self.limit is not None else spec.limit,
                num_fewshot=self.num_fewshot if self.num_fewshot is not None else spec.num_fewshot,
            )
            for spec in specs
        ]

    def resolved_run_dir(self) -> Path:
        """``run_dir``, or ``runs/<model name>`` when none was given."""
        if self.run_dir is not None:
            return Path(self.run_dir)
        slug = Path(self.model.rstrip("/")).name.replace(":", "-") or "model"
        return Path("runs") / slug


class UtilityFolder:
    """The paths of ``RUN/utility``. Creating the object touches nothing on disk."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / UTILITY_DIR
        self.folder = RunFolder(self.path)

    def task_path(self, task: str) -> Path:
        """``tasks/<task>.json``: the finished task's record."""
        return self.path / "tasks" / f"{task_file_name(task)}.json"

    def samples(self, task: str) -> JsonlStore:
        """``samples/<task>.jsonl``: the engine's per-sample logs of the task."""
        return JsonlStore(self.path / "samples" / f"{task_file_name(task)}.jsonl")

    @property
    def engine_output(self) -> Path:
        """Where tasks write their own files (lmms-eval's submission files)."""
        return self.path / "engine"

    def finished(self) -> dict[str, dict[str, Any]]:
        """Task name -> record of every finished task in the folder."""
        records: dict[str, dict[str, Any]] = {}
        for path in sorted((self.path / "tasks").glob("*.json")):
            record = _read_record(path)
            records[str(record["task"])] = record
        return records


def _read_record(path: Path) -> dict[str, Any]:
    try:
        record = parse_json(read_text(path))
    except JsonError as err:
        raise CorruptRunFileError(
            f"{path}: not a valid JSON task record ({err.where()}: {err.message})"
        ) from err
    if not isinstance(record, dict) or not isinstance(record.get("task"), str):
        raise CorruptRunFileError(f"{path}: not a task record of vlguard utility (no 'task' field)")
    return record


def _task_files(include_path: str | None) -> dict[str, str]:
    """sha256 of every task file (YAML, Python) under ``include_path``, by relative path."""
    if include_path is None or not Path(include_path).is_dir():
        return {}
    root = Path(include_path)
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.suffix in (".yaml", ".yml", ".py")
    }


def _check_parent_run(run_dir: Path, args: ModelArgs) -> None:
    """The safety run in ``run_dir`` (if any) must be of the same model, revision and adapter: the
    report shows both as one run."""
    parent = RunFolder(run_dir).read_manifest()
    if parent is None:
        return
    fields = parent.get("result_fields") or {}
    ours = {"model": args.model, "revision": args.revision, "adapter": args.adapter}
    differing = [key for key, value in ours.items() if key in fields and fields[key] != value]
    if differing:
        details = "; ".join(f"{key}: the run has {fields[key]!r}, now {ours[key]!r}" for key in differing)
        raise RunMismatchError(
            f"{run_dir} holds a safety evaluation of another model ({details}); its capability results "
            "must come from the same model. Use the run folder of this model's safety evaluation."
        )


def _open_folder(folder: UtilityFolder, manifest: Mapping[str, Any]) -> None:
    """Create the folder with ``manifest``, or check a folder that holds finished tasks against it."""
    existing = folder.folder.read_manifest()
    if existing is not None and any((folder.path / "tasks").glob("*.json")):
        check_manifest(existing, manifest, folder.path)
        return
    folder.path.mkdir(parents=True, exist_ok=True)
    folder.folder.write_manifest(manifest)


def _check_finished(spec: TaskSpec, record: Mapping[str, Any], folder: UtilityFolder) -> None:
    settings = record.get("settings") or {}
    wanted = spec.settings()
    differing = [key for key in wanted if settings.get(key) != wanted[key]]
    if differing:
        details = "; ".join(
            f"{key}: folder has {settings.get(key)!r}, now {wanted[key]!r}" for key in differing
        )
        raise RunMismatchError(
            f"{folder.task_path(spec.task)} holds task {spec.task!r} run with other settings ({details}). "
            "Use another --run-dir, or delete that file to run the task again."
        )


def build_metrics(folder: UtilityFolder, run_info: Mapping[str, Any]) -> dict[str, Any]:
    """``metrics.json`` of the folder: every finished task's rows (docs/design.md)."""
    records = folder.finished()
    rows = [row for record in records.values() for row in metric_rows(record)]
    n_docs = sum(row["n"] for row in rows if row["group"] == "all" and row["primary"])
    return {
        "schema": METRICS_SCHEMA,
        "run": {**run_info, "kind": "utility", "tasks": sorted(records), "n_samples": n_docs},
        "metrics": rows,
        "agreement": [],
    }


def _preset_record(name: str, lm: Any) -> dict[str, Any]:
    """The preset's settings, and (lmms-eval) whether the model renders the reference prompt."""
    from vlguard.presets import get_preset, reference_prompt_check

    preset = get_preset(name)
    record: dict[str, Any] = {
        **preset.describe(),
        "applies": "system_prompt, dtype (tasks keep their own decoding)",
    }
    backend = getattr(lm, "backend", None)  # the lmms-eval model class holds vlguard's hf backend
    if backend is not None:
        record["prompt_check"] = reference_prompt_check(preset, backend)
    return record


def check_utility(config: UtilityConfig) -> UtilityConfig:
    """Every setting that can be checked before any model loads or any file is written (the shared check,
    ``vlguard.preflight``): the run folder's path, the device, the dtype, the model and the adapter (its
    config against its weights, the base model it was trained on). Returns the resolved config."""
    from vlguard.fileio import check_output_dir
    from vlguard.preflight import ModelSettings, check_model

    config = config.resolve()
    # the path as given: Path("") would be the current folder, and an empty --run-dir is a mistake
    check_output_dir(
        config.resolved_run_dir() if config.run_dir is None else config.run_dir, "--run-dir folder"
    )
    check_model(
        ModelSettings(
            model=config.model,
            revision=config.revision,
            adapter=config.adapter,
            dtype=config.dtype,
            device=config.device,
        )
    )
    return config


def run_utility(config: UtilityConfig, progress: bool = True) -> dict[str, Any]:
    """Run the configured tasks that the run folder does not hold yet; write and return ``metrics.json``.

    ``progress`` is accepted for symmetry with ``run_eval``; the engines draw their own progress bars.
    """
    config = check_utility(config)
    args = config.model_args()
    kind = model_kind(args)
    engine = config.engine or ENGINE_FOR_KIND[kind]
    if ENGINES[engine].model_kind != kind:
        raise ConfigError(
            f"{engine} evaluates {ENGINES[engine].model_kind.upper()}s, but {config.model!r} is a "
            f"{kind.upper()}: use --engine {ENGINE_FOR_KIND[kind]} (or leave --engine out)"
        )
    version = require_engine(engine)
    specs = config.task_specs(engine)
    device, dtype = args.resolved()
    run_dir = config.resolved_run_dir()
    folder = UtilityFolder(run_dir)
    result_fields = {
        "kind": "utility",
        "engine": engine,
        "model": config.model,
        "revision": config.revision,
        "adapter": config.adapter,
        "dtype": dtype,
        "chat_template": config.chat_template if engine == LM_EVAL else True,
        "seed": config.seed,
    }
    # Only when set: folders made before these fields existed still resume.
    if config.system_prompt is not None:
        result_fields["system_prompt"] = config.system_prompt
    if config.preset is not None:
        result_fields["preset"] = config.preset
    manifest = build_manifest(
        result_fields,
        config=dataclasses.asdict(config),
        backend={},
        benchmark_source={
            "engine": engine,
            "suite": config.suite,
            "include_path": None if config.include_path is None else str(Path(config.include_path).resolve()),
            "task_files": _task_files(config.include_path),
        },
        seed=config.seed,
    )
    manifest["kind"] = "utility"
    manifest["engine"] = {"name": engine, "version": version}
    manifest["packages"] = {**package_versions(), ENGINES[engine].distribution: version}

    run_info = {
        "model": config.model,
        "revision": config.revision,
        "adapter": config.adapter,
        "engine": engine,
        "engine_version": version,
        "dtype": dtype,
        "device": device,
        "seed": config.seed,
    }

    _check_parent_run(run_dir, args)
    # One writer per folder: a second `vlguard utility` into the same folder stops at once.
    with lock_run_folder(folder.path):
        _open_folder(folder, manifest)
        finished = folder.finished()
        pending: list[TaskSpec] = []
        for spec in specs:
            if spec.task in finished:
                _check_finished(spec, finished[spec.task], folder)
                logger.info("task %s already finished in %s: skipped", spec.task, folder.path)
            else:
                pending.append(spec)

        if pending:
            manager = task_manager(engine, config.include_path, [spec.task for spec in pending])
            check_task_names(engine, manager, [spec.task for spec in pending])
            loader = load_for_lm_eval if engine == LM_EVAL else load_for_lmms_eval
            lm, description = loader(args)
            manifest_now = folder.folder.read_manifest() or dict(manifest)
            manifest_now["backend"] = description
            if config.preset is not None:
                manifest_now["preset"] = _preset_record(config.preset, lm)
            folder.folder.write_manifest(manifest_now)
            for spec in pending:
                logger.info(
                    "running %s task %s (limit %s, few-shot %s)",
                    engine,
                    spec.task,
                    spec.limit,
                    spec.num_fewshot,
                )
                started = time.monotonic()
                failed_before = len(getattr(lm, "failed", []))
                raw = evaluate_task(
                    engine,
                    lm,
                    spec,
                    manager,
                    seed=config.seed,
                    bootstrap_iters=config.bootstrap_iters,
                    output_dir=folder.engine_output,
                    chat_template=config.chat_template,
                    system_prompt=config.system_prompt if engine == LM_EVAL else None,
                )
                record = task_record(
                    raw, task=spec.task, engine=engine, engine_version=version, settings=spec.settings()
                )
                record["n_failed"] = len(getattr(lm, "failed", [])) - failed_before
                record["seed"] = config.seed
                record["bootstrap_iters"] = config.bootstrap_iters
                record["seconds"] = round(time.monotonic() - started, 3)
                # The sample log first, then the record: a record on disk means the task is complete.
                folder.samples(spec.task).write_all(sample_lines(raw))
                # The engine's task configs may hold a secret (a Hub token in dataset_kwargs): redacted.
                atomic_write_json(folder.task_path(spec.task), redact(record))
                # metrics.json holds every finished task, also when a later task fails.
                folder.folder.write_metrics(build_metrics(folder, run_info))

        metrics = build_metrics(folder, run_info)
        folder.folder.write_metrics(metrics)
    return metrics
