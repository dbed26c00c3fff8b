"""bench/eval_throughput.py --gpu-7b (hf vs vllm side by side), dry-run on the CPU with tiny shapes.

The GPU run cannot happen here; this runs the same orchestration (model build and save, one process per
backend, calls of each backend's size, agreement, JSON) with the vLLM stand-in as the ``vllm`` package.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import STAND_IN_VLLM

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_side_by_side_benchmark_runs_end_to_end_on_tiny_shapes(tmp_path: Path) -> None:
    out = tmp_path / "side.json"
    command = [
        sys.executable, str(ROOT / "bench" / "eval_throughput.py"), "--gpu-7b", "--cpu-smoke",
        "--samples", "6", "--max-new-tokens", "3", "--data", str(tmp_path / "no-data"),
        "--work-dir", str(tmp_path), "--out", str(out),
    ]  # fmt: skip
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(STAND_IN_VLLM)]),
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
    }
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["samples"] == 6 and report["new_tokens_per_sample"] == 3
    columns = report["configurations"]
    assert list(columns) == ["hf-static", "hf", "vllm"]
    for column in columns.values():
        assert "error" not in column, column
        assert column["whole_set_s"] >= 0 and column["startup_s"] > 0  # (the stand-in engine takes ~0 s)
        assert column["all_answers_full_length"] is True and column["new_tokens"] == 6 * 3
        assert sum(column["calls"]) == 6
    for name in ("hf", "hf-static"):
        column = columns[name]
        assert column["batch_size"] == 4 and column["calls"] == [6]  # 4 batches of 4 per call
        assert column["whole_set_s"] > 0 and column["tokens_per_s"] > 0
        probes = column["probes"]
        assert probes["probe_batch"] == 4 and probes["prefill_s"] > 0
        assert probes["cold_batch_s"] > 0 and probes["warm_batch_s"] > 0
        assert probes["cold_overhead_s"] == pytest.approx(
            probes["cold_batch_s"] - probes["warm_batch_s"], abs=0.002
        )
    assert columns["hf-static"]["backend"]["cache_implementation"] == "static"
    assert columns["hf-static"]["backend"]["compiled_decoding"] is False  # CUDA only
    assert columns["hf"]["backend"]["cache_implementation"] == "dynamic"
    assert columns["vllm"]["requests_per_call"] == 1024 and columns["vllm"]["calls"] == [6]
    assert columns["vllm"]["vllm_version"] == "0.33.0+stand-in"
    agreement = report["agreement_with_hf"]
    # The static cache gives the default cache's answers (fp32 on the CPU).
    assert agreement["hf-static"]["identical_answers"] == 1.0
    for name in ("hf-static", "vllm"):
        assert 0 <= agreement[name]["identical_refusal_labels"] <= 1
        assert (
            sum(agreement[name][f"refusal_labels_{name}"].values()) == 6 and "bf16" in agreement[name]["note"]
        )
    assert set(report["speedup_over_hf"]) <= {"hf-static", "vllm"}
    assert "target" not in report and "smoke run" in report["note"]  # no claim from a dry run
    assert list(tmp_path.glob("vlguard-bench-*")) == []  # the saved model is removed afterwards


def _bench_module() -> Any:
    spec = importlib.util.spec_from_file_location("eval_throughput", ROOT / "bench" / "eval_throughput.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed")
def test_a_failing_stage_writes_why_so_the_other_column_still_counts(tmp_path: Path) -> None:
    bench = _bench_module()
    (tmp_path / "prompts.json").write_text(json.dumps(["Describe the image."]))
    (tmp_path / "settings.json").write_text(json.dumps({"max_new_tokens": 2, "gpu_memory_utilization": 0.9}))
    assert bench.run_stage("vllm", tmp_path) == 1
    error = json.loads((tmp_path / "vllm.json").read_text())["error"]
    assert error.startswith("ConfigError") and "pip install 'vlguard[vllm]'" in error


def test_agreement_counts_identical_answers_and_labels() -> None:
    bench = _bench_module()
    prompts = ["a", "b", "c", "d"]
    hf = ["Sure, here it is.", "I cannot help with that.", "Step one: mix", "Hello there"]
    vllm = ["Sure, here it is.", "I cannot help with that request.", "Step two: heat", "Hello world"]
    result = bench.agreement(prompts, hf, vllm)
    assert result["identical_answers"] == 0.25
    # The answers fork after "I cannot help with that", which keeps the refusal label.
    assert result["identical_refusal_labels"] == 1.0
    assert result["refusal_labels_hf"] == result["refusal_labels_vllm"]
    # Common prefixes: 17 (identical), 23, 5 and 6 characters.
    assert result["median_common_prefix_chars"] == (6 + 17) / 2
