"""A tiny Llama-style text-only causal LM built from a config, with a tokenizer trained locally.

The text-only counterpart of :mod:`vlguard.models.tiny` (``--model tiny-lm``): random weights, no
download, saved to a folder and loaded through ``AutoModelForCausalLM`` + ``AutoTokenizer`` like any
Hub model, so tests, demos and CPU experiments run the same code path as real LLMs.

The tokenizer is a byte-level BPE (every string encodes; no unknown tokens) trained, in about a
second, on text that ships with vlguard and nothing else:

* ``tiny_lm_words.txt``: about 1,100 everyday English words written for this purpose (function words,
  common verbs and nouns, film-review and sentiment words, safety vocabulary), in lower case and
  capitalised;
* the instructions and responses of the bundled sample dataset (``vlguard/sample_data/train.json``);
* the Alpaca prompt strings and the chat template's role words.

Ordinary English (SST-2 reviews, AdvBench requests) then takes about one or two tokens per word
(measured in ``tests/test_tiny_lm.py``). Its chat template is the tiny VLM's
(``USER: ... ASSISTANT: ...</s>``), which accepts string or list message content; like Llama's tokenizer,
it puts ``<s>`` first when special tokens are added.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from vlguard.models.tiny import TINY_CHAT_TEMPLATE, train_tokenizer

logger = logging.getLogger(__name__)

WORDS_FILE = "tiny_lm_words.txt"


@dataclass(frozen=True)
class TinyLMSize:
    """Shape of the tiny LM. ``tiny`` is for tests; ``small`` for CPU experiments."""

    hidden: int = 64
    layers: int = 2
    heads: int = 4
    vocab_size: int = 4096
    max_positions: int = 1024


TINY_LM_SIZES: dict[str, TinyLMSize] = {
    "tiny": TinyLMSize(),
    "small": TinyLMSize(hidden=256, layers=4, heads=8, vocab_size=8192, max_positions=2048),
}


def _words() -> list[str]:
    text = resources.files("vlguard.models").joinpath(WORDS_FILE).read_text(encoding="utf-8")
    return [w for line in text.splitlines() if line and not line.startswith("#") for w in line.split()]


def _sample_texts() -> list[str]:
    from vlguard.data.sample import sample_dataset_dir

    rows = json.loads((sample_dataset_dir() / "train.json").read_text(encoding="utf-8"))
    return [text for row in rows for pair in row["instr-resp"] for text in pair.values()]


def tokenizer_corpus() -> Iterator[str]:
    """The texts the tiny LM's tokenizer is trained on (see the module docstring), in a fixed order."""
    from vlguard.prompts import ALPACA_PROMPT_NO_INPUT, ALPACA_PROMPT_WITH_INPUT

    words = _words()
    # Frequent forms first and more often: BPE merges the most frequent pairs first, so lower-case
    # words with a leading space (the usual form inside a sentence) become whole tokens before rarer forms.
    for _ in range(3):
        yield " ".join(words)
    yield " ".join(w.capitalize() for w in words)
    yield "\n".join(w.capitalize() for w in words)
    yield from _sample_texts()
    yield ALPACA_PROMPT_WITH_INPUT
    yield ALPACA_PROMPT_NO_INPUT
    yield "USER: ASSISTANT: " * 4


def corpus_digest() -> str:
    """SHA-256 of the tokenizer corpus: part of the cache key, so an edited corpus rebuilds the model."""
    digest = hashlib.sha256()
    for text in tokenizer_corpus():
        digest.update(text.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def build_tiny_lm(output_dir: str | Path, size: str | TinyLMSize = "tiny", seed: int = 0) -> Path:
    """Build a tiny random-weight Llama causal LM and its tokenizer, save both to ``output_dir``, return it.

    The same ``size`` and ``seed`` give the same model, byte for byte.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    shape = TINY_LM_SIZES[size] if isinstance(size, str) else size
    tokenizer = train_tokenizer(list(tokenizer_corpus()), shape.vocab_size, image_token=None, add_bos=True)
    tokenizer.chat_template = TINY_CHAT_TEMPLATE  # type: ignore[attr-defined]
    config = LlamaConfig(
        vocab_size=len(tokenizer),  # type: ignore[arg-type]
        hidden_size=shape.hidden,
        intermediate_size=shape.hidden * 2,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.heads,
        max_position_embeddings=shape.max_positions,
        bos_token_id=tokenizer.bos_token_id,  # type: ignore[attr-defined]
        eos_token_id=tokenizer.eos_token_id,  # type: ignore[attr-defined]
        pad_token_id=tokenizer.pad_token_id,  # type: ignore[attr-defined]
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id  # type: ignore[attr-defined]
    model.generation_config.eos_token_id = tokenizer.eos_token_id  # type: ignore[attr-defined]
    model.generation_config.bos_token_id = tokenizer.bos_token_id  # type: ignore[attr-defined]
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir, safe_serialization=True)
    tokenizer.save_pretrained(output_dir)  # type: ignore[attr-defined]
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("built tiny LM (%s parameters) in %s", f"{n_params:,}", output_dir)
    return output_dir
