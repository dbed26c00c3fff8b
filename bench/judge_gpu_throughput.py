"""GPU throughput of the model judges (replies/s, batch 32) on 7B-shaped random weights.

    python3 bench/judge_gpu_throughput.py [OUT.json]

WildGuard (Mistral-7B-v0.3 shapes), Llama Guard 3 8B (Llama-3.1-8B shapes) and Beaver-Dam (Llama-7B
shapes, a 14-label sequence classifier), each built from a config with random weights directly in bf16
on the GPU. Prompts are random token ids with the lengths the judges' real prompts have for a
~250-token reply (WildGuard 300-500, Llama Guard 550-800, Beaver-Dam 250-450 tokens), left-padded for
generation as the judges do; every generation runs to its verdict's real length (WildGuard's three lines
~18 tokens, Llama Guard's "safe"/"unsafe\\nS1" 4) with ``min_new_tokens``. One warm-up batch, then 256
replies timed. Needs only torch, transformers and a CUDA GPU.
"""

import json
import sys
import time

import torch
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    MistralConfig,
    MistralForCausalLM,
)

N, BATCH = 256, 32
SHAPE = dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32)


def build(config_class, model_class, **fields):
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = model_class(config_class(**SHAPE, **fields))
    torch.set_default_dtype(torch.float32)
    return model.eval()


def batches(vocab, low, high):
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(low, high, (N + BATCH,), generator=gen).tolist()
    rows = [torch.randint(3, vocab, (n,), generator=gen) for n in lengths]
    for start in range(0, len(rows), BATCH):
        chunk = rows[start : start + BATCH]
        width = max(len(r) for r in chunk)
        ids = torch.zeros(len(chunk), width, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, r in enumerate(chunk):
            ids[i, width - len(r) :], mask[i, width - len(r) :] = r, 1
        yield ids.cuda(), mask.cuda(), sum(len(r) for r in chunk)


def measure(name, model, vocab, low, high, new_tokens):
    def step(ids, mask):
        with torch.inference_mode():
            if new_tokens == 0:
                return model(input_ids=ids, attention_mask=mask).logits
            return model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens,
                min_new_tokens=new_tokens, do_sample=False, pad_token_id=0,
            )  # fmt: skip

    data = list(batches(vocab, low, high))
    step(*data[0][:2])  # warm-up
    torch.cuda.synchronize()
    start = time.perf_counter()
    for ids, mask, _ in data[1:]:
        step(ids, mask)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    tokens = sum(n for *_, n in data[1:])
    return {
        "judge": name, "replies": N, "batch": BATCH, "prompt_tokens_mean": round(tokens / N, 1),
        "new_tokens": new_tokens, "seconds": round(seconds, 2), "replies_per_s": round(N / seconds, 1),
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1),
    }  # fmt: skip


def main():
    results = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__}
    results["transformers"] = __import__("transformers").__version__
    runs = [
        ("wildguard", MistralConfig, MistralForCausalLM, 32768, 14336, 8, {}, (300, 500), 18),
        ("llama-guard", LlamaConfig, LlamaForCausalLM, 128256, 14336, 8, {}, (550, 800), 4),
        ("beaver-dam", LlamaConfig, LlamaForSequenceClassification, 32000, 11008, 32, {"num_labels": 14}, (250, 450), 0),
    ]  # fmt: skip
    for name, config_class, model_class, vocab, inter, kv, extra, lengths, new in runs:
        torch.cuda.reset_peak_memory_stats()
        model = build(config_class, model_class, vocab_size=vocab, intermediate_size=inter,
                      num_key_value_heads=kv, pad_token_id=0, **extra)  # fmt: skip
        results[name] = measure(name, model, vocab, *lengths, new)
        print(json.dumps(results[name]), flush=True)
        del model
        torch.cuda.empty_cache()
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
