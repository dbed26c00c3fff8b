"""A tiny random-weight Idefics3 (SmolVLM architecture) built from a config, for tests.

A second architecture beside the tiny LLaVA: SigLIP-style vision encoder, pixel-shuffle connector,
image splitting into tiles with ``<row_i_col_j>`` markers, and SmolVLM's chat template (which, like
most real templates, has no generation markers). No download; works without torchvision.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from vlguard.models.tiny import train_tokenizer

# SmolVLM-Instruct's chat template.
SMOLVLM_CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

_EXTRA_SPECIAL = [
    "<|im_start|>",
    "<fake_token_around_image>",
    "<global-img>",
    "<end_of_utterance>",
    *(f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)),
]


def build_tiny_idefics3(output_dir: str | Path, texts: Iterable[str] = (), seed: int = 0) -> Path:
    """Build a tiny Idefics3 (32 px tiles, 8 px patches, 4 image tokens per tile), save it, return the dir."""
    import torch
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessorPil,
        Idefics3Processor,
        Idefics3VisionConfig,
        LlamaConfig,
    )

    tokenizer = train_tokenizer(texts, 1024)
    tokenizer.add_special_tokens({"additional_special_tokens": _EXTRA_SPECIAL})  # type: ignore[attr-defined]
    tokenizer.padding_side = "left"  # type: ignore[attr-defined]
    image_size, patch_size, scale_factor = 32, 8, 2
    image_seq_len = (image_size // patch_size) ** 2 // scale_factor**2
    processor = Idefics3Processor(
        image_processor=Idefics3ImageProcessorPil(
            size={"longest_edge": 2 * image_size}, max_image_size={"longest_edge": image_size}
        ),
        tokenizer=tokenizer,
        image_seq_len=image_seq_len,
        chat_template=SMOLVLM_CHAT_TEMPLATE,
    )
    tokenizer = processor.tokenizer
    config = Idefics3Config(
        vision_config=Idefics3VisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=image_size,
            patch_size=patch_size,
        ),
        text_config=LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=1024,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.convert_tokens_to_ids("<end_of_utterance>"),
            tie_word_embeddings=False,
        ),
        image_token_id=processor.image_token_id,
        scale_factor=scale_factor,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )  # type: ignore[call-arg]
    torch.manual_seed(seed)
    model = Idefics3ForConditionalGeneration(config)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir, safe_serialization=True)
    processor.save_pretrained(output_dir)
    return output_dir
