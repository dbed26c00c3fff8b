"""Text-only causal LMs: the hf backend (chat and Alpaca prompts), the collator, training, merge, tiny-lm."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from vlguard.errors import ConfigError
from vlguard.generation.base import GenerationRequest
from vlguard.generation.hf import HFBackend
from vlguard.models.resolve import ensure_tiny_model
from vlguard.train.collator import IGNORE_INDEX, CollatorError, ConversationCollator

# Stanford Alpaca's PROMPT_DICT, word for word (as the harmful fine-tuning papers use it).
ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\nClassify the sentiment.\n\n### Input:\na gorgeous film\n\n### Response:"
)
ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the "
    "request.\n\n### Instruction:\nName a colour.\n\n### Response:"
)


def _requests() -> list[GenerationRequest]:
    """Prompts of different lengths, some with a task input."""
    return [
        GenerationRequest(
            sample_id=f"s{i}",
            prompt="Tell me about the weather. "
            + "Please add every detail you know. " * (i % 4)
            + f"Day {i}.",
            input="It rained in the morning." if i % 3 == 0 else None,
        )
        for i in range(9)
    ]


@pytest.fixture(scope="module")
def lm_backend(tiny_lm_dir: Path) -> HFBackend:
    return HFBackend(str(tiny_lm_dir), batch_size=4, max_new_tokens=8)


@pytest.mark.parametrize("prompt_format", ["chat", "alpaca"])
def test_batched_equals_one_at_a_time_for_a_causal_lm(tiny_lm_dir: Path, prompt_format: str) -> None:
    backend = HFBackend(str(tiny_lm_dir), batch_size=4, max_new_tokens=8, prompt_format=prompt_format)
    requests = _requests()
    batched = backend.generate(requests)
    sequential = [backend.generate([r])[0] for r in requests]
    assert batched == sequential
    assert backend.stats["batch_fallbacks"] == 0, "every batch ran as a batch"
    assert len({g.response for g in batched}) > 4 and all(g.meta["completion_tokens"] > 0 for g in batched)
    assert backend.describe()["prompt_format"] == prompt_format
    assert backend.describe()["model_kind"] == "causal-lm"


def test_chat_and_alpaca_prompts_are_exact(tiny_lm_dir: Path, lm_backend: HFBackend) -> None:
    with_input = GenerationRequest("a", "Classify the sentiment.", input="a gorgeous film")
    assert (
        lm_backend.prompt_text(with_input) == "USER: Classify the sentiment.\n\na gorgeous film\nASSISTANT:"
    )
    system = HFBackend(str(tiny_lm_dir), max_new_tokens=2, system_prompt="Be safe.")
    assert system.prompt_text(GenerationRequest("b", "Hi?")) == "Be safe.\nUSER: Hi?\nASSISTANT:"

    alpaca = HFBackend(str(tiny_lm_dir), max_new_tokens=2, prompt_format="alpaca")
    assert alpaca.prompt_text(with_input) == ALPACA_WITH_INPUT
    assert alpaca.prompt_text(GenerationRequest("c", "Name a colour.")) == ALPACA_NO_INPUT
    # The prompt is tokenized with exactly one BOS in front (as Llama's tokenizer does for Alpaca prompts).
    ids = alpaca.model_inputs([ALPACA_NO_INPUT], [None])["input_ids"][0].tolist()
    assert ids[0] == alpaca.tokenizer.bos_token_id and ids.count(alpaca.tokenizer.bos_token_id) == 1
    assert ids[1:] == alpaca.tokenizer(ALPACA_NO_INPUT, add_special_tokens=False)["input_ids"]
    with pytest.raises(ConfigError, match="no system turn"):
        HFBackend(str(tiny_lm_dir), prompt_format="alpaca", system_prompt="Be safe.")
    # Booster's prompt (utils.py PROMPT_DICT, pred.py): the same with a newline after "### Response:"
    booster = HFBackend(str(tiny_lm_dir), max_new_tokens=2, prompt_format="alpaca-newline")
    assert booster.prompt_text(with_input) == ALPACA_WITH_INPUT + "\n"
    assert booster.prompt_text(GenerationRequest("c", "Name a colour.")) == ALPACA_NO_INPUT + "\n"
    with pytest.raises(ConfigError, match="prompt_format=alpaca-newline has no system turn"):
        HFBackend(str(tiny_lm_dir), prompt_format="alpaca-newline", system_prompt="Be safe.")
    with pytest.raises(ConfigError, match="prompt_format must be one of"):
        HFBackend(str(tiny_lm_dir), prompt_format="vicuna")


def test_a_template_that_writes_bos_gets_no_second_one(tiny_lm_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "bos-template"
    shutil.copytree(tiny_lm_dir, model)
    template = (model / "chat_template.jinja").read_text()
    (model / "chat_template.jinja").write_text("{{ bos_token }}" + template)
    backend = HFBackend(str(model), max_new_tokens=2)
    text = backend.prompt_text(GenerationRequest("a", "Hi?"))
    assert text.startswith("<s>USER: Hi?")
    ids = backend.model_inputs([text], [None])["input_ids"][0].tolist()
    assert ids.count(backend.tokenizer.bos_token_id) == 1


def test_text_only_model_refuses_images(lm_backend: HFBackend) -> None:
    request = GenerationRequest("img", "What is shown?", image=Image.new("RGB", (8, 8)))
    with pytest.raises(ConfigError, match=r"text-only causal-lm model.*--image-mode none"):
        lm_backend.generate([request])


def test_base_model_without_chat_template_needs_alpaca(tiny_lm_dir: Path, tmp_path: Path) -> None:
    base = tmp_path / "base-lm"
    shutil.copytree(tiny_lm_dir, base)
    (base / "chat_template.jinja").unlink()
    with pytest.raises(ConfigError, match=r"no chat template.*prompt_format=alpaca"):
        HFBackend(str(base))
    alpaca = HFBackend(str(base), prompt_format="alpaca", max_new_tokens=3)
    assert alpaca.generate([GenerationRequest("x", "Name a colour.")])[0].error is None


def test_tiny_lm_is_built_once_and_covers_english(tmp_path: Path, shared_data: Path) -> None:
    first = ensure_tiny_model("tiny-lm", cache_root=tmp_path)
    assert first.name.startswith("tiny-lm-tiny-")
    assert ensure_tiny_model("tiny-lm", cache_root=tmp_path) == first
    assert ensure_tiny_model("tiny-lm", seed=1, cache_root=tmp_path) != first
    with pytest.raises(ConfigError, match="unknown tiny-lm size"):
        ensure_tiny_model("tiny-lm:huge", cache_root=tmp_path)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(first)
    with open(shared_data / "advbench" / "harmful_behaviors.csv", newline="") as f:
        goals = [row["goal"] for row in csv.DictReader(f)][:200]
    reviews = [
        line.split("\t", 1)[1] for line in (shared_data / "sst2" / "dev.tsv").read_text().splitlines()[1:201]
    ]
    for texts, most in ((goals, 1.9), (reviews, 2.2)):
        tokens = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
        words = sum(len(t.split()) for t in texts)
        assert tokens / words < most, f"{tokens / words:.2f} tokens per word"


# ---- the collator on text conversations ------------------------------------------------------------


def _learned(batch: dict[str, Any], row: int, tokenizer: Any) -> list[str]:
    """The text of each contiguous run of learned positions (labels equal to the input ids)."""
    ids, labels = batch["input_ids"][row].tolist(), batch["labels"][row].tolist()
    runs: list[list[int]] = []
    previous = False
    for token, label in zip(ids, labels, strict=True):
        if label != IGNORE_INDEX:
            assert label == token
            if not previous:
                runs.append([])
            runs[-1].append(token)
        previous = label != IGNORE_INDEX
    return [tokenizer.decode(run) for run in runs]


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def test_labels_on_assistant_tokens_and_eos_for_a_text_conversation(tiny_lm_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_lm_dir)
    conversations = [
        {
            "id": "two-turns",
            "images": [],
            "messages": [
                {"role": "system", "content": [_text("Be helpful and safe.")]},
                {"role": "user", "content": [_text("Hello")]},
                {"role": "assistant", "content": [_text("Hi there.")]},
                {"role": "user", "content": "How do I pick a lock?"},
                {"role": "assistant", "content": "I'm sorry, I cannot help with that."},
            ],
        },
        {
            "id": "with-input",
            "images": [],
            "messages": [
                {"role": "user", "content": [_text("Classify the sentiment."), _text("a gorgeous film")]},
                {"role": "assistant", "content": [_text("positive")]},
            ],
        },
    ]
    collator = ConversationCollator(tokenizer)
    batch = collator(conversations)
    assert [s.lstrip(" ") for s in _learned(batch, 0, tokenizer)] == [
        "Hi there.</s>",
        "I'm sorry, I cannot help with that.</s>",
    ]
    assert [s.lstrip(" ") for s in _learned(batch, 1, tokenizer)] == ["positive</s>"]
    # The instruction and its input are joined as at evaluation (vlguard.prompts.user_text).
    row1 = tokenizer.decode(batch["input_ids"][1][batch["attention_mask"][1].bool()])
    assert row1 == "<s>USER: Classify the sentiment.\n\na gorgeous film\nASSISTANT: positive</s>\n"
    assert collator.stats["fallback_alignments"] == 0

    alpaca = ConversationCollator(tokenizer, prompt_format="alpaca")
    batch = alpaca([conversations[1]])
    ids = batch["input_ids"][0].tolist()
    assert tokenizer.decode(ids) == "<s>" + ALPACA_WITH_INPUT + "positive</s>"
    # Exactly the response and the EOS are learned; the prompt (and BOS) are not.
    assert _learned(batch, 0, tokenizer) == ["positive</s>"]
    n_prompt = len(tokenizer(ALPACA_WITH_INPUT)["input_ids"])  # with its BOS
    assert batch["labels"][0, :n_prompt].eq(IGNORE_INDEX).all()
    assert batch["labels"][0, -1].item() == tokenizer.eos_token_id
    with pytest.raises(CollatorError, match="one user turn and one answer"):
        alpaca([conversations[0] | {"messages": conversations[0]["messages"][1:]}])
    # Booster trains on its prompt with the newline, the response right after it.
    booster = ConversationCollator(tokenizer, prompt_format="alpaca-newline")
    batch = booster([conversations[1]])
    assert tokenizer.decode(batch["input_ids"][0].tolist()) == "<s>" + ALPACA_WITH_INPUT + "\npositive</s>"
    assert [s.lstrip(" ") for s in _learned(batch, 0, tokenizer)] == ["positive</s>"]


# ---- training, adapters and merge ----------------------------------------------------------------------


def _write_text_data(folder: Path) -> Path:
    rows = [
        {
            "id": f"t{i}",
            "messages": [
                {"role": "user", "content": f"Question number {i}: what is the capital of country {i}?"},
                {"role": "assistant", "content": f"The capital of country {i} is city {i}."},
            ],
        }
        for i in range(8)
    ]
    path = folder / "text.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _train_config(model: str, data: Path, out: Path, **overrides: Any) -> Any:
    from vlguard.train.config import load_config

    base = {
        "model.name_or_path": model,
        "data.recipe": "instructions",
        "data.instructions": str(data),
        "data.image_mode": "none",
        "method": "lora",
        "lora.r": 4,
        "lr": 1e-2,
        "warmup_ratio": 0.0,
        "lr_scheduler": "constant",
        "global_batch_size": 4,
        "per_device_batch_size": 4,
        "max_steps": 2,
        "save_steps": 100,
        "progress": False,
        "output_dir": str(out),
    }
    return load_config(None, {**base, **overrides})


@pytest.mark.slow
def test_lora_training_adapter_eval_and_merge_for_a_causal_lm(
    tiny_lm_dir: Path, tmp_path: Path, one_torch_thread: None
) -> None:
    from safetensors.torch import load_file

    from vlguard.train.merge import merge_adapter
    from vlguard.train.trainer import train

    data = _write_text_data(tmp_path)
    result = train(_train_config(str(tiny_lm_dir), data, tmp_path / "lora"))
    adapter = load_file(str(result.model_dir / "adapter_model.safetensors"))
    # The default LoRA targets hit the plain LM layout (model.layers.N.self_attn/mlp).
    assert adapter and all("lora_" in k and ".layers." in k for k in adapter)
    assert {k.split(".layers.")[1].split(".")[1] for k in adapter} == {"self_attn", "mlp"}
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in adapter.items()), "adapters were trained"
    assert (result.model_dir / "tokenizer_config.json").is_file()
    provenance = json.loads((result.model_dir / "vlguard_train.json").read_text())
    assert provenance["model_kind"] == "causal-lm"

    requests = _requests()
    base = HFBackend(str(tiny_lm_dir), batch_size=4, max_new_tokens=8)
    adapted = HFBackend(str(tiny_lm_dir), adapter=str(result.model_dir), batch_size=4, max_new_tokens=8)
    assert [g.response for g in adapted.generate(requests)] != [g.response for g in base.generate(requests)]

    merged_dir = merge_adapter(str(tiny_lm_dir), result.model_dir, tmp_path / "merged")
    merged = HFBackend(str(merged_dir), batch_size=4, max_new_tokens=8)
    assert merged.describe()["model_kind"] == "causal-lm"
    # Merged weights = base + adapter: the same logits (to float rounding) and the same greedy answers.
    inputs = adapted.model_inputs([adapted.prompt_text(r) for r in requests[:4]], [None] * 4)
    with torch.no_grad():
        a = adapted.model(**inputs).logits
        m = merged.model(**inputs).logits
    assert torch.allclose(a, m, atol=1e-4)
    assert merged.generate(requests) == adapted.generate(requests)


@pytest.mark.slow
def test_full_training_alpaca_format_and_resume_for_a_causal_lm(
    tiny_lm_dir: Path, tmp_path: Path, one_torch_thread: None
) -> None:
    from safetensors.torch import load_file

    from vlguard.train.trainer import train

    data = _write_text_data(tmp_path)
    common = {"method": "full", "prompt_format": "alpaca", "max_steps": 4, "save_steps": 2,
              "global_batch_size": 2, "per_device_batch_size": 2, "lr": 5e-3}  # fmt: skip
    straight = train(_train_config(str(tiny_lm_dir), data, tmp_path / "a", **common))
    before, after = (
        load_file(str(tiny_lm_dir / "model.safetensors")),
        load_file(str(straight.model_dir / "model.safetensors")),
    )
    assert any(not torch.equal(before[k], after[k]) for k in before), "full fine-tuning changed the weights"
    shutil.copytree(
        tmp_path / "a" / "checkpoints" / "checkpoint-2", tmp_path / "b" / "checkpoints" / "checkpoint-2"
    )
    resumed = train(
        _train_config(str(tiny_lm_dir), data, tmp_path / "b", resume_from_checkpoint="latest", **common)
    )
    assert resumed.global_step == 4
    b = load_file(str(resumed.model_dir / "model.safetensors"))
    assert all(torch.allclose(after[k], b[k], atol=1e-6) for k in after)


def test_text_model_with_images_in_the_training_data_fails_before_loading(
    tiny_lm_dir: Path, tmp_path: Path
) -> None:
    from vlguard.train.trainer import train

    data = _write_text_data(tmp_path)
    with pytest.raises(ConfigError, match=r"text-only causal-lm model: set data.image_mode=none"):
        train(_train_config(str(tiny_lm_dir), data, tmp_path / "run", **{"data.image_mode": "original"}))
    assert not (tmp_path / "run").exists()


# ---- the command line ------------------------------------------------------------------------------


def test_eval_tiny_lm_on_advbench_end_to_end(
    shared_data: Path, tmp_path: Path, tiny_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vlguard.cli.main import main

    run_dir = tmp_path / "run"
    args = ["eval", "--model", "tiny-lm", "--bench", "advbench", "--data", str(shared_data / "advbench"),
            "--limit", "8", "--max-new-tokens", "6", "--run-dir", str(run_dir), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    assert "ASR" in capsys.readouterr().out
    generations = [json.loads(line) for line in (run_dir / "generations.jsonl").read_text().splitlines()]
    assert len(generations) == 8 and all(g["error"] is None and g["response"] for g in generations)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["backend"]["model_kind"] == "causal-lm" and manifest["backend"]["prompt_format"] == "chat"

    # The Alpaca format is a result field: it cannot be mixed into the chat run's folder.
    assert main([*args, "--backend-option", "prompt_format=alpaca"]) == 2
    assert "prompt_format" in capsys.readouterr().err
    alpaca_dir = tmp_path / "alpaca"
    assert (
        main(
            [
                *args[:-3],
                "--run-dir",
                str(alpaca_dir),
                "--no-progress",
                "--backend-option",
                "prompt_format=alpaca",
            ]
        )
        == 0
    )


def test_eval_text_model_with_images_is_a_clear_error(
    vlguard_data_dir: Path, tmp_path: Path, tiny_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vlguard.cli.main import main

    args = ["eval", "--model", "tiny-lm", "--bench", "vlguard-test", "--data", str(vlguard_data_dir),
            "--image-mode", "blank", "--limit", "3", "--max-new-tokens", "2", "--run-dir", str(tmp_path / "r"),
            "--no-progress"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--image-mode none" in err and "Traceback" not in err
    assert (
        not (tmp_path / "r" / "generations.jsonl").exists()
        or not (tmp_path / "r" / "generations.jsonl").read_text()
    )
