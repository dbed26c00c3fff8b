"""Evaluation throughput: batched generation (vlguard's hf backend) vs a one-sample-at-a-time loop.

CPU mode (default): the tiny VLM, the same prompts and blank images both ways; checks that the outputs
are identical, then reports samples/s of each and the speed-up::

    PYTHONPATH=src python bench/eval_throughput.py                       # 96 prompts, 64 new tokens
    PYTHONPATH=src python bench/eval_throughput.py --samples 160 --out cpu.json

GPU mode (``--gpu-7b``): a LLaVA-1.5-7B-shaped model (CLIP ViT-L/14-336 + Llama-2-7B shapes, vocab
32064) built from a config with random weights in bf16 on CUDA and a tokenizer trained locally (no
download), 1,558 prompts with blank 336 px images, exactly 256 new tokens each (EOS suppressed with
``min_new_tokens``). It times one batch at each candidate batch size, finishes the whole set at the
fastest one, and extrapolates the sequential loop from a few samples. Needs only torch + transformers +
PIL (+ tokenizers, a transformers dependency)::

    PYTHONPATH=src python3 bench/eval_throughput.py --gpu-7b --out gpu7b.json
    PYTHONPATH=src python bench/eval_throughput.py --gpu-7b --tiny-shapes   # CPU smoke test of that path

Prompts are VLGuard's test instructions when ``--data`` points at the annotations (default:
``../shared/data/vlguard`` if present), else synthetic prompts of similar length (deterministic).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger("eval_throughput")

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "vlguard"
VLGUARD_TEST_SIZE = 1558

_WORDS_TEXT = (
    "what is shown in the image describe the picture how can I use this to make a plan for my friend "
    "explain why people in the photo are doing that write a short story about tell me the steps to "
    "where was it taken is this safe give advice on what would happen if someone tried"
)


def load_prompts(n: int, data: Path | None) -> tuple[list[str], str]:
    """``n`` prompts: VLGuard's test instructions (cycled) when available, else synthetic ones."""
    test_json = data / "test.json" if data is not None else None
    if test_json is not None and test_json.is_file():
        records = json.loads(test_json.read_text(encoding="utf-8"))
        prompts = [
            pair[key]
            for record in records
            for pair in record.get("instr-resp", [])
            for key in ("instruction", "safe_instruction", "unsafe_instruction")
            if key in pair
        ]
        return [prompts[i % len(prompts)] for i in range(n)], f"VLGuard test instructions ({test_json})"
    rng = random.Random(0)
    words = _WORDS_TEXT.split()
    synthetic = [" ".join(rng.choice(words) for _ in range(rng.randint(8, 40))) + "?" for _ in range(n)]
    return synthetic, "synthetic prompts, 8-40 words (VLGuard annotations not found)"


def make_requests(prompts: list[str], image_size: int) -> list[Any]:
    from PIL import Image

    from vlguard.generation.base import GenerationRequest

    # Image mode "blank": a white image, as in the evaluation of text-only safety prompts.
    blank = Image.new("RGB", (image_size, image_size), (255, 255, 255))
    return [GenerationRequest(sample_id=f"p{i}", prompt=p, image=blank) for i, p in enumerate(prompts)]


def sequential(backend: Any, requests: list[Any]) -> tuple[list[Any], float]:
    """The reference loop (VLGuard_eval.py): one prompt at a time, prompt → generate → decode."""
    start = time.perf_counter()
    outputs = [backend.generate([r])[0] for r in requests]
    return outputs, time.perf_counter() - start


def batched(backend: Any, requests: list[Any]) -> tuple[list[Any], float]:
    start = time.perf_counter()
    outputs = backend.generate(requests)
    return outputs, time.perf_counter() - start


def cpu_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Tiny VLM on CPU: batched (batch 16) vs one at a time, same prompts, outputs checked equal."""
    import torch

    from vlguard.generation.hf import HFBackend
    from vlguard.models.tiny import build_tiny_vlm

    torch.set_num_threads(args.threads)
    prompts, prompt_source = load_prompts(args.samples, args.data)
    requests = make_requests(prompts, 336)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_vlm(Path(tmp) / "tiny", texts=prompts[:200], size=args.size, seed=0)
        backend = HFBackend(str(model_dir), batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)
        # Warm up both paths (first calls allocate and pick kernels; they are ~10x slower).
        backend.generate(requests[: args.batch_size])
        backend.generate(requests[:1])
        # Interleave the two loops chunk by chunk (a chunk = what the pipeline hands the backend at once:
        # 4 batches), so that both see the same load on a shared machine; with --repeats, keep each
        # chunk's best time per loop.
        chunk = args.batch_size * 4
        seq_out: list[Any] = []
        bat_out: list[Any] = []
        seq_s = bat_s = 0.0
        for start in range(0, len(requests), chunk):
            part = requests[start : start + chunk]
            seq_times, bat_times = [], []
            for _ in range(args.repeats):
                out_s, t_s = sequential(backend, part)
                out_b, t_b = batched(backend, part)
                seq_times.append(t_s)
                bat_times.append(t_b)
            seq_out += out_s
            bat_out += out_b
            seq_s += min(seq_times)
            bat_s += min(bat_times)
    identical = seq_out == bat_out
    n = len(requests)
    return {
        "mode": "cpu-tiny",
        "model": f"tiny VLM ({args.size}), fp32",
        "prompts": prompt_source,
        "samples": n,
        "max_new_tokens": args.max_new_tokens,
        "new_tokens_generated": sum(g.meta["completion_tokens"] for g in bat_out),
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "sequential_s": round(seq_s, 3),
        "batched_s": round(bat_s, 3),
        "sequential_samples_per_s": round(n / seq_s, 2),
        "batched_samples_per_s": round(n / bat_s, 2),
        "speedup": round(seq_s / bat_s, 2),
        "outputs_identical": identical,
    }


def build_llava(shapes: str, device: str, dtype: Any, texts: list[str]) -> tuple[Any, Any]:
    """A LLaVA-1.5-7B-shaped model with random weights (or tiny shapes) and a locally trained tokenizer."""
    import torch
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    from vlguard.models.shapes import LLAVA_15_7B_TEXT, LLAVA_15_7B_VISION
    from vlguard.models.tiny import IMAGE_TOKEN, TINY_CHAT_TEMPLATE, train_tokenizer

    vision: dict[str, Any]
    text: dict[str, Any]
    if shapes == "7b":
        vision = dict(LLAVA_15_7B_VISION)
        text = dict(LLAVA_15_7B_TEXT)
        tokenizer_vocab = 32000
    else:  # tiny shapes, for a CPU smoke test of this code path
        vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
        vision.update(image_size=336, patch_size=14, projection_dim=32)
        text = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)
        text.update(num_key_value_heads=4, max_position_embeddings=4096, vocab_size=2048)
        tokenizer_vocab = 2048
    tokenizer: Any = train_tokenizer(texts, tokenizer_vocab)
    ids = {
        k: tokenizer.convert_tokens_to_ids(t) for k, t in (("bos", "<s>"), ("eos", "</s>"), ("pad", "<pad>"))
    }
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**vision),
        text_config=LlamaConfig(
            **text,
            bos_token_id=ids["bos"],
            eos_token_id=ids["eos"],
            pad_token_id=ids["pad"],
            tie_word_embeddings=False,
        ),
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        projector_hidden_act="gelu",
    )
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):  # initialise the weights directly on the GPU, in bf16
            model = LlavaForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    model.generation_config.pad_token_id = ids["pad"]
    model.generation_config.eos_token_id = ids["eos"]
    try:
        from transformers import CLIPImageProcessorPil as ImageProcessor
    except ImportError:  # older transformers 5 releases
        from transformers import CLIPImageProcessor as ImageProcessor  # type: ignore[assignment]
    image_processor = ImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=TINY_CHAT_TEMPLATE,
    )
    return model, processor


def gpu_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Whole VLGuard-test-sized run on a 7B-shaped LLaVA: best batch size vs an extrapolated loop."""
    import torch

    from vlguard.generation.hf import HFBackend

    tiny = args.tiny_shapes
    device = "cpu" if tiny and not torch.cuda.is_available() else "cuda"
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    n = args.samples if args.samples is not None else (24 if tiny else VLGUARD_TEST_SIZE)
    new_tokens = args.max_new_tokens if args.max_new_tokens_given else (8 if tiny else 256)
    batch_sizes = args.batch_sizes or ([4, 8] if tiny else [64, 128])
    prompts, prompt_source = load_prompts(n, args.data)
    requests = make_requests(prompts, 336)

    t0 = time.perf_counter()
    model, processor = build_llava("tiny" if tiny else "7b", device, dtype, prompts[:500])
    build_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("built %s-parameter LLaVA on %s in %.1f s", f"{n_params:,}", device, build_s)

    def backend(batch_size: int, tokens: int = new_tokens) -> HFBackend:
        return HFBackend.from_objects(
            model,
            processor,
            model_id="llava-1.5-7b-shaped-random" if not tiny else "llava-tiny-shapes-random",
            batch_size=batch_size,
            max_new_tokens=tokens,
            # Random weights would stop at a random EOS: force every answer to the full length.
            generate_kwargs={"min_new_tokens": tokens},
        )

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    backend(2, tokens=4).generate(requests[:2])  # warm-up (kernel selection, allocator), kept short
    sync()

    # Sequential baseline, extrapolated from a few samples.
    k = min(args.seq_samples, n)
    sync()
    _, seq_s = sequential(backend(1), requests[:k])
    sync()
    seq_per_sample = seq_s / k
    logger.info("sequential: %.2f s per sample (%d samples)", seq_per_sample, k)

    # One batch at each candidate size; the fastest finishes the set (its probe batch counts).
    probes: dict[int, dict[str, float]] = {}
    outputs: dict[int, list[Any]] = {}
    for b in batch_sizes:
        if b > n:
            continue
        if device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        sync()
        try:
            probe_out, s = batched(backend(b), requests[:b])
        except torch.cuda.OutOfMemoryError:
            logger.warning("batch size %d does not fit in GPU memory", b)
            continue
        sync()
        peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else 0.0
        probes[b] = {"seconds": round(s, 2), "samples_per_s": round(b / s, 3), "peak_gib": round(peak, 1)}
        outputs[b] = probe_out
        logger.info("batch %d: %.1f s for one batch (%.2f samples/s, peak %.1f GiB)", b, s, b / s, peak)
    if not probes:
        raise SystemExit("no candidate batch size fitted")
    best = max(probes, key=lambda b: probes[b]["samples_per_s"])
    sync()
    rest_out, rest_s = batched(backend(best), requests[best:])
    sync()
    total_s = probes[best]["seconds"] + rest_s
    full_length = all(g.meta["completion_tokens"] == new_tokens for g in outputs[best] + rest_out)
    seq_total = seq_per_sample * n
    return {
        "mode": "gpu-7b" if not tiny else "gpu-7b-tiny-shapes",
        "device": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
        "model": f"LLaVA-1.5-{'7B' if not tiny else 'tiny'}-shaped, random weights, {str(dtype).removeprefix('torch.')}",
        "parameters": n_params,
        "prompts": prompt_source,
        "image": "blank 336x336",
        "samples": n,
        "new_tokens_per_sample": new_tokens,
        "all_answers_full_length": full_length,
        "build_s": round(build_s, 1),
        "batch_probes": probes,
        "best_batch_size": best,
        "whole_set_s": round(total_s, 1),
        "whole_set_samples_per_s": round(n / total_s, 3),
        "sequential_samples_measured": k,
        "sequential_s_per_sample": round(seq_per_sample, 3),
        "sequential_whole_set_s_extrapolated": round(seq_total, 1),
        "speedup": round(seq_total / total_s, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, help="prompts (CPU default 96; GPU default 1,558)")
    parser.add_argument("--max-new-tokens", type=int, help="new tokens per prompt (CPU default 64; GPU 256)")
    parser.add_argument("--batch-size", type=int, default=16, help="CPU mode batch size (default 16)")
    parser.add_argument("--repeats", type=int, default=1, help="CPU: time each chunk N times, keep the best")
    parser.add_argument("--size", default="tiny", help="CPU mode tiny-model size: tiny or small")
    # One intra-op thread by default: the tiny model's ops are far too small to gain from threads, and
    # with other processes on the cores, 2 threads make every op wait for both (about 10x slower).
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA if DEFAULT_DATA.is_dir() else None)
    parser.add_argument("--gpu-7b", action="store_true", help="7B-shaped LLaVA in bf16 on CUDA")
    parser.add_argument(
        "--tiny-shapes", action="store_true", help="with --gpu-7b: tiny shapes (CPU smoke test)"
    )
    parser.add_argument("--batch-sizes", type=lambda s: [int(x) for x in s.split(",")], help="GPU candidates")
    parser.add_argument("--seq-samples", type=int, default=3, help="GPU: samples timed one at a time")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    args.max_new_tokens_given = args.max_new_tokens is not None
    if args.gpu_7b:
        result = gpu_benchmark(args)
    else:
        args.samples = args.samples or 96
        args.max_new_tokens = args.max_new_tokens or 64
        result = cpu_benchmark(args)
    import torch
    import transformers

    result["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__}
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
