"""Tiny random-weight builds of many Hugging Face VLM architectures, for the architecture matrix.

Each builder writes a folder that loads like the real checkpoint (``AutoModelForImageTextToText`` +
``AutoProcessor``, or vlguard's loader without torchvision): the real model and processor classes with
minimal configs (hidden sizes 16–64, one or two layers, images of 28–64 px), a byte-level BPE tokenizer
trained locally with the architecture's special tokens, and a chat template written after the official
one (same turn markers, same end-of-turn token, or the lack of one). Nothing is downloaded.

``TINY_ARCHITECTURES`` maps a name to a :class:`TinyArchitecture`: its builder and what the checks need
to know (the end-of-turn token after answers, the projector module, whether prompts need an image,
whether torchvision is required). Building one takes well under a second on a CPU.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PretrainedConfig

# ---- shared pieces --------------------------------------------------------------------------------

_CORPUS = [
    "What is shown in the image? Describe the picture in detail. What colour is the square?",
    "I'm sorry, but I can't help with that request. It could cause harm.",
    "Sure, here is a short answer. The image shows a red square on a white background.",
    "The quick brown fox jumps over the lazy dog. 0 1 2 3 4 5 6 7 8 9.",
    "user assistant system model USER ASSISTANT Assistant User",
]


def _tokenizer(
    special: Sequence[str],
    named: dict[str, str] | None = None,
    *,
    bos: str | None = "<s>",
    eos: str = "</s>",
    pad: str = "<pad>",
    unk: str = "<unk>",
    vocab_size: int = 600,
    add_bos: bool = False,
) -> Any:
    """A byte-level BPE fast tokenizer with these special tokens; ``named`` become tokenizer attributes."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    named = dict(named or {})
    base = [t for t in (unk, bos, eos, pad) if t is not None]
    specials = list(dict.fromkeys([*base, *special, *named.values()]))
    tok = Tokenizer(models.BPE(unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size + len(specials),
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    if add_bos and bos is not None:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", special_tokens=[(bos, tok.token_to_id(bos))]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token=unk,
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        extra_special_tokens=named,
        padding_side="left",
    )


def _llama_text(tokenizer: Any, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments of a 2-layer, 64-wide Llama-style text config for ``tokenizer``."""
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 2048,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "tie_word_embeddings": False,
        **overrides,
    }


def _siglip(image_size: int, patch_size: int, **overrides: Any) -> Any:
    from transformers import SiglipVisionConfig

    return SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch_size,
        **overrides,
    )


def _clip(image_size: int, patch_size: int) -> Any:
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch_size,
        projection_dim=32,
    )


def _save(
    model_cls: Any,
    config: PretrainedConfig,
    processor: Any,
    out: Path,
    seed: int,
    eos: Sequence[str] = (),
    open_gates: bool = False,
) -> Path:
    """Instantiate with ``seed``, set generation ids, save model + processor.

    ``open_gates``: set zero-initialised gates (Mllama's cross-attention gates) to 0.5, as in a trained
    model; at zero the image would not reach the language model at all.
    """
    import torch

    torch.manual_seed(seed)
    model = model_cls(config)
    if open_gates:
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name.endswith("_gate") and param.numel() == 1:
                    param.fill_(0.5)
    tokenizer = processor.tokenizer
    stop = [tokenizer.convert_tokens_to_ids(t) for t in eos] or [tokenizer.eos_token_id]
    model.generation_config.eos_token_id = stop if len(stop) > 1 else stop[0]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out


def _video_processor(class_name: str, config: dict[str, Any]) -> Any:
    """The architecture's video processor where torchvision exists, else None (built without it)."""
    import transformers

    from vlguard.models.loading import torchvision_available

    return getattr(transformers, class_name)(**config) if torchvision_available() else None


def _video_less(processor_cls: Any) -> Any:
    from vlguard.models.loading import processor_without_video, torchvision_available

    return processor_cls if torchvision_available() else processor_without_video(processor_cls)


def _write_video_config(out: Path, class_name: str, config: dict[str, Any]) -> None:
    """The video processor config a real checkpoint ships, written by hand when it was built without
    torchvision (so that ``AutoProcessor`` loads the folder where torchvision exists)."""
    path = out / "video_preprocessor_config.json"
    if not path.is_file():
        path.write_text(json.dumps({"video_processor_type": class_name, **config}, indent=2) + "\n")


# ---- chat templates (after the official ones) -------------------------------------------------------

# Content may be a string or a list of typed parts; these two macros keep the templates short.
_PARTS = (
    "{% macro parts(content, image) %}{% if content is string %}{{ content }}{% else %}"
    "{% for p in content %}{% if p['type'] == 'image' %}{{ image }}{% elif p['type'] == 'text' %}"
    "{{ p['text'] }}{% endif %}{% endfor %}{% endif %}{% endmacro %}"
)

QWEN2_VL_TEMPLATE = (
    _PARTS + "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{{ parts(message['content'], '<|vision_start|><|image_pad|><|vision_end|>') }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QWEN3_VL_TEMPLATE = (
    _PARTS + "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ parts(message['content'], '<|vision_start|><|image_pad|><|vision_end|>') }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# LLaVA-OneVision (Qwen2 LM): "<|im_start|>user <image>\n..." with the image first.
ONEVISION_TEMPLATE = (
    _PARTS + "{% for message in messages %}<|im_start|>{{ message['role'] + ' ' }}"
    "{{ parts(message['content'], '<image>\n') }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# llava-hf/llava-v1.6-mistral-7b-hf: answers end with a literal "<\\s>", which is not a special token.
LLAVA_NEXT_TEMPLATE = (
    _PARTS + "{% for message in messages %}{% if message['role'] == 'system' %}"
    "{{ '<<SYS>>\n' + parts(message['content'], '') + '\n<</SYS>>\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ '[INST] ' }}{{ parts(message['content'], '<image>\n') }}{{ ' [/INST]' }}"
    "{% else %}{{ ' ' + parts(message['content'], '') + '<\\\\s> ' }}{% endif %}{% endfor %}"
)
SMOLVLM_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
GEMMA3_TEMPLATE = (
    _PARTS + "{{ bos_token }}{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{% if role == 'system' %}{% set role = 'user' %}{% endif %}"
    "<start_of_turn>{{ role }}\n{{ parts(message['content'], '<start_of_image>') | trim }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
# PaliGemma checkpoints ship no chat template; this one is PaliGemma's prefix/suffix layout:
# "<image>question\n" then the answer and <eos>.
PALIGEMMA_TEMPLATE = (
    _PARTS + "{% for message in messages %}{% if message['role'] == 'assistant' %}"
    "{{ parts(message['content'], '') }}<eos>{% else %}{{ parts(message['content'], '<image>') }}\n"
    "{% endif %}{% endfor %}"
)
MLLAMA_TEMPLATE = (
    _PARTS + "{{ bos_token }}{% for message in messages %}"
    "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{{ parts(message['content'], '<|image|>') | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
INTERNVL_TEMPLATE = (
    _PARTS + "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ parts(message['content'], '<IMG_CONTEXT>\n') }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
AYA_VISION_TEMPLATE = (
    _PARTS + "{{ bos_token }}{% for message in messages %}<|START_OF_TURN_TOKEN|>"
    "{% if message['role'] == 'user' %}<|USER_TOKEN|>{% elif message['role'] == 'system' %}<|SYSTEM_TOKEN|>"
    "{% else %}<|CHATBOT_TOKEN|>{% endif %}{{ parts(message['content'], '<image>') }}<|END_OF_TURN_TOKEN|>"
    "{% endfor %}{% if add_generation_prompt %}<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>{% endif %}"
)
LLAMA4_TEMPLATE = (
    _PARTS
    + "{{ bos_token }}{% for message in messages %}<|header_start|>{{ message['role'] }}<|header_end|>\n\n"
    "{{ parts(message['content'], '<|image|>') }}<|eot|>{% endfor %}"
    "{% if add_generation_prompt %}<|header_start|>assistant<|header_end|>\n\n{% endif %}"
)
MISTRAL3_TEMPLATE = (
    _PARTS + "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "[INST]{{ parts(message['content'], '[IMG]') }}[/INST]{% elif message['role'] == 'assistant' %}"
    "{{ parts(message['content'], '') }}</s>{% endif %}{% endfor %}"
)


# ---- builders ---------------------------------------------------------------------------------------


def build_llava(out: Path, seed: int = 0) -> Path:
    """LLaVA-1.5: CLIP + Llama (vlguard's own tiny VLM)."""
    from vlguard.models.tiny import build_tiny_vlm

    return build_tiny_vlm(out, seed=seed)


def build_llava_next(out: Path, seed: int = 0) -> Path:
    """LLaVA-NeXT (v1.6): CLIP + Llama, any-resolution tiles, the official Mistral template."""
    from transformers import (
        LlamaConfig,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessorPil,
        LlavaNextProcessor,
    )

    tokenizer = _tokenizer([], {"image_token": "<image>"}, add_bos=True)
    size = 28
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": size},
        crop_size={"height": size, "width": size},
        image_grid_pinpoints=[[size, size], [size, 2 * size], [2 * size, size]],
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=LLAVA_NEXT_TEMPLATE,
    )
    config = LlavaNextConfig(
        vision_config=_clip(size, 14),
        text_config=LlamaConfig(**_llama_text(tokenizer)),
        image_token_index=tokenizer.image_token_id,
        image_grid_pinpoints=[[size, size], [size, 2 * size], [2 * size, size]],
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    return _save(LlavaNextForConditionalGeneration, config, processor, out, seed)


def build_llava_onevision(out: Path, seed: int = 0) -> Path:
    """LLaVA-OneVision: SigLIP + Qwen2, any-resolution tiles; its processor declares a video processor."""
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessorPil,
        LlavaOnevisionProcessor,
        Qwen2Config,
    )

    tokenizer = _tokenizer(
        ["<|im_start|>", "<|im_end|>"],
        {"image_token": "<image>", "video_token": "<video>"},
        bos=None,
        eos="<|im_end|>",
        pad="<|endoftext|>",
    )
    size = 28
    pinpoints = [[size, size], [size, 2 * size], [2 * size, size]]
    image_processor = LlavaOnevisionImageProcessorPil(
        size={"height": size, "width": size}, image_grid_pinpoints=pinpoints
    )
    video = {"size": {"height": size, "width": size}}
    processor = _video_less(LlavaOnevisionProcessor)(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=_video_processor("LlavaOnevisionVideoProcessor", video),
        num_image_tokens=(size // 14) ** 2,
        vision_feature_select_strategy="full",
        chat_template=ONEVISION_TEMPLATE,
    )
    config = LlavaOnevisionConfig(
        vision_config=_siglip(size, 14),
        text_config=Qwen2Config(**_llama_text(tokenizer)),
        image_token_index=tokenizer.image_token_id,
        video_token_index=tokenizer.video_token_id,
        image_grid_pinpoints=pinpoints,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        vision_aspect_ratio="anyres_max_9",
    )
    path = _save(LlavaOnevisionForConditionalGeneration, config, processor, out, seed)
    _write_video_config(path, "LlavaOnevisionVideoProcessor", video)
    return path


def _qwen_tokenizer() -> Any:
    return _tokenizer(
        ["<|im_start|>", "<|vision_start|>", "<|vision_end|>"],
        {"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
        bos=None,
        eos="<|im_end|>",
        pad="<|endoftext|>",
    )


def _qwen_image_processor(patch_size: int) -> Any:
    from transformers import Qwen2VLImageProcessorPil

    # 2 × 2 patches merge into one token; images are resized to at most 32 × 32 patches' worth of pixels.
    return Qwen2VLImageProcessorPil(
        patch_size=patch_size,
        merge_size=2,
        temporal_patch_size=2,
        size={"shortest_edge": (2 * patch_size) ** 2, "longest_edge": (4 * patch_size) ** 2},
    )


def _build_qwen(out: Path, seed: int, family: str) -> Path:
    import transformers

    names = {
        "qwen2_vl": (
            "Qwen2VLConfig",
            "Qwen2VLForConditionalGeneration",
            "Qwen2VLProcessor",
            "Qwen2VLVideoProcessor",
        ),
        "qwen2_5_vl": (
            "Qwen2_5_VLConfig",
            "Qwen2_5_VLForConditionalGeneration",
            "Qwen2_5_VLProcessor",
            "Qwen2VLVideoProcessor",
        ),
        "qwen3_vl": (
            "Qwen3VLConfig",
            "Qwen3VLForConditionalGeneration",
            "Qwen3VLProcessor",
            "Qwen3VLVideoProcessor",
        ),
    }[family]
    config_cls, model_cls, processor_cls = (getattr(transformers, n) for n in names[:3])
    tokenizer = _qwen_tokenizer()
    patch = 16 if family == "qwen3_vl" else 14
    video = {"patch_size": patch, "merge_size": 2, "temporal_patch_size": 2}
    processor = _video_less(processor_cls)(
        image_processor=_qwen_image_processor(patch),
        tokenizer=tokenizer,
        video_processor=_video_processor(names[3], video),
        chat_template=QWEN3_VL_TEMPLATE if family == "qwen3_vl" else QWEN2_VL_TEMPLATE,
    )
    text = _llama_text(tokenizer, rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3]})
    vision: dict[str, Any] = {"depth": 2, "hidden_size": 32, "num_heads": 2, "patch_size": patch,
                              "spatial_merge_size": 2, "temporal_patch_size": 2}  # fmt: skip
    if family == "qwen2_vl":
        vision.update(embed_dim=32, mlp_ratio=2, hidden_size=64)
    elif family == "qwen2_5_vl":
        vision.update(intermediate_size=64, out_hidden_size=64, window_size=56, fullatt_block_indexes=[1])
    else:
        text["rope_parameters"] = {
            "rope_type": "default",
            "mrope_section": [2, 3, 3],
            "mrope_interleaved": True,
        }
        vision.update(
            intermediate_size=64, out_hidden_size=64, num_position_embeddings=64, deepstack_visual_indexes=[0]
        )
    config = config_cls(
        text_config=text,
        vision_config=vision,
        image_token_id=tokenizer.image_token_id,
        video_token_id=tokenizer.video_token_id,
        vision_start_token_id=tokenizer.convert_tokens_to_ids("<|vision_start|>"),
        vision_end_token_id=tokenizer.convert_tokens_to_ids("<|vision_end|>"),
        tie_word_embeddings=False,
    )
    path = _save(model_cls, config, processor, out, seed, eos=["<|im_end|>"])
    _write_video_config(path, names[3], video)
    return path


def build_qwen2_vl(out: Path, seed: int = 0) -> Path:
    """Qwen2-VL: its ViT with a patch merger inside ``visual`` (the projector), Qwen2 LM with M-RoPE."""
    return _build_qwen(out, seed, "qwen2_vl")


def build_qwen2_5_vl(out: Path, seed: int = 0) -> Path:
    """Qwen2.5-VL: window-attention ViT, ``visual.merger`` projector."""
    return _build_qwen(out, seed, "qwen2_5_vl")


def build_qwen3_vl(out: Path, seed: int = 0) -> Path:
    """Qwen3-VL: ``visual.merger`` plus deepstack mergers (projectors inside ``visual``), Qwen3 LM."""
    return _build_qwen(out, seed, "qwen3_vl")


def build_idefics3(out: Path, seed: int = 0) -> Path:
    """Idefics3: SigLIP-style encoder, pixel-shuffle ``connector``, image tiles (vlguard's tiny builder)."""
    from vlguard.models.tiny_idefics3 import build_tiny_idefics3

    return build_tiny_idefics3(out, seed=seed)


def build_smolvlm(out: Path, seed: int = 0) -> Path:
    """SmolVLM: the Idefics3 layout under its own classes; its processor declares a video processor."""
    from transformers import (
        LlamaConfig,
        SmolVLMConfig,
        SmolVLMForConditionalGeneration,
        SmolVLMImageProcessorPil,
        SmolVLMProcessor,
        SmolVLMVisionConfig,
    )

    rows = [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)]
    tokenizer = _tokenizer(
        ["<|im_start|>", *rows],
        {
            "image_token": "<image>",
            "fake_image_token": "<fake_token_around_image>",
            "global_image_token": "<global-img>",
            "end_of_utterance_token": "<end_of_utterance>",
            "video_token": "<video>",
        },
        eos="<end_of_utterance>",
    )
    size, patch, scale = 32, 8, 2
    image_seq_len = (size // patch) ** 2 // scale**2
    video = {"size": {"longest_edge": 2 * size}}
    processor = _video_less(SmolVLMProcessor)(
        image_processor=SmolVLMImageProcessorPil(
            size={"longest_edge": 2 * size}, max_image_size={"longest_edge": size}
        ),
        tokenizer=tokenizer,
        video_processor=_video_processor("SmolVLMVideoProcessor", video),
        image_seq_len=image_seq_len,
        chat_template=SMOLVLM_TEMPLATE,
    )
    config = SmolVLMConfig(
        vision_config=SmolVLMVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=size,
            patch_size=patch,
        ),
        text_config=LlamaConfig(**_llama_text(tokenizer)),
        image_token_id=tokenizer.image_token_id,
        scale_factor=scale,
        tie_word_embeddings=False,
    )
    path = _save(SmolVLMForConditionalGeneration, config, processor, out, seed)
    _write_video_config(path, "SmolVLMVideoProcessor", video)
    return path


def build_paligemma(out: Path, seed: int = 0) -> Path:
    """PaliGemma: SigLIP + Gemma, a prefix-LM (bidirectional attention over image + question)."""
    from transformers import (
        GemmaConfig,
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        PaliGemmaProcessor,
        SiglipImageProcessorPil,
    )

    tokenizer = _tokenizer([], {"image_token": "<image>"}, bos="<bos>", eos="<eos>", add_bos=True)
    size, patch = 28, 14
    image_processor = SiglipImageProcessorPil(size={"height": size, "width": size})
    image_processor.image_seq_length = (size // patch) ** 2  # type: ignore[attr-defined]
    processor = PaliGemmaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=PALIGEMMA_TEMPLATE
    )
    tokenizer = processor.tokenizer
    config = PaliGemmaConfig(
        vision_config=_siglip(size, patch, projection_dim=64),
        text_config=GemmaConfig(**_llama_text(tokenizer, head_dim=16)),
        image_token_index=tokenizer.image_token_id,
        projection_dim=64,
    )
    config.text_config.vocab_size = len(tokenizer)  # type: ignore[union-attr]
    return _save(PaliGemmaForConditionalGeneration, config, processor, out, seed)


def build_gemma3(out: Path, seed: int = 0) -> Path:
    """Gemma 3: SigLIP + Gemma 3, image soft tokens between begin/end-of-image markers."""
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3ImageProcessorPil,
        Gemma3Processor,
        Gemma3TextConfig,
    )

    tokenizer = _tokenizer(
        ["<start_of_turn>", "<end_of_turn>"],
        {"image_token": "<image_soft_token>", "boi_token": "<start_of_image>", "eoi_token": "<end_of_image>"},
        bos="<bos>",
        eos="<eos>",
    )
    size, patch, tokens = 32, 8, 4
    processor = Gemma3Processor(
        image_processor=Gemma3ImageProcessorPil(size={"height": size, "width": size}),
        tokenizer=tokenizer,
        image_seq_length=tokens,
        chat_template=GEMMA3_TEMPLATE,
    )
    text = Gemma3TextConfig(**_llama_text(tokenizer, head_dim=16, sliding_window=64, layer_types=None))
    config = Gemma3Config(
        text_config=text,
        vision_config=_siglip(size, patch),
        mm_tokens_per_image=tokens,
        boi_token_index=tokenizer.convert_tokens_to_ids("<start_of_image>"),
        eoi_token_index=tokenizer.convert_tokens_to_ids("<end_of_image>"),
        image_token_index=tokenizer.image_token_id,
        tie_word_embeddings=False,
    )
    return _save(Gemma3ForConditionalGeneration, config, processor, out, seed, eos=["<eos>", "<end_of_turn>"])


def build_mllama(out: Path, seed: int = 0) -> Path:
    """Mllama (Llama 3.2 Vision): tiled images fed through cross-attention layers."""
    from transformers import (
        MllamaConfig,
        MllamaForConditionalGeneration,
        MllamaImageProcessorPil,
        MllamaProcessor,
        MllamaTextConfig,
        MllamaVisionConfig,
    )

    tokenizer = _tokenizer(
        ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|python_tag|>"],
        {"image_token": "<|image|>"},
        bos="<|begin_of_text|>",
        eos="<|eot_id|>",
        pad="<|finetune_right_pad_id|>",
    )
    size = 28
    processor = MllamaProcessor(
        image_processor=MllamaImageProcessorPil(size={"height": size, "width": size}, max_image_tiles=4),
        tokenizer=tokenizer,
        chat_template=MLLAMA_TEMPLATE,
    )
    config = MllamaConfig(
        vision_config=MllamaVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_global_layers=1,
            attention_heads=2,
            image_size=size,
            patch_size=14,
            max_num_tiles=4,
            intermediate_layers_indices=[0],
            vision_output_dim=64,
        ),
        text_config=MllamaTextConfig(
            **_llama_text(tokenizer, num_hidden_layers=3, cross_attention_layers=[1]),
        ),
        image_token_index=tokenizer.image_token_id,
    )
    return _save(MllamaForConditionalGeneration, config, processor, out, seed, open_gates=True)


def build_internvl(out: Path, seed: int = 0) -> Path:
    """InternVL (3, hf format): InternViT + Qwen2, pixel-shuffle projector; declares a video processor."""
    from transformers import (
        GotOcr2ImageProcessorPil,
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLProcessor,
        InternVLVisionConfig,
        Qwen2Config,
    )

    tokenizer = _tokenizer(
        ["<|im_start|>"],
        {
            "start_image_token": "<img>",
            "end_image_token": "</img>",
            "context_image_token": "<IMG_CONTEXT>",
            "video_token": "<video>",
        },
        bos=None,
        eos="<|im_end|>",
        pad="<|endoftext|>",
    )
    size, patch = 32, 8
    video = {"size": {"height": size, "width": size}}
    processor = _video_less(InternVLProcessor)(
        image_processor=GotOcr2ImageProcessorPil(
            size={"height": size, "width": size}, crop_to_patches=False, max_patches=2
        ),
        tokenizer=tokenizer,
        video_processor=_video_processor("InternVLVideoProcessor", video),
        image_seq_length=(size // patch) ** 2 // 4,
        chat_template=INTERNVL_TEMPLATE,
    )
    config = InternVLConfig(
        vision_config=InternVLVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=[size, size],
            patch_size=[patch, patch],
        ),
        text_config=Qwen2Config(**_llama_text(tokenizer)),
        image_token_id=tokenizer.context_image_token_id,
        downsample_ratio=0.5,
    )
    path = _save(InternVLForConditionalGeneration, config, processor, out, seed)
    _write_video_config(path, "InternVLVideoProcessor", video)
    return path


def build_aya_vision(out: Path, seed: int = 0) -> Path:
    """Aya Vision: SigLIP + Cohere2, pixel-shuffle projector, image patches between start/end tokens."""
    from transformers import (
        AyaVisionConfig,
        AyaVisionForConditionalGeneration,
        AyaVisionProcessor,
        Cohere2Config,
        GotOcr2ImageProcessorPil,
    )

    tokenizer = _tokenizer(
        ["<|START_OF_TURN_TOKEN|>", "<|END_OF_TURN_TOKEN|>", "<|USER_TOKEN|>", "<|CHATBOT_TOKEN|>",
         "<|SYSTEM_TOKEN|>", "<|START_OF_IMG|>", "<|END_OF_IMG|>", "<|IMG_PATCH|>", "<|IMG_LINE_BREAK|>",
         "<image>"],
        bos="<BOS_TOKEN>",
        eos="<|END_OF_TURN_TOKEN|>",
        pad="<PAD>",
    )  # fmt: skip
    size, patch = 32, 8
    processor = AyaVisionProcessor(
        image_processor=GotOcr2ImageProcessorPil(
            size={"height": size, "width": size}, crop_to_patches=False, max_patches=2
        ),
        tokenizer=tokenizer,
        patch_size=patch,
        img_size=size,
        downsample_factor=2,
        chat_template=AYA_VISION_TEMPLATE,
    )
    config = AyaVisionConfig(
        vision_config=_siglip(size, patch),
        text_config=Cohere2Config(**_llama_text(tokenizer, sliding_window=64, layer_types=None)),
        image_token_index=tokenizer.convert_tokens_to_ids("<|IMG_PATCH|>"),
        downsample_factor=2,
        vision_feature_select_strategy="full",
        tie_word_embeddings=False,
    )
    return _save(AyaVisionForConditionalGeneration, config, processor, out, seed)


def build_mistral3(out: Path, seed: int = 0) -> Path:
    """Mistral 3 (Pixtral vision): needs torchvision for its image processor."""
    from transformers import (
        Mistral3Config,
        Mistral3ForConditionalGeneration,
        MistralConfig,
        PixtralImageProcessor,
        PixtralProcessor,
        PixtralVisionConfig,
    )

    tokenizer = _tokenizer(["[INST]", "[/INST]", "[IMG]", "[IMG_BREAK]", "[IMG_END]"], add_bos=True)
    size, patch = 32, 8
    processor = PixtralProcessor(
        image_processor=PixtralImageProcessor(size={"longest_edge": size}, patch_size=patch),
        tokenizer=tokenizer,
        patch_size=patch,
        spatial_merge_size=2,
        chat_template=MISTRAL3_TEMPLATE,
    )
    config = Mistral3Config(
        vision_config=PixtralVisionConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            image_size=size, patch_size=patch,
        ),
        text_config=MistralConfig(**_llama_text(tokenizer, head_dim=16)),
        image_token_index=tokenizer.convert_tokens_to_ids("[IMG]"),
        spatial_merge_size=2,
    )  # fmt: skip
    return _save(Mistral3ForConditionalGeneration, config, processor, out, seed)


def build_llama4(out: Path, seed: int = 0) -> Path:
    """Llama 4: needs torchvision for its image processor."""
    from transformers import (
        Llama4Config,
        Llama4ForConditionalGeneration,
        Llama4ImageProcessor,
        Llama4Processor,
        Llama4TextConfig,
        Llama4VisionConfig,
    )

    tokenizer = _tokenizer(
        ["<|header_start|>", "<|header_end|>", "<|eot|>", "<|image_start|>", "<|image_end|>", "<|patch|>",
         "<|tile_x_separator|>", "<|tile_y_separator|>", "<|image|>"],
        bos="<|begin_of_text|>",
        eos="<|eot|>",
        pad="<|finetune_right_pad|>",
    )  # fmt: skip
    size, patch = 32, 8
    processor = Llama4Processor(
        image_processor=Llama4ImageProcessor(size={"height": size, "width": size}, max_patches=2),
        tokenizer=tokenizer,
        patch_size=patch,
        pixel_shuffle_ratio=0.5,
        chat_template=LLAMA4_TEMPLATE,
    )
    config = Llama4Config(
        vision_config=Llama4VisionConfig(
            hidden_size=32, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2, image_size=size,
            patch_size=patch, vision_output_dim=64, projector_input_dim=64, projector_output_dim=64,
            pixel_shuffle_ratio=0.5,
        ),
        text_config=Llama4TextConfig(**_llama_text(tokenizer, head_dim=16, num_local_experts=1,
                                                   intermediate_size_mlp=128, moe_layers=[])),
        image_token_index=tokenizer.convert_tokens_to_ids("<|patch|>"),
    )  # fmt: skip
    return _save(Llama4ForConditionalGeneration, config, processor, out, seed)


@dataclass(frozen=True)
class TinyArchitecture:
    """One architecture of the matrix: how to build it and what the checks expect of it.

    ``end_of_turn``: the special token the chat template puts after each answer (None: the template
    puts none, as LLaVA-NeXT's official one); ``projector``: the projector modules' name suffixes;
    ``needs_image``: every prompt must carry an image (PaliGemma); ``needs_torchvision``: its image
    processor needs torchvision; ``prefix_lm``: attends bidirectionally over its prompt (PaliGemma);
    ``known_failure``: why the model itself does not run in the pinned transformers (an upstream bug).
    """

    name: str
    build: Callable[[Path, int], Path]
    end_of_turn: str | None
    projector: tuple[str, ...]
    needs_image: bool = False
    needs_torchvision: bool = False
    prefix_lm: bool = False
    known_failure: str | None = None


TINY_ARCHITECTURES: dict[str, TinyArchitecture] = {
    a.name: a
    for a in (
        TinyArchitecture("llava", build_llava, "</s>", ("multi_modal_projector",)),
        TinyArchitecture("llava-next", build_llava_next, None, ("multi_modal_projector",)),
        TinyArchitecture("llava-onevision", build_llava_onevision, "<|im_end|>", ("multi_modal_projector",)),
        TinyArchitecture("qwen2-vl", build_qwen2_vl, "<|im_end|>", ("visual.merger",)),
        TinyArchitecture("qwen2.5-vl", build_qwen2_5_vl, "<|im_end|>", ("visual.merger",)),
        TinyArchitecture(
            "qwen3-vl", build_qwen3_vl, "<|im_end|>", ("visual.merger", "visual.deepstack_merger_list")
        ),
        TinyArchitecture("idefics3", build_idefics3, "<end_of_utterance>", ("connector",)),
        TinyArchitecture("smolvlm", build_smolvlm, "<end_of_utterance>", ("connector",)),
        TinyArchitecture(
            "paligemma",
            build_paligemma,
            "<eos>",
            ("multi_modal_projector",),
            needs_image=True,
            prefix_lm=True,
        ),
        TinyArchitecture("gemma3", build_gemma3, "<end_of_turn>", ("multi_modal_projector",)),
        TinyArchitecture("mllama", build_mllama, "<|eot_id|>", ("multi_modal_projector",)),
        TinyArchitecture("internvl", build_internvl, "<|im_end|>", ("multi_modal_projector",)),
        TinyArchitecture("aya-vision", build_aya_vision, "<|END_OF_TURN_TOKEN|>", ("multi_modal_projector",)),
        TinyArchitecture(
            "mistral3", build_mistral3, "</s>", ("multi_modal_projector",), needs_torchvision=True
        ),
        TinyArchitecture(
            "llama4",
            build_llama4,
            "<|eot|>",
            ("multi_modal_projector",),
            needs_torchvision=True,
            known_failure="transformers 5.24: Llama4ForConditionalGeneration.forward reads outputs.image_outputs, "
            "which its language model's output lacks (AttributeError on every forward pass)",
        ),
    )
}
