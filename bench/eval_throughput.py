"""Evaluation throughput: batched generation (vlguard's hf backend) vs a one-sample-at-a-time loop, and
the hf backend vs the vllm backend on a 7B-shaped LLaVA.

CPU mode (default): the tiny VLM, the same prompts and blank images both ways; checks that the outputs
are identical, then reports samples/s of each and the speed-up::

    PYTHONPATH=src python bench/eval_throughput.py                       # 96 prompts, 64 new tokens
    PYTHONPATH=src python bench/eval_throughput.py --samples 160 --out cpu.json

GPU mode (``--gpu-7b``): three configurations side by side in one run. A LLaVA-1.5-7B-shaped model (CLIP
ViT-L/14-336 + Llama-2-7B shapes, vocab 32064) is built from a config with random weights in bf16 and a
locally trained tokenizer (no download) and saved to a folder; then the same 1,558 prompts with 336 px
images, exactly 256 new tokens each (EOS suppressed: ``min_new_tokens`` / ``min_tokens``), go through
``hf-static`` (the ``hf`` backend with ``cache_implementation=static``: compiled decoding with CUDA
graphs), ``hf`` (the default dynamic cache) and ``vllm`` (when importable), each in its own process, in
the order and the calls ``vlguard eval`` uses (``order_requests`` over the whole set; each backend's
``requests_per_call``). For the hf configurations, the first batch is timed cold, then warm, then as
prefill alone, so the JSON gives cold and warm ms per decoding step and the cold overhead (the compile
time, for the static cache) apart from the whole-set time. Per configuration: whole-set seconds (warm),
load / start-up seconds, tokens/s, peak GPU memory; then each configuration's agreement with ``hf``
(identical answers, identical refusal labels) and speed-up. Needs a CUDA GPU; ``vllm`` needs
``pip install 'vlguard[vllm]'`` (without it the vllm column says why)::

    PYTHONPATH=src python3 bench/eval_throughput.py --gpu-7b --out gpu7b.json
    PYTHONPATH=src:tests/vllm_stand_in python bench/eval_throughput.py --gpu-7b --cpu-smoke  # CPU dry run

``--cpu-smoke`` runs the same orchestration on the CPU with tiny shapes, 12 prompts and 4 tokens (the
vllm worker then needs a ``vllm`` package: the test stand-in on ``PYTHONPATH`` will do).
``--gpu-7b --hf-probes`` runs the older hf-only benchmark instead: one batch at each candidate batch size,
the whole set at the fastest, and a sequential loop extrapolated from a few samples.

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
import subprocess
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


def hf_probe_benchmark(args: argparse.Namespace) -> dict[str, Any]:
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


# --- hf, hf-static and vllm, side by side ---------------------------------------------------------

HF_BATCH_SIZE = 128
# The target for the fast hf path (static cache, compiled decoding) on one H100/H200: the whole set
# (1,558 prompts × 256 new tokens) in at most this many seconds (docs/benchmarks.md).
TARGET_HF_SECONDS = 110.0
AGREEMENT_NOTE = (
    "Both backends decode greedily in bf16 with different kernels (attention, fused matmuls, batch "
    "shapes), so logits differ in the last bits; wherever the top two tokens are within that noise, "
    "the answers fork and stay different. On random weights near-ties are everywhere, so few of 256 "
    "tokens long answers can be identical; every random-weight answer is gibberish the refusal judge "
    "labels compliance, so label agreement is ~100 % by construction and says nothing there. With a "
    "trained model most answers agree, and labels agree far more often than texts."
)


def sample_image(index: int, size: int, distinct: bool) -> Any:
    """The image of prompt ``index``: white, with (``distinct``) a small square unique to the prompt.

    Distinct images keep vLLM's prefix and multimodal caches from reusing one image's work across
    prompts, as with VLGuard's own images; one shared blank image would flatter vLLM.
    """
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), (255, 255, 255))
    if distinct:
        x, y = (index * 37) % (size - 16), (index * 91) % (size - 16)
        colour = ((index * 53) % 256, (index * 97) % 256, (index * 29) % 256)
        ImageDraw.Draw(image).rectangle((x, y, x + 15, y + 15), fill=colour)
    return image


def timed_generation(
    backend: Any, requests: list[Any], settings: dict[str, Any], sync: Any
) -> dict[str, Any]:
    """Generate every request in calls of ``backend.requests_per_call`` (as ``vlguard eval`` does), timed;
    the responses come back in prompt order (``p<i>``)."""
    n, per_call = len(requests), backend.requests_per_call
    outputs: list[Any] = []
    calls: list[int] = []
    sync()
    start = time.perf_counter()
    for first in range(0, n, per_call):
        part = requests[first : first + per_call]
        outputs += backend.generate(part)
        calls.append(len(part))
    sync()
    seconds = time.perf_counter() - start
    new_tokens = sum(int(g.meta.get("completion_tokens", 0)) for g in outputs)
    by_index = sorted(outputs, key=lambda g: int(g.sample_id[1:]))
    return {
        "whole_set_s": round(seconds, 3),
        "samples_per_s": round(n / seconds, 3),
        "new_tokens": new_tokens,
        "tokens_per_s": round(new_tokens / seconds, 1),
        "prompt_tokens": sum(int(g.meta.get("prompt_tokens", 0)) for g in outputs),
        "all_answers_full_length": all(
            g.meta.get("completion_tokens") == settings["max_new_tokens"] for g in outputs
        ),
        "errors": sum(g.error is not None for g in outputs),
        "requests_per_call": per_call,
        "calls": calls,
        "responses": [g.response for g in by_index],
    }


def worker_build(settings: dict[str, Any], work: Path) -> dict[str, Any]:
    """Build the 7B-shaped (or tiny) LLaVA with random weights and save it where both backends load it."""
    import torch

    tiny = settings["tiny_shapes"]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    prompts = json.loads((work / "prompts.json").read_text(encoding="utf-8"))
    start = time.perf_counter()
    model, processor = build_llava("tiny" if tiny else "7b", device, dtype, prompts[:500])
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    model.save_pretrained(work / "model")  # safetensors
    processor.save_pretrained(work / "model")
    return {
        "device": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
        "parameters": sum(p.numel() for p in model.parameters()),
        "dtype": str(dtype).removeprefix("torch."),
        "build_s": round(build_s, 1),
        "save_s": round(time.perf_counter() - start, 1),
    }


def _cuda_sync() -> Any:
    import torch

    return torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)


def ordered_requests(backend: Any, prompts: list[str], distinct: bool) -> list[Any]:
    """Every prompt as a request with its image, in the order ``vlguard eval`` hands them to the backend
    (``order_requests`` over the whole set, when the backend has one)."""
    from vlguard.generation.base import GenerationRequest

    requests = [GenerationRequest(f"p{i}", p, sample_image(i, 336, distinct)) for i, p in enumerate(prompts)]
    order_requests = getattr(backend, "order_requests", None)
    if order_requests is None:
        return requests
    bare = [GenerationRequest(r.sample_id, r.prompt) for r in requests]
    return [requests[i] for i in order_requests(bare, [True] * len(requests))]


def step_probes(backend: Any, batch: list[Any], tokens: int, sync: Any) -> dict[str, Any]:
    """Cold and warm times of one full batch, its prefill apart, on a freshly loaded backend.

    The cold batch is the first generation of the process: it pays allocator growth, kernel selection
    and, with the static cache on CUDA, ``torch.compile`` and CUDA-graph capture. The same batch again is
    warm; the same batch with one new token is its prefill. Per decoding step = (batch − prefill) /
    (tokens − 1), cold and warm apart; ``cold_overhead_s`` = cold − warm (the compile time for the
    static cache).
    """

    def timed(max_new_tokens: int) -> float:
        sync()
        start = time.perf_counter()
        with backend.overrides(max_new_tokens=max_new_tokens):
            backend.generate(batch)
        sync()
        return time.perf_counter() - start

    cold = timed(tokens)
    warm = timed(tokens)
    prefill = timed(1)
    steps = max(1, tokens - 1)
    return {
        "probe_batch": len(batch),
        "cold_batch_s": round(cold, 3),
        "warm_batch_s": round(warm, 3),
        "prefill_s": round(prefill, 3),
        "cold_ms_per_step": round(1000 * (cold - prefill) / steps, 2),
        "warm_ms_per_step": round(1000 * (warm - prefill) / steps, 2),
        "cold_overhead_s": round(cold - warm, 3),
    }


def worker_hf(settings: dict[str, Any], work: Path, cache: str = "dynamic") -> dict[str, Any]:
    """The hf backend (``cache`` dynamic or static) over every prompt; load, cold/warm probes apart."""
    import torch

    from vlguard.generation.hf import HFBackend

    prompts = json.loads((work / "prompts.json").read_text(encoding="utf-8"))
    tokens = settings["max_new_tokens"]
    sync = _cuda_sync()
    start = time.perf_counter()
    backend = HFBackend(
        str(work / "model"),
        batch_size=settings["hf_batch_size"],
        max_new_tokens=tokens,
        generate_kwargs={"min_new_tokens": tokens},  # random weights would stop at a random EOS
        cache_implementation=cache,
    )
    load_s = time.perf_counter() - start
    requests = ordered_requests(backend, prompts, settings["distinct_images"])
    # The first batch of the run (the longest prompts): the probes see what the whole set starts with.
    probes = step_probes(backend, requests[: backend.batch_size], tokens, sync)
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    result = timed_generation(backend, requests, settings, sync)
    result.update(
        load_s=round(load_s, 1),
        startup_s=round(load_s + probes["cold_batch_s"] + probes["warm_batch_s"] + probes["prefill_s"], 1),
        probes=probes,
        batch_size=backend.batch_size,
        peak_torch_allocated_gib=round(torch.cuda.max_memory_allocated() / 2**30, 1) if cuda else None,
        dtype=backend.dtype,
        backend={
            k: v
            for k, v in backend.describe().items()
            if k
            in ("cache_implementation", "cache_fallback_reason", "compiled_decoding", "attn_implementation")
        },
    )
    return result


def worker_vllm(settings: dict[str, Any], work: Path) -> dict[str, Any]:
    """The vllm backend over every prompt, in its default engine-sized calls; engine start-up apart."""
    from vlguard.generation.base import GenerationRequest
    from vlguard.generation.vllm_backend import VLLMBackend

    prompts = json.loads((work / "prompts.json").read_text(encoding="utf-8"))
    tokens = settings["max_new_tokens"]
    engine = {"gpu_memory_utilization": settings["gpu_memory_utilization"]}
    start = time.perf_counter()
    backend = VLLMBackend(
        str(work / "model"),
        max_new_tokens=tokens,
        sampling_options={"min_tokens": tokens},  # as min_new_tokens on the hf side
        **engine,
    )
    backend.generate([GenerationRequest(f"w{i}", prompts[i], sample_image(i, 336, True)) for i in range(2)])
    startup_s = time.perf_counter() - start
    requests = ordered_requests(backend, prompts, settings["distinct_images"])
    result = timed_generation(backend, requests, settings, lambda: None)
    result.update(startup_s=round(startup_s, 1), engine_options=engine, vllm_version=backend.vllm_version)
    return result


WORKERS = {
    "build": worker_build,
    "hf": worker_hf,
    "hf-static": lambda settings, work: worker_hf(settings, work, cache="static"),
    "vllm": worker_vllm,
}
# The configurations side by side, each in its own process, in this order (the fast path first, so that
# its figure survives a time budget that runs out); agreement is measured against "hf".
CONFIGURATIONS = ("hf-static", "hf", "vllm")


def run_worker(stage: str, work: Path, timeout: float) -> dict[str, Any]:
    """Run one stage in its own process (its own GPU memory and CUDA context); its JSON, or why none came."""
    from threading import Event, Thread

    peak = {"mib": None}
    done = Event()

    def sample_memory() -> None:
        read = device_memory_reader()
        while read is not None and not done.wait(0.2):
            used = read()
            if used is not None and (peak["mib"] is None or used > peak["mib"]):
                peak["mib"] = used

    sampler = Thread(target=sample_memory, daemon=True)
    sampler.start()
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", stage, "--work-dir", str(work)]
    start = time.perf_counter()
    try:
        code: int | str = subprocess.run(command, timeout=timeout, check=False).returncode
    except subprocess.TimeoutExpired:
        code = f"timed out after {timeout:.0f} s"
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    out = work / f"{stage}.json"
    result = json.loads(out.read_text(encoding="utf-8")) if out.is_file() else {}
    if code != 0 and "error" not in result:
        result["error"] = f"the {stage} worker failed ({code}); see its log above"
    result["process_wall_s"] = round(wall, 1)
    result["peak_device_memory_gib"] = None if peak["mib"] is None else round(peak["mib"] / 1024, 1)
    return result


def device_memory_reader() -> Any:
    """A function returning the GPU's used memory in MiB (device-wide, all processes), or None without one.

    NVML when ``pynvml`` (nvidia-ml-py) is installed, else ``nvidia-smi``. The GPU is the first of
    ``CUDA_VISIBLE_DEVICES`` (0 when unset). Device-wide, because vLLM runs its engine in other processes.
    """
    index = (os.environ.get("CUDA_VISIBLE_DEVICES") or "0").split(",")[0].strip()
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(int(index))
        return lambda: pynvml.nvmlDeviceGetMemoryInfo(handle).used / 2**20
    except Exception:  # no NVML library, no GPU, or a UUID-style CUDA_VISIBLE_DEVICES
        pass
    import shutil

    if shutil.which("nvidia-smi") is None:
        return None

    def read() -> float | None:
        query = ["nvidia-smi", f"--id={index}", "--query-gpu=memory.used", "--format=csv,noheader,nounits"]
        try:
            return float(subprocess.run(query, capture_output=True, text=True, timeout=5).stdout.strip())
        except (OSError, ValueError, subprocess.TimeoutExpired):
            return None

    return read


def agreement(
    prompts: list[str], first: list[str], second: list[str], names: tuple[str, str] = ("hf", "vllm")
) -> dict[str, Any]:
    """Identical answers, identical refusal labels (vlguard's ``refusal`` judge), where texts fork;
    ``names`` label the two sets of answers."""
    import statistics
    from collections import Counter

    from vlguard.judges import make_judge
    from vlguard.judges.base import JudgeInput

    judge = make_judge("refusal")

    def labels(responses: list[str]) -> list[str]:
        items = [JudgeInput(f"p{i}", prompts[i], r) for i, r in enumerate(responses)]
        return [j.label for j in judge.judge(items)]

    a, b = labels(first), labels(second)
    prefixes = [_common_prefix(x, y) for x, y in zip(first, second, strict=True)]
    n = len(first)
    return {
        "identical_answers": round(sum(x == y for x, y in zip(first, second, strict=True)) / n, 4),
        "identical_refusal_labels": round(sum(x == y for x, y in zip(a, b, strict=True)) / n, 4),
        f"refusal_labels_{names[0]}": dict(Counter(a)),
        f"refusal_labels_{names[1]}": dict(Counter(b)),
        "median_common_prefix_chars": statistics.median(prefixes),
        "note": AGREEMENT_NOTE,
    }


def _common_prefix(first: str, second: str) -> int:
    """How many leading characters two texts share."""
    return next(
        (i for i, (x, y) in enumerate(zip(first, second, strict=False)) if x != y),
        min(len(first), len(second)),
    )


def side_by_side(args: argparse.Namespace) -> dict[str, Any]:
    """hf (dynamic cache), hf (static cache, compiled decoding) and vllm on the same model, prompts and
    images, each in its own process; agreement against the default hf answers."""
    smoke = args.cpu_smoke
    n = args.samples if args.samples is not None else (12 if smoke else VLGUARD_TEST_SIZE)
    tokens = args.max_new_tokens if args.max_new_tokens_given else (4 if smoke else 256)
    prompts, prompt_source = load_prompts(n, args.data)
    settings = {
        "tiny_shapes": smoke or args.tiny_shapes,
        "max_new_tokens": tokens,
        "hf_batch_size": args.hf_batch_size or (4 if smoke else HF_BATCH_SIZE),
        "gpu_memory_utilization": args.gpu_memory_utilization,
        "distinct_images": not args.shared_blank_image,
    }
    work = Path(tempfile.mkdtemp(prefix="vlguard-bench-", dir=args.work_dir))
    (work / "prompts.json").write_text(json.dumps(prompts), encoding="utf-8")
    (work / "settings.json").write_text(json.dumps(settings), encoding="utf-8")
    deadline = time.monotonic() + args.time_budget

    def left() -> float:
        return max(30.0, deadline - time.monotonic())

    columns: dict[str, dict[str, Any]] = {}
    try:
        build = run_worker("build", work, timeout=left())
        if "error" in build:
            raise SystemExit(f"building the model failed: {build['error']}")
        for name in args.configurations:
            columns[name] = run_worker(name, work, timeout=left())
    finally:
        if not args.keep_model:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    result: dict[str, Any] = {
        "mode": "gpu-7b-side-by-side" if not settings["tiny_shapes"] else "cpu-smoke-side-by-side",
        "device": build.get("device"),
        "model": f"LLaVA-1.5-{'tiny' if settings['tiny_shapes'] else '7B'}-shaped, random weights, "
        f"{build.get('dtype')}",
        "parameters": build.get("parameters"),
        "prompts": prompt_source,
        "image": "336x336, "
        + ("a distinct image per prompt" if settings["distinct_images"] else "one blank image"),
        "samples": n,
        "new_tokens_per_sample": tokens,
        "build": build,
        "configurations": {
            name: {k: v for k, v in c.items() if k != "responses"} for name, c in columns.items()
        },
    }
    reference = columns.get("hf", {})
    if "responses" in reference:
        result["agreement_with_hf"] = {}
        result["speedup_over_hf"] = {}
        for name, column in columns.items():
            if name == "hf" or "responses" not in column:
                continue
            result["agreement_with_hf"][name] = agreement(
                prompts, reference["responses"], column["responses"], names=("hf", name)
            )
            # (a stand-in engine in a smoke run can finish within the timer's rounding)
            if column["whole_set_s"] > 0:
                result["speedup_over_hf"][name] = round(reference["whole_set_s"] / column["whole_set_s"], 2)
    if settings["tiny_shapes"]:
        result["note"] = (
            "smoke run on tiny shapes: it checks the benchmark's code path; its timings are not a "
            "measurement (and on a machine without a GPU the vllm column comes from whatever `vllm` "
            "package is importable, e.g. the test stand-in)"
        )
    else:
        fastest_hf = min(
            (c["whole_set_s"] for name, c in columns.items() if name.startswith("hf") and "whole_set_s" in c),
            default=None,
        )
        result["target"] = {
            "hf_whole_set_s_at_most": TARGET_HF_SECONDS,
            "fastest_hf_whole_set_s": fastest_hf,
            "met": fastest_hf is not None and fastest_hf <= TARGET_HF_SECONDS,
        }
    return result


def run_stage(stage: str, work: Path) -> int:
    """Worker process: run one stage and write ``<work>/<stage>.json`` (with ``error`` when it failed)."""
    settings = json.loads((work / "settings.json").read_text(encoding="utf-8"))
    try:
        result = WORKERS[stage](settings, work)
        code = 0
    except Exception as err:  # reported in the JSON: the other backend's figures still count
        logger.exception("%s stage failed", stage)
        result, code = {"error": f"{type(err).__name__}: {err}"}, 1
    (work / f"{stage}.json").write_text(json.dumps(result), encoding="utf-8")
    return code


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
    parser.add_argument(
        "--hf-probes", action="store_true", help="with --gpu-7b: the older hf-only batch-size benchmark"
    )
    parser.add_argument(
        "--cpu-smoke",
        action="store_true",
        help="with --gpu-7b: the side-by-side run on tiny shapes on the CPU",
    )
    parser.add_argument("--hf-batch-size", type=int, help="side by side: hf batch size (default 128)")
    parser.add_argument(
        "--configurations",
        type=lambda s: [c for c in s.split(",") if c],
        default=list(CONFIGURATIONS),
        help=f"side by side: which to run, in order (default {','.join(CONFIGURATIONS)})",
    )
    parser.add_argument(
        "--gpu-memory-utilization", type=float, default=0.9, help="side by side: vLLM's share of GPU memory"
    )
    parser.add_argument(
        "--shared-blank-image", action="store_true", help="side by side: one blank image for every prompt"
    )
    parser.add_argument(
        "--time-budget", type=float, default=540, help="side by side: seconds for all stages (default 540)"
    )
    parser.add_argument("--work-dir", type=Path, help="where the model is saved (default: a temp folder)")
    parser.add_argument("--keep-model", action="store_true", help="keep the saved model and worker JSON")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    args.max_new_tokens_given = args.max_new_tokens is not None
    unknown = sorted(set(args.configurations) - set(CONFIGURATIONS))
    if unknown:
        parser.error(f"unknown configuration(s) {', '.join(unknown)}; known: {', '.join(CONFIGURATIONS)}")
    if args.worker is not None:
        return run_stage(args.worker, args.work_dir)
    if args.gpu_7b and args.hf_probes:
        result = hf_probe_benchmark(args)
    elif args.gpu_7b:
        result = side_by_side(args)
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
