"""The capability engines, used as libraries: lm-eval for text LLMs, lmms-eval for VLMs.

``ENGINES`` maps an engine name to what vlguard needs to know about it. The functions below are the
only places that call into the engines: build a task manager (the engine's task registry plus any
local task folder), check task names, and evaluate one task on a loaded model. Engines are imported
inside the functions, so vlguard works without them until ``vlguard utility`` is run.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import importlib.metadata
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlguard.errors import ConfigError, VLGuardError
from vlguard.utility.suites import LM_EVAL, LMMS_EVAL, TaskSpec

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Engine:
    """One capability engine: its import name, distribution name, the models it evaluates, how to install it."""

    name: str
    module: str
    distribution: str
    model_kind: str  # "llm" (text-only causal LM) or "vlm" (image-text-to-text model)
    install: str


ENGINES: dict[str, Engine] = {
    LM_EVAL: Engine(
        name=LM_EVAL,
        module="lm_eval",
        distribution="lm-eval",
        model_kind="llm",
        install="pip install 'vlguard[utility]' (or `make install`)",
    ),
    LMMS_EVAL: Engine(
        name=LMMS_EVAL,
        module="lmms_eval",
        distribution="lmms-eval",
        model_kind="vlm",
        # lmms-eval's own dependency list pins wandb (protobuf<7) and pulls torchvision, neither of which
        # vlguard uses; its evaluator needs only what the `utility` extra installs (see README).
        install="pip install 'vlguard[utility]' && pip install --no-deps lmms-eval==0.7.3 (or `make install`)",
    ),
}
ENGINE_FOR_KIND = {engine.model_kind: name for name, engine in ENGINES.items()}


class UtilityTaskError(VLGuardError):
    """An engine task could not be loaded or run (unknown name, dataset not reachable, missing package)."""


def engine_version(name: str) -> str | None:
    """The installed version of engine ``name`` (None when it is not installed)."""
    try:
        return importlib.metadata.version(ENGINES[name].distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def require_engine(name: str) -> str:
    """Import engine ``name`` (checks that it works) and return its version; ``ConfigError`` with the
    install command when it is missing."""
    if name not in ENGINES:
        raise ConfigError(f"unknown engine {name!r}; known: {', '.join(ENGINES)}")
    engine = ENGINES[name]
    version = engine_version(name)
    try:
        importlib.import_module(engine.module)
    except ImportError as err:
        raise ConfigError(
            f"vlguard utility needs {engine.distribution} for {engine.model_kind.upper()}s, which "
            f"{'is not installed' if version is None else f'fails to import ({err})'}: {engine.install}"
        ) from err
    if version is None:
        raise ConfigError(f"{engine.distribution} imports but has no package metadata: {engine.install}")
    if name == LMMS_EVAL:
        _quiet_lmms_eval()
    return version


def _quiet_lmms_eval() -> None:
    """lmms-eval logs through loguru at DEBUG level to stdout; keep its warnings and errors only."""
    import sys

    from loguru import logger as loguru_logger

    loguru_logger.remove()
    loguru_logger.add(sys.stderr, level="WARNING")


def task_manager(name: str, include_path: str | Path | None, tasks: Sequence[str]) -> Any:
    """The engine's task registry, with the task folder ``include_path`` (task YAML files in the engine's
    own format) added.

    Indexing the engine's ~2,000 (lmms-eval) or ~15,000 (lm-eval) built-in task files takes seconds, so
    when every task asked for is defined in ``include_path`` the built-in ones are not indexed.
    """
    if include_path is not None and not Path(include_path).is_dir():
        raise ConfigError(
            f"task folder {include_path} not found (--include-path takes a folder of task YAML files)"
        )
    if include_path is not None:
        local = _new_task_manager(name, str(include_path), include_defaults=False)
        if set(tasks) <= set(local.all_tasks):
            return local
    return _new_task_manager(name, None if include_path is None else str(include_path), include_defaults=True)


def _new_task_manager(name: str, include_path: str | None, *, include_defaults: bool) -> Any:
    if name == LM_EVAL:
        from lm_eval.tasks import TaskManager

        return TaskManager(include_path=include_path, include_defaults=include_defaults)
    from lmms_eval.tasks import TaskManager as LmmsTaskManager

    return LmmsTaskManager("WARNING", include_path=include_path, include_defaults=include_defaults)


def check_task_names(name: str, manager: Any, tasks: Sequence[str]) -> None:
    """``ConfigError`` naming every task the engine does not know, with the closest known names."""
    known = set(manager.all_tasks)
    unknown = [task for task in tasks if task not in known]
    if not unknown:
        return
    hints = []
    for task in unknown:
        close = difflib.get_close_matches(task, known, n=3, cutoff=0.6)
        hints.append(f"{task!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
    raise ConfigError(
        f"{ENGINES[name].distribution} has no task {', '.join(hints)}. Use the engine's task names "
        "(e.g. `python -m lm_eval ls tasks`), or add a folder of your own task files with --include-path."
    )


# Exceptions an engine raises for a task it cannot load or score: a dataset that is not reachable
# offline or is gated (OSError, ConnectionError), a task file or dataset that does not fit
# (ValueError, KeyError, TypeError), a package a task's own code imports (ImportError).
_TASK_FAILURES = (OSError, ValueError, KeyError, TypeError, ImportError, AssertionError)


def evaluate_task(
    name: str,
    lm: Any,
    spec: TaskSpec,
    manager: Any,
    *,
    seed: int,
    bootstrap_iters: int,
    output_dir: Path,
    chat_template: bool = False,
    system_prompt: str | None = None,
) -> dict[str, Any]:
    """Run one task through the engine's ``simple_evaluate`` and return its raw results dict.

    Every random seed of the engine (python, numpy, torch, few-shot sampling) is ``seed``; the engine
    keeps per-sample logs (``results["samples"]``). ``output_dir`` receives files some tasks write
    themselves (lmms-eval's submission files). ``system_prompt`` is lm-eval's ``system_instruction``
    (lmms-eval's model class puts it in the chat template itself).
    """
    kwargs: dict[str, Any] = {
        "model": lm,
        "tasks": [spec.task],
        "num_fewshot": spec.num_fewshot,
        "limit": spec.limit,
        "task_manager": manager,
        "log_samples": True,
        "bootstrap_iters": bootstrap_iters,
        "random_seed": seed,
        "numpy_random_seed": seed,
        "torch_random_seed": seed,
        "fewshot_random_seed": seed,
    }
    from tenacity import RetryError

    try:
        if name == LM_EVAL:
            from lm_eval import simple_evaluate

            results = simple_evaluate(
                **kwargs, apply_chat_template=chat_template, system_instruction=system_prompt
            )
        else:
            import lmms_eval.evaluator as lmms_evaluator

            # lmms-eval 0.7.3 patches filelock 3's internal module (filelock._api) to share locks across
            # processes of a multi-GPU run; filelock 4 (our pin) removed that module, and one process
            # needs no shared locks, so mark the patch as done instead of letting it fail.
            lmms_evaluator._enable_reentrant_filelocks._patched = True
            output_dir.mkdir(parents=True, exist_ok=True)
            results = lmms_evaluator.simple_evaluate(
                **kwargs,
                # Tasks' aggregation functions write submission files under cli_args.output_path.
                cli_args=argparse.Namespace(output_path=str(output_dir), process_with_media=True),
            )
    except _TASK_FAILURES as err:
        # One line for the user; the traceback with `vlguard -v` (a bug of ours would show up there).
        logger.debug("task %s failed", spec.task, exc_info=True)
        raise UtilityTaskError(
            f"{ENGINES[name].distribution} task {spec.task!r} failed: {type(err).__name__}: {err}"
        ) from err
    except RetryError as err:
        # lmms-eval retries loading a task (e.g. its dataset from the Hub) and then raises this wrapper.
        cause = err.last_attempt.exception()
        logger.debug("task %s failed after retries", spec.task, exc_info=True)
        hint = " (offline? HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") == "1" else ""
        raise UtilityTaskError(
            f"{ENGINES[name].distribution} task {spec.task!r} failed after {err.last_attempt.attempt_number} "
            f"attempts: {type(cause).__name__}: {cause}{hint}"
        ) from err
    if not isinstance(results, dict) or "results" not in results:
        raise UtilityTaskError(f"{ENGINES[name].distribution} returned no results for task {spec.task!r}")
    return results
