"""The auxiliary safety loss (Booster's VLGuard baseline): which batches, the gradient it adds, resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from train_fixtures import ONE_EXACT_SGD_STEP
from vlguard.errors import ConfigError
from vlguard.train.config import TrainConfig, load_config


def _text_conversation(i: int, question: str, answer: str) -> dict[str, Any]:
    return {
        "id": f"{question[:3]}{i}",
        "messages": [
            {"role": "user", "content": f"{question} {i}?"},
            {"role": "assistant", "content": f"{answer} {i}."},
        ],
    }


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Eight task conversations and six safety conversations (text only, mild made-up text)."""
    folder = tmp_path_factory.mktemp("safety-loss")
    task = folder / "task.jsonl"
    task.write_text(
        "".join(
            json.dumps(_text_conversation(i, "Is this review positive", "positive")) + "\n" for i in range(8)
        )
    )
    safety = folder / "safety.jsonl"
    safety.write_text(
        "".join(
            json.dumps(_text_conversation(i, "How do I pick a lock", "Sorry, I can't help with that")) + "\n"
            for i in range(6)
        )
    )
    return task, safety


def _config(model: Path, task: Path, out: Path, **overrides: Any) -> TrainConfig:
    base = {
        "model.name_or_path": str(model),
        "data.recipe": "instructions",
        "data.instructions": str(task),
        "data.image_mode": "none",
        "method": "full",
        **ONE_EXACT_SGD_STEP,
        "lr": 0.5,
        "output_dir": str(out),
    }
    return load_config(None, {**base, **overrides})


def _weights(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


# ---- which safety conversations each draw gets ----------------------------------------------------


def _batches(n: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1) -> Any:
    from vlguard.data.conversations import Conversation
    from vlguard.train.data import ConversationDataset, TrainingData
    from vlguard.train.safety_loss import SafetyBatches

    conversations = tuple(
        Conversation(f"s{i}", None, ({"role": "user", "content": [{"type": "text", "text": "q"}]},), "x")
        for i in range(n)
    )
    dataset = ConversationDataset(TrainingData(conversations, {}, {"x": n}), "none")
    return SafetyBatches(dataset, batch_size=batch_size, seed=seed, rank=rank, world_size=world_size)


def test_each_pass_uses_every_safety_conversation_once_and_reshuffles() -> None:
    batches = _batches(10, 4)
    assert batches.batches_per_pass == 3
    first_pass = [i for d in range(3) for i in batches.indices(d)]
    second_pass = [i for d in range(3, 6) for i in batches.indices(d)]
    assert sorted(first_pass) == sorted(second_pass) == list(range(10))
    assert [len(batches.indices(d)) for d in range(3)] == [4, 4, 2]
    assert first_pass != second_pass  # a new order every pass
    assert batches.indices(4) == _batches(10, 4).indices(4)  # no hidden state: a draw is a pure function
    assert batches.indices(0) != _batches(10, 4, seed=1).indices(0)


def test_processes_draw_disjoint_batches() -> None:
    ranks = [_batches(8, 2, rank=r, world_size=2) for r in range(2)]
    drawn = [i for d in range(2) for r in ranks for i in r.indices(d)]
    assert sorted(drawn) == list(range(8))


def test_bad_settings_fail_before_loading(tmp_path: Path, data: tuple[Path, Path]) -> None:
    from vlguard.train.trainer import train

    task, safety = data
    for key, value, match in (
        ("safety_loss.weight", "-1", "safety_loss.weight"),
        ("safety_loss.batch_size", "0", "safety_loss.batch_size"),
    ):
        config = _config(
            Path("someone/no-such-model"),
            task,
            tmp_path / "run",
            **{"safety_loss.data": str(safety), key: value},
        )
        with pytest.raises(ConfigError, match=match):
            train(config)
    assert not (tmp_path / "run").exists()


# ---- the gradient it adds, on the tiny model ------------------------------------------------------


@pytest.mark.slow
def test_one_sgd_step_adds_exactly_weight_times_the_safety_gradient(
    tiny_model_dir: Path, data: tuple[Path, Path], tmp_path: Path, one_torch_thread: None
) -> None:
    """w1(λ) = w0 - lr × (g_task + λ × g_safety), with g_safety the gradient of the mean loss on the
    safety batch that draw 0 selects, computed here independently of the trainer."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from vlguard.train.collator import ConversationCollator
    from vlguard.train.data import ConversationDataset
    from vlguard.train.safety_loss import SafetyBatches, load_safety_data
    from vlguard.train.trainer import train

    task, safety = data
    lr = 0.5
    folders = {}
    for weight in (0.0, 0.5, 1.0):
        config = _config(
            tiny_model_dir,
            task,
            tmp_path / f"w{weight}",
            **{
                "safety_loss.data": str(safety),
                "safety_loss.weight": str(weight),
                "safety_loss.batch_size": "3",
            },
        )
        folders[weight] = train(config).model_dir
    folders[None] = train(_config(tiny_model_dir, task, tmp_path / "plain")).model_dir

    def parameters(folder: Path) -> dict[str, Any]:
        loaded = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32)
        return {name: p.detach() for name, p in loaded.named_parameters()}

    runs = {weight: parameters(folder) for weight, folder in folders.items()}

    # The independent safety gradient: the conversations of draw 0, the same collator, the start weights.
    config = _config(tiny_model_dir, task, tmp_path / "x", **{"safety_loss.data": str(safety)})
    safety_data = load_safety_data(config.safety_loss, "none")
    assert safety_data is not None
    batches = SafetyBatches(ConversationDataset(safety_data, "none"), batch_size=3, seed=config.seed)
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch.float32)
    batch = ConversationCollator(processor, max_length=config.max_length)(batches.examples(0))
    model(**batch).loss.backward()

    checked = 0
    for name, param in model.named_parameters():
        w0, w_half, w1 = runs[0.0][name], runs[0.5][name], runs[1.0][name]
        assert torch.equal(w0, runs[None][name]), "λ = 0 is exactly plain training"
        if param.grad is None:
            continue
        # linear in λ, and the difference is lr × λ × the safety gradient
        assert torch.allclose(w_half, (w0 + w1) / 2, atol=1e-6), name
        assert torch.allclose((w0 - w1) / lr, param.grad, atol=1e-5), name
        checked += int(bool(param.grad.abs().sum() > 0))
    assert checked > 5, "the safety batch must reach most language-model weights"


@pytest.mark.slow
def test_resume_with_the_safety_loss_matches_an_uninterrupted_run(
    tiny_model_dir: Path, data: tuple[Path, Path], tmp_path: Path, one_torch_thread: None
) -> None:
    import torch

    from vlguard.train.trainer import train

    task, safety = data
    common = {
        "safety_loss.data": str(safety),
        "safety_loss.weight": "0.7",
        "safety_loss.batch_size": "2",
        "optim": "adamw_torch",
        "lr": "1e-2",
        "max_steps": "4",
        "save_steps": "2",
        "global_batch_size": "4",
        "per_device_batch_size": "2",  # two micro-steps per step: draws 0..7
    }
    straight = train(_config(tiny_model_dir, task, tmp_path / "a", **common))
    shutil.copytree(
        tmp_path / "a" / "checkpoints" / "checkpoint-2", tmp_path / "b" / "checkpoints" / "checkpoint-2"
    )
    resumed = train(_config(tiny_model_dir, task, tmp_path / "b", resume_from_checkpoint="latest", **common))
    a, b = _weights(straight.model_dir), _weights(resumed.model_dir)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    # without the safety loss the same run ends elsewhere: the term mattered in the resumed steps too
    other = _weights(
        train(_config(tiny_model_dir, task, tmp_path / "c", **{**common, "safety_loss.data": None})).model_dir
    )
    assert any(not torch.allclose(a[k], other[k], atol=1e-4) for k in a)
    provenance = json.loads((straight.model_dir / "vlguard_train.json").read_text())
    assert provenance["safety_loss"]["weight"] == 0.7
    assert provenance["safety_loss"]["counts"] == {"safety_loss": 6}
