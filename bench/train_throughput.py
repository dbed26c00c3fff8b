"""Training throughput: tokens/s and peak memory, LoRA vs full fine-tuning, side by side.

Default (CPU): the tiny VLM on the bundled sample conversations through vlguard's own collator
(labels on assistant tokens), each method in its own process so that peak RSS is its own.

    .venv/bin/python bench/train_throughput.py [--size tiny|small] [--steps 20] [--out FILE.json]

``--gpu-7b`` (for a GPU machine; needs only torch + transformers + peft): a LLaVA-1.5-7B-shaped model
(CLIP ViT-L/14-336 + Llama-2-7B, random weights, bf16, gradient checkpointing), inputs built by hand
(576 image tokens + ``--text-tokens`` text tokens). A step is forward + backward + optimizer step,
timed directly. LoRA: r 128 on the LLM's linear layers, AdamW. Full: vision tower frozen, AdamW;
``--full-optimizer adamw-bf16`` (default) keeps parameters, gradients and AdamW states in bf16
(~56 GB for 7B), because fp32 master weights + fp32 states (~112 GB + activations) do not fit one
80 GB GPU; ``adamw-fp32`` is the mixed-precision reference for a 141 GB GPU. Then projects the time of
one post-hoc epoch (2,977 VLGuard + 5,000 helpfulness samples) at the stated sequence length.

    python bench/train_throughput.py --gpu-7b --out bench-gpu.json
    python bench/train_throughput.py --gpu-7b --tiny-shapes   # CPU smoke test of the same code path
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

POSTHOC_SAMPLES = 2977 + 5000
GLOBAL_BATCH = 128
IMAGE_TOKENS_7B = 576  # (336 / 14) ** 2


# ---- CPU: the tiny VLM through vlguard's pipeline ---------------------------------------------------


def _cpu_worker(method: str, size: str, steps: int, batch_size: int) -> dict[str, Any]:
    """One method in this process: build the tiny model, train `steps` steps, measure."""
    import tempfile

    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from vlguard.data import load_vlguard
    from vlguard.data.conversations import vlguard_conversations
    from vlguard.data.sample import sample_dataset_dir
    from vlguard.models.tiny import build_tiny_vlm
    from vlguard.train.collator import ConversationCollator
    from vlguard.train.config import TrainConfig
    from vlguard.train.data import ConversationDataset, TrainingData
    from vlguard.train.trainer import _freeze

    torch.manual_seed(0)
    data = load_vlguard(sample_dataset_dir(), "train")
    conversations = vlguard_conversations(data.records)
    texts = [
        p["text"] for c in conversations for m in c.messages for p in m["content"] if p["type"] == "text"
    ]
    model_dir = build_tiny_vlm(Path(tempfile.mkdtemp()) / "m", texts=texts, size=size)
    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir)
    config = TrainConfig(method=method)  # type: ignore[arg-type]
    _freeze(model, config)
    lr = 2e-5
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        # r 128 (the 7B recipe) would exceed the tiny model's hidden size (64): scale the rank down.
        model = get_peft_model(
            model, LoraConfig(r=8, lora_alpha=16, target_modules=config.lora.target_modules)
        )
        lr = 2e-4
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    dataset = ConversationDataset(
        TrainingData(tuple(c.__class__(c.id, c.image, c.messages, "safety") for c in conversations),
                     {"safety": data.images}, {}),
        "original",
    )  # fmt: skip
    collator = ConversationCollator(processor)
    batches = [
        collator([dataset[(i * batch_size + j) % len(dataset)] for j in range(batch_size)])
        for i in range(steps + 3)
    ]

    def step(batch: dict[str, Any]) -> None:
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for batch in batches[:3]:  # warm-up: the first steps after a build are ~10x slower
        step(batch)
    tokens = 0
    started = time.perf_counter()
    for batch in batches[3:]:
        step(batch)
        tokens += int(batch["attention_mask"].sum())
    elapsed = time.perf_counter() - started
    collate_started = time.perf_counter()
    collator([dataset[j % len(dataset)] for j in range(batch_size)])
    return {
        "method": method,
        "lora_r": 8 if method == "lora" else None,
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total_params": sum(p.numel() for p in model.parameters()),
        "step_s": elapsed / steps,
        "tokens_per_s": tokens / elapsed,
        "collate_s_per_batch": time.perf_counter() - collate_started,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "tokens_per_step": tokens / steps,
    }


def run_cpu(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    results = []
    for method in ("lora", "full"):
        command = [sys.executable, __file__, "--_worker", method, "--size", args.size,
                   "--steps", str(args.steps), "--batch-size", str(args.batch_size)]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{method} worker failed:\n{done.stderr[-2000:]}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {
        "mode": "cpu-tiny",
        "size": args.size,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "results": results,
    }


# ---- GPU: LLaVA-1.5-7B shapes, random weights -------------------------------------------------------


def _llava_config(tiny: bool) -> Any:
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    from vlguard.models.shapes import LLAVA_15_7B_TEXT, LLAVA_15_7B_VISION

    if tiny:
        vision = CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=28,
            patch_size=14,
            projection_dim=32,
        )
        text = LlamaConfig(
            vocab_size=512,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=4096,
        )
    else:  # CLIP ViT-L/14-336 + Llama-2-7B (LLaVA-1.5-7B)
        vision = CLIPVisionConfig(**LLAVA_15_7B_VISION)
        text = LlamaConfig(**LLAVA_15_7B_TEXT)
    return LlavaConfig(vision_config=vision, text_config=text, image_token_index=32000 if not tiny else 500,
                       vision_feature_select_strategy="default", vision_feature_layer=-2)  # fmt: skip


def _inputs(config: Any, batch: int, text_tokens: int, device: Any, dtype: Any) -> dict[str, Any]:
    import torch

    vision = config.vision_config
    image_tokens = (vision.image_size // vision.patch_size) ** 2
    vocab = min(config.text_config.vocab_size, config.image_token_index)
    ids = torch.randint(3, vocab, (batch, image_tokens + text_tokens), device=device)
    ids[:, 1 : 1 + image_tokens] = config.image_token_index
    labels = ids.clone()
    labels[:, : 1 + image_tokens + text_tokens // 2] = -100  # prompt and image masked, as in training
    pixels = torch.randn(batch, 3, vision.image_size, vision.image_size, device=device, dtype=dtype)
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "pixel_values": pixels,
        "labels": labels,
    }


def _time_steps(model: Any, optimizer: Any, inputs: dict[str, Any], steps: int, sync: Any) -> float:
    def step() -> None:
        loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up (allocations, kernels, optimizer state)
    sync()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return (time.perf_counter() - started) / steps


def run_gpu(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    import transformers
    from peft import LoraConfig, get_peft_model
    from transformers import LlavaForConditionalGeneration

    cuda = torch.cuda.is_available()
    if not cuda and not args.tiny_shapes:
        raise SystemExit("--gpu-7b needs a CUDA GPU (use --tiny-shapes for a CPU smoke test)")
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if cuda else torch.float32
    config = _llava_config(args.tiny_shapes)
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def peak_gb() -> float | None:
        return torch.cuda.max_memory_allocated() / 2**30 if cuda else None

    def reset_peak() -> None:
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()

    started = time.perf_counter()
    torch.manual_seed(0)
    with torch.device(device):
        model = LlavaForConditionalGeneration._from_config(config, dtype=dtype)
    model.config.use_cache = False
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    build_s = time.perf_counter() - started
    for name, param in model.named_parameters():  # the recipe: vision tower frozen
        if "vision_tower" in name:
            param.requires_grad_(False)

    report: dict[str, Any] = {
        "mode": "gpu-7b" if not args.tiny_shapes else "gpu-7b-tiny-shapes",
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "dtype": str(dtype).removeprefix("torch."),
        "gradient_checkpointing": True,
        "total_params": sum(p.numel() for p in model.parameters()),
        "build_s": round(build_s, 1),
        "text_tokens": args.text_tokens,
    }
    text_tokens = args.text_tokens if not args.tiny_shapes else 16
    seq_len = (config.vision_config.image_size // config.vision_config.patch_size) ** 2 + text_tokens
    report["seq_len"] = seq_len

    def measure(method: str, run_model: Any, make_optimizer: Any) -> dict[str, Any]:
        batch = args.batch_size
        while batch >= 1:
            reset_peak()
            optimizer = None
            try:
                optimizer = make_optimizer()
                inputs = _inputs(config, batch, text_tokens, device, dtype)
                step_s = _time_steps(run_model, optimizer, inputs, args.steps, sync)
                trainable = sum(p.numel() for p in run_model.parameters() if p.requires_grad)
                result = {"batch_size": batch, "step_s": round(step_s, 4), "tokens_per_s": round(batch * seq_len / step_s),
                          "samples_per_s": round(batch / step_s, 3), "peak_memory_gb": peak_gb(),
                          "trainable_params": trainable}  # fmt: skip
                del optimizer, inputs
                return result
            except torch.cuda.OutOfMemoryError:
                del optimizer
                run_model.zero_grad(set_to_none=True)
                print(f"{method}: out of memory at batch {batch}; halving", file=sys.stderr)
                batch //= 2
        return {"error": "out of memory at batch 1"}

    # LoRA first: it leaves the base weights untouched, so the same model serves the full run after.
    lora_model = get_peft_model(
        model,
        LoraConfig(r=128, lora_alpha=256, lora_dropout=0.05,
                   target_modules=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"),
    )  # fmt: skip
    if hasattr(lora_model, "enable_input_require_grads"):
        lora_model.enable_input_require_grads()
    # Under bf16 autocast, as `vlguard train` runs it (Trainer bf16=True): without autocast PEFT runs the
    # fp32 adapter matmuls in fp32, which made the LoRA step slower than the full one on an H200.
    report["lora"] = measure(
        "lora",
        _Autocast(lora_model) if cuda else lora_model,
        lambda: torch.optim.AdamW(
            [p for p in lora_model.parameters() if p.requires_grad], lr=2e-4, fused=cuda
        ),
    )
    report["lora"].update(
        {
            "r": 128,
            "alpha": 256,
            "optimizer": "AdamW (fp32 adapter weights and states)",
            "bf16_autocast": cuda,
        }
    )
    model = lora_model.unload()
    for name, param in model.named_parameters():
        param.requires_grad_("vision_tower" not in name)

    if args.full_optimizer == "adamw-fp32" and cuda:
        model.float()  # fp32 master weights; bf16 compute under autocast
        full_model: Any = _Autocast(model)
        note = "AdamW, fp32 weights and states, bf16 autocast"
    else:
        full_model = model
        note = "AdamW on bf16 weights (gradients and states bf16)" if cuda else "AdamW fp32 (CPU)"
    report["full"] = measure(
        # fused: no full-size temporaries (foreach would add one more copy of the 7B weights)
        "full",
        full_model,
        lambda: torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-5, fused=cuda),
    )
    report["full"]["optimizer"] = note

    projection: dict[str, Any] = {"samples": POSTHOC_SAMPLES, "seq_len": seq_len, "global_batch": GLOBAL_BATCH,
                                  "optimizer_steps": round(POSTHOC_SAMPLES / GLOBAL_BATCH, 1)}  # fmt: skip
    for method in ("lora", "full"):
        per_sample = report[method].get("step_s", float("nan")) / report[method].get("batch_size", 1)
        projection[f"{method}_epoch_minutes"] = round(POSTHOC_SAMPLES * per_sample / 60, 1)
    report["posthoc_epoch_projection"] = projection
    return report


class _Autocast:
    """Calls the model under bf16 autocast (mixed precision with fp32 master weights)."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def __call__(self, **inputs: Any) -> Any:
        import torch

        with torch.autocast("cuda", dtype=torch.bfloat16):
            return self.model(**inputs)

    def parameters(self) -> Any:
        return self.model.parameters()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.model.zero_grad(set_to_none=set_to_none)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--gpu-7b", action="store_true", help="LLaVA-1.5-7B shapes on a GPU (torch+transformers+peft)"
    )
    parser.add_argument("--tiny-shapes", action="store_true", help="with --gpu-7b: tiny shapes, runs on CPU")
    parser.add_argument("--full-optimizer", choices=("adamw-bf16", "adamw-fp32"), default="adamw-bf16")
    parser.add_argument("--text-tokens", type=int, default=150, help="--gpu-7b: text tokens per sample")
    parser.add_argument("--size", default="tiny", help="CPU mode: tiny VLM size (tiny, small)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (CPU 20, GPU 3)")
    parser.add_argument("--batch-size", type=int, default=None, help="per step (CPU 8, GPU 8)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--_worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.batch_size = args.batch_size or 8
    args.steps = args.steps or (3 if args.gpu_7b else 20)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args._worker:
        print(json.dumps(_cpu_worker(args._worker, args.size, args.steps, args.batch_size)))
        return
    report = run_gpu(args) if args.gpu_7b else run_cpu(args)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
