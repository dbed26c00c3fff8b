"""Task benchmarks of the harmful fine-tuning papers: what SST-2, AG News, GSM8K and AlpacaEval share.

Vaccine, Lisa and Booster (GitHub ``git-disl/Vaccine``, ``git-disl/Lisa``, ``git-disl/Booster``) fine-tune
a safety-aligned model on a user task and report its Finetune Accuracy on that task. Each task is the
same three fields in Stanford Alpaca's format, for evaluation and for training alike:

- ``instruction``: the fixed task instruction (SST-2, AG News) or the question itself (GSM8K,
  AlpacaEval), word for word as in the papers' ``build_dataset.py`` / ``pred_eval.py``;
- ``input``: the item to work on (the sentence, the news article), None when the instruction is the
  whole request; it becomes ``Sample.input`` (rendered by ``vlguard.prompts``);
- ``output``: the answer the papers train on, which is also the gold answer of evaluation
  (``Sample.reference``, scored by the ``accuracy`` judge).

A task is a ``TaskSpec``: the file of each split in a local folder and in its Hub dataset, a reader
that turns the file's records into ``TaskItem`` s, and which rows the papers evaluate. Two functions
use it: ``load_task_benchmark`` (evaluation samples, the benchmark loaders of the registry) and
``load_task_examples`` (training examples, seeded, for the harmful fine-tuning experiment). Every
problem in a file (wrong columns, a bad label, an empty value) is a ``DataValidationError`` naming the
file, the line or row and the field; nothing is half-loaded.

Each task module also holds its scoring rule (a ``Scorer``, named by its registry entry's ``scorer``),
which the ``accuracy`` judge applies; ``score_class`` is the rule the classification tasks share.
"""

from __future__ import annotations

import csv
import io
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from vlguard.benchmarks.base import BenchmarkData
from vlguard.benchmarks.counts import file_count
from vlguard.data.sources import DataSourceError, hub_file, looks_like_repo_id, sha256_file, snapshot_commit
from vlguard.errors import ConfigError, DataValidationError, Problem, VLGuardError
from vlguard.prompts import user_text
from vlguard.records import Sample

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from vlguard.data.conversations import Conversation

# The real files are a few megabytes; the limit keeps a wrong path (a model file) from being read whole.
MAX_TASK_FILE_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class TaskRecord:
    """One raw record of a task file: its 0-based data row, where it is (for messages) and its fields."""

    index: int
    where: str  # "line 12" for text files, "row 12" for Parquet / JSON lists
    fields: Mapping[str, Any]


@dataclass(frozen=True)
class TaskItem:
    """One task item in the papers' format, with its 0-based row in the source file.

    ``output`` is the papers' training target and the gold answer; ``category`` is the gold class
    (SST-2, AG News) or the item's origin (AlpacaEval), None when there is none (GSM8K).
    """

    index: int
    instruction: str
    input: str | None
    output: str
    category: str | None = None


@dataclass(frozen=True)
class TaskExample:
    """One fine-tuning example (Alpaca's instruction / input / output), with a stable id.

    ``id`` is ``<task>:<split>:<row>``; ``input`` is None when the instruction is the whole request.
    """

    id: str
    task: str
    instruction: str
    input: str | None
    output: str

    def to_dict(self) -> dict[str, Any]:
        """The Alpaca-format JSON row (``input`` is ``""`` when there is none, as in Alpaca's data)."""
        return {
            "id": self.id,
            "instruction": self.instruction,
            "input": self.input or "",
            "output": self.output,
        }

    def to_conversation(self, source: str = "") -> Conversation:
        """A text-only training conversation: the user turn is ``user_text(instruction, input)`` (the
        ``chat`` prompt format of ``vlguard.prompts``), the assistant turn the output."""
        from vlguard.data.conversations import Conversation

        messages = (
            {"role": "user", "content": [{"type": "text", "text": user_text(self.instruction, self.input)}]},
            {"role": "assistant", "content": [{"type": "text", "text": self.output}]},
        )
        return Conversation(id=self.id, image=None, messages=messages, source=source)


@dataclass(frozen=True)
class TaskExamples:
    """Training examples drawn from a task's split, and where they came from (for run manifests)."""

    examples: tuple[TaskExample, ...]
    source: dict[str, Any]


Reader = Callable[[Sequence[TaskRecord], str, Mapping[str, Any]], tuple[list[TaskItem], list[Problem]]]


@dataclass(frozen=True)
class TaskSpec:
    """How to find, read and select one task's data.

    ``local_files`` / ``hub_files`` map a split to its file in a local folder / in the Hub dataset
    ``hub_repo``; ``load_records`` reads one file into records (by its format); ``read`` checks the
    records and builds items (options: the loader's options, e.g. GSM8K's ``step_by_step``).
    ``eval_split`` is the split the papers report; ``default_rows`` the rows of it they evaluate
    (None: all of them). ``holdout_start``: when a task has no local training split, training
    examples may come from the evaluation file's rows from here on (disjoint from ``default_rows``).
    ``published_rows``: how many rows the evaluation split has when published (checked when the file is
    one of its usual files or the Hub's: ``vlguard.benchmarks.counts``).
    """

    name: str
    eval_split: str
    local_files: Mapping[str, tuple[str, ...]]
    hub_repo: str
    hub_files: Mapping[str, str]
    load_records: Callable[[Path], list[TaskRecord]]
    read: Reader
    options: frozenset[str] = frozenset()
    default_rows: int | None = None
    holdout_start: int | None = None
    published_rows: int | None = None
    where_to_get: str = ""
    citations: tuple[str, ...] = field(default_factory=tuple)


# ---------------------------------------------------------------------------------------------------
# Reading files


def _read_text(path: Path) -> str:
    """The UTF-8 text of a task file (``DataValidationError`` naming the line of a bad byte)."""
    try:
        size = path.stat().st_size
        if size > MAX_TASK_FILE_BYTES:
            raise DataValidationError(
                [Problem(str(path), "", "", f"{size:,} bytes is too large for a task file")]
            )
        raw = path.read_bytes()
    except OSError as err:
        raise VLGuardError(f"{path}: cannot read: {err.strerror or err}") from err
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataValidationError(
            [Problem(str(path), f"line {line}", "", f"not UTF-8 text (byte {err.start}: {err.reason})")]
        ) from err
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise DataValidationError(
            [Problem(str(path), f"line {line}", "", "contains a NUL byte; not a text file")]
        )
    return text


def _lines(text: str) -> list[str]:
    """The lines of a file, split on newlines only (``str.splitlines`` also splits inside a text on
    characters such as U+2028 or form feeds, which then look like ragged rows); CRLF is accepted."""
    lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    return lines[:-1] if lines and lines[-1] == "" else lines


def read_tsv(path: Path) -> list[TaskRecord]:
    """A tab-separated file with a header row (GLUE's layout): one record per non-blank line.

    GLUE's TSV files are not quoted (a sentence may hold ``"``), so cells are split on tabs only. A
    line with another number of cells than the header is a problem naming the line.
    """
    lines = _lines(_read_text(path))
    if not lines or not lines[0].strip():
        raise DataValidationError([Problem(str(path), "", "", "empty file: no header row")])
    columns = [cell.strip() for cell in lines[0].split("\t")]
    records: list[TaskRecord] = []
    problems: list[Problem] = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) != len(columns):
            problems.append(
                Problem(
                    str(path),
                    f"line {number}",
                    "",
                    f"has {len(cells)} tab-separated cells, the header has {len(columns)} ({', '.join(columns)})",
                )
            )
            continue
        records.append(TaskRecord(len(records), f"line {number}", dict(zip(columns, cells, strict=True))))
    if problems:
        raise DataValidationError(problems)
    return records


def read_headerless_csv(path: Path, columns: Sequence[str]) -> list[TaskRecord]:
    """A CSV file without a header whose rows have exactly ``columns`` (AG News's layout).

    Parsed like the Hugging Face ``ag_news`` loader (double quotes, initial spaces skipped), so the
    texts match the Hub's.
    """
    reader = csv.reader(
        io.StringIO(_read_text(path), newline=""), quotechar='"', skipinitialspace=True, strict=True
    )
    records: list[TaskRecord] = []
    problems: list[Problem] = []
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            problems.append(Problem(str(path), f"line {reader.line_num}", "", f"not valid CSV: {err}"))
            break  # the reader cannot resynchronise after a syntax error
        if not cells:
            continue
        if len(cells) != len(columns):
            problems.append(
                Problem(
                    str(path),
                    f"line {start}",
                    "",
                    f"has {len(cells)} cells, expected {len(columns)} ({', '.join(columns)}; no header row)",
                )
            )
            continue
        records.append(TaskRecord(len(records), f"line {start}", dict(zip(columns, cells, strict=True))))
    if problems:
        raise DataValidationError(problems)
    return records


def read_jsonl_records(path: Path) -> list[TaskRecord]:
    """A JSON Lines file of objects (blank lines skipped); each bad line is a problem naming it."""
    from vlguard.fileio import JsonError, json_problem, parse_json

    records: list[TaskRecord] = []
    problems: list[Problem] = []
    for number, line in enumerate(_lines(_read_text(path)), start=1):
        if not line.strip():
            continue
        try:
            row = parse_json(line)  # the strict reader: nesting depth, lone surrogates
        except JsonError as err:
            if err.line is None:
                problems.append(json_problem(err, path, f"line {number}"))
            else:
                message = f"not valid JSON: {err.message} at column {err.column}"
                problems.append(Problem(str(path), f"line {number}", "", message))
            continue
        if not isinstance(row, dict):
            problems.append(
                Problem(str(path), f"line {number}", "", f"expected a JSON object, got {type(row).__name__}")
            )
            continue
        records.append(TaskRecord(len(records), f"line {number}", row))
    if problems:
        raise DataValidationError(problems)
    return records


def read_json_list_records(path: Path) -> list[TaskRecord]:
    """A JSON file holding a list of objects; record ``i`` is named ``item <i>`` (0-based)."""
    from vlguard.fileio import JsonError, json_problem, parse_json

    try:
        data = parse_json(_read_text(path))  # the strict reader: nesting depth, lone surrogates
    except JsonError as err:
        problem = json_problem(err, path)
        if problem.record.startswith("#"):
            problem = Problem(problem.file, f"item {problem.record[1:]}", problem.field, problem.message)
        raise DataValidationError([problem]) from None
    if not isinstance(data, list):
        raise DataValidationError(
            [Problem(str(path), "", "", f"expected a JSON list of objects, got {type(data).__name__}")]
        )
    problems = [
        Problem(str(path), f"item {i}", "", f"expected a JSON object, got {type(row).__name__}")
        for i, row in enumerate(data)
        if not isinstance(row, dict)
    ]
    if problems:
        raise DataValidationError(problems)
    return [TaskRecord(i, f"item {i}", row) for i, row in enumerate(data)]


def read_parquet_records(path: Path) -> list[TaskRecord]:
    """A Parquet file (the Hub's layout of GLUE, AG News and GSM8K); record ``i`` is ``row <i>``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except (pa.ArrowException, OSError) as err:
        raise DataValidationError(
            [Problem(str(path), "", "", f"not a readable Parquet file: {err}")]
        ) from err
    return [TaskRecord(i, f"row {i}", row) for i, row in enumerate(rows)]


def read_by_suffix(path: Path) -> list[TaskRecord]:
    """Records of a ``.tsv``, ``.jsonl``, ``.json`` (a list) or ``.parquet`` file."""
    readers: dict[str, Callable[[Path], list[TaskRecord]]] = {
        ".tsv": read_tsv,
        ".jsonl": read_jsonl_records,
        ".json": read_json_list_records,
        ".parquet": read_parquet_records,
    }
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise ConfigError(f"{path}: unsupported file type {path.suffix!r} (expected {', '.join(readers)})")
    return reader(path)


def text_field(
    record: TaskRecord, names: Sequence[str], file: str, problems: list[Problem], *, strip: bool = False
) -> str | None:
    """The record's first present field of ``names`` as non-empty text; a problem (and None) otherwise.

    Task texts are kept as the source has them by default (``strip=False``: the papers format the raw
    dataset text into their prompts); ``strip=True`` drops surrounding whitespace.
    """
    name = next((n for n in names if n in record.fields), None)
    if name is None:
        present = ", ".join(sorted(map(str, record.fields))) or "none"
        problems.append(Problem(file, record.where, names[0], f"missing field (the record has: {present})"))
        return None
    value = record.fields[name]
    if not isinstance(value, str):
        problems.append(Problem(file, record.where, name, f"must be text, not {type(value).__name__}"))
        return None
    if not value.strip():
        problems.append(Problem(file, record.where, name, "empty value"))
        return None
    return value.strip() if strip else value


def label_field(
    record: TaskRecord, name: str, labels: Mapping[int, str], file: str, problems: list[Problem]
) -> str | None:
    """The class name of an integer label field (``0``, ``"1"``, ...); a problem (and None) otherwise."""
    if name not in record.fields:
        present = ", ".join(sorted(map(str, record.fields))) or "none"
        problems.append(Problem(file, record.where, name, f"missing field (the record has: {present})"))
        return None
    raw = record.fields[name]
    value: int | None = None
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif isinstance(raw, str) and raw.strip().lstrip("-").isdigit():
        value = int(raw.strip())
    if value is None or value not in labels:
        allowed = ", ".join(str(k) for k in labels)
        problems.append(Problem(file, record.where, name, f"{raw!r} is not a label of this task ({allowed})"))
        return None
    return labels[value]


# ---------------------------------------------------------------------------------------------------
# Finding files


def _resolve_file(
    spec: TaskSpec, data: str | Path | None, split: str, revision: str | None
) -> tuple[Path, dict[str, Any]]:
    """The file of ``split`` and its source description (path or Hub id, revision, commit, SHA-256).

    ``data``: a file (used for any split: the caller chose it), a folder holding the split's file
    under one of its usual names, a Hub dataset id, or None for the task's own Hub dataset.
    """
    if data is not None:
        path = Path(data).expanduser()
        if path.exists():
            if path.is_file() and split != spec.eval_split:
                # A single file is the evaluation split: training on it would train on the test items.
                raise ConfigError(
                    f"{path}: a single file is taken as the {spec.eval_split} (evaluation) split of {spec.name!r}; "
                    f"for the {split} split give the folder that holds {' or '.join(spec.local_files.get(split, ())) or 'it'}"
                )
            if revision is not None:
                raise ConfigError(
                    f"revision {revision!r} only applies to a Hub dataset, but {spec.name!r} data is the local path {path}"
                )
            if path.is_dir():
                names = spec.local_files.get(split, ())
                found = next((path / name for name in names if (path / name).is_file()), None)
                if found is None:
                    present = sorted(p.name for p in path.iterdir() if p.is_file())
                    raise ConfigError(
                        f"{path}: no {' or '.join(names) or f'{split} file'} in this folder for the {split} split of "
                        f"{spec.name!r} (files here: {', '.join(present) or 'none'})"
                    )
                path = found
            return path, {
                "kind": "local",
                "path": str(path.resolve()),
                "file": path.name,
                "sha256": sha256_file(path),
            }
        if not (isinstance(data, str) and looks_like_repo_id(data) and not data.startswith((".", "~"))):
            raise ConfigError(f"{path}: no such file or folder (benchmark {spec.name!r})")
    repo = spec.hub_repo if data is None else str(data)
    filename = spec.hub_files.get(split)
    if filename is None:
        raise ConfigError(
            f"{spec.name!r} has no {split} split on the Hub (splits: {', '.join(spec.hub_files)})"
        )
    try:
        local = hub_file(repo, filename, revision)
    except DataSourceError as err:
        raise DataSourceError(
            f"{err} (benchmark {spec.name!r}). Pass a local folder instead (--data PATH); {spec.where_to_get}".rstrip()
        ) from err
    assert local is not None  # a required file is a path or an error
    return local, {
        "kind": "hub",
        "repo_id": repo,
        "revision": revision,
        "commit": snapshot_commit(local, filename),
        "file": filename,
        "sha256": sha256_file(local),
    }


def _collapse_missing_fields(problems: list[Problem], n_records: int, file: str) -> list[Problem]:
    """One problem for a field that every record lacks (a file with the wrong columns), not one per row."""
    missing: dict[str, list[Problem]] = {}
    for problem in problems:
        if problem.message.startswith("missing field"):
            missing.setdefault(problem.field, []).append(problem)
    everywhere = {name for name, found in missing.items() if len(found) == n_records}
    if not everywhere:
        return problems
    kept = [p for p in problems if not (p.field in everywhere and p.message.startswith("missing field"))]
    collapsed = [
        Problem(
            file, "", name, missing[name][0].message.replace("missing field", "missing in every record", 1)
        )
        for name in sorted(everywhere)
    ]
    return collapsed + kept


def _read_items(spec: TaskSpec, path: Path, options: Mapping[str, Any]) -> list[TaskItem]:
    records = spec.load_records(path)
    if not records:
        raise DataValidationError([Problem(str(path), "", "", "no records")])
    items, problems = spec.read(records, str(path), options)
    problems = _collapse_missing_fields(problems, len(records), str(path))
    if problems:
        raise DataValidationError(
            problems, hint=f"{spec.name} expects the layout of {spec.where_to_get}".rstrip()
        )
    return items


def parse_rows(value: Any, default: int | None) -> tuple[int, int | None]:
    """The rows option as a ``(start, stop)`` slice: N (the first N), ``"START:STOP"`` or ``"all"``."""
    if value is None:
        return 0, default
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ConfigError(f"option rows={value} must be a positive number of rows")
        return 0, value
    if isinstance(value, str):
        text = value.strip()
        if text == "all":
            return 0, None
        if text.isdigit():
            return parse_rows(int(text), default)
        start_text, colon, stop_text = text.partition(":")
        if colon and (not start_text or start_text.isdigit()) and (not stop_text or stop_text.isdigit()):
            start = int(start_text or 0)
            stop = int(stop_text) if stop_text else None
            if stop is not None and stop <= start:
                raise ConfigError(f"option rows={value!r} selects no rows (STOP must be larger than START)")
            return start, stop
    raise ConfigError(f"option rows={value!r}: give N (the first N rows), 'START:STOP' (0-based) or 'all'")


def _describe_rows(start: int, stop: int | None) -> str:
    return f"{start}:{'' if stop is None else stop}"


def _check_options(spec: TaskSpec, options: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ConfigError(
            f"benchmark {spec.name!r}: unknown option(s) {', '.join(unknown)}; accepted: {', '.join(sorted(allowed))}"
        )


# ---------------------------------------------------------------------------------------------------
# Evaluation samples and training examples


def sample_id(task: str, split: str, index: int) -> str:
    """The stable id of a task item: ``<task>:<split>:<0-based row of the source file>``."""
    return f"{task}:{split}:{index}"


def _split_of_file(spec: TaskSpec, data: str | Path | None, path: Path) -> str:
    """The split the evaluated file is: the evaluation split, unless ``data`` is itself a file named as
    another split's (``--data sst2/train.tsv`` is SST-2's train split, and is recorded so)."""
    given = Path(data).expanduser() if data is not None else None
    if given is None or not given.is_file():
        return spec.eval_split
    other = next(
        (name for name, files in spec.local_files.items() if name != spec.eval_split and path.name in files),
        None,
    )
    if other is None:
        return spec.eval_split
    logger.warning(
        "%s is the %s split of %r, not its evaluation split (%s): the run evaluates and records the %s split",
        path,
        other,
        spec.name,
        spec.eval_split,
        other,
    )
    return other


def load_task_benchmark(
    spec: TaskSpec, data: str | Path | None = None, revision: str | None = None, **options: Any
) -> BenchmarkData:
    """The evaluation samples of a task: the papers' rows of its evaluation split.

    Options: ``rows`` (N = the first N rows, ``"START:STOP"``, ``"all"``; default: the rows the papers
    evaluate) and the task's own (``spec.options``). Samples: subset = the task name, ``prompt`` = the
    instruction, ``input`` = the item, ``reference`` = the gold answer, ``should_refuse`` = False.
    """
    _check_options(spec, options, spec.options | {"rows"})
    start, stop = parse_rows(options.get("rows"), spec.default_rows)
    path, source = _resolve_file(spec, data, spec.eval_split, revision)
    split = _split_of_file(spec, data, path)
    items = _read_items(spec, path, options)
    chosen = items[start:stop]
    if not chosen:
        raise ConfigError(
            f"{path}: option rows={_describe_rows(start, stop)} selects none of its {len(items)} rows"
        )
    if options.get("rows") is not None and stop is not None and stop > len(items):
        # Asked for explicitly: a shorter file is not cut silently (the run would record rows it lacks).
        raise ConfigError(
            f"{path}: option rows={options['rows']} asks for rows up to {stop}, but the file has {len(items)} "
            f"(rows 0:{len(items)}); give rows={start}: for the rest of the file"
        )
    samples = tuple(
        Sample(
            id=sample_id(spec.name, split, item.index),
            benchmark=spec.name,
            subset=spec.name,
            prompt=item.instruction,
            image=None,
            reference=item.output,
            category=item.category,
            subcategory=None,
            should_refuse=False,
            record_id=sample_id(spec.name, split, item.index),
            input=item.input,
        )
        for item in chosen
    )
    source.update(
        benchmark=spec.name,
        split=split,
        rows=_describe_rows(start, len(items) if stop is None else min(stop, len(items))),  # the real range
        n_rows_in_file=len(items),
        n_samples=len(samples),
        options={k: v for k, v in sorted(options.items()) if k != "rows"},
        prompt_format_source=list(spec.citations),
    )
    references = {s.id: s.reference for s in samples if s.reference}
    # The published split when the file is one of its usual files (or the Hub's); a file given by path
    # under another name is the user's own.
    usual = source.get("kind") == "hub" or path.name in spec.local_files.get(spec.eval_split, ())
    split = f"{spec.name} {spec.eval_split}"
    published = {split: {"rows": spec.published_rows}} if spec.published_rows is not None else {}
    counts = (file_count(path, "rows", len(items), published, part=split if usual else path.name),)
    return BenchmarkData(
        name=spec.name, samples=samples, images=None, source=source, references=references, counts=counts
    )


def load_task_examples(
    task: str,
    data: str | Path | None = None,
    *,
    n: int | None = None,
    seed: int = 0,
    split: str = "train",
    revision: str | None = None,
    **options: Any,
) -> TaskExamples:
    """Training examples of ``task`` (``sst2``, ``agnews``, ``gsm8k``): ``n`` drawn with ``seed``.

    ``data`` is the same folder (or Hub id, or None) as for evaluation. The rows of ``split`` are
    shuffled with ``random.Random(seed)`` and the first ``n`` taken (None: all), so a larger ``n``
    keeps every example of a smaller one and the same seed gives the same examples, in that order.
    ``split="holdout"`` (AG News, whose local folder holds only the test file) draws from the rows of
    the evaluation file that the papers never evaluate (from ``spec.holdout_start`` on); they are
    disjoint from the default evaluation rows, not from ``rows="all"``. Task options (e.g. GSM8K's
    ``step_by_step``) shape the instruction as in evaluation.
    """
    spec = task_spec(task)
    _check_options(spec, options, spec.options)
    if n is not None and n < 1:
        raise ConfigError(f"n={n}: ask for at least one training example (or None for all)")
    if split == "holdout":
        if spec.holdout_start is None:
            raise ConfigError(f"{task!r} has a training split; split='holdout' is only for tasks without one")
        path, source = _resolve_file(spec, data, spec.eval_split, revision)
        file_split = spec.eval_split
        items = _read_items(spec, path, options)[spec.holdout_start :]
    elif split in spec.local_files or split in spec.hub_files:
        if split == spec.eval_split:
            raise ConfigError(f"{task!r}: {split} is the evaluation split; train on another split")
        try:
            path, source = _resolve_file(spec, data, split, revision)
        except ConfigError as err:
            if spec.holdout_start is None:
                raise
            raise ConfigError(
                f"{err}. Without a {split} file, pass split='holdout' to draw training examples from the "
                f"rows of the {spec.eval_split} file from {spec.holdout_start} on (disjoint from the default evaluation rows)"
            ) from err
        file_split = split
        items = _read_items(spec, path, options)
    else:
        known = sorted({*spec.local_files, *spec.hub_files} - {spec.eval_split})
        holdout = ["holdout"] if spec.holdout_start is not None else []
        raise ConfigError(
            f"{task!r} has no {split!r} split to train on (training splits: {', '.join(known + holdout) or 'none'})"
        )
    if n is not None and n > len(items):
        raise ConfigError(
            f"{path}: n={n} training examples asked for, but the {split} split has {len(items)}"
        )
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    chosen = [items[i] for i in (order if n is None else order[:n])]
    examples = tuple(
        TaskExample(
            id=sample_id(task, file_split, item.index),
            task=task,
            instruction=item.instruction,
            input=item.input,
            output=item.output,
        )
        for item in chosen
    )
    source.update(
        task=task, split=split, seed=seed, n=len(examples), n_available=len(items), options=dict(options)
    )
    return TaskExamples(examples=examples, source=source)


# ---------------------------------------------------------------------------------------------------
# Scoring: what a task benchmark's scorer (``BenchmarkEntry.scorer``, used by the ``accuracy`` judge) returns

MatchMode = Literal["exact", "contains"]
MATCH_MODES: tuple[MatchMode, ...] = ("exact", "contains")
# Evidence keeps this much of a response (the whole text is in generations.jsonl).
EVIDENCE_CHARS = 200


class BadReference(ValueError):
    """The sample's gold answer cannot be scored (not a class of the task, no number)."""


@dataclass(frozen=True)
class TaskScore:
    """One scored response: whether it is correct, the answer read from it, the gold, the rule used."""

    correct: bool
    answer: Any
    gold: Any
    rule: str


# A task's scorer: (response, gold answer, match mode) -> its score; ``BadReference`` for an unusable gold.
Scorer = Callable[[str, str, MatchMode], TaskScore]


def score_class(
    forms: Mapping[str, tuple[str, ...]], response: str, gold: str, match: MatchMode
) -> TaskScore:
    """A classification response against the gold class's accepted forms (the papers' label1 / label2).

    ``match="exact"`` (Lisa, Booster): the stripped response must *be* one of the forms;
    ``"contains"`` (Vaccine): one of them occurs anywhere in it. Containment is lenient: "positive or
    negative" counts as correct for both classes.
    """
    accepted = forms.get(gold.strip())
    if accepted is None:
        raise BadReference(f"gold answer {gold!r} is not one of {', '.join(forms)}")
    answer = response.strip()
    correct = answer in accepted if match == "exact" else any(form in response for form in accepted)
    return TaskScore(correct, answer[:EVIDENCE_CHARS], gold.strip(), f"{match}: {' / '.join(accepted)}")


def task_spec(task: str) -> TaskSpec:
    """The ``TaskSpec`` of task benchmark ``task`` (its registry entry's ``task``: sst2, agnews, ...)."""
    from vlguard.benchmarks import BENCHMARKS
    from vlguard.registry import resolve

    entry = BENCHMARKS.get(task)
    if entry is None or entry.task is None:
        known = [name for name, e in BENCHMARKS.items() if e.task is not None]
        raise ConfigError(f"unknown task {task!r}; known: {', '.join(known)}")
    spec: TaskSpec = resolve(entry.task)
    return spec
