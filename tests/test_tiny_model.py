"""The tiny VLM loads through the same Auto* path as any Hugging Face model and generates."""

from __future__ import annotations

from pathlib import Path

import torch


def test_tiny_model_loads_through_auto_classes_and_generates(tiny_model_dir: Path) -> None:
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text.startswith("USER: <image>\nWhat is this?")
    inputs = processor(text=[text], images=[Image.new("RGB", (40, 30), "white")], return_tensors="pt")
    # 32 px image / 8 px patches = 16 image tokens in place of the one placeholder
    image_token_id = model.config.image_token_id
    assert int((inputs["input_ids"] == image_token_id).sum()) == 16
    out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    n_prompt = inputs["input_ids"].shape[1]
    assert n_prompt < out.shape[1] <= n_prompt + 4


def test_tiny_model_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from vlguard.models.tiny import build_tiny_vlm

    a = load_file(build_tiny_vlm(tmp_path / "a", texts=["a b c"], seed=3) / "model.safetensors")
    b = load_file(build_tiny_vlm(tmp_path / "b", texts=["a b c"], seed=3) / "model.safetensors")
    c = load_file(build_tiny_vlm(tmp_path / "c", texts=["a b c"], seed=4) / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
