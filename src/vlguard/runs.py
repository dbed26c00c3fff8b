"""Run folders: the manifest, append-only JSONL stores, resume, and mismatch detection.

A run folder (see ``docs/design.md``) holds::

    manifest.json             what produced the results (config, model, data, versions, git commit)
    samples.jsonl             the samples evaluated
    generations.jsonl         one Generation per line, appended in flushed + fsynced batches
    generations.rank<k>.jsonl per-process shards of a data-parallel run (merged, then removed)
    judgments/<judge>.jsonl   one Judgment per line
    metrics.json              written atomically (temporary file + rename)
    .vlguard.lock             locked (``flock``) by the one process writing to the folder

Every stage appends whole lines and fsyncs them, so a process killed at any moment (``kill -9``) leaves
at worst a torn last line. Readers drop that line and writers truncate it away before appending, so a
rerun of the same command finishes the work exactly once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import importlib.metadata
import json
import logging
import os
import subprocess
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from vlguard.errors import RunMismatchError, VLGuardError
from vlguard.fileio import (
    JsonError,
    atomic_write_text,
    check_output_dir,
    encode_utf8,
    parse_json,
    remove_stale_temp_files,
)
from vlguard.redaction import redact

try:  # POSIX; elsewhere run folders are not locked (see ``lock_run_folder``)
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
SAMPLES = "samples.jsonl"
GENERATIONS = "generations.jsonl"
JUDGMENTS_DIR = "judgments"
METRICS = "metrics.json"
MANIFEST_SCHEMA = 1

# Versions recorded in every manifest (informational: they are never compared).
TRACKED_PACKAGES = ("torch", "transformers", "peft", "trl", "accelerate", "datasets", "vlguard")

LOCK_FILE = ".vlguard.lock"
# Files of a run folder that are written whole (atomically): a killed writer may leave their temporary
# files, removed when the folder is next locked.
_ATOMIC_FILES = (MANIFEST, SAMPLES, METRICS)


class CorruptRunFileError(VLGuardError):
    """A line in the middle of a run file is not valid JSON (not a torn last line: the file was edited)."""


class RunLockedError(VLGuardError):
    """Another process is writing to the run folder."""


class JsonlStore:
    """An append-only JSONL file that survives ``kill -9``.

    A line is trusted only when it is complete JSON ending in a newline. A torn last line is ignored by
    ``read`` and cut off by ``append`` before it writes, so appends never glue onto half a record.
    ``required`` names the string fields every record must have (``sample_id`` for generations):
    a record without them is a ``CorruptRunFileError`` naming the file, line and field, not a
    ``KeyError`` somewhere downstream.
    """

    def __init__(self, path: str | Path, required: tuple[str, ...] = ()) -> None:
        self.path = Path(path)
        self.required = required

    def exists(self) -> bool:
        """Whether the file has been created."""
        return self.path.is_file()

    def read(self) -> list[dict[str, Any]]:
        """All complete records, in file order; a torn last line is dropped."""
        return list(self._iter_complete()[0])

    def _iter_complete(self) -> tuple[list[dict[str, Any]], int]:
        """The complete records and the byte length of the trusted prefix of the file."""
        if not self.path.is_file():
            return [], 0
        data = self.path.read_bytes()
        records: list[dict[str, Any]] = []
        good_end = 0
        start = 0
        line_no = 0
        while start < len(data):
            end = data.find(b"\n", start)
            line_no += 1
            if end == -1:
                # No newline: the writer was killed mid-line. Everything before it stays trusted.
                logger.warning("%s: dropping a torn last line (%d bytes)", self.path, len(data) - start)
                break
            raw = data[start:end]
            if raw.strip():
                try:
                    record = parse_json(raw.decode("utf-8"))
                except (JsonError, UnicodeDecodeError) as err:
                    if end == len(data) - 1:
                        # A garbled but newline-terminated last line can only come from a torn write
                        # on a filesystem that reorders; treat it like a torn line.
                        logger.warning("%s: dropping an unreadable last line", self.path)
                        break
                    reason = "not UTF-8" if isinstance(err, UnicodeDecodeError) else err.message
                    raise CorruptRunFileError(
                        f"{self.path}: line {line_no} is not valid JSON ({reason}); "
                        "the file was changed by hand or is damaged. Remove the line or the run folder."
                    ) from None
                if not isinstance(record, dict):
                    raise CorruptRunFileError(f"{self.path}: line {line_no} is not a JSON object")
                for name in self.required:
                    if not isinstance(record.get(name), str):
                        problem = "missing" if name not in record else "not a string"
                        raise CorruptRunFileError(
                            f"{self.path}: line {line_no}, field '{name}': {problem}; the file was changed "
                            "by hand or is damaged. Remove the line (it is regenerated) or the run folder."
                        )
                records.append(record)
            start = end + 1
            good_end = start
        return records, good_end

    def repair(self) -> None:
        """Cut the file back to its last complete line (a no-op for a healthy file)."""
        if not self.path.is_file():
            return
        _, good_end = self._iter_complete()
        size = self.path.stat().st_size
        if good_end < size:
            with open(self.path, "r+b") as f:
                f.truncate(good_end)
                f.flush()
                os.fsync(f.fileno())

    def append(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Append records as one write, then flush and fsync. Returns how many were written."""
        lines = [json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records]
        if not lines:
            return 0
        data = encode_utf8("".join(lines), self.path)  # refused whole, before the file is touched
        self.repair()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        return len(lines)

    def write_all(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Replace the file's content atomically (temporary file + rename)."""
        text = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records)
        atomic_write_text(self.path, text)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """``atomic_write_text`` of ``obj`` as indented JSON."""
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


# ---------------------------------------------------------------------------------------------------
# Run folder layout


class RunFolder:
    """Paths and stores of one run folder. Creating the object touches nothing on disk."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def manifest_path(self) -> Path:
        """``manifest.json``: what was run (config, versions, data hashes, judges)."""
        return self.path / MANIFEST

    @property
    def metrics_path(self) -> Path:
        """``metrics.json``: the computed metrics (rewritten whole by ``run_metrics``)."""
        return self.path / METRICS

    @property
    def samples(self) -> JsonlStore:
        """The samples as evaluated, one per line."""
        return JsonlStore(self.path / SAMPLES, required=("id", "subset"))

    @property
    def generations(self) -> JsonlStore:
        """The merged generations, one per line (appended as batches finish)."""
        return JsonlStore(self.path / GENERATIONS, required=("sample_id",))

    def rank_generations(self, rank: int) -> JsonlStore:
        """The shard file that process ``rank`` of a data-parallel run appends to."""
        return JsonlStore(self.path / f"generations.rank{rank}.jsonl", required=("sample_id",))

    def rank_generation_files(self) -> list[Path]:
        """Shard files left in the folder (by this run or by an interrupted one), sorted by name."""
        return sorted(self.path.glob("generations.rank*.jsonl"))

    def judgments(self, judge: str) -> JsonlStore:
        """The verdicts of ``judge``, one per line."""
        return JsonlStore(self.path / JUDGMENTS_DIR / f"{judge}.jsonl", required=("sample_id", "label"))

    def judge_names(self) -> list[str]:
        """Judges with a judgments file in this run, sorted."""
        folder = self.path / JUDGMENTS_DIR
        return sorted(p.stem for p in folder.glob("*.jsonl")) if folder.is_dir() else []

    def has_results(self) -> bool:
        """Whether any generation or judgment has been written (complete or torn)."""
        if self.generations.exists() and self.generations.path.stat().st_size > 0:
            return True
        return bool(self.rank_generation_files()) or bool(self.judge_names())

    def read_manifest(self) -> dict[str, Any] | None:
        """The manifest, or None when the folder has none; ``CorruptRunFileError`` if it is not a JSON object."""
        return _read_json_object(self.manifest_path)

    def write_manifest(self, manifest: Mapping[str, Any]) -> None:
        """Replace the manifest atomically, without secrets (``vlguard.redaction``)."""
        atomic_write_json(self.manifest_path, redact(manifest))

    def read_metrics(self) -> dict[str, Any] | None:
        """The metrics, or None when not computed yet; ``CorruptRunFileError`` if not a JSON object."""
        return _read_json_object(self.metrics_path)

    def write_metrics(self, metrics: Mapping[str, Any]) -> None:
        """Replace ``metrics.json`` atomically."""
        atomic_write_json(self.metrics_path, metrics)


# ---------------------------------------------------------------------------------------------------
# One writer per run folder

# Run folders this process holds the lock of (resolved path → nesting count): the stages of one
# `vlguard eval` each take the lock, and a second flock of the same file from the same process would
# conflict with the first.
_held_locks: dict[str, tuple[int, int]] = {}
_held_locks_guard = threading.Lock()


@contextlib.contextmanager
def lock_run_folder(run_dir: str | Path, *, elsewhere: str = "--run-dir") -> Iterator[RunFolder]:
    """Hold the run folder's lock while writing to it; ``RunLockedError`` at once if another process has it.

    Two processes appending to one folder would write every generation twice. The lock is an advisory
    ``flock`` on ``.vlguard.lock``, so the operating system releases it when its holder dies, even
    under ``kill -9``: a stale lock file never blocks a rerun. Re-entrant within one process. Once the
    lock is held, temporary files left by killed writers are removed (nobody else can be writing them).
    Creates the folder (``ConfigError`` when the path is a file). ``elsewhere`` names the setting that
    picks another folder, for the message (``--run-dir``; ``output_dir`` for training and sweeps).
    """
    run = RunFolder(check_output_dir(run_dir, "run folder"))
    run.path.mkdir(parents=True, exist_ok=True)
    key = os.path.realpath(run.path)
    with _held_locks_guard:
        held = _held_locks.get(key)
        if held is not None:
            _held_locks[key] = (held[0], held[1] + 1)
    if held is not None:
        try:
            yield run
        finally:
            _release(key)
        return
    fd = os.open(run.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
            os.close(fd)
            raise RunLockedError(
                f"{run.path} is in use by another vlguard process ({holder or 'unknown process'}); "
                f"wait for it to finish, or use another {elsewhere}"
            ) from None
    with _held_locks_guard:
        _held_locks[key] = (fd, 1)
    os.ftruncate(fd, 0)
    os.pwrite(
        fd, f"pid {os.getpid()}, since {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}\n".encode(), 0
    )
    for name in _ATOMIC_FILES:
        remove_stale_temp_files(run.path / name)
    try:
        yield run
    finally:
        _release(key)


def _release(key: str) -> None:
    with _held_locks_guard:
        fd, count = _held_locks[key]
        if count > 1:
            _held_locks[key] = (fd, count - 1)
            return
        del _held_locks[key]
    os.close(fd)  # closing the last descriptor releases the flock


def _read_json_object(path: Path) -> dict[str, Any] | None:
    """A JSON object file of a run folder, or None when it does not exist."""
    if not path.is_file():
        return None
    try:
        value = parse_json(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise CorruptRunFileError(f"{path}: not UTF-8 text") from err
    except JsonError as err:
        raise CorruptRunFileError(f"{path}: not valid JSON: {err.detail()}") from err
    if not isinstance(value, dict):
        raise CorruptRunFileError(f"{path}: not a JSON object")
    return value


def done_ids(records: Iterable[Mapping[str, Any]], key: str = "sample_id") -> set[str]:
    """The ids present in ``records`` (the samples a stage has finished)."""
    return {str(r[key]) for r in records}


def dedupe(records: Iterable[dict[str, Any]], key: str = "sample_id") -> Iterator[dict[str, Any]]:
    """Records with a first-seen id only (a safety net: writers never append an id twice)."""
    seen: set[str] = set()
    for r in records:
        rid = str(r[key])
        if rid not in seen:
            seen.add(rid)
            yield r


# ---------------------------------------------------------------------------------------------------
# Manifest


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that can change results (None when not installed)."""
    versions: dict[str, str | None] = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> str | None:
    """The commit of the vlguard checkout this code runs from, or None (installed wheel, no git)."""
    package_dir = Path(__file__).resolve().parent
    try:
        top = subprocess.run(
            ["git", "-C", str(package_dir), "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        # Only trust the repository if it is vlguard's own checkout, not some project that happens to
        # contain the virtual environment.
        if (Path(top) / "src" / "vlguard").resolve() != package_dir:
            return None
        commit = subprocess.run(
            ["git", "-C", top, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit or None


def git_dirty() -> bool | None:
    """Whether the vlguard checkout has uncommitted changes (None when there is no checkout)."""
    if git_commit() is None:
        return None
    package_dir = Path(__file__).resolve().parent
    try:
        status = subprocess.run(
            ["git", "-C", str(package_dir), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(status.strip())


def canonical(value: Any) -> Any:
    """``value`` as a manifest records it: without secrets (``vlguard.redaction.redact``), as JSON reads it
    back (tuples are lists). A rerun's settings are compared with the folder's in this form."""
    return json.loads(json.dumps(redact(value), default=str))


def samples_digest(samples: Iterable[Mapping[str, Any]]) -> str:
    """sha256 of the samples as evaluated (their JSON lines): changes whenever a prompt or id changes."""
    h = hashlib.sha256()
    for s in samples:
        h.update(json.dumps(s, ensure_ascii=False, sort_keys=True).encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def build_manifest(
    result_fields: Mapping[str, Any],
    *,
    config: Mapping[str, Any],
    backend: Mapping[str, Any],
    benchmark_source: Mapping[str, Any],
    seed: int,
) -> dict[str, Any]:
    """A manifest dict.

    ``result_fields`` are the settings that change results; a later run in the same folder must match
    them exactly (see ``check_manifest``). Everything else is a record of what happened: the resolved
    config, the backend's description, the benchmark source with file hashes, package versions, the
    git commit and the time. The hostname is not recorded.
    """
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "result_fields": dict(result_fields),
        "config": dict(config),
        "backend": dict(backend),
        "benchmark_source": dict(benchmark_source),
        "seed": seed,
        "packages": package_versions(),
        "git_commit": git_commit(),
        "git_dirty": git_dirty(),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "judges": {},
    }
    # Redacted here (and again when written): a rerun compares its redacted settings with the folder's.
    return canonical(manifest)


def _diff(old: Any, new: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Key paths of the fields that differ between two JSON values.

    Paths are tuples, never dotted strings: keys may hold dots themselves (``test.json`` in the data
    file hashes), and splitting them again would look up fields that do not exist.
    """
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out: list[tuple[str, ...]] = []
        for k in sorted(set(old) | set(new), key=str):
            out += _diff(old.get(k), new.get(k), (*path, str(k)))
        return out
    return [] if old == new else [path]


def _lookup(d: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(d, Mapping):
            return None
        d = d.get(part)
    return d


def _path_name(path: tuple[str, ...]) -> str:
    """``benchmark_sha256["test.json"]``: a key with a dot in it is quoted, so the name reads back unambiguously."""
    if not path:
        return "(the whole value)"
    name = path[0]
    for part in path[1:]:
        name += f"[{json.dumps(part)}]" if "." in part else f".{part}"
    return name


def check_manifest(existing: Mapping[str, Any], new: Mapping[str, Any], run_dir: str | Path) -> None:
    """Raise ``RunMismatchError`` naming every result-changing field that differs from the folder's."""
    # JSON round trip so that tuples and lists compare equal.
    old_fields = json.loads(json.dumps(existing.get("result_fields", {})))
    new_fields = json.loads(json.dumps(new.get("result_fields", {})))
    differing = _diff(old_fields, new_fields)
    if differing:
        details = "; ".join(
            f"{_path_name(path)}: folder has {_lookup(old_fields, path)!r}, now {_lookup(new_fields, path)!r}"
            for path in differing
        )
        raise RunMismatchError(
            f"{run_dir} already holds results made with other settings ({details}). "
            "Use another --run-dir, or delete the folder to start over."
        )


def open_run(run_dir: str | Path, manifest: Mapping[str, Any], *, write: bool = True) -> RunFolder:
    """Open (or create) a run folder for ``manifest``.

    An existing manifest must agree on every result field, or ``RunMismatchError`` names the ones that
    differ, unless the folder holds no results yet (e.g. the first attempt failed to load a mistyped
    model): then there is nothing to mix and the new manifest replaces the old one. A new folder gets
    the manifest; an existing one keeps its own (creation time included), so a resumed run records when
    it started. ``write=False`` only checks (used by non-zero ranks).
    """
    run = RunFolder(run_dir)
    existing = run.read_manifest()
    if existing is not None:
        if run.has_results():
            check_manifest(existing, manifest, run_dir)
            return run
        if json.loads(json.dumps(existing.get("result_fields"))) == json.loads(
            json.dumps(manifest.get("result_fields"))
        ):
            return run
        logger.info("%s holds no results yet: replacing its manifest with the new settings", run.path)
    if write:
        run.path.mkdir(parents=True, exist_ok=True)
        run.write_manifest(manifest)
    return run


def update_manifest(run: RunFolder, **fields: Any) -> None:
    """Set informational manifest fields (never ``result_fields``), e.g. the loaded backend's description."""
    manifest = run.read_manifest()
    if manifest is None:
        raise VLGuardError(f"{run.path}: not a run folder (no {MANIFEST})")
    if "result_fields" in fields:
        raise ValueError("result_fields are fixed when the run folder is created")
    clean = {k: canonical(v) for k, v in fields.items()}
    if any(manifest.get(k) != v for k, v in clean.items()):
        manifest.update(clean)
        run.write_manifest(manifest)


def record_judge(run: RunFolder, judge: str, description: Mapping[str, Any]) -> None:
    """Record a judge's settings in the manifest; refuse to mix verdicts of differently-set judges.

    When ``judgments/<judge>.jsonl`` already has lines made with other settings, ``RunMismatchError``
    names the differing fields (rerun with another judge name or delete that file to re-judge).
    """
    manifest = run.read_manifest()
    if manifest is None:
        raise VLGuardError(f"{run.path}: not a run folder (no {MANIFEST})")
    clean = canonical(description)
    judges = manifest.setdefault("judges", {})
    previous = judges.get(judge)
    if previous is not None and previous != clean and run.judgments(judge).read():
        differing = _diff(previous, clean, ("judges", judge))
        raise RunMismatchError(
            f"{run.judgments(judge).path} holds verdicts made with other judge settings "
            f"({', '.join(map(_path_name, differing))}). Delete that file to re-judge with the new settings."
        )
    if previous != clean:
        judges[judge] = clean
        run.write_manifest(manifest)
