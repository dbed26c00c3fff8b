"""Shapes of real VLMs, for building random-weight stand-ins of the same size (benchmarks)."""

from __future__ import annotations

from typing import Any

# LLaVA-1.5-7B: CLIP ViT-L/14 at 336 px (576 image tokens) + Llama-2-7B.
LLAVA_15_7B_VISION: dict[str, Any] = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "image_size": 336,
    "patch_size": 14,
    "projection_dim": 768,
}
LLAVA_15_7B_TEXT: dict[str, Any] = {
    "vocab_size": 32064,
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "max_position_embeddings": 4096,
}

# The chat template of the Hub model llava-hf/llava-1.5-7b-hf (its chat_template.json), character for
# character (public copies: e.g. openvinotoolkit/openvino.genai src/cpp/src/tokenizer.cpp, which keeps it
# to recognise "llava-1.5, llava-v1.6-vicuna"). With a system message it renders LLaVA's llava_v1
# prompt: "<system> USER: <image>\n<question> ASSISTANT:" (tests/test_preset_paper.py).
LLAVA_15_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}"
    "{% endif %}{# Render all images first #}{% for content in message['content'] | selectattr('type', "
    "'equalto', 'image') %}{{ '<image>\\n' }}{% endfor %}{# Render all text next #}{% if message['role'] "
    "!= 'assistant' %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' '}}{% endfor %}{% else %}{% for content in message['content'] | "
    "selectattr('type', 'equalto', 'text') %}{% generation %}{{ content['text'] + ' '}}{% endgeneration %}"
    "{% endfor %}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)
