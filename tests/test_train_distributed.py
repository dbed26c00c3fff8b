"""Two data-parallel processes (gloo on CPU) train the tiny model and end with identical weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_two_process_data_parallel_training(tiny_model_dir: Path, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    out = tmp_path / "ddp"
    accelerate = Path(sys.executable).with_name("accelerate")
    command = [
        str(accelerate), "launch", "--config_file", str(REPO / "configs/accelerate/ddp-cpu-2proc.yaml"),
        "-m", "vlguard.cli.main", "train", str(REPO / "configs/train/tiny-cpu.yaml"),
        f"model.name_or_path={tiny_model_dir}", f"output_dir={out}",
        # Full fine-tuning: DDP must find no unused parameter (CLIP's post_layernorm is frozen).
        "method=full", "lr=1e-2", "warmup_ratio=0", "max_steps=2", "save_steps=100",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]

    provenance = json.loads((out / "model" / "vlguard_train.json").read_text())
    assert provenance["world_size"] == 2
    fingerprints = provenance["rank_fingerprints"]
    assert len(fingerprints) == 2 and fingerprints[0] == fingerprints[1], "ranks diverged"
    # Each rank saw different batches: equal weights mean the gradients were averaged. They moved:
    before, after = (
        load_file(str(tiny_model_dir / "model.safetensors")),
        load_file(str(out / "model" / "model.safetensors")),
    )
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert (out / "model" / "COMPLETE").is_file()
