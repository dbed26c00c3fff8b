"""The evaluation pipeline: samples → generations → judgments → metrics, in a resumable run folder.

``run_eval(config)`` runs the three stages; each is also a function of its own (``run_generation``,
``run_judges``, ``run_metrics``) that reads what the stage before wrote, so saved generations can be
re-judged without regenerating. Every stage appends its results in flushed batches and skips what is
already done, so rerunning a killed command finishes it exactly once (see ``vlguard.runs``). Generation
hands the backend as many requests per call as it asks for (``requests_per_call``: a few padded batches
for ``hf``, hundreds of conversations for vLLM) and appends after every call.

Data-parallel generation: started under ``torchrun --nproc_per_node N`` (or ``accelerate launch``),
each process takes a deterministic shard of the pending samples (``pending[rank::world_size]``) and
appends to ``generations.rank<k>.jsonl``; after a barrier, rank 0 merges the shards into
``generations.jsonl`` in sample order and alone runs the judges and metrics.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlguard.distributed import ProcessGroup, is_main_process
from vlguard.errors import ConfigError, DataValidationError, Problem, VLGuardError
from vlguard.fileio import check_output_dir
from vlguard.preflight import ModelSettings, check_benchmark, check_judges, check_model
from vlguard.records import IMAGE_MODES, MAX_PROMPT_CHARS, Generation, ImageMode, Judgment, Sample
from vlguard.runs import (
    CorruptRunFileError,
    JsonlStore,
    RunFolder,
    RunLockedError,
    build_manifest,
    dedupe,
    lock_run_folder,
    open_run,
    record_judge,
    samples_digest,
    update_manifest,
)

if TYPE_CHECKING:
    from vlguard.presets import PresetSettings

logger = logging.getLogger(__name__)

# Judgments are appended every this many samples.
JUDGE_CHUNK = 64
# Generation can take hours on one shard; the default 30-minute collective timeout would kill the run.
BARRIER_TIMEOUT = dt.timedelta(hours=48)
# Benchmark options that only say where data lives (moving a folder must not invalidate a run folder);
# every other benchmark option can change the samples or images, so it is a result field.
LOCATION_OPTIONS = frozenset({"image_root", "cache_dir", "download_images"})


@dataclass(frozen=True)
class EvalConfig:
    """Everything that defines an evaluation run, as asked for (``resolve()`` gives what the run uses).

    ``data`` is a local folder (None: the Hub dataset ``ys-zong/VLGuard`` at ``data_revision``).
    ``image_mode``: ``original`` (the sample's image; missing images are an error unless
    ``allow_blank_substitutes``), ``blank`` (a white image of the original's size) or ``none`` (text only);
    None (the default) is the benchmark's own mode (``vlguard ls``: ``original`` for VLGuard and FigStep,
    ``none`` for the text benchmarks); the resolved mode is what the run folder name and manifest record.
    ``judges`` None (the default) is the benchmark's own judges (``refusal`` for the safety benchmarks).
    ``judge_options`` maps a judge name to its keyword options (API keys never: name the env variable).
    ``limit`` takes a deterministic sample stratified by subset (see ``select_samples``), after
    ``exclude_samples`` (ids left out first: ``vlguard hft`` drops the Harmful Score prompts it trained on).
    ``backend_options`` / ``bench_options`` are passed to the backend / benchmark loader as keywords
    (e.g. ``{"image_root": "test.zip"}`` for VLGuard, ``{"suffix": "..."}`` for AdvBench); the options
    other than data locations (``LOCATION_OPTIONS``) are result fields of the run.
    ``preset`` (e.g. ``"paper"``, see ``vlguard.presets``) fills in the reference evaluation's settings
    (system prompt, dtype, max/min new tokens, judges); settings given explicitly that disagree with it
    are a ``ConfigError``, judges given explicitly are added to the preset's.

    Every setting is checked when the config is made (``ConfigError`` naming it); nothing is changed:
    the preset and the benchmark's defaults are applied by ``resolve()``, into a new record.
    """

    model: str
    backend: str = "hf"
    revision: str | None = None
    adapter: str | None = None
    bench: str = "vlguard-test"
    data: str | None = None
    data_revision: str | None = None
    image_mode: str | None = None
    allow_blank_substitutes: bool = False
    judges: tuple[str, ...] | None = None
    judge_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    subsets: tuple[str, ...] | None = None
    limit: int | None = None
    exclude_samples: tuple[str, ...] = ()
    batch_size: int = 16
    max_new_tokens: int = 256
    seed: int = 0
    dtype: str = "auto"
    device: str = "auto"
    system_prompt: str | None = None
    trust_remote_code: bool = False
    backend_options: Mapping[str, Any] = field(default_factory=dict)
    bench_options: Mapping[str, Any] = field(default_factory=dict)
    run_dir: str | None = None
    preset: str | None = None

    def __post_init__(self) -> None:
        self.resolve()  # a mistake stops the config from being made, not the run hours later

    def resolve(self) -> ResolvedEval:
        """The settings the run uses: the preset applied, the benchmark's image mode and judges filled in."""
        from vlguard.benchmarks import default_image_mode, default_judges

        asked = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if self.preset is not None:  # the preset's settings are fields of this record, by the same names
            asked.update(dataclasses.asdict(self._preset_settings()))
        image_mode = default_image_mode(self.bench) if self.image_mode is None else self.image_mode
        if image_mode not in IMAGE_MODES:
            raise ConfigError(f"image_mode must be one of {', '.join(IMAGE_MODES)}, not {image_mode!r}")
        if asked["judges"] is None:
            asked["judges"] = default_judges(self.bench)
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be a positive number of samples, not {self.limit}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, not {self.batch_size}")
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be at least 1, not {self.max_new_tokens}")
        return ResolvedEval(**{**asked, "image_mode": image_mode})

    def _preset_settings(self) -> PresetSettings:
        from vlguard.benchmarks import benchmark_entry
        from vlguard.presets import apply_preset, get_preset

        bench = benchmark_entry(self.bench)
        return apply_preset(
            get_preset(self.preset or ""),
            backend=self.backend,
            device=self.device,
            system_prompt=self.system_prompt,
            max_new_tokens=self.max_new_tokens,
            dtype=self.dtype,
            judges=self.judges,
            backend_options=self.backend_options,
            benchmark_judges=bench.judges,
            benchmark_axis=bench.axis,
        )

    def resolved_run_dir(self) -> Path:
        """``run_dir``, or ``runs/<model>-<bench>-<image mode>`` (the resolved mode) when none was given."""
        return self.resolve().resolved_run_dir()


@dataclass(frozen=True)
class ResolvedEval:
    """An ``EvalConfig`` with its preset and the benchmark's defaults applied: what a run uses and records.

    Made by ``EvalConfig.resolve()``. The same fields in the same order (the manifest records them as
    ``config``), with ``image_mode`` and ``judges`` always set; see ``EvalConfig`` for their meaning.
    """

    model: str
    backend: str
    revision: str | None
    adapter: str | None
    bench: str
    data: str | None
    data_revision: str | None
    image_mode: ImageMode
    allow_blank_substitutes: bool
    judges: tuple[str, ...]
    judge_options: Mapping[str, Mapping[str, Any]]
    subsets: tuple[str, ...] | None
    limit: int | None
    exclude_samples: tuple[str, ...]
    batch_size: int
    max_new_tokens: int
    seed: int
    dtype: str
    device: str
    system_prompt: str | None
    trust_remote_code: bool
    backend_options: Mapping[str, Any]
    bench_options: Mapping[str, Any]
    run_dir: str | None
    preset: str | None

    def resolved_run_dir(self) -> Path:
        """``run_dir``, or ``runs/<model>-<bench>-<image mode>`` when none was given."""
        if self.run_dir is not None:
            return Path(self.run_dir)
        slug = Path(self.model.rstrip("/")).name.replace(":", "-") or "model"
        return Path("runs") / f"{slug}-{self.bench}-{self.image_mode}"


def resolve_eval(config: EvalConfig | ResolvedEval) -> ResolvedEval:
    """``config`` resolved (a ``ResolvedEval`` is returned as it is): every stage takes either."""
    return config if isinstance(config, ResolvedEval) else config.resolve()


# ---------------------------------------------------------------------------------------------------
# Sample selection


def select_samples(
    samples: Sequence[Sample], subsets: Sequence[str] | None = None, limit: int | None = None
) -> list[Sample]:
    """The samples to evaluate, in benchmark order.

    ``subsets`` keeps only those subsets. ``limit`` keeps ``limit`` samples stratified by subset: the
    quota of each subset is proportional to its size (largest remainder; ties to the earlier subset),
    and within a subset the samples with the smallest sha256 of their id are taken. The choice is
    deterministic, independent of the seed and of file order, and a larger limit keeps (almost) every
    sample of a smaller one.
    """
    chosen = [s for s in samples if subsets is None or s.subset in subsets]
    if subsets is not None:
        unknown = set(subsets) - {s.subset for s in samples}
        if unknown:
            known = ", ".join(sorted({s.subset for s in samples}))
            raise ConfigError(f"unknown subset(s) {', '.join(sorted(unknown))}; this benchmark has: {known}")
    if limit is None or limit >= len(chosen):
        return chosen
    by_subset: dict[str, list[Sample]] = {}
    for s in chosen:
        by_subset.setdefault(s.subset, []).append(s)
    total = len(chosen)
    exact = {name: limit * len(group) / total for name, group in by_subset.items()}
    quota = {name: int(x) for name, x in exact.items()}
    leftover = limit - sum(quota.values())
    for name in sorted(by_subset, key=lambda n: (-(exact[n] - quota[n]), list(by_subset).index(n)))[
        :leftover
    ]:
        quota[name] += 1
    keep: set[str] = set()
    for name, group in by_subset.items():
        ranked = sorted(group, key=lambda s: hashlib.sha256(s.id.encode("utf-8")).hexdigest())
        keep.update(s.id for s in ranked[: quota[name]])
    return [s for s in chosen if s.id in keep]


# ---------------------------------------------------------------------------------------------------
# Data-parallel helpers


def _merge_rank_files(run: RunFolder, order: Mapping[str, int]) -> int:
    """Move shard files' generations into ``generations.jsonl`` (sample order), then delete the shards.

    Safe to interrupt: ids already merged are skipped next time, and shards are removed only after the
    merged lines are fsynced.
    """
    shard_files = run.rank_generation_files()
    if not shard_files:
        return 0
    present = {r["sample_id"] for r in run.generations.read()}
    new: list[dict[str, Any]] = []
    for path in shard_files:
        new += [
            r for r in JsonlStore(path).read() if r["sample_id"] not in present and r["sample_id"] in order
        ]
    new = sorted(dedupe(new), key=lambda r: order[r["sample_id"]])
    written = run.generations.append(new)
    for path in shard_files:
        path.unlink()
    logger.info("merged %d generations from %d shard file(s)", written, len(shard_files))
    return written


# ---------------------------------------------------------------------------------------------------
# Stages


def _result_fields(
    config: ResolvedEval, samples: Sequence[dict[str, Any]], source: Mapping[str, Any]
) -> dict[str, Any]:
    """The settings that change results; a rerun in the same folder must match all of them."""
    from vlguard.generation import backend_entry
    from vlguard.generation.hf import resolve_device, resolve_dtype

    dtype = config.dtype
    if backend_entry(config.backend).resolves_auto_dtype:
        dtype = resolve_dtype(config.dtype, resolve_device(config.device))
    fields: dict[str, Any] = {
        "backend": config.backend,
        "model": config.model,
        "revision": config.revision,
        "adapter": config.adapter,
        "benchmark": config.bench,
        "benchmark_sha256": source.get("sha256"),
        "samples_sha256": samples_digest(samples),
        "n_samples": len(samples),
        "image_mode": config.image_mode,
        "allow_blank_substitutes": config.allow_blank_substitutes,
        "max_new_tokens": config.max_new_tokens,
        "dtype": dtype,
        "system_prompt": config.system_prompt,
        "seed": config.seed,
    }
    if "prompt_format" in config.backend_options:
        # Only when set, like bench_options: chat and alpaca prompts give different answers.
        fields["prompt_format"] = config.backend_options["prompt_format"]
    bench_options = {k: v for k, v in config.bench_options.items() if k not in LOCATION_OPTIONS}
    if bench_options:
        # Only when set: run folders made before this field existed (without options) still resume.
        fields["bench_options"] = bench_options
    if config.preset is not None:
        # Only when set, like bench_options. The preset's generate() settings (min_new_tokens) are not
        # in any other result field, so they are recorded here.
        fields["preset"] = config.preset
        fields["generate_kwargs"] = dict(config.backend_options.get("generate_kwargs") or {})
    return fields


def _chunks(items: Sequence[Sample], size: int) -> Iterator[Sequence[Sample]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def check_config(config: EvalConfig | ResolvedEval, *, with_judges: bool = True) -> ResolvedEval:
    """Everything that can be checked before any data or model is loaded; ``ConfigError`` naming the setting.

    The shared settings check (``vlguard.preflight``): the run folder's path, the backend with its
    options and credentials, the device and dtype, the model and adapter (the adapter's config against its
    weights and the base model it was trained on) and, with ``with_judges``, every judge with its own
    options and pre-flight (judges are built, which is cheap: they load their own models on first use).
    A mistake here must not surface hours later, after generation. Returns the resolved settings.
    """
    config = resolve_eval(config)
    # the path as given: Path("") would be the current folder, and an empty --run-dir is a mistake
    check_output_dir(config.resolved_run_dir() if config.run_dir is None else config.run_dir, "run folder")
    if config.system_prompt is not None and len(config.system_prompt) > MAX_PROMPT_CHARS:
        raise ConfigError(
            f"system_prompt is {len(config.system_prompt):,} characters, over the limit of {MAX_PROMPT_CHARS:,}"
        )
    check_model(
        ModelSettings(
            model=config.model,
            backend=config.backend,
            revision=config.revision,
            adapter=config.adapter,
            dtype=config.dtype,
            device=config.device,
            options=_backend_kwargs(config),
        )
    )
    if with_judges:
        check_judges(config.judges, config.judge_options)
    return config


def run_generation(config: EvalConfig | ResolvedEval, *, progress: bool = True) -> Path:
    """Generate a response for every selected sample not yet done; returns the run folder.

    Writes ``manifest.json`` and ``samples.jsonl`` on first use; ``RunMismatchError`` when the folder
    holds results made with other settings, ``RunLockedError`` when another process is writing to it.
    Works alone or under a data-parallel launcher.
    """
    settings = check_config(config, with_judges=False)
    with contextlib.ExitStack() as held:
        return _generate_locked(settings, progress, held)


def _generate_locked(config: ResolvedEval, progress: bool, held: contextlib.ExitStack) -> Path:
    """Load the benchmark, take the run folder's lock into ``held``, then generate.

    Everything that only reads (the benchmark, the sample selection, prompt lengths) comes first, so a
    data error leaves no folder behind. Rank 0 takes the lock; every rank fails alike without it.
    """
    procs = ProcessGroup.join(BARRIER_TIMEOUT)
    if procs.is_main:
        _warn_if_attack_unseen(config)
    bench, samples = _load_samples(config)
    # The benchmark's checks (images exist and decode) before the folder is written: every rank alike.
    check_benchmark(
        config.bench,
        bench,
        samples,
        image_mode=config.image_mode,
        allow_blank_substitutes=config.allow_blank_substitutes,
    )
    refused = None
    if procs.is_main:
        try:
            held.enter_context(lock_run_folder(config.resolved_run_dir()))
        except RunLockedError as err:
            refused = str(err)
    refused = procs.from_main(refused)
    if refused is not None:
        procs.close()
        raise RunLockedError(refused)
    return _generate(config, procs, bench, samples, progress)


def _load_samples(config: ResolvedEval) -> tuple[Any, list[Sample]]:
    """The benchmark and the samples selected from it (checked for length)."""
    from vlguard.benchmarks import benchmark_entry, load_benchmark

    bench_options = dict(config.bench_options)
    if config.image_mode == "none" and config.data is None:
        # Text-only evaluation from the public source: e.g. don't download VLGuard's image zips.
        for key, value in benchmark_entry(config.bench).options_without_images.items():
            bench_options.setdefault(key, value)
    bench = load_benchmark(config.bench, data=config.data, revision=config.data_revision, **bench_options)
    kept = bench.samples
    if config.exclude_samples:
        excluded = set(config.exclude_samples)
        unknown = excluded - {s.id for s in bench.samples}
        if unknown:
            raise ConfigError(
                f"exclude_samples: {len(unknown)} id(s) are not samples of {config.bench} "
                f"(e.g. {sorted(unknown)[0]!r})"
            )
        kept = tuple(s for s in bench.samples if s.id not in excluded)
    samples = select_samples(kept, config.subsets, config.limit)
    if not samples:
        raise ConfigError(f"benchmark {config.bench} has no samples to evaluate with these settings")
    check_prompt_lengths(
        samples, str(bench.source.get("path") or bench.source.get("repo_id") or config.bench)
    )
    return bench, samples


def _generate(
    config: ResolvedEval, procs: ProcessGroup, bench: Any, samples: list[Sample], progress: bool
) -> Path:
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from vlguard.data.images import prepare_image
    from vlguard.generation import GenerationRequest, make_backend

    sample_dicts = [s.to_dict() for s in samples]
    run_dir = config.resolved_run_dir()
    manifest = build_manifest(
        _result_fields(config, sample_dicts, bench.source),
        config=_config_dict(config),
        backend={"name": config.backend, **dict(config.backend_options)},
        benchmark_source=bench.source,
        seed=config.seed,
    )
    # Every rank checks (and fails alike on a mismatch); only rank 0 writes.
    run = open_run(run_dir, manifest, write=procs.is_main)
    order = {s.id: i for i, s in enumerate(samples)}
    if procs.is_main:
        if run.samples.read() != sample_dicts:
            run.samples.write_all(sample_dicts)
        _merge_rank_files(run, order)  # leftovers of an interrupted data-parallel run
    procs.barrier()

    done = {r["sample_id"] for r in run.generations.read()}
    pending = [s for s in samples if s.id not in done]
    shard = pending[procs.rank :: procs.world_size]
    # Nobody appends before everyone has read the same `done` set (so the shards are disjoint).
    procs.barrier()
    logger.info(
        "%d samples, %d done, %d pending (%d on this process)",
        len(samples),
        len(done),
        len(pending),
        len(shard),
    )

    if shard:
        torch.manual_seed(config.seed)
        np.random.seed(config.seed)
        backend = make_backend(
            config.backend,
            config.model,
            **_backend_kwargs(config),
        )
        if procs.is_main and config.preset is not None:
            _record_preset(run, config.preset, backend)
        if procs.is_main:
            update_manifest(run, backend=backend.describe(), data_parallel={"processes": procs.world_size})
        store = run.generations if procs.world_size == 1 else run.rank_generations(procs.rank)
        shard = _backend_order(backend, shard, config.image_mode)
        bar = tqdm(
            total=len(shard), desc="generate", unit="sample", disable=not progress or not procs.is_main
        )
        # One backend call per chunk, appended at once: a kill loses at most one call's work.
        for chunk in _chunks(shard, backend.requests_per_call):
            requests = [
                GenerationRequest(
                    sample_id=s.id,
                    prompt=s.prompt,
                    input=s.input,
                    image=prepare_image(
                        s,
                        bench.images,
                        config.image_mode,
                        allow_blank_substitutes=config.allow_blank_substitutes,
                    ),
                )
                for s in chunk
            ]
            generations = backend.generate(requests)
            _check_generations(backend.name, requests, generations)
            store.append(g.to_dict() for g in generations)
            bar.update(len(chunk))
        bar.close()
        if procs.is_main:
            # Settings can change while generating (hf: a compile failure falls back); record where they ended.
            update_manifest(run, backend=backend.describe())

    procs.barrier()
    if procs.is_main and procs.world_size > 1:
        _merge_rank_files(run, order)
    if procs.is_main:
        _sort_finished_generations(run, order)
    procs.barrier()
    procs.close()
    return run.path


def _backend_order(backend: Any, shard: list[Sample], image_mode: str | None) -> list[Sample]:
    """The shard in the order the backend wants to answer it (``order_requests``, optional: the hf
    backend sorts by prompt length across the whole shard); unchanged for a backend without one.

    Resuming stays exact: the pending set is what decides the work, not its order.
    """
    order_requests = getattr(backend, "order_requests", None)
    if order_requests is None or len(shard) < 2:
        return shard
    from vlguard.generation import GenerationRequest

    requests = [GenerationRequest(sample_id=s.id, prompt=s.prompt, input=s.input) for s in shard]
    # As prepare_image decides: blank mode always shows an image, original mode when the sample has one.
    with_image = [image_mode == "blank" or (image_mode == "original" and s.image is not None) for s in shard]
    return [shard[i] for i in order_requests(requests, with_image)]


def _sort_finished_generations(run: RunFolder, order: Mapping[str, int]) -> None:
    """Once every sample has its generation, rewrite ``generations.jsonl`` in sample order (atomically).

    A backend that answers in its own order (``_backend_order``) appends in that order; the finished
    file is the same whatever the order, the number of processes or the interruptions.
    """
    records = run.generations.read()
    ids = [r["sample_id"] for r in records]
    if set(ids) != set(order) or len(ids) != len(order):
        return
    if ids != sorted(ids, key=order.__getitem__):
        run.generations.write_all(sorted(records, key=lambda r: order[r["sample_id"]]))


def _check_generations(backend: str, requests: Sequence[Any], generations: Sequence[Generation]) -> None:
    """One generation per request, in request order: anything else is a backend defect, never saved."""
    got = [g.sample_id for g in generations]
    wanted = [r.sample_id for r in requests]
    if got != wanted:
        raise VLGuardError(
            f"backend {backend!r} answered {len(got)} request(s) of {len(wanted)} or out of order "
            f"(first requests {wanted[:3]}, first answers {got[:3]}); nothing of this call was saved"
        )


def _warn_if_attack_unseen(config: ResolvedEval) -> None:
    """Warn when a benchmark whose attack is in the image (FigStep) runs without its images."""
    from vlguard.benchmarks import benchmark_entry

    entry = benchmark_entry(config.bench)
    if entry.attack_in_image and config.image_mode != "original":
        logger.warning(
            "benchmark %s carries its attack in the image, but image mode %r never shows it to the model: "
            "this run measures the answers to the benign text prompt alone, not the attack "
            "(use --image-mode original)",
            config.bench,
            config.image_mode,
        )


def _record_preset(run: RunFolder, name: str, backend: Any) -> None:
    """Record the preset's settings and whether this model's prompt is the reference prompt."""
    from vlguard.presets import get_preset, reference_prompt_check

    preset = get_preset(name)
    update_manifest(
        run, preset={**preset.describe(), "prompt_check": reference_prompt_check(preset, backend)}
    )


def check_prompt_lengths(samples: Sequence[Sample], file: str) -> None:
    """``DataValidationError`` listing every sample whose prompt or input exceeds ``MAX_PROMPT_CHARS``.

    Checked before the model loads: a multi-megabyte prompt does not fit any model's context, and
    tokenizing and running it can take gigabytes before anything fails.
    """
    problems = [
        Problem(
            file,
            sample.id,
            name,
            f"{len(text):,} characters, over the limit of {MAX_PROMPT_CHARS:,} (no model's context holds it)",
        )
        for sample in samples
        for name, text in (("prompt", sample.prompt), ("input", sample.input or ""))
        if len(text) > MAX_PROMPT_CHARS
    ]
    if problems:
        raise DataValidationError(problems)


def _backend_kwargs(config: ResolvedEval) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "revision": config.revision,
        "adapter": config.adapter,
        "batch_size": config.batch_size,
        "max_new_tokens": config.max_new_tokens,
        "system_prompt": config.system_prompt,
    }
    from vlguard.generation import backend_entry

    if backend_entry(config.backend).local_weights:
        kwargs.update(dtype=config.dtype, device=config.device, trust_remote_code=config.trust_remote_code)
    kwargs.update(config.backend_options)
    return kwargs


def _config_dict(config: ResolvedEval) -> dict[str, Any]:
    d = dataclasses.asdict(config)
    d["judge_options"] = {k: dict(v) for k, v in config.judge_options.items()}
    d["run_dir"] = str(config.resolved_run_dir())
    return d


def read_samples(run: RunFolder) -> list[Sample]:
    """The samples of a run folder (``samples.jsonl``)."""
    if not run.samples.exists():
        raise VLGuardError(f"{run.path}: no samples.jsonl; run `vlguard generate` (or eval) first")
    known = {f.name for f in dataclasses.fields(Sample)}
    samples = []
    for line, record in enumerate(run.samples.read(), start=1):
        unknown = sorted(set(record) - known)
        try:
            if unknown:
                raise TypeError(f"unknown field(s) {', '.join(unknown)}")
            samples.append(Sample(**record))
        except TypeError as err:
            raise CorruptRunFileError(
                f"{run.samples.path}: record {line} is not a sample ({err}); the file was changed by hand "
                "or is damaged. Delete the run folder to start over."
            ) from None
    return samples


def read_generations(run: RunFolder) -> dict[str, Generation]:
    """Sample id → generation of a run folder."""
    return {r["sample_id"]: Generation.from_dict(r) for r in dedupe(run.generations.read())}


def run_judges(
    run_dir: str | Path,
    judge_names: Sequence[str],
    options: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    progress: bool = True,
) -> None:
    """Judge every saved generation not yet judged, for each judge; appends ``judgments/<judge>.jsonl``.

    ``options`` maps a judge name to its keyword options. The judge's ``describe()`` is recorded in
    the manifest; verdicts made with other settings are never mixed (``RunMismatchError``).
    """
    from tqdm.auto import tqdm

    from vlguard.judges import judge_axis
    from vlguard.judges.base import JudgeInput

    run = RunFolder(run_dir)
    manifest = run.read_manifest()
    if manifest is None:
        raise VLGuardError(f"{run.path}: not a run folder (no manifest.json)")
    judges = check_judges(judge_names, options)  # every name and option, before judging anything
    with lock_run_folder(run.path):
        samples = read_samples(run)
        generations = read_generations(run)
        # Multimodal judges read images from files: available when the benchmark's images are a folder.
        image_root = manifest.get("benchmark_source", {}).get("image_root")
        image_dir = Path(image_root) if image_root and Path(image_root).is_dir() else None
        generated = [s for s in samples if s.id in generations]
        if len(generated) < len(samples):
            logger.warning(
                "%d sample(s) have no generation yet; judging the %d that do",
                len(samples) - len(generated),
                len(generated),
            )
        axes = dict(manifest.get("judge_axes", {}))
        for name, judge in zip(judge_names, judges, strict=True):
            record_judge(run, name, judge.describe())
            # what its verdicts measure (its options may decide), for metrics.json's `axis`
            axes[name] = judge_axis(name, judge)
            update_manifest(run, judge_axes=axes)
            store = run.judgments(name)
            done = {r["sample_id"] for r in store.read()}
            todo = [s for s in generated if s.id not in done]
            bar = tqdm(total=len(todo), desc=f"judge {name}", unit="sample", disable=not progress)
            for chunk in _chunks(todo, JUDGE_CHUNK):
                items = [
                    JudgeInput.from_records(s, generations[s.id], _image_file(image_dir, s)) for s in chunk
                ]
                verdicts: list[Judgment] = judge.judge(items)
                store.append(j.to_dict() for j in verdicts)
                bar.update(len(chunk))
            bar.close()


def _image_file(image_dir: Path | None, sample: Sample) -> str | None:
    """The sample's image as a readable file path, when its image root is a folder holding it.

    A path that would leave the image root (``..``, absolute; e.g. an edited samples.jsonl) gives None:
    judges send the file to their model, possibly over an API.
    """
    from vlguard.data.images import unsafe_path_reason

    if image_dir is None or sample.image is None or unsafe_path_reason(sample.image) is not None:
        return None
    path = image_dir / sample.image
    return str(path) if path.is_file() else None


def run_metrics(run_dir: str | Path) -> dict[str, Any]:
    """Compute ``metrics.json`` from the run's samples and every judgments file; write it atomically."""
    from vlguard.metrics import compute_metrics

    run = RunFolder(run_dir)
    manifest = run.read_manifest()
    if manifest is None:
        raise VLGuardError(f"{run.path}: not a run folder (no manifest.json)")
    with lock_run_folder(run.path):
        samples = read_samples(run)
        generated = read_generations(run)
        judgments = {
            name: [Judgment.from_dict(r) for r in dedupe(run.judgments(name).read())]
            for name in run.judge_names()
        }
        fields = manifest.get("result_fields", {})
        judge_versions = {
            name: str(desc.get("version"))
            for name, desc in manifest.get("judges", {}).items()
            if isinstance(desc, Mapping) and desc.get("version") is not None
        }
        run_info = {
            "model": fields.get("model"),
            "revision": fields.get("revision"),
            "adapter": fields.get("adapter"),
            "benchmark": fields.get("benchmark"),
            "image_mode": fields.get("image_mode"),
            "max_new_tokens": fields.get("max_new_tokens"),
            "seed": fields.get("seed", 0),
            "n_samples": len(samples),
        }
        partial = (manifest.get("benchmark_source") or {}).get("partial")
        if partial:
            # loaded with allow_partial: a published file held fewer (or more) records than published
            run_info["partial"] = partial
        axes, reference_axes = _axes(manifest, fields.get("benchmark"), run.judge_names(), samples)
        metrics = compute_metrics(
            samples,
            judgments,
            run=run_info,
            seed=int(fields.get("seed", 0)),
            judge_versions=judge_versions,
            axes=axes,
            reference_axes=reference_axes,
        )
        metrics.update(completeness(samples, generated, judgments))
        if not metrics["complete"]:
            logger.warning("%s: %s", run.path, incomplete_summary(metrics["completeness"]))
        run.write_metrics(metrics)
    return metrics


def _axes(
    manifest: Mapping[str, Any], bench: str | None, judges: Sequence[str], samples: Sequence[Sample]
) -> tuple[dict[str, str | None], dict[str, str]]:
    """Judge → the axis its verdicts measure (recorded when it judged; its registry entry's for runs
    judged before axes were recorded), and subset → the axis the benchmark's reference scores it on."""
    from vlguard.benchmarks import BENCHMARKS
    from vlguard.judges import judge_axis

    recorded = manifest.get("judge_axes") or {}
    axes = {name: recorded.get(name) or judge_axis(name) for name in judges}
    entry = BENCHMARKS.get(bench) if bench is not None else None
    reference = {} if entry is None else {s.subset: entry.reference_axis(s.subset) for s in samples}
    return axes, dict(reference)


def completeness(
    samples: Sequence[Sample],
    generations: Mapping[str, Generation],
    judgments: Mapping[str, Sequence[Judgment]],
) -> dict[str, Any]:
    """``{"complete": bool, "completeness": {"samples", "generated", "judged": {judge: n}, "failed": {...}}}``
    for metrics.json.

    A run is complete when every sample has a generation, every judge has judged every sample, and
    something was measured: a run whose every generation failed, or one of whose judges failed on every
    sample (``error`` verdicts only, e.g. an API judge without its key), measured nothing, whatever its
    error rate says. ``failed`` counts the failed generations (``generation``) and each judge's ``error``
    verdicts. Otherwise the metrics describe only part of the benchmark, and the report says so.
    """
    from vlguard.judges import ERROR

    ids = {s.id for s in samples}
    generated = len(ids & set(generations))
    judged = {name: len(ids & {j.sample_id for j in items}) for name, items in judgments.items()}
    failed = {"generation": sum(1 for i in ids if i in generations and generations[i].error is not None)}
    failed.update(
        {
            name: len({j.sample_id for j in items if j.label == ERROR} & ids)
            for name, items in judgments.items()
        }
    )
    measured = generated > failed["generation"] and all(
        failed[name] < n or n == 0 for name, n in judged.items()
    )
    complete = (
        bool(ids)
        and generated == len(ids)
        and bool(judged)
        and all(n == len(ids) for n in judged.values())
        and measured
    )
    return {
        "complete": complete,
        "completeness": {"samples": len(ids), "generated": generated, "judged": judged, "failed": failed},
    }


def incomplete_summary(counts: Mapping[str, Any]) -> str:
    """One line: how much of the run is missing or failed (``completeness`` block of metrics.json)."""
    total = counts.get("samples")
    parts = [f"{counts.get('generated')} of {total} samples generated"]
    judged = counts.get("judged") or {}
    failed = counts.get("failed") or {}
    parts += [f"{n} judged by {name}" for name, n in judged.items()]
    if not judged:
        parts.append("no judgments")
    if failed.get("generation"):
        parts.append(f"{failed['generation']} generation(s) failed")
    parts += [
        f"{name} failed on every sample it judged ({n})"
        for name, n in failed.items()
        if name != "generation" and n and n == judged.get(name)
    ]
    return "INCOMPLETE: " + ", ".join(parts) + "; the metrics cover only those (rerun the command to finish)"


def run_eval(config: EvalConfig | ResolvedEval, *, progress: bool = True) -> dict[str, Any]:
    """Generate, judge and compute metrics; returns the metrics dict (empty on non-zero ranks).

    Every setting (judges and their options included) is checked before anything loads, and the run
    folder stays locked from the first write to the last.
    """
    settings = check_config(config, with_judges=True)
    with contextlib.ExitStack() as held:
        run_dir = _generate_locked(settings, progress, held)
        if not is_main_process():
            return {}
        run_judges(run_dir, settings.judges, settings.judge_options, progress=progress)
        return run_metrics(run_dir)
