"""The curation pipeline: label each image, write its pairs, check them; resumable and exactly-once.

``run_curate(config)`` is what ``vlguard curate`` calls:

1. ``check_curate_settings`` checks every setting before any model loads or any file is written;
2. the inputs load: the taxonomy, the images, the user's labels, the released VLGuard instructions;
3. the folder is locked and its manifest written (or checked against the settings that made it);
4. **label**: images with a complete user label keep it; the writer labels the others (the user's
   partial labels win over the model's); an image that cannot be read is rejected here;
5. **write**: the writer writes one pair for a harmful image (instruction + refusal) and two for a safe
   one (safe instruction + helpful answer, unsafe instruction + refusal);
6. **check**: the judges of ``vlguard.curate.checks`` label every pair, then near-duplicates are
   looked for among the released VLGuard instructions and the instructions accepted so far;
7. ``train.json``, the images and ``rejects.jsonl`` are written from the stage files, and the manifest
   gets the counts, the token usage and the cost.

Every stage appends after each backend call group, so a killed run loses at most that group's work
and a rerun of the same command does the rest once (see ``vlguard.curate.folder``). An answer that
cannot be used is retried a bounded number of times, then the image is rejected with its raw text;
nothing is dropped silently. ``retry_rejects`` sets the rejects aside (``retried.jsonl``) and runs
their failed stage again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from vlguard.curate.checks import (
    CheckItem,
    NearDuplicateIndex,
    PairCheck,
    active_checks,
    build_judges,
    failed_checks,
    near_duplicates,
    reference_instructions,
    remember,
    run_checks,
)
from vlguard.curate.folder import KIND, STAGES, CuratedFolder
from vlguard.curate.inputs import ImageEntry, UserLabel, find_images, labels_digest, read_labels
from vlguard.curate.parse import Label, parse_label, parse_pairs
from vlguard.curate.prompts import PROMPT_VERSIONS, harmful_prompt, label_prompt, prompts_sha256, safe_prompt
from vlguard.curate.similarity import NGRAM, THRESHOLD
from vlguard.curate.taxonomy import Taxonomy, load_taxonomy
from vlguard.curate.writer import (
    Attempt,
    LazyBackend,
    MeteredBackend,
    Usage,
    Writer,
    WriterOutcome,
    WriterTask,
)
from vlguard.data.images import FolderImageSource, unsafe_path_reason
from vlguard.errors import ConfigError, ImageLoadError, VLGuardError
from vlguard.fileio import atomic_write_bytes, check_output_dir
from vlguard.generation.base import GenerationBackend
from vlguard.records import InstructionResponse
from vlguard.runs import (
    LOCK_FILE,
    MANIFEST,
    MANIFEST_SCHEMA,
    atomic_write_json,
    canonical,
    check_manifest,
    git_commit,
    git_dirty,
    lock_run_folder,
    package_versions,
    update_manifest,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")  # what a writer task parses its answer into

DEFAULT_VLGUARD_DATA = "ys-zong/VLGuard"
MAX_ATTEMPTS_LIMIT = 10
# Images checked per group when the writer is not loaded (the judges batch within a group).
CHECK_GROUP_SIZE = 64
# Backend options that say how the writer is reached or batched, not what it writes: they may change
# between a run and its resume (everything else is a result field).
_HOW_NOT_WHAT = frozenset(
    {"batch_size", "requests_per_call", "max_concurrency", "max_retries", "backoff_base", "backoff_max",
     "max_total_wait", "timeout", "device", "api_key_env", "base_url"}
)  # fmt: skip


@dataclass(frozen=True)
class CurateConfig:
    """Every setting of a curation run (``vlguard curate``'s options; see ``docs/curate.md``).

    ``vlguard_data`` is where the released VLGuard instructions come from (a local folder or a Hub id)
    for the near-duplicate and leak check; None skips that check (recorded in the manifest).
    ``price_per_million_tokens`` is (input, output) in US dollars, for the cost in the manifest.
    """

    images_dir: str
    out: str
    model: str
    backend: str = "openai"
    backend_options: Mapping[str, Any] = field(default_factory=dict)
    taxonomy: str | None = None
    labels: str | None = None
    retry_rejects: bool = False
    seed: int = 0
    limit: int | None = None
    max_attempts: int = 3
    max_new_tokens: int = 1024
    batch_size: int = 8
    device: str = "auto"
    dtype: str = "auto"
    judge_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    vlguard_data: str | None = DEFAULT_VLGUARD_DATA
    similarity_threshold: float = THRESHOLD
    price_per_million_tokens: tuple[float, float] | None = None


@dataclass(frozen=True)
class CurateResult:
    """What a run leaves: the folder, the count per outcome, the usage and the cost (None without prices)."""

    out: Path
    accepted: int
    rejected: dict[str, int]
    pending: int
    usage: Usage
    cost_usd: float | None


# ---------------------------------------------------------------------------------------------------
# Settings


def _loads_weights(backend: str) -> bool:
    """Whether the writer's backend loads model weights here (dtype, device and the model reference apply).

    ``ConfigError`` naming the known backends for an unknown one.
    """
    from vlguard.generation import backend_entry

    return backend_entry(backend).local_weights


def writer_kwargs(config: CurateConfig) -> dict[str, Any]:
    """The keyword arguments of the writer's backend: the run's settings, then ``--backend-option``."""
    kwargs: dict[str, Any] = {"max_new_tokens": config.max_new_tokens, "batch_size": config.batch_size}
    if _loads_weights(config.backend):
        kwargs.update(dtype=config.dtype, device=config.device)
    kwargs.update(config.backend_options)
    return kwargs


class _NotLoaded:
    """The writer as settings checks see it: a backend that must not be used (nothing loads)."""

    name = "writer"
    requests_per_call = 1

    def describe(self) -> dict[str, Any]:
        return {"backend": "writer"}

    def generate(self, requests: Sequence[Any]) -> list[Any]:
        raise AssertionError("the settings check must not generate")


def check_curate_settings(config: CurateConfig) -> None:
    """Every setting that can be checked before any model loads or any file is written.

    Numbers and ranges, the images folder, the output folder, the writer backend and its options,
    device, dtype, model and adapter, the API key's variable for an endpoint that needs one (the shared
    check, ``vlguard.preflight.check_model``), the
    taxonomy and labels files, every judge with its options, and where the released VLGuard
    instructions come from. ``ConfigError`` / ``DataValidationError`` naming the setting or file.
    """
    from vlguard.data.sources import looks_like_repo_id
    from vlguard.preflight import ModelSettings, check_model

    _check_numbers(config)
    images = find_images(config.images_dir)
    out = check_output_dir(config.out, "--out folder")
    images_root, out_resolved = Path(config.images_dir).resolve(), out.resolve()
    if out_resolved == images_root or out_resolved.is_relative_to(images_root):
        raise ConfigError(
            f"{config.out}: the --out folder is inside the images folder {config.images_dir}; its copied "
            "images would be curated again on the next run. Put it elsewhere."
        )
    _check_out_folder(out)
    kwargs = writer_kwargs(config)
    adapter = kwargs.get("adapter")
    # the shared check (vlguard.preflight): backend options and credentials, device, dtype, model, adapter
    check_model(
        ModelSettings(
            model=config.model,
            backend=config.backend,
            adapter=str(adapter) if adapter else None,
            dtype=str(kwargs.get("dtype", "auto")),
            device=str(kwargs.get("device", "auto")),
            options=kwargs,
        ),
        adapter_flag="--backend-option adapter",
    )
    taxonomy = load_taxonomy(config.taxonomy)
    if config.labels is not None:
        read_labels(config.labels, taxonomy, images)
    build_judges(active_checks(), config.judge_options, _NotLoaded(), config.model)
    source = config.vlguard_data
    if source is not None and not Path(source).exists() and not looks_like_repo_id(source):
        raise ConfigError(
            f"--vlguard-data {source!r}: no such folder (and not a Hub dataset id like ys-zong/VLGuard)"
        )


def _check_out_folder(out: Path) -> None:
    """An existing --out folder must be a curated folder: never write train.json into other files' folder."""
    if not out.is_dir() or not any(p.name != LOCK_FILE for p in out.iterdir()):
        return
    manifest = CuratedFolder(out).run.read_manifest() if (out / MANIFEST).is_file() else None
    if manifest is None or manifest.get("kind") != KIND:
        raise ConfigError(
            f"{out}: the --out folder exists and is not a folder written by vlguard curate; give a new or "
            "empty folder (its train.json and train/ would be overwritten)"
        )


def _check_numbers(config: CurateConfig) -> None:
    if isinstance(config.seed, bool) or not isinstance(config.seed, int) or config.seed < 0:
        raise ConfigError(f"--seed must be a whole number >= 0, not {config.seed!r}")
    if config.limit is not None and config.limit < 1:
        raise ConfigError(f"--limit must be a positive number of images, not {config.limit}")
    if not 1 <= config.max_attempts <= MAX_ATTEMPTS_LIMIT:
        raise ConfigError(
            f"--max-attempts must be between 1 and {MAX_ATTEMPTS_LIMIT}, not {config.max_attempts}"
        )
    if config.max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens must be at least 1, not {config.max_new_tokens}")
    if config.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, not {config.batch_size}")
    if not (isinstance(config.similarity_threshold, float | int) and 0 < config.similarity_threshold <= 1):
        raise ConfigError(f"--similarity-threshold must be in (0, 1], not {config.similarity_threshold!r}")
    if config.price_per_million_tokens is not None:
        prices = config.price_per_million_tokens
        if len(prices) != 2 or not all(math.isfinite(p) and p >= 0 for p in prices):
            raise ConfigError(
                f"--price-per-million-tokens needs two prices >= 0 (input,output), not {prices!r}"
            )


# ---------------------------------------------------------------------------------------------------
# Manifest


def _writer_fields(config: CurateConfig) -> dict[str, Any]:
    options = {k: v for k, v in writer_kwargs(config).items() if k not in _HOW_NOT_WHAT}
    return {"backend": config.backend, "model": config.model, "options": options}


def build_curate_manifest(
    config: CurateConfig, taxonomy: Taxonomy, checks: Sequence[PairCheck], judges: Mapping[str, Any]
) -> dict[str, Any]:
    """The manifest of a curated folder; ``result_fields`` must match for a rerun to resume it."""
    result_fields = {
        "kind": KIND,
        "writer": _writer_fields(config),
        "prompts": {**PROMPT_VERSIONS, "sha256": prompts_sha256()},
        "taxonomy_sha256": taxonomy.sha256,
        "labels_sha256": labels_digest(config.labels),
        "images_dir": str(Path(config.images_dir).resolve()),
        "seed": config.seed,
        "max_attempts": config.max_attempts,
        "checks": [{"name": c.name, "judge": c.judge, "version": judges[c.judge].version} for c in checks],
        "judge_options": {name: dict(opts) for name, opts in config.judge_options.items()},
        "near_duplicates": {
            "vlguard_data": config.vlguard_data,
            "ngram": NGRAM,
            "threshold": config.similarity_threshold,
        },
    }
    settings = dataclasses.asdict(config)
    settings["backend_options"] = dict(config.backend_options)
    settings["judge_options"] = {name: dict(opts) for name, opts in config.judge_options.items()}
    # Without secrets (option names like api_key, credentials in URLs): a rerun compares this form.
    return canonical(
        {
            "schema": MANIFEST_SCHEMA,
            "kind": KIND,
            "result_fields": result_fields,
            "config": json.loads(json.dumps(settings, default=str)),
            "taxonomy": {"name": taxonomy.name, "source": taxonomy.source, **taxonomy.to_dict()},
            "packages": package_versions(),
            "git_commit": git_commit(),
            "git_dirty": git_dirty(),
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
    )


def _open_folder(folder: CuratedFolder, manifest: Mapping[str, Any]) -> None:
    """Write the manifest of a new folder; check an existing one's result fields (``RunMismatchError``)."""
    existing = folder.run.read_manifest()
    if existing is not None and existing.get("kind") != KIND:
        raise VLGuardError(f"{folder.path} is not a curated folder (its manifest is of another kind)")
    if existing is not None and folder.has_results():
        check_manifest(existing, manifest, folder.path)
        return
    folder.run.write_manifest(manifest)


# ---------------------------------------------------------------------------------------------------
# The pipeline


def _select(images: list[ImageEntry], limit: int | None) -> list[ImageEntry]:
    """``limit`` images, chosen by the smallest sha256 of their id (stable as images are added), in path order."""
    if limit is None or limit >= len(images):
        return images
    chosen = sorted(images, key=lambda e: hashlib.sha256(e.id.encode()).hexdigest())[:limit]
    return sorted(chosen, key=lambda e: e.path)


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), max(1, size)):
        yield items[start : start + size]


def _pairs_record(
    entry: ImageEntry, pairs: tuple[InstructionResponse, ...], attempts: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "image_id": entry.id,
        "image": entry.path,
        "status": "ok",
        "pairs": [dataclasses.asdict(p) for p in pairs],
        "attempts": attempts,
    }


def _rejected(entry: ImageEntry, stage: str, reasons: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "image_id": entry.id,
        "image": entry.path,
        "status": "rejected",
        "stage": stage,
        "reasons": reasons,
        **extra,
    }


def _attempts(outcome: WriterOutcome[Any]) -> list[dict[str, Any]]:
    return [a.to_dict() for a in outcome.attempts]


def _writer_failure(outcome: WriterOutcome[Any]) -> list[dict[str, Any]]:
    last: Attempt = outcome.attempts[-1]
    return [{
        "check": "writer_output",
        "reason": f"no usable answer in {len(outcome.attempts)} attempt(s): {last.problem}",
        "raw": last.raw,
    }]  # fmt: skip


class _Pipeline:
    """One run over one folder: holds the inputs, the writer and the judges (built by ``run_curate``)."""

    def __init__(
        self,
        config: CurateConfig,
        folder: CuratedFolder,
        taxonomy: Taxonomy,
        user_labels: Mapping[str, UserLabel],
        writer_backend: MeteredBackend,
        checks: Sequence[PairCheck],
        judges: Mapping[str, Any],
        references: NearDuplicateIndex,
    ) -> None:
        self.config = config
        self.folder = folder
        self.taxonomy = taxonomy
        self.user_labels = user_labels
        self.meter = writer_backend
        self.writer = Writer(writer_backend, max_attempts=config.max_attempts)
        self.checks = checks
        self.judges = judges
        self.index = references
        self.images = FolderImageSource(config.images_dir)

    def _group_size(self) -> int:
        # The writer's own call size: a kill loses at most one group of images per stage.
        return self.meter.requests_per_call

    def _record_usage(self, stage: str) -> None:
        usage = self.meter.take()
        if usage.calls:
            self.folder.usage.append([{"stage": stage, **usage.to_dict()}])

    def _open(self, entry: ImageEntry) -> Any:
        return self.images.open(entry.path).convert("RGB")

    # -- stage 1 -------------------------------------------------------------------------------------
    def label(self, entries: Sequence[ImageEntry]) -> None:
        """Label every image without a line in ``labels.jsonl``."""
        store = self.folder.stage("labels")
        done = set(self.folder.read_stage("labels"))
        pending = [e for e in entries if e.id not in done]
        logger.info("label: %d image(s) to label, %d done", len(pending), len(entries) - len(pending))
        if not pending:
            return
        # Only images without a complete user label need the writer (and its model loaded).
        needs_writer = any(not self._complete(e) for e in pending)
        for group in _chunks(pending, self._group_size() if needs_writer else len(pending)):
            records: dict[str, dict[str, Any]] = {}
            tasks: list[WriterTask[Label]] = []
            for entry in group:
                reason = unsafe_path_reason(entry.path)
                if reason is not None:
                    records[entry.id] = _rejected(entry, "image", [{"check": "image", "reason": reason}])
                    continue
                try:
                    image = self._open(entry)
                except ImageLoadError as err:
                    records[entry.id] = _rejected(entry, "image", [{"check": "image", "reason": str(err)}])
                    continue
                known = self.user_labels.get(entry.path)
                if known is not None and known.complete:
                    label = Label(bool(known.safe), known.category, known.subcategory, "user")
                    records[entry.id] = self._label_record(entry, label, [])
                    continue
                tasks.append(
                    WriterTask(entry.id, label_prompt(self.taxonomy, known), image, self._label_parser(known))
                )
            self._run_writer(group, tasks, records, "label", self._label_record)
            store.append(records[e.id] for e in group)
            self._record_usage("label")

    def _run_writer(
        self,
        group: Sequence[ImageEntry],
        tasks: list[WriterTask[T]],
        records: dict[str, dict[str, Any]],
        stage: str,
        accepted: Callable[[ImageEntry, T, list[dict[str, Any]]], dict[str, Any]],
    ) -> None:
        """Run ``tasks`` on the writer and put each image's record into ``records``: ``accepted(entry,
        value, attempts)`` for a parsed answer, a rejection at ``stage`` with every raw answer otherwise."""
        by_id = {e.id: e for e in group}
        for outcome in self.writer.run(tasks):
            entry = by_id[outcome.key]
            if outcome.value is None:
                records[entry.id] = _rejected(
                    entry, stage, _writer_failure(outcome), attempts=_attempts(outcome)
                )
            else:
                records[entry.id] = accepted(entry, outcome.value, _attempts(outcome))

    def _complete(self, entry: ImageEntry) -> bool:
        known = self.user_labels.get(entry.path)
        return known is not None and known.complete

    def _label_parser(self, known: UserLabel | None) -> Callable[[str], Label]:
        return lambda text: parse_label(text, self.taxonomy, known)

    @staticmethod
    def _label_record(entry: ImageEntry, label: Label, attempts: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "image_id": entry.id,
            "image": entry.path,
            "status": "ok",
            "label": label.to_dict(),
            "attempts": attempts,
        }

    # -- stage 2 -------------------------------------------------------------------------------------
    def write(self, entries: Sequence[ImageEntry]) -> None:
        """Write the pairs of every labelled image without a line in ``pairs.jsonl``."""
        labels = self.folder.read_stage("labels")
        done = set(self.folder.read_stage("pairs"))
        pending = [
            e for e in entries if e.id in labels and labels[e.id]["status"] == "ok" and e.id not in done
        ]
        logger.info("write: %d image(s) to write pairs for", len(pending))
        if not pending:
            return
        store = self.folder.stage("pairs")
        for group in _chunks(pending, self._group_size()):
            tasks: list[WriterTask[tuple[InstructionResponse, ...]]] = []
            records: dict[str, dict[str, Any]] = {}
            for entry in group:
                label = Label.from_dict(labels[entry.id]["label"])
                try:
                    image = self._open(entry)
                except ImageLoadError as err:  # removed or changed since it was labelled
                    records[entry.id] = _rejected(entry, "write", [{"check": "image", "reason": str(err)}])
                    continue
                prompt = (
                    safe_prompt(self.taxonomy)
                    if label.safe
                    else harmful_prompt(self.taxonomy, str(label.category), str(label.subcategory))
                )
                tasks.append(WriterTask(entry.id, prompt, image, _pairs_parser(label.safe)))
            self._run_writer(group, tasks, records, "write", _pairs_record)
            store.append(records[e.id] for e in group)
            self._record_usage("write")

    # -- stage 3 -------------------------------------------------------------------------------------
    def check(self, entries: Sequence[ImageEntry]) -> None:
        """Check the pairs of every written image without a line in ``checks.jsonl``."""
        pairs = self.folder.read_stage("pairs")
        checked = self.folder.read_stage("checks")
        for image_id, record in checked.items():  # what is accepted so far is what new pairs must not repeat
            if record["status"] == "accepted":
                remember(self.index, image_id, self._pairs(pairs[image_id]))
        pending = [
            e for e in entries if e.id in pairs and pairs[e.id]["status"] == "ok" and e.id not in checked
        ]
        logger.info("check: %d image(s) to check", len(pending))
        if not pending:
            return
        store = self.folder.stage("checks")
        # The writer's call size when it is loaded; otherwise a fixed size, so that a resumed run whose
        # checks use another model does not load the writer only to learn its call size.
        size = self._group_size() if self.meter.loaded else CHECK_GROUP_SIZE
        for group in _chunks(pending, size):
            items = [
                CheckItem(e.id, str(Path(self.config.images_dir) / e.path), self._pairs(pairs[e.id]))
                for e in group
            ]
            verdicts = run_checks(items, self.checks, self.judges)
            records = []
            for entry, item, verdict in zip(group, items, verdicts, strict=True):
                reasons = failed_checks(verdict, self.checks)
                if not reasons:  # only pairs that passed the judges claim their instructions
                    reasons = near_duplicates(entry.id, item.pairs, self.index)
                accepted = not reasons
                if accepted:
                    remember(self.index, entry.id, item.pairs)
                records.append({
                    "image_id": entry.id,
                    "image": entry.path,
                    "status": "accepted" if accepted else "rejected",
                    "verdicts": verdict,
                    "reasons": reasons,
                })  # fmt: skip
            store.append(records)
            self._record_usage("check")

    @staticmethod
    def _pairs(record: Mapping[str, Any]) -> tuple[InstructionResponse, ...]:
        return tuple(InstructionResponse(p["key"], p["instruction"], p["response"]) for p in record["pairs"])


def _pairs_parser(safe: bool) -> Callable[[str], tuple[InstructionResponse, ...]]:
    return lambda text: parse_pairs(text, safe)


def _retry_rejects(folder: CuratedFolder) -> int:
    """Set every reject aside in ``retried.jsonl`` and drop it from its stage, so that stage runs again."""
    stages = {name: folder.read_stage(name) for name in STAGES}
    rejected = {
        image_id: (name, record)
        for name in STAGES
        for image_id, record in stages[name].items()
        if record["status"] == "rejected"
    }
    if not rejected:
        return 0
    round_number = 1 + max((int(r.get("round", 0)) for r in folder.retried.read()), default=0)
    # The history first: a kill before the stages are rewritten only repeats a history line.
    folder.retried.append(
        {"round": round_number, "stage_file": name, **record} for name, record in rejected.values()
    )
    for name in STAGES:
        kept = [r for image_id, r in stages[name].items() if image_id not in rejected]
        if len(kept) != len(stages[name]):
            folder.stage(name).write_all(kept)
    return len(rejected)


# ---------------------------------------------------------------------------------------------------
# The dataset


def _vlguard_record(
    label: Mapping[str, Any], check: Mapping[str, Any], pairs: Mapping[str, Any]
) -> dict[str, Any]:
    record: dict[str, Any] = {"id": check["image_id"], "image": check["image"], "safe": bool(label["safe"])}
    if not label["safe"]:
        record["harmful_category"] = label["category"]
        record["harmful_subcategory"] = label["subcategory"]
    record["instr-resp"] = [{p["key"]: p["instruction"], "response": p["response"]} for p in pairs["pairs"]]
    return record


def _copy_image(source: Path, target: Path) -> None:
    """Copy an image into the dataset (atomically), unless the same bytes are already there.

    An image removed from IMAGES_DIR after it was accepted keeps the copy made then.
    """
    if not source.is_file():
        if target.is_file():
            return
        raise VLGuardError(f"{source}: an accepted image is missing from the images folder and the dataset")
    data = source.read_bytes()
    if target.is_file() and target.stat().st_size == len(data) and target.read_bytes() == data:
        return
    atomic_write_bytes(target, data)


def assemble(folder: CuratedFolder, images_dir: str | Path) -> tuple[int, dict[str, int]]:
    """Write ``train.json``, its images and ``rejects.jsonl`` from the stage files; (accepted, rejected by stage)."""
    labels, pairs, checks = (folder.read_stage(name) for name in STAGES)
    accepted = sorted((r for r in checks.values() if r["status"] == "accepted"), key=lambda r: r["image"])
    records = [_vlguard_record(labels[r["image_id"]]["label"], r, pairs[r["image_id"]]) for r in accepted]
    for record in records:
        _copy_image(Path(images_dir) / record["image"], folder.images / record["image"])
    atomic_write_json(folder.train_json, records)
    # An image is rejected by one stage only (its later stages never run); the check stage's
    # records carry no stage name of their own.
    rejects = [
        {**record, "stage": record.get("stage", "check")}
        for stage in (labels, pairs, checks)
        for record in stage.values()
        if record["status"] == "rejected"
    ]
    rejects.sort(key=lambda r: r["image"])
    folder.rejects.write_all(rejects)
    by_stage: dict[str, int] = {}
    for reject in rejects:
        by_stage[reject["stage"]] = by_stage.get(reject["stage"], 0) + 1
    return len(records), by_stage


def total_usage(folder: CuratedFolder) -> dict[str, Usage]:
    """Usage per stage and in total, from ``usage.jsonl``."""
    per_stage: dict[str, Usage] = {}
    for line in folder.usage.read():
        usage = Usage(
            int(line.get("calls", 0)),
            int(line.get("prompt_tokens", 0)),
            int(line.get("completion_tokens", 0)),
        )
        per_stage[line["stage"]] = per_stage.get(line["stage"], Usage()) + usage
    per_stage["total"] = sum(per_stage.values(), Usage())
    return per_stage


def cost_usd(usage: Usage, prices: tuple[float, float] | None) -> float | None:
    """What the tokens cost at (input, output) US dollars per million tokens; None without prices."""
    if prices is None:
        return None
    return round((usage.prompt_tokens * prices[0] + usage.completion_tokens * prices[1]) / 1e6, 6)


# ---------------------------------------------------------------------------------------------------
# Entry point


def make_writer(config: CurateConfig) -> MeteredBackend:
    """The writer backend, metered and built on first use."""

    def build() -> GenerationBackend:
        from vlguard.generation import make_backend

        if _loads_weights(config.backend):
            import torch

            torch.manual_seed(config.seed)
        return make_backend(config.backend, config.model, **writer_kwargs(config))

    return MeteredBackend(LazyBackend(config.backend, build))


def run_curate(config: CurateConfig) -> CurateResult:
    """Curate ``config.images_dir`` into ``config.out`` (see the module docstring); resumable."""
    check_curate_settings(config)
    taxonomy = load_taxonomy(config.taxonomy)
    found = find_images(config.images_dir)
    images = _select(found, config.limit)
    user_labels = read_labels(config.labels, taxonomy, found) if config.labels else {}
    references = NearDuplicateIndex(
        reference_instructions(config.vlguard_data) if config.vlguard_data is not None else (),
        threshold=config.similarity_threshold,
    )
    if config.vlguard_data is None:
        logger.warning("no --vlguard-data: instructions are not checked against the released VLGuard ones")
    writer = make_writer(config)
    checks = active_checks()
    judges = build_judges(checks, config.judge_options, writer, config.model)
    manifest = build_curate_manifest(config, taxonomy, checks, judges)
    folder = CuratedFolder(config.out)
    with lock_run_folder(folder.path):
        _open_folder(folder, manifest)
        if config.retry_rejects:
            logger.info("retrying %d rejected image(s)", _retry_rejects(folder))
        pipeline = _Pipeline(config, folder, taxonomy, user_labels, writer, checks, judges, references)
        pipeline.label(images)
        pipeline.write(images)
        pipeline.check(images)
        accepted, rejected = assemble(folder, config.images_dir)
        usage = total_usage(folder)
        cost = cost_usd(usage["total"], config.price_per_million_tokens)
        fields: dict[str, Any] = {
            "counts": {"accepted": accepted, "rejected": rejected},
            "usage": {stage: u.to_dict() for stage, u in usage.items()},
            "cost": {
                "usd": cost,
                "price_per_million_tokens": (
                    None
                    if config.price_per_million_tokens is None
                    else dict(zip(("input", "output"), config.price_per_million_tokens, strict=True))
                ),
            },
        }
        if writer.loaded:
            fields["writer"] = writer.describe()
        update_manifest(folder.run, **fields)
    decided = {r["image_id"] for name in STAGES for r in folder.stage(name).read() if r["status"] != "ok"}
    pending = sum(e.id not in decided for e in images)
    return CurateResult(folder.path, accepted, rejected, pending, usage["total"], cost)
