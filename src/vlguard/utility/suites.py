"""Named capability suites: which engine tasks measure what safety fine-tuning costs.

A suite lists, per engine, the tasks to run by the engine's own task names (verified against the
installed engines' task registries by ``tests/test_utility_suites.py``). ``limit`` is the engine's
own: the first ``limit`` documents of each task (of each subtask, for a group such as ``mmlu``), so
the same limit always picks the same documents. ``num_fewshot`` None keeps the task's own setting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

LM_EVAL = "lm-eval"
LMMS_EVAL = "lmms-eval"


@dataclass(frozen=True)
class TaskSpec:
    """One engine task and how much of it to run."""

    task: str
    limit: int | None = None
    num_fewshot: int | None = None

    def settings(self) -> dict[str, int | None]:
        """The settings that change this task's numbers (a rerun in the same folder must match them)."""
        return {"limit": self.limit, "num_fewshot": self.num_fewshot}


@dataclass(frozen=True)
class Suite:
    """A named set of tasks per engine, with a one-line description for ``--help``."""

    name: str
    description: str
    tasks: Mapping[str, tuple[TaskSpec, ...]]


SUITES: dict[str, Suite] = {
    "paper": Suite(
        name="paper",
        description=(
            "the VLGuard paper's capability benchmarks (MMLU, ScienceQA-IMG, VizWiz-VQA, MMBench, MM-Vet), "
            "full size. mmbench_en_dev and mmvet are scored by a GPT judge inside lmms-eval, which reads "
            "OPENAI_API_KEY itself (vlguard never records it)"
        ),
        tasks={
            LMMS_EVAL: (
                TaskSpec("mmlu"),
                TaskSpec("scienceqa_img"),
                TaskSpec("vizwiz_vqa_val"),
                TaskSpec("mmbench_en_dev"),
                TaskSpec("mmvet"),
            ),
            LM_EVAL: (TaskSpec("mmlu", num_fewshot=5),),
        },
    ),
    "quick": Suite(
        name="quick",
        description=(
            "a few hundred documents per model kind and no API judge, for a check after each fine-tune "
            "(limit = the first documents of each task; of each subject for mmlu)"
        ),
        tasks={
            LMMS_EVAL: (
                TaskSpec("mmlu", limit=2),
                TaskSpec("scienceqa_img", limit=200),
                TaskSpec("vizwiz_vqa_val", limit=200),
                TaskSpec("mmbench_en_dev_static", limit=200),
            ),
            LM_EVAL: (TaskSpec("mmlu", limit=5), TaskSpec("arc_challenge", limit=200)),
        },
    ),
}


def suite_help(width: int = 100) -> str:
    """The suites as indented, wrapped lines for ``vlguard utility --help``."""
    import textwrap

    lines = []
    for suite in SUITES.values():
        lines += textwrap.wrap(
            f"{suite.name}: {suite.description}.",
            width,
            initial_indent="  ",
            subsequent_indent="      ",
            break_on_hyphens=False,
        )
        for engine, specs in suite.tasks.items():
            tasks = ", ".join(
                spec.task
                + "".join(
                    f" [{key.replace('num_fewshot', 'shots')}={value}]"
                    for key, value in spec.settings().items()
                    if value is not None
                )
                for spec in specs
            )
            kind = "VLMs" if engine == LMMS_EVAL else "text LLMs"
            lines += textwrap.wrap(
                f"{kind} ({engine}): {tasks}", width, initial_indent="      ", subsequent_indent="        "
            )
    return "\n".join(lines)
