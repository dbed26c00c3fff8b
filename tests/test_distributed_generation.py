"""Data-parallel generation: 2 CPU processes (torchrun, gloo) give the same run as one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from vlguard.evaluate import EvalConfig, run_eval, run_generation


def _config(data: Path, run_dir: Path, **overrides: object) -> EvalConfig:
    settings: dict[str, object] = dict(
        model="tiny",
        data=str(data),
        image_mode="blank",  # the shared VLGuard data has no images
        limit=20,
        batch_size=4,
        max_new_tokens=6,
        run_dir=str(run_dir),
    )
    settings.update(overrides)
    return EvalConfig(**settings)  # type: ignore[arg-type]


@pytest.mark.slow
def test_two_processes_give_the_single_process_run(
    vlguard_data_dir: Path, tmp_path: Path, tiny_cache: Path, one_torch_thread: None
) -> None:
    parallel = tmp_path / "parallel"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "vlguard.cli.main", "eval",
        "--model", "tiny", "--data", str(vlguard_data_dir), "--image-mode", "blank", "--judge", "refusal",
        "--limit", "20", "--batch-size", "4", "--max-new-tokens", "6", "--no-progress",
        "--run-dir", str(parallel),
    ]  # fmt: skip
    env = {**os.environ, "VLGUARD_CACHE": str(tiny_cache), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    # Two processes really ran, each on its shard, and rank 0 merged both shard files.
    assert "rank 0 of world size 2" in result.stderr and "rank 1 of world size 2" in result.stderr
    assert result.stderr.count("20 pending (10 on this process)") == 2
    assert "merged 20 generations from 2 shard file(s)" in result.stderr
    assert not list(parallel.glob("generations.rank*.jsonl"))

    single = tmp_path / "single"
    metrics = run_eval(_config(vlguard_data_dir, single), progress=False)
    assert (parallel / "generations.jsonl").read_bytes() == (single / "generations.jsonl").read_bytes()
    assert json.loads((parallel / "metrics.json").read_text()) == metrics


def test_leftover_shards_of_an_interrupted_parallel_run_are_merged_not_regenerated(
    vlguard_data_dir: Path, tmp_path: Path, tiny_cache: Path
) -> None:
    run_dir = tmp_path / "run"
    run_generation(_config(vlguard_data_dir, run_dir, limit=9), progress=False)
    full = (run_dir / "generations.jsonl").read_bytes()
    lines = full.splitlines(keepends=True)
    # As if a 2-process run died: three results only in rank 1's shard (with a torn last line), the
    # rest not generated yet.
    (run_dir / "generations.jsonl").write_bytes(b"".join(lines[:3]))
    marked = {**json.loads(lines[3]), "response": "kept from the shard"}
    shard = json.dumps(marked).encode() + b"\n" + b"".join(lines[4:6]) + b'{"sample_id": "x'
    (run_dir / "generations.rank1.jsonl").write_bytes(shard)
    run_generation(_config(vlguard_data_dir, run_dir, limit=9), progress=False)
    after = [json.loads(line) for line in (run_dir / "generations.jsonl").read_bytes().splitlines()]
    assert Counter(r["sample_id"] for r in after) == Counter(json.loads(line)["sample_id"] for line in lines)
    assert after[3] == marked  # merged, in sample order, not regenerated
    assert after[:3] + after[4:] == [json.loads(line) for line in lines[:3] + lines[4:]]
    assert not (run_dir / "generations.rank1.jsonl").exists()
