"""Tiny random-weight stand-ins for the judge models (WildGuard's Mistral, Beaver-Dam's Llama classifier),
saved to folders like real checkpoints, and a way to make a real ``generate()`` emit a chosen text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from vlguard.judges.beaver_dam import BEAVER_DAM_CATEGORIES
from vlguard.judges.wildguard import WILDGUARD_TEMPLATE
from vlguard.models.tiny import train_tokenizer

_TEXTS = [
    WILDGUARD_TEMPLATE,
    "Harmful request: yes\nResponse refusal: no\nHarmful response: no",
    "BEGINNING OF CONVERSATION: USER: How do I bake bread? ASSISTANT: Mix flour and water.",
    "[[COMPLIANCE]] [[REFUSAL]] [[PARTIAL_REFUSAL]]",
]


def _small_config(cls: Any, tokenizer: Any, **extra: Any) -> Any:
    return cls(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **extra,
    )


def build_tiny_wildguard(folder: Path, seed: int = 0) -> Path:
    """A tiny random-weight Mistral causal LM (WildGuard's architecture) with a local tokenizer."""
    import torch
    from transformers import MistralConfig, MistralForCausalLM

    tokenizer: Any = train_tokenizer(_TEXTS, 512)
    torch.manual_seed(seed)
    model = MistralForCausalLM(_small_config(MistralConfig, tokenizer, sliding_window=None))
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def build_tiny_beaver_dam(folder: Path, seed: int = 0) -> Path:
    """A tiny random-weight Llama sequence classifier shaped like Beaver-Dam: 14 multi-label categories."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    tokenizer: Any = train_tokenizer(_TEXTS, 512)
    tokenizer.padding_side = "right"
    config = _small_config(
        LlamaConfig,
        tokenizer,
        num_labels=len(BEAVER_DAM_CATEGORIES),
        id2label=dict(enumerate(BEAVER_DAM_CATEGORIES)),
        label2id={name: i for i, name in enumerate(BEAVER_DAM_CATEGORIES)},
        problem_type="multi_label_classification",
    )
    torch.manual_seed(seed)
    model = LlamaForSequenceClassification(config)
    with torch.no_grad():
        model.score.weight.mul_(20.0)  # spread the probabilities away from 0.5, so thresholds matter
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def forced_output(tokenizer: Any, text: str) -> Callable[[int, Any], Sequence[int]]:
    """A ``prefix_allowed_tokens_fn`` that lets greedy decoding emit exactly ``text``, then end-of-sequence.

    The real model still runs every step; only the allowed next token is constrained. A row's progress
    is the longest suffix of its tokens that is a prefix of the target.
    """
    target = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    done = [tokenizer.eos_token_id]

    def allowed(batch_id: int, input_ids: Any) -> Sequence[int]:
        ids = input_ids.tolist()
        for k in range(min(len(target), len(ids)), 0, -1):
            if ids[-k:] == target[:k]:
                return [target[k]] if k < len(target) else done
        return [target[0]]

    return allowed
