"""Capability cost of safety fine-tuning: benchmark suites run through lm-eval (text LLMs) and
lmms-eval (VLMs) as libraries, into the run folder next to the safety results.

``run_utility(UtilityConfig(model=..., suite="quick", run_dir="runs/x"))`` is what ``vlguard utility``
calls. Nothing here imports an engine until a run starts.
"""

from vlguard.utility.run import UtilityConfig, UtilityFolder, build_metrics, run_utility
from vlguard.utility.suites import SUITES, Suite, TaskSpec

__all__ = ["SUITES", "Suite", "TaskSpec", "UtilityConfig", "UtilityFolder", "build_metrics", "run_utility"]
