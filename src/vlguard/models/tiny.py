"""A tiny LLaVA-architecture VLM built from a config, with a tokenizer trained locally.

No download: the tokenizer is a byte-level BPE trained on the given texts in well under a second,
the weights are random. The model is saved to a folder and then loaded like any Hugging Face model
(``AutoModelForImageTextToText`` + ``AutoProcessor``), so tests and the demo exercise the same code
path as real models.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

IMAGE_TOKEN = "<image>"
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", IMAGE_TOKEN]

# LLaVA-1.5 style chat template ("USER: <image>\n... ASSISTANT: ..."), with no generation markers,
# like most real models' templates.
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}"
    "{% endif %}{{ '\n' }}"
    "{% else %}"
    "{{ 'USER: ' if message['role'] == 'user' else 'ASSISTANT: ' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<image>\n' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% if message['role'] == 'assistant' %}{{ '</s>' }}{% endif %}{{ '\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


@dataclass(frozen=True)
class TinyVLMSize:
    """Shape of the tiny VLM. ``tiny`` is for tests; ``small`` for CPU experiments."""

    image_size: int = 32
    patch_size: int = 8
    vision_hidden: int = 32
    vision_layers: int = 2
    text_hidden: int = 64
    text_layers: int = 2
    text_heads: int = 4
    vocab_size: int = 1024
    max_positions: int = 512


TINY_SIZES: dict[str, TinyVLMSize] = {
    "tiny": TinyVLMSize(),
    "small": TinyVLMSize(text_hidden=256, text_layers=4, text_heads=8, vocab_size=4096, max_positions=1024),
}

# A few lines of mild, generic text so that the tokenizer knows common words even when trained
# on a handful of samples.
_BASE_CORPUS = [
    "USER: ASSISTANT: What is shown in the image? Describe the picture in detail.",
    "I'm sorry, but I can't help with that request. It could cause harm.",
    "Sure, here is a short answer. The image shows a red square on a white background.",
    "The quick brown fox jumps over the lazy dog. 0 1 2 3 4 5 6 7 8 9.",
]


def train_tokenizer(
    texts: Iterable[str], vocab_size: int, *, image_token: str | None = IMAGE_TOKEN, add_bos: bool = False
) -> object:
    """Train a byte-level BPE tokenizer on ``texts`` and wrap it as a transformers fast tokenizer.

    ``image_token=None`` makes a text-only tokenizer (no image placeholder among its special tokens).
    ``add_bos``: tokenizing with special tokens puts ``<s>`` first, as Llama's tokenizer does.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS if image_token is not None else SPECIAL_TOKENS[:4],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([*_BASE_CORPUS, *texts], trainer=trainer)
    if add_bos:
        bos_id = tok.token_to_id("<s>")
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos_id)]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": image_token} if image_token is not None else {},
        padding_side="left",
    )


def build_tiny_vlm(
    output_dir: str | Path,
    texts: Iterable[str] = (),
    size: str | TinyVLMSize = "tiny",
    seed: int = 0,
) -> Path:
    """Build a tiny random-weight LLaVA and its processor, save both to ``output_dir``, return it.

    ``texts`` train the tokenizer (e.g. the instructions and responses it will see). The same
    ``texts``, ``size`` and ``seed`` give the same model, byte for byte.
    """
    import torch
    from transformers import (
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    shape = TINY_SIZES[size] if isinstance(size, str) else size
    output_dir = Path(output_dir)
    tokenizer = train_tokenizer(texts, shape.vocab_size)
    vocab = len(tokenizer)  # type: ignore[arg-type]
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)  # type: ignore[attr-defined]

    vision = CLIPVisionConfig(
        image_size=shape.image_size,
        patch_size=shape.patch_size,
        hidden_size=shape.vision_hidden,
        intermediate_size=shape.vision_hidden * 2,
        num_hidden_layers=shape.vision_layers,
        num_attention_heads=max(1, shape.vision_hidden // 16),
        projection_dim=shape.vision_hidden,
    )
    text = LlamaConfig(
        vocab_size=vocab,
        hidden_size=shape.text_hidden,
        intermediate_size=shape.text_hidden * 2,
        num_hidden_layers=shape.text_layers,
        num_attention_heads=shape.text_heads,
        num_key_value_heads=shape.text_heads,
        max_position_embeddings=shape.max_positions,
        bos_token_id=tokenizer.bos_token_id,  # type: ignore[attr-defined]
        eos_token_id=tokenizer.eos_token_id,  # type: ignore[attr-defined]
        pad_token_id=tokenizer.pad_token_id,  # type: ignore[attr-defined]
        tie_word_embeddings=False,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=image_token_id,
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
        projector_hidden_act="gelu",
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id  # type: ignore[attr-defined]
    model.generation_config.eos_token_id = tokenizer.eos_token_id  # type: ignore[attr-defined]
    model.generation_config.bos_token_id = tokenizer.bos_token_id  # type: ignore[attr-defined]

    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": shape.image_size},
        crop_size={"height": shape.image_size, "width": shape.image_size},
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=shape.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # the CLS feature is dropped by the "default" strategy
        chat_template=TINY_CHAT_TEMPLATE,
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir, safe_serialization=True)
    processor.save_pretrained(output_dir)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("built tiny VLM (%s parameters) in %s", f"{n_params:,}", output_dir)
    return output_dir
