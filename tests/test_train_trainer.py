"""Fine-tuning the tiny VLM: full and LoRA change what they should, merge, resume, bad inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from vlguard.errors import ConfigError, ImageLoadError, VLGuardError
from vlguard.train.checkpoints import COMPLETE_MARKER
from vlguard.train.config import TrainConfig, load_config
from vlguard.train.trainer import train

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _conversation(i: int, image: str | None) -> dict[str, Any]:
    user: list[dict[str, Any]] = [{"type": "text", "text": f"Question number {i}: what is shown?"}]
    if image is not None:
        user.insert(0, {"type": "image"})
    return {
        "id": f"c{i}",
        "images": [image] if image else [],
        "messages": [
            {"role": "user", "content": user},
            {"role": "assistant", "content": [{"type": "text", "text": f"A square of colour {i}."}]},
        ],
    }


@pytest.fixture(scope="module")
def instructions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight messages-format conversations (six with small images) in a JSONL file beside the images."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("instructions")
    rows = []
    for i in range(8):
        image = f"img{i}.png" if i < 6 else None
        if image:
            Image.new("RGB", (24 + i, 24), (30 * i, 100, 200)).save(folder / image)
        rows.append(_conversation(i, image))
    path = folder / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _config(model_dir: Path, data: Path, out: Path, **overrides: Any) -> TrainConfig:
    base = {
        "model.name_or_path": str(model_dir),
        "data.recipe": "instructions",
        "data.instructions": str(data),
        "method": "full",
        "lr": 1e-2,
        "warmup_ratio": 0.0,
        "lr_scheduler": "constant",
        "global_batch_size": 4,
        "per_device_batch_size": 4,
        "max_steps": 2,
        "save_steps": 100,
        "output_dir": str(out),
    }
    return load_config(None, {**base, **overrides})


def _is_llm_layer(key: str) -> bool:
    # saved names differ from module names: language_model.model.layers.N... vs model.language_model.layers.N
    return "language_model" in key and ".layers." in key


def _weights(folder: Path, name: str = "model.safetensors") -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(folder / name))


def test_full_finetuning_changes_language_model_not_vision_tower(
    tiny_model_dir: Path, instructions: Path, tmp_path: Path
) -> None:
    import torch

    result = train(_config(tiny_model_dir, instructions, tmp_path / "run"))
    assert result.global_step == 2 and (result.model_dir / COMPLETE_MARKER).is_file()
    before, after = _weights(tiny_model_dir), _weights(result.model_dir)
    assert before.keys() == after.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(_is_llm_layer(k) for k in changed)
    assert any("multi_modal_projector" in k for k in changed)
    assert not [k for k in changed if "vision_tower" in k], "the vision tower must stay frozen"
    # The resolved config and provenance go with the model; the config loads back unchanged.
    saved = load_config(result.model_dir / "train_config.yaml")
    assert saved == _config(tiny_model_dir, instructions, tmp_path / "run")
    provenance = json.loads((result.model_dir / "vlguard_train.json").read_text())
    assert provenance["seed"] == 0 and provenance["versions"]["transformers"]
    assert "git_commit" in provenance and provenance["world_size"] == 1
    assert not list(result.model_dir.glob("*.bin")) and not list(result.model_dir.glob("*.pt"))


def test_lora_changes_only_adapters_and_merges(
    tiny_model_dir: Path, instructions: Path, tmp_path: Path
) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    from vlguard.train.merge import merge_adapter

    config = _config(
        tiny_model_dir, instructions, tmp_path / "lora", method="lora", train_projector=False, **{"lora.r": 4}
    )
    result = train(config)
    adapter = _weights(result.model_dir, "adapter_model.safetensors")
    assert adapter and all("lora_" in k for k in adapter), "only adapter weights are saved"
    assert all(_is_llm_layer(k) for k in adapter), "LoRA targets the language model only"
    assert not (result.model_dir / "model.safetensors").exists()

    base = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    reference = {k: v.clone() for k, v in base.state_dict().items()}
    peft_model = PeftModel.from_pretrained(base, str(result.model_dir))
    for name, param in peft_model.named_parameters():
        if "lora_" in name:
            continue
        key = name.removeprefix("base_model.model.").replace(".base_layer", "")
        assert torch.equal(param, reference[key]), f"{key} changed but is not an adapter weight"
    assert any(("lora_B" in k) and v.abs().sum() > 0 for k, v in adapter.items()), "adapters were trained"

    merged_dir = merge_adapter(str(tiny_model_dir), result.model_dir, tmp_path / "merged")
    merged = _weights(merged_dir)
    before = _weights(tiny_model_dir)
    changed = {k for k in before if not torch.equal(before[k], merged[k])}
    assert changed and all(_is_llm_layer(k) for k in changed)
    assert (merged_dir / "processor_config.json").is_file()
    with pytest.raises(ConfigError, match="already exists"):
        merge_adapter(str(tiny_model_dir), result.model_dir, merged_dir)


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(
    tiny_model_dir: Path, instructions: Path, tmp_path: Path
) -> None:
    import torch

    common = {"max_steps": 4, "save_steps": 2, "global_batch_size": 2, "per_device_batch_size": 2, "lr": 5e-3,
              "group_by_length": True}  # fmt: skip
    straight = train(_config(tiny_model_dir, instructions, tmp_path / "a", **common))
    # An interrupted run: only its step-2 checkpoint survived, plus a half-written later one.
    resumed_out = tmp_path / "b"
    shutil.copytree(
        tmp_path / "a" / "checkpoints" / "checkpoint-2", resumed_out / "checkpoints" / "checkpoint-2"
    )
    partial = resumed_out / "checkpoints" / "checkpoint-3"
    shutil.copytree(resumed_out / "checkpoints" / "checkpoint-2", partial)
    (partial / COMPLETE_MARKER).unlink()
    with pytest.raises(ConfigError, match="incomplete"):
        train(
            _config(tiny_model_dir, instructions, resumed_out, resume_from_checkpoint=str(partial), **common)
        )
    resumed = train(
        _config(tiny_model_dir, instructions, resumed_out, resume_from_checkpoint="latest", **common)
    )
    assert resumed.global_step == 4
    a, b = _weights(straight.model_dir), _weights(resumed.model_dir)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    # ... and differs from where it started: the resumed run did train.
    start = _weights(tmp_path / "a" / "checkpoints" / "checkpoint-2")
    assert any(not torch.equal(start[k], b[k]) for k in b)


def test_resume_in_a_later_epoch_with_length_grouping_gives_the_same_weights(
    tiny_model_dir: Path, instructions: Path, tmp_path: Path
) -> None:
    """``group_by_length`` (as in configs/hft/tiny-cpu.yaml): resumed in the second epoch, the batches are
    the uninterrupted run's, so the weights are bit-identical (the order comes from the seed and the
    epoch, not from the global random state at the resume)."""
    import torch

    # 8 conversations at batch 2: 4 steps per epoch; checkpoint-5 is one step into the second epoch.
    common = {"max_steps": 7, "save_steps": 5, "global_batch_size": 2, "per_device_batch_size": 2, "lr": 5e-3,
              "group_by_length": True}  # fmt: skip
    straight = train(_config(tiny_model_dir, instructions, tmp_path / "a", **common))
    resumed_out = tmp_path / "b"
    shutil.copytree(
        tmp_path / "a" / "checkpoints" / "checkpoint-5", resumed_out / "checkpoints" / "checkpoint-5"
    )
    resumed = train(_config(tiny_model_dir, instructions, resumed_out, **common))
    assert resumed.global_step == 7
    a, b = _weights(straight.model_dir), _weights(resumed.model_dir)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.train_loss == pytest.approx(straight.train_loss, rel=1e-6)


def test_lora_resume_restores_adapters_and_projector(
    tiny_model_dir: Path, instructions: Path, tmp_path: Path
) -> None:
    import torch

    common = {"max_steps": 4, "save_steps": 2, "global_batch_size": 2, "per_device_batch_size": 2,
              "method": "lora", "lora.r": 4, "lr": 5e-3, "projector_lr": 1e-3}  # fmt: skip
    straight = train(_config(tiny_model_dir, instructions, tmp_path / "a", **common))
    shutil.copytree(
        tmp_path / "a" / "checkpoints" / "checkpoint-2", tmp_path / "b" / "checkpoints" / "checkpoint-2"
    )
    resumed = train(
        _config(tiny_model_dir, instructions, tmp_path / "b", resume_from_checkpoint="latest", **common)
    )
    a = _weights(straight.model_dir, "adapter_model.safetensors")
    b = _weights(resumed.model_dir, "adapter_model.safetensors")
    assert any("multi_modal_projector" in k for k in a), "the projector is trained and saved with the adapter"
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_finished_output_is_not_overwritten(tiny_model_dir: Path, instructions: Path, tmp_path: Path) -> None:
    out = tmp_path / "done"
    (out / "model").mkdir(parents=True)
    (out / "model" / COMPLETE_MARKER).write_text("x")
    with pytest.raises(ConfigError, match="already holds a finished model"):
        train(_config(tiny_model_dir, instructions, out))


def test_a_second_run_in_the_same_output_folder_stops_at_once(
    tiny_model_dir: Path, instructions: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two concurrent runs in one folder: the second stops before loading anything, naming the first."""
    import os
    import re
    import subprocess
    import sys
    import time

    import vlguard.train.trainer as trainer
    from vlguard.runs import LOCK_FILE, RunLockedError
    from vlguard.train.config import dump_config

    out = tmp_path / "run"
    long_run = _config(tiny_model_dir, instructions, out, max_steps=100_000, save_steps=100_000)
    config_file = tmp_path / "long.yaml"
    config_file.write_text(dump_config(long_run))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "vlguard.cli.main", "train", str(config_file)]
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not ((out / LOCK_FILE).is_file() and f"pid {first.pid}," in (out / LOCK_FILE).read_text()):
            assert first.poll() is None, "the first run stopped"
            assert time.monotonic() < deadline, "the first run never locked its folder"
            time.sleep(0.2)

        def no_load(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("a model was loaded although the folder is in use")

        with monkeypatch.context() as patched:
            patched.setattr(trainer, "load_model", no_load)
            with pytest.raises(
                RunLockedError,
                match=rf"{re.escape(str(out))} is in use by another vlguard process \(pid {first.pid}, .*"
                "use another output_dir",
            ):
                train(_config(tiny_model_dir, instructions, out, max_steps=2))
        assert first.poll() is None, "the first run goes on"
    finally:
        first.kill()
        first.wait()
    # The operating system released the lock with its holder (kill -9): the folder is usable again.
    assert train(_config(tiny_model_dir, instructions, out, max_steps=2)).global_step == 2


def _fails_before_training(config: TrainConfig, error: type[Exception], match: str) -> None:
    had_checkpoints = (Path(config.output_dir) / "checkpoints").exists()
    with pytest.raises(error, match=match):
        train(config)
    assert (Path(config.output_dir) / "checkpoints").exists() == had_checkpoints
    assert not (Path(config.output_dir) / "train_config.yaml").exists()


def test_model_without_chat_template(tiny_model_dir: Path, instructions: Path, tmp_path: Path) -> None:
    model = tmp_path / "no-template"
    shutil.copytree(tiny_model_dir, model)
    (model / "chat_template.jinja").unlink()
    for name in ("processor_config.json", "tokenizer_config.json"):
        path = model / name
        if path.is_file():
            data = json.loads(path.read_text())
            data.pop("chat_template", None)
            path.write_text(json.dumps(data))
    _fails_before_training(_config(model, instructions, tmp_path / "run"), ConfigError, "no chat template")


def test_image_that_fails_to_load(tiny_model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps(_conversation(0, "broken.png")) + "\n")
    _fails_before_training(_config(tiny_model_dir, data, tmp_path / "run"), ImageLoadError, "c0.*broken.png")


def test_empty_dataset(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "empty.jsonl"
    data.write_text("")
    _fails_before_training(
        _config(tiny_model_dir, data, tmp_path / "run"), VLGuardError, "no training conversations"
    )
    data.write_text(json.dumps(_conversation(0, None)) + "\n")
    config = _config(tiny_model_dir, data, tmp_path / "run2", **{"data.max_samples": 0})
    _fails_before_training(config, VLGuardError, "no training conversations")


def test_max_length_that_leaves_no_answer_token_is_refused(
    tiny_model_dir: Path, instructions: Path, tmp_path: Path
) -> None:
    """Cut before every answer, training would learn nothing (loss 0) and save it as a finished model."""
    config = _config(
        tiny_model_dir, instructions, tmp_path / "run", max_length=3, **{"data.image_mode": "none"}
    )
    _fails_before_training(
        config,
        ConfigError,
        r"config key 'max_length': truncating to 3 tokens leaves no answer token to learn from",
    )
    assert not (tmp_path / "run" / "model").exists()


def test_recipe_without_its_data_fails_before_any_load(tmp_path: Path) -> None:
    config = load_config(REPO / "configs/train/posthoc-lora.yaml", [f"output_dir={tmp_path / 'run'}"])
    # The shipped recipe names a Hub model that is not available offline: the data error comes first.
    _fails_before_training(config, ConfigError, "needs data.instructions")


@pytest.fixture(scope="module")
def ten_conversations(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ten conversations: five steps per epoch at batch 2, so max_steps=4 ends mid-epoch."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("ten")
    rows = []
    for i in range(10):
        Image.new("RGB", (24, 24), (20 * i, 100, 200)).save(folder / f"img{i}.png")
        rows.append(_conversation(i, f"img{i}.png"))
    path = folder / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _file_times(folder: Path) -> dict[str, int]:
    return {
        str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()
    }


RESUME = {"max_steps": 4, "save_steps": 2, "global_batch_size": 2, "per_device_batch_size": 2, "lr": 5e-3}


@pytest.fixture(scope="module")
def straight_run(
    tiny_model_dir: Path, ten_conversations: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Any]:
    """An uninterrupted 4-step run with checkpoints at steps 2 and 4."""
    out = tmp_path_factory.mktemp("straight") / "run"
    return out, train(_config(tiny_model_dir, ten_conversations, out, **RESUME))


def test_a_run_killed_during_its_final_save_resumes_without_training_further(
    tiny_model_dir: Path, ten_conversations: Path, straight_run: tuple[Path, Any], tmp_path: Path
) -> None:
    import torch

    straight_dir, straight = straight_run
    # What a kill during the final save leaves: every checkpoint, a half-written .model.tmp, no model/.
    out = tmp_path / "run"
    shutil.copytree(straight_dir / "checkpoints", out / "checkpoints")
    (out / ".model.tmp").mkdir()
    (out / ".model.tmp" / "model.safetensors").write_bytes(b"half")
    before = _file_times(out / "checkpoints")
    # The same command again (resume_from_checkpoint left at its default).
    resumed = train(_config(tiny_model_dir, ten_conversations, out, **RESUME))
    assert resumed.global_step == 4
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint-2", "checkpoint-4"]
    assert _file_times(out / "checkpoints") == before, "resumed: no step trained, no checkpoint rewritten"
    a, b = _weights(straight.model_dir), _weights(resumed.model_dir)
    assert all(torch.equal(a[k], b[k]) for k in a), "the final model is checkpoint-4's weights, untouched"
    assert resumed.train_loss == pytest.approx(straight.train_loss, rel=1e-6)
    provenance = json.loads((resumed.model_dir / "vlguard_train.json").read_text())
    assert provenance["global_step"] == 4 and provenance["train_loss"] == pytest.approx(straight.train_loss)


def test_train_loss_after_a_resume_is_the_mean_over_the_whole_run(
    tiny_model_dir: Path, ten_conversations: Path, straight_run: tuple[Path, Any], tmp_path: Path
) -> None:
    straight_dir, straight = straight_run
    out = tmp_path / "run"
    shutil.copytree(straight_dir / "checkpoints" / "checkpoint-2", out / "checkpoints" / "checkpoint-2")
    before = _file_times(out / "checkpoints" / "checkpoint-2")
    resumed = train(_config(tiny_model_dir, ten_conversations, out, **RESUME))
    assert resumed.global_step == 4
    assert _file_times(out / "checkpoints" / "checkpoint-2") == before, "resumed, not restarted from step 0"
    state = json.loads((straight_dir / "checkpoints" / "checkpoint-4" / "trainer_state.json").read_text())
    losses = {e["step"]: e["loss"] for e in state["log_history"] if "loss" in e}
    resumed_only = (losses[3] + losses[4]) / 2
    assert resumed.train_loss == pytest.approx(straight.train_loss, rel=1e-4)
    assert resumed.train_loss != pytest.approx(resumed_only, rel=1e-3), "not only the steps after the resume"


def test_checkpoints_are_never_trained_beside_or_mixed_with_other_settings(
    tiny_model_dir: Path, ten_conversations: Path, straight_run: tuple[Path, Any], tmp_path: Path
) -> None:
    straight_dir, _ = straight_run
    out = tmp_path / "run"
    shutil.copytree(straight_dir / "checkpoints" / "checkpoint-2", out / "checkpoints" / "checkpoint-2")
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    restart = _config(tiny_model_dir, ten_conversations, out, resume_from_checkpoint=None, **RESUME)
    _fails_before_training(restart, ConfigError, "holds complete checkpoints.*resume_from_checkpoint=auto")
    changed = _config(tiny_model_dir, ten_conversations, out, **{**RESUME, "lr": 1e-3})
    _fails_before_training(changed, ConfigError, "other settings.*lr: checkpoint has 0.005, now 0.001")
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before, "nothing written"
