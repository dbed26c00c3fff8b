"""bench/gpu_check.sh, the prepared GPU check, dry-run on the CPU with tiny shapes (``--cpu-smoke``).

The GPU run cannot happen here; this runs the same parts and the same JSON plumbing, in two calls: the
first is cut short after three parts (as a time limit would), the second finishes the rest without
redoing them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(out: Path, work: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "GPU_CHECK_TIMEOUT": "300"}
    command = ["bash", str(ROOT / "bench" / "gpu_check.sh"), str(out), "--cpu-smoke", "--work-dir", str(work)]
    return subprocess.run([*command, *extra], env=env, capture_output=True, text=True, timeout=400)


@pytest.mark.slow
def test_gpu_check_writes_one_json_part_by_part_and_a_second_call_finishes_it(tmp_path: Path) -> None:
    out, work = tmp_path / "gpu_check.json", tmp_path / "work"
    first = _run(out, work, "--parts", "versions,build,hf_dynamic")
    assert first.returncode == 0, first.stderr[-3000:]
    report = json.loads(out.read_text())
    assert sorted(report["parts"]) == ["build", "hf_dynamic", "versions"] and report["complete"] is False
    done_first = {name: report["parts"][name] for name in report["parts"]}

    second = _run(out, work)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stderr.count("already done, skipped") == 3
    report = json.loads(out.read_text())
    parts = report["parts"]
    assert report["complete"] is True and report["cpu_smoke"] is True
    assert all(parts[name] == value for name, value in done_first.items())  # not redone
    assert not [name for name, value in parts.items() if "error" in value], parts

    versions = parts["versions"]
    assert versions["torch"] and versions["transformers"] and versions["peft"]
    vllm = versions["vllm"]
    assert vllm["importable"] or vllm["reason"].startswith("not installable here")
    for name, cache in (("hf_dynamic", "dynamic"), ("hf_static", "static")):
        column = parts[name]
        assert column["cache_implementation"] == cache and column["samples"] == 8
        assert column["all_answers_full_length"] is True and column["errors"] == 0
        assert set(column["probes"]) >= {"cold_batch_s", "warm_batch_s", "prefill_s", "warm_ms_per_step"}
        assert len(column["answer_sha1"]) == len(column["refusal_labels"]) == 8
    # fp32 on the CPU: the static cache gives the default cache's answers exactly.
    assert parts["hf_agreement"]["identical_answers"] == 1.0
    assert parts["hf_agreement"]["identical_refusal_labels"] == 1.0
    lora = parts["lora_step"]
    assert lora["losses_finite"] is True and len(lora["losses"]) == 2 and lora["trainable_params"] > 0
    assert "adapter_model.safetensors" in lora["adapter_files"]
    evaluation = parts["eval_adapter"]
    assert evaluation["returncode"] == 0 and evaluation["adapter_recorded"] is True
    assert evaluation["generations"] == evaluation["limit"] == 4 and evaluation["generation_errors"] == 0
    assert evaluation["metrics_written"] is True

    # A smoke file is never mistaken for a GPU run (and the other way round).
    mixed = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh"), str(out), "--work-dir", str(work)],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert mixed.returncode == 2 and "holds a smoke run" in mixed.stderr
