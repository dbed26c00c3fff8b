"""The suites name real tasks: every task of every suite is in the installed engine's task registry."""

from __future__ import annotations

import pytest

from vlguard.errors import ConfigError
from vlguard.utility import SUITES
from vlguard.utility.engines import ENGINES, check_task_names, require_engine, task_manager

# Indexing an engine's built-in task files takes 5-15 s each.
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_every_suite_task_is_in_the_engine_registry(engine: str) -> None:
    pytest.importorskip(
        ENGINES[engine].module, reason=f"{engine} is not installed (make install installs it)"
    )
    require_engine(engine)
    names = sorted({spec.task for suite in SUITES.values() for spec in suite.tasks[engine]})
    manager = task_manager(engine, None, names)
    check_task_names(engine, manager, names)
    # A typo is a clear error with the closest names.
    with pytest.raises(ConfigError, match=r"no task 'mmluu' \(did you mean mmlu"):
        check_task_names(engine, manager, ["mmluu"])
