"""The architecture matrix: tiny random-weight builds of many VLM families, one set of checks for all.

Each architecture (``vlguard.models.tiny_zoo.TINY_ARCHITECTURES``) is built once per test session and
checked for: batched generation equal to one request at a time with no fallback; the static KV cache
giving the same answers as the default one (or falling back with a recorded reason); labels exactly on the
assistant answers and their end-of-turn token; no future-token leak in a training batch; the projector
trained when asked and frozen when not (also when it sits inside the vision module, as in Qwen-VL); LoRA
training through ``vlguard.train.train`` and evaluation of the adapter. The processors load without
torchvision where the real ones would need it only for video (Qwen-VL, InternVL, LLaVA-OneVision,
SmolVLM); architectures whose image processor needs torchvision itself are skipped without it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from vlguard.generation.base import GenerationRequest
from vlguard.generation.hf import HFBackend
from vlguard.models.loading import detect_kind, load_model, load_processor, torchvision_available
from vlguard.models.tiny_zoo import TINY_ARCHITECTURES, TinyArchitecture
from vlguard.train.collator import IGNORE_INDEX, ConversationCollator

# The architectures whose model class declares it cannot compile its decoding step as one graph
# (``_can_compile_fullgraph = False`` in transformers 5.24): cache_implementation=static falls back.
NO_STATIC_CACHE = frozenset({"idefics3", "smolvlm", "paligemma", "aya-vision"})
ANSWER_1 = "A red square on white."
ANSWER_2 = "I'm sorry, I cannot help with that."


def _params(runs_model: bool = True) -> list[Any]:
    """One parameter per architecture; skipped without torchvision where its image processor needs it,
    and an expected failure where the pinned transformers cannot run the model (``known_failure``)."""
    params = []
    for name, arch in TINY_ARCHITECTURES.items():
        marks = [
            pytest.mark.skipif(
                arch.needs_torchvision and not torchvision_available(),
                reason=f"{name}'s image processor needs torchvision (not installed)",
            )
        ]
        if arch.known_failure and runs_model:
            marks.append(pytest.mark.xfail(reason=arch.known_failure, strict=True))
        params.append(pytest.param(name, marks=marks))
    return params


ARCHITECTURES = _params()
# Checks that only process data (no forward pass) run on every architecture.
ARCHITECTURES_DATA_ONLY = _params(runs_model=False)


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``built(name)`` → the folder of that tiny architecture, built once per test session."""
    root = tmp_path_factory.mktemp("architectures")
    folders: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in folders:
            folders[name] = TINY_ARCHITECTURES[name].build(root / name, 0)
        return folders[name]

    return get


def _image(i: int) -> Image.Image:
    return Image.new("RGB", (20 + 11 * i, 28 + 6 * (i % 3)), (40 * i % 255, 90, 200 - 15 * i))


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _examples(arch: TinyArchitecture) -> list[dict[str, Any]]:
    """Training examples: a two-turn conversation about an image (VLGuard's safe-image layout), and a
    text-only one (or, for PaliGemma, which needs an image in every prompt, a second image one)."""
    two_turns = {
        "id": "two-turns",
        "images": [_image(1)],
        "messages": [
            {"role": "user", "content": [{"type": "image"}, _text("What is shown?")]},
            {"role": "assistant", "content": [_text(ANSWER_1)]},
            {"role": "user", "content": [_text("Who lives there?")]},
            {"role": "assistant", "content": [_text(ANSWER_2)]},
        ],
    }
    second: dict[str, Any] = {
        "id": "second",
        "images": [_image(2)] if arch.needs_image else [],
        "messages": [
            {
                "role": "user",
                "content": [{"type": "image"}, _text("Hello")] if arch.needs_image else [_text("Hello")],
            },
            {"role": "assistant", "content": [_text(ANSWER_2)]},
        ],
    }
    return [two_turns, second]


def _learned_runs(batch: dict[str, Any], row: int) -> list[list[int]]:
    ids, labels = batch["input_ids"][row].tolist(), batch["labels"][row].tolist()
    runs: list[list[int]] = []
    previous = False
    for token, label in zip(ids, labels, strict=True):
        if label != IGNORE_INDEX:
            assert label == token, "a learned label must be the input token itself"
            if not previous:
                runs.append([])
            runs[-1].append(token)
        previous = label != IGNORE_INDEX
    return runs


def _generation_requests(arch: TinyArchitecture) -> list[GenerationRequest]:
    """Images of different sizes (different tile / patch counts) in one batch; text-only prompts apart."""
    requests = [
        GenerationRequest(f"img{i}", "What is shown? " * (1 + i % 3), image=_image(i)) for i in range(3)
    ]
    if not arch.needs_image:
        requests += [GenerationRequest(f"txt{i}", "Say hello. " * (1 + i)) for i in range(2)]
    return requests


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_batched_generation_equals_one_at_a_time_without_fallback(name: str, built: Any) -> None:
    arch = TINY_ARCHITECTURES[name]
    backend = HFBackend(str(built(name)), batch_size=3, max_new_tokens=3)
    requests = _generation_requests(arch)
    batched = backend.generate(requests)
    assert backend.stats["batch_fallbacks"] == 0, "a batch failed and was retried one request at a time"
    sequential = [backend.generate([r])[0] for r in requests]
    assert batched == sequential
    assert all(g.error is None and g.meta["completion_tokens"] > 0 for g in batched)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_static_cache_gives_the_same_answers_or_falls_back_with_a_reason(
    name: str, built: Any, caplog: pytest.LogCaptureFixture
) -> None:
    arch = TINY_ARCHITECTURES[name]
    path = str(built(name))
    requests = _generation_requests(arch)
    default = HFBackend(path, batch_size=3, max_new_tokens=3).generate(requests)
    with caplog.at_level(logging.WARNING, logger="vlguard.generation.hf"):
        backend = HFBackend(path, batch_size=3, max_new_tokens=3, cache_implementation="static")
    described = backend.describe()
    assert described["cache_implementation_requested"] == "static"
    if name in NO_STATIC_CACHE:
        # Never silently: the reason is in the manifest and in the log.
        assert described["cache_implementation"] == "dynamic"
        assert "_can_compile_fullgraph = False" in described["cache_fallback_reason"]
        assert described["cache_fallback_reason"] in caplog.text
    else:
        assert described["cache_implementation"] == "static" and described["cache_fallback_reason"] is None
        assert not caplog.text
    assert backend.generate(requests) == default
    assert backend.stats["batch_fallbacks"] == 0
    if name not in NO_STATIC_CACHE:
        # transformers really decoded with a static cache (it records the cache length it allocated).
        assert backend.model._previous_max_cache_length >= max(g.meta["prompt_tokens"] for g in default) + 3


@pytest.mark.parametrize("name", ARCHITECTURES_DATA_ONLY)
def test_labels_exactly_on_answers_and_end_of_turn(
    name: str, built: Any, caplog: pytest.LogCaptureFixture
) -> None:
    arch = TINY_ARCHITECTURES[name]
    path = str(built(name))
    processor = load_processor(path, detect_kind(path))
    tokenizer = processor.tokenizer
    collator = ConversationCollator(processor, max_length=4096)
    with caplog.at_level(logging.WARNING, logger="vlguard.train.collator"):
        batch = collator(_examples(arch))
    end = arch.end_of_turn or ""
    expected = [[ANSWER_1 + end, ANSWER_2 + end], [ANSWER_2 + end]]
    image_id = (
        tokenizer.convert_tokens_to_ids(processor.image_token) if hasattr(processor, "image_token") else None
    )
    for row, answers in enumerate(expected):
        runs = _learned_runs(batch, row)
        # The space some templates put between the role marker and the answer is generated by the model.
        assert [tokenizer.decode(run).strip(" ") for run in runs] == answers
        if arch.end_of_turn is not None:
            assert all(run[-1] == tokenizer.convert_tokens_to_ids(arch.end_of_turn) for run in runs)
        labels = batch["labels"][row]
        assert not labels[batch["attention_mask"][row] == 0].ne(IGNORE_INDEX).any(), (
            "padding is never learned"
        )
        if image_id is not None:
            assert not labels[batch["input_ids"][row] == image_id].ne(IGNORE_INDEX).any()
    if arch.end_of_turn is None:
        # The template puts no special token after answers (LLaVA-NeXT's literal "<\\s>"): a warning says so.
        assert collator.stats["answers_without_end"] > 0
        assert "not taught to stop" in caplog.text
    else:
        assert collator.stats["answers_without_end"] == 0 and "not taught to stop" not in caplog.text


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_no_future_token_leak(name: str, built: Any) -> None:
    """Changing the last answer token of a training batch changes no logit before it."""
    arch = TINY_ARCHITECTURES[name]
    path = str(built(name))
    kind = detect_kind(path)
    processor = load_processor(path, kind)
    model = load_model(path, kind, dtype=torch.float32).eval()
    batch = ConversationCollator(processor, max_length=4096)(_examples(arch)[:1])
    last = int(batch["labels"][0].ne(IGNORE_INDEX).nonzero().max())
    changed = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    vocab = model.get_input_embeddings().num_embeddings
    changed["input_ids"][0, last] = (batch["input_ids"][0, last] + 7) % vocab
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        before = model(**inputs).logits
        after = model(**{k: v for k, v in changed.items() if k != "labels"}).logits
    assert torch.equal(before[0, :last], after[0, :last]), "a position sees a token after it"
    assert not torch.equal(before[0, last], after[0, last])  # the changed token itself does matter


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_truncation_cuts_every_per_token_tensor(name: str, built: Any) -> None:
    """max_length cuts the ids and everything aligned with them (Mllama's cross_attention_mask too)."""
    arch = TINY_ARCHITECTURES[name]
    path = str(built(name))
    kind = detect_kind(path)
    processor = load_processor(path, kind)
    example = _examples(arch)[:1]
    full = ConversationCollator(processor, max_length=4096)(example)
    length = full["input_ids"].shape[1]
    cut = ConversationCollator(processor, max_length=length - 3)(example)
    for key, value in full.items():
        if (
            isinstance(value, torch.Tensor)
            and value.dim() >= 2
            and value.shape[:2] == full["input_ids"].shape
        ):
            assert cut[key].shape[1] == length - 3, key
            assert torch.equal(cut[key], value[:, : length - 3]), key
    model = load_model(path, kind, dtype=torch.float32)
    with torch.no_grad():
        assert torch.isfinite(model(**cut).loss)


def _train_config(path: str, out: Path, **overrides: Any) -> Any:
    from vlguard.train.config import load_config

    return load_config(
        None,
        {
            "model.name_or_path": path,
            "data.recipe": "instructions",
            "data.instructions": str(out / "unused.jsonl"),
            "output_dir": str(out),
            **overrides,
        },
    )


def _is_projector(name: str, arch: TinyArchitecture) -> bool:
    return any(f"{module}." in name for module in arch.projector)


def _projector_params(model: Any, arch: TinyArchitecture) -> dict[str, torch.nn.Parameter]:
    params = {n: p for n, p in model.named_parameters() if _is_projector(n, arch)}
    assert {m for m in arch.projector if any(f"{m}." in n for n in params)} == set(arch.projector)
    return params


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_projector_trained_when_asked_and_frozen_when_not(name: str, built: Any, tmp_path: Path) -> None:
    from vlguard.train.trainer import load_model as load_for_training

    arch = TINY_ARCHITECTURES[name]
    path = str(built(name))
    processor = load_processor(path, detect_kind(path))
    batch = ConversationCollator(processor, max_length=4096)(_examples(arch)[:1])
    for train_projector in (True, False):
        config = _train_config(path, tmp_path, method="full", train_projector=train_projector)
        model, modules = load_for_training(config, "float32", gradient_checkpointing=False)
        projector = _projector_params(model, arch)
        vision = {
            n: p
            for n, p in model.named_parameters()
            if any(n.startswith(v + ".") for v in modules["vision"]) and n not in projector
        }
        assert vision, "the vision tower was found"
        assert all(p.requires_grad == train_projector for p in projector.values())
        assert not any(p.requires_grad for p in vision.values()), "the vision tower stays frozen"
        model(**batch).loss.backward()
        grads = [p.grad for p in projector.values()]
        if train_projector:
            assert any(g is not None and g.abs().sum() > 0 for g in grads), "the projector gets a gradient"
        else:
            assert all(g is None for g in grads)
        assert all(p.grad is None for p in vision.values())


@pytest.mark.slow
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_lora_training_and_adapter_eval(name: str, built: Any, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from vlguard.train.trainer import train

    arch = TINY_ARCHITECTURES[name]
    path = str(built(name))
    folder = tmp_path / "data"
    folder.mkdir()
    rows = []
    for i, example in enumerate(_examples(arch) * 2):
        image = f"img{i}.png" if example["images"] else None
        if image:
            example["images"][0].save(folder / image)
        rows.append(
            {
                "id": f"{example['id']}-{i}",
                "images": [image] if image else [],
                "messages": example["messages"],
            }
        )
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = _train_config(
        path, tmp_path / "run", method="lora", **{"lora.r": 4, "lora.alpha": 64, "lora.dropout": 0.0,
        "data.instructions": str(folder / "train.jsonl"), "lr": 1e-2, "warmup_ratio": 0.0,
        "lr_scheduler": "constant", "max_steps": 1, "global_batch_size": 4, "per_device_batch_size": 4,
        "save_steps": 100, "progress": False},
    )  # fmt: skip
    result = train(config)
    adapter = load_file(str(result.model_dir / "adapter_model.safetensors"))
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in adapter.items()), "the adapters were trained"
    assert {m for m in arch.projector if any(f"{m}." in k for k in adapter)} == set(arch.projector), (
        "the projector is saved with the adapter"
    )
    assert all(("lora_" in k) != _is_projector(k, arch) for k in adapter), "nothing else is saved"

    requests = [GenerationRequest(f"img{i}", "What is shown?", image=_image(i)) for i in range(3)]
    base = HFBackend(path, batch_size=4, max_new_tokens=3)
    adapted = HFBackend(path, adapter=str(result.model_dir), batch_size=4, max_new_tokens=3)
    generations = adapted.generate(requests)
    assert adapted.stats["batch_fallbacks"] == 0 and all(g.error is None for g in generations)
    inputs = base.model_inputs([base.prompt_text(r) for r in requests], [r.image for r in requests])
    with torch.no_grad():
        assert not torch.allclose(base.model(**inputs).logits, adapted.model(**inputs).logits)
