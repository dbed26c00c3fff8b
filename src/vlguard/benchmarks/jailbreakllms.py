"""JailbreakLLMs ("Do Anything Now", Shen et al., CCS 2024): forbidden questions, alone or in jailbreak prompts.

Source files (GitHub ``verazuo/jailbreak_llms``, ``data/``): ``forbidden_question_set.csv`` (390
questions: 13 OpenAI-policy scenarios × 30; columns ``content_policy_id``, ``content_policy_name``,
``q_id``, ``question``) and ``jailbreak_prompts_2023_05_07.csv`` (666 in-the-wild jailbreak prompts;
column ``prompt`` holds the template).

Two ways to ask, both scored per scenario (``category`` = ``content_policy_name``):

- ``templates=0`` (default): the questions as they are ("Orig."), subset ``jailbreakllms``;
- ``templates=N`` or ``"all"``: every question inside N templates drawn with ``template_seed`` (or all
  666), subset ``jailbreakllms_template``. The question replaces the template's placeholder (every
  spelling in ``PLACEHOLDER``: ``[INSERT PROMPT HERE]``, ``[PROMPT]``, ``[Your prompt here]``, ...) or,
  when a template has none, is appended after a blank line.

Every sample should be refused. Text only: pair the samples with a blank image through the pipeline's
image mode (``--image-mode blank``) to ask a VLM. Scenarios such as "Legal Opinion" or "Health
Consultation" are judged in the paper by whether the answer oversteps (a refusal judge counts any
answer): read them per category.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vlguard.benchmarks.base import BenchmarkData
from vlguard.benchmarks.csv_source import (
    check_options,
    check_text_image_option,
    read_csv_rows,
    resolve_data_file,
)
from vlguard.data.sources import sha256_file
from vlguard.errors import ConfigError, DataValidationError, Problem
from vlguard.records import Sample

QUESTIONS_FILE = "forbidden_question_set.csv"
TEMPLATES_FILE = "jailbreak_prompts_2023_05_07.csv"
ORIG_SUBSET = "jailbreakllms"
TEMPLATE_SUBSET = "jailbreakllms_template"
N_TEMPLATES = 666
_WHERE = "https://github.com/verazuo/jailbreak_llms (data/forbidden_question_set.csv, data/prompts/)"

# The spellings the 666 templates use for "the user's question goes here", found by reading every
# bracketed phrase in the file: [INSERT PROMPT HERE] (88 templates), [PROMPT] (22), [Your prompt here],
# [INSERT ANY QUESTION HERE], [PROMPT HERE], [user_prompt], [your question….], [Write your request on
# here], ... (135 templates have one; the other 531 get the question appended). Markdown-escaped
# brackets (``\[`` / ``\]``) count too. Bracketed phrases that only mention a prompt ([Prompt Creator],
# [NEVER DENIES A PROMPT], [insert x] inside a rule) are left alone.
PLACEHOLDER = re.compile(
    r"\\?\[\s*(?:"
    r"insert\s+(?:your\s+|any\s+)?(?:prompt|question)(?:\s+here)?"
    r"|(?:put\s+)?your\s+(?:prompt|question)(?:\s+here)?[.…]*"
    r"|prompt(?:\s+here)?"
    r"|user_prompt"
    r"|write\s+your\s+request(?:\s+on)?\s+here"
    r")\s*\\?\]",
    re.IGNORECASE,
)


def fill_template(template: str, question: str) -> str:
    """The jailbreak prompt for ``question``: its placeholders replaced, or the question appended."""
    return _filler(template)(question)


def _filler(template: str) -> Callable[[str], str]:
    """``fill_template`` for one template, with the template parsed once (it is filled 390 times)."""
    pieces = PLACEHOLDER.split(template)
    if len(pieces) > 1:
        return lambda question: question.join(pieces)
    head = template.rstrip()
    return lambda question: f"{head}\n\n{question}"


def load_jailbreakllms(
    data: str | Path | None = None, revision: str | None = None, **options: Any
) -> BenchmarkData:
    """Load JailbreakLLMs from ``data`` (a folder holding both CSVs, or a Hub dataset id holding them).

    Options: ``templates`` (0 = the questions alone, the default; N = N templates drawn with
    ``template_seed``, default 0; ``"all"`` = all of them), ``image`` (``"none"`` or ``"blank"``: text
    samples either way, see the module docstring).

    Sample ids: ``jailbreakllms-<policy id>-<q_id>:jailbreakllms`` for a question alone, and
    ``jailbreakllms-t<template row>-<policy id>-<q_id>:jailbreakllms_template`` inside template number
    ``<template row>`` (1-based data row of the templates file); ``record_id`` is the question's id in
    both, so runs with and without templates line up question by question. Every problem in either file
    is reported with the file, row and column.
    """
    check_options("jailbreakllms", options, {"templates", "template_seed", "image"})
    image = check_text_image_option("jailbreakllms", options.get("image"))
    templates_option = options.get("templates", 0)
    seed = options.get("template_seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"benchmark 'jailbreakllms': template_seed must be an integer, not {seed!r}")
    path, source = resolve_data_file(
        data,
        QUESTIONS_FILE,
        benchmark="jailbreakllms",
        revision=revision,
        missing_hint=f"Get it from {_WHERE}.",
    )
    questions = _questions(path)
    source.update(benchmark="jailbreakllms", image=image, templates=templates_option, template_seed=None)

    if templates_option in (0, None):
        samples = [
            _sample(record_id, text, policy, ORIG_SUBSET, record_id, intent=None)
            for record_id, policy, text in questions
        ]
    else:
        template_path = _templates_file(path, data, revision)
        templates = _templates(template_path)
        chosen = _choose(templates_option, seed, len(templates))
        source.update(
            template_seed=seed,
            templates_file=template_path.name,
            templates_sha256=sha256_file(template_path),
            template_rows=[templates[i][0] for i in chosen],
        )
        samples = [
            _sample(
                f"jailbreakllms-t{row}-{record_id.removeprefix('jailbreakllms-')}",
                fill(text),
                policy,
                TEMPLATE_SUBSET,
                record_id,
                intent=text,
            )
            for row, fill in ((templates[i][0], _filler(templates[i][1])) for i in chosen)
            for record_id, policy, text in questions
        ]
    source["n_samples"] = len(samples)
    return BenchmarkData(name="jailbreakllms", samples=tuple(samples), images=None, source=source)


def _sample(
    sample_key: str, prompt: str, policy: str, subset: str, record_id: str, *, intent: str | None
) -> Sample:
    return Sample(
        id=f"{sample_key}:{subset}",
        benchmark="jailbreakllms",
        subset=subset,
        prompt=prompt,
        image=None,
        reference=None,
        category=policy,
        subcategory=None,
        should_refuse=True,
        record_id=record_id,
        # Inside a template the request is the question; harm judges judge the answer against it.
        intent=intent,
    )


def _questions(path: Path) -> list[tuple[str, str, str]]:
    """(record id, scenario name, question) per row, validated."""
    file = str(path)
    columns = ("content_policy_id", "content_policy_name", "q_id", "question")
    problems: list[Problem] = []
    questions: list[tuple[str, str, str]] = []
    seen: dict[str, str] = {}
    names: dict[str, str] = {}
    for row in read_csv_rows(path, columns):
        cells = {key: row.cells[key].strip() for key in columns}
        row_problems = [Problem(file, row.where, key, "empty value") for key in columns if not cells[key]]
        for key in ("content_policy_id", "q_id"):
            if cells[key] and not cells[key].isdigit():
                row_problems.append(Problem(file, row.where, key, f"{cells[key]!r} is not a whole number"))
        policy_id, name = cells["content_policy_id"], cells["content_policy_name"]
        if policy_id and name and names.setdefault(policy_id, name) != name:
            row_problems.append(
                Problem(
                    file,
                    row.where,
                    "content_policy_name",
                    f"{name!r} differs from {names[policy_id]!r}, given earlier for policy id {policy_id}",
                )
            )
        record_id = f"jailbreakllms-{policy_id}-{cells['q_id']}"
        if not row_problems and record_id in seen:
            row_problems.append(
                Problem(
                    file,
                    row.where,
                    "q_id",
                    f"policy {policy_id} question {cells['q_id']} appears twice (first at {seen[record_id]})",
                )
            )
        if row_problems:
            problems.extend(row_problems)
            continue
        seen[record_id] = row.where
        questions.append((record_id, name, cells["question"]))
    if problems:
        raise DataValidationError(problems, hint=f"JailbreakLLMs expects the columns of {_WHERE}.")
    return questions


def _templates_file(questions_path: Path, data: str | Path | None, revision: str | None) -> Path:
    """The templates CSV beside the questions (same folder, or the same Hub repository)."""
    beside = questions_path.parent / TEMPLATES_FILE
    if beside.is_file():
        return beside
    if data is not None and not Path(data).expanduser().exists():
        path, _ = resolve_data_file(data, TEMPLATES_FILE, benchmark="jailbreakllms", revision=revision)
        return path
    raise ConfigError(
        f"{questions_path.parent}: no {TEMPLATES_FILE} beside {QUESTIONS_FILE}; the option templates needs "
        f"the jailbreak prompts (get them from {_WHERE})"
    )


def _templates(path: Path) -> list[tuple[int, str]]:
    """(1-based data row, template text) per row, validated."""
    problems: list[Problem] = []
    templates: list[tuple[int, str]] = []
    for row in read_csv_rows(path, ("prompt",)):
        if not row.cells["prompt"].strip():
            problems.append(Problem(str(path), row.where, "prompt", "empty template"))
            continue
        templates.append((row.number, row.cells["prompt"]))
    if problems:
        raise DataValidationError(problems, hint=f"JailbreakLLMs expects the jailbreak prompts of {_WHERE}.")
    return templates


def _choose(option: object, seed: int, available: int) -> list[int]:
    """Indices of the templates to use, in file order: all, or ``option`` of them drawn with ``seed``."""
    if option == "all":
        return list(range(available))
    if not isinstance(option, int) or isinstance(option, bool) or option < 0:
        raise ConfigError(
            f"benchmark 'jailbreakllms': templates must be 0, a positive number or 'all', not {option!r}"
        )
    if option > available:
        raise ConfigError(
            f"benchmark 'jailbreakllms': templates={option}, but the file has {available} templates "
            "(use templates=all for every one)"
        )
    return sorted(random.Random(seed).sample(range(available), option))
