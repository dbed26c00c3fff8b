"""Capability-suite throughput: vlguard's lmms-eval model class, batched vs one request at a time.

lmms-eval's own Hugging Face classes answer one request at a time (``llava_hf`` asserts a batch size
of 1); vlguard's class (``vlguard.utility.lmms_model``) hands lmms-eval's requests to the batched ``hf``
backend. This runs the same local tasks through lmms-eval's ``simple_evaluate`` both ways, side by
side, checks that the per-document scores agree, and reports seconds per task and the speed-up.

The tasks have the shapes of the ``quick`` suite, built locally (no download): ``mmlu_like`` (text,
4-way multiple choice by likelihood), ``sqa_like`` (an image and a lettered multiple-choice question,
short generated answer), ``vqa_like`` (an image and an open question, short generated answer).

CPU mode (default): the tiny VLM, ``--docs`` documents per task (default 48)::

    PYTHONPATH=src python bench/utility_throughput.py --out cpu.json

GPU mode (``--gpu-7b``): a LLaVA-1.5-7B-shaped model with random weights in bf16 (built by
``bench/eval_throughput.py``'s ``build_llava``), the ``quick`` suite's sizes (114 text questions, 200 per
image task), batch 32; the one-at-a-time loop runs on the first ``--sequential-docs`` documents of each
task and is extrapolated. Random weights never stop early, so every generated answer takes its full
``--max-new-tokens`` (16, about a short answer's length; real models stop at EOS)::

    PYTHONPATH=src python3 bench/utility_throughput.py --gpu-7b --out gpu7b.json
    PYTHONPATH=src python bench/utility_throughput.py --gpu-7b --tiny-shapes    # CPU smoke test of that path
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger("utility_throughput")
BENCH_DIR = Path(__file__).resolve().parent
WORDS = [
    "the",
    "a",
    "of",
    "which",
    "what",
    "how",
    "many",
    "colour",
    "shape",
    "animal",
    "plant",
    "river",
    "city",
    "number",
    "large",
    "small",
    "red",
    "blue",
    "green",
    "left",
    "right",
    "above",
    "below",
    "before",
    "after",
    "most",
    "least",
    "water",
    "light",
    "energy",
    "force",
    "cell",
    "rock",
    "map",
    "object",
    "picture",
]
QUICK_SIZES = {"mmlu_like": 114, "sqa_like": 200, "vqa_like": 200}


def _sentence(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high))).capitalize()


def write_tasks(root: Path, sizes: dict[str, int], image_size: int, max_new_tokens: int) -> Path:
    """The three local lmms-eval tasks and their data (deterministic)."""
    from PIL import Image

    rng = random.Random(0)
    tasks = root / "tasks"
    tasks.mkdir(parents=True)
    text = root / "mmlu_like.jsonl"
    with text.open("w") as f:
        for i in range(sizes["mmlu_like"]):
            choices = [_sentence(rng, 1, 6) for _ in range(4)]
            question = _sentence(rng, 15, 60) + "?"
            f.write(json.dumps({"question": question, "choices": choices, "answer": i % 4}) + "\n")
    (tasks / "mmlu_like.yaml").write_text(
        f"""task: mmlu_like
dataset_path: json
dataset_kwargs:
  data_files:
    test: {text}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{question}}}}\\nA. {{{{choices[0]}}}}\\nB. {{{{choices[1]}}}}\\nC. {{{{choices[2]}}}}\\nD. {{{{choices[3]}}}}\\nAnswer:"
doc_to_choice: ["A", "B", "C", "D"]
doc_to_target: answer
metric_list:
  - metric: acc
metadata:
  version: 1.0
"""
    )
    for task in ("sqa_like", "vqa_like"):
        folder = root / task
        folder.mkdir()
        rows = []
        for i in range(sizes[task]):
            colour = tuple(rng.randrange(256) for _ in range(3))
            Image.new("RGB", (image_size, image_size), colour).save(folder / f"{i:04d}.png")
            question = _sentence(rng, 8, 30) + "?"
            if task == "sqa_like":
                options = "\n".join(f"{letter}. {_sentence(rng, 1, 5)}" for letter in "ABCD")
                question += f"\n{options}\nAnswer with the option's letter from the given choices directly."
            else:
                question += "\nAnswer the question using a single word or phrase."
            rows.append(
                {
                    "file_name": f"{i:04d}.png",
                    "question": question,
                    "answer": "A" if task == "sqa_like" else "red",
                }
            )
        (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (tasks / f"{task}.yaml").write_text(
            f"""task: {task}
dataset_path: imagefolder
dataset_kwargs:
  data_dir: {folder}
test_split: train
output_type: generate_until
doc_to_visual: image
doc_to_text: "{{{{question}}}}"
doc_to_target: answer
generation_kwargs:
  max_new_tokens: {max_new_tokens}
  until: ["ASSISTANT:"]
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
    ignore_case: true
metadata:
  version: 1.0
"""
        )
    return tasks


def timed_model(backend: Any) -> Any:
    """vlguard's lmms-eval model class, counting the seconds spent in the model calls themselves (the
    engine's own per-task work, such as loading the dataset and scoring, is timed apart)."""
    from vlguard.utility.lmms_model import VLGuardLMMS

    class Timed(VLGuardLMMS):
        model_seconds = 0.0

        def generate_until(self, requests: Any) -> Any:
            start = time.perf_counter()
            try:
                return super().generate_until(requests)
            finally:
                self.model_seconds += time.perf_counter() - start

        def loglikelihood(self, requests: Any) -> Any:
            start = time.perf_counter()
            try:
                return super().loglikelihood(requests)
            finally:
                self.model_seconds += time.perf_counter() - start

    return Timed(backend)


def evaluate(
    lm: Any, manager: Any, task: str, limit: int | None, output: Path
) -> tuple[float, float, list[Any]]:
    """Wall seconds for one task through lmms-eval, seconds in the model, and per-document scores."""
    from vlguard.utility.engines import evaluate_task
    from vlguard.utility.suites import LMMS_EVAL, TaskSpec

    lm.model_seconds = 0.0
    start = time.perf_counter()
    raw = evaluate_task(
        LMMS_EVAL, lm, TaskSpec(task, limit=limit), manager, seed=0, bootstrap_iters=0, output_dir=output
    )
    seconds = time.perf_counter() - start
    metric = "acc" if task == "mmlu_like" else "exact_match"
    return seconds, lm.model_seconds, [s[metric] for s in raw["samples"][task]]


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from vlguard.generation.hf import HFBackend
    from vlguard.utility.engines import require_engine, task_manager

    gpu = args.gpu_7b
    device = "cuda" if gpu and not args.tiny_shapes else "cpu"
    torch.set_num_threads(args.threads)
    version = require_engine("lmms-eval")
    sizes = dict(QUICK_SIZES) if gpu else {task: args.docs for task in QUICK_SIZES}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tasks = write_tasks(root, sizes, 336, args.max_new_tokens)
        if gpu:
            sys.path.insert(0, str(BENCH_DIR))
            from eval_throughput import build_llava

            dtype = torch.bfloat16 if device == "cuda" else torch.float32
            build_start = time.perf_counter()
            model, processor = build_llava("tiny" if args.tiny_shapes else "7b", device, dtype, [])
            build_s = time.perf_counter() - build_start
            model_name = (
                "LLaVA-1.5-7B-shaped, random weights, bf16"
                if not args.tiny_shapes
                else "tiny shapes (smoke test)"
            )
        else:
            from vlguard.models.tiny import build_tiny_vlm

            build_start = time.perf_counter()
            folder = build_tiny_vlm(root / "tiny", size=args.size, seed=0)
            backend = HFBackend(str(folder), batch_size=1)
            model, processor = backend.model, backend.processor
            build_s = time.perf_counter() - build_start
            model_name = f"tiny VLM ({args.size}), fp32"
        batched = timed_model(HFBackend.from_objects(model, processor, batch_size=args.batch_size))
        one = timed_model(HFBackend.from_objects(model, processor, batch_size=1))
        manager = task_manager("lmms-eval", str(tasks), list(QUICK_SIZES))
        # Warm-up (first calls allocate memory and pick kernels).
        evaluate(batched, manager, "sqa_like", 2, root / "engine")
        results: dict[str, Any] = {}
        for task, n in sizes.items():
            seq_docs = min(n, args.sequential_docs) if gpu else n
            wall_s, batched_s, batched_scores = evaluate(batched, manager, task, None, root / "engine")
            _, one_s, one_scores = evaluate(one, manager, task, seq_docs, root / "engine")
            # Model time grows with the documents; the engine's own work is in wall_s - model_s.
            one_full = one_s * n / seq_docs
            results[task] = {
                "docs": n,
                "wall_s": round(wall_s, 3),
                "model_s_batched": round(batched_s, 3),
                "model_s_one_at_a_time": round(one_full, 3),
                "one_at_a_time_measured_docs": seq_docs,
                "model_speedup": round(one_full / batched_s, 2),
                "scores_identical": batched_scores[:seq_docs] == one_scores,
            }
            logger.info("%s: %s", task, results[task])
    total_b = sum(r["model_s_batched"] for r in results.values())
    total_1 = sum(r["model_s_one_at_a_time"] for r in results.values())
    return {
        "mode": "gpu-7b" if gpu else "cpu-tiny",
        "model": model_name,
        "device": torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or "cpu",
        "threads": args.threads,
        "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens,
        "engine": f"lmms-eval {version}",
        "build_s": round(build_s, 1),
        "tasks": results,
        "suite_wall_s": round(sum(r["wall_s"] for r in results.values()), 2),
        "model_s_batched": round(total_b, 2),
        "model_s_one_at_a_time": round(total_1, 2),
        "model_speedup": round(total_1 / total_b, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--gpu-7b", action="store_true", help="LLaVA-1.5-7B shapes in bf16 on CUDA, quick-suite sizes"
    )
    parser.add_argument(
        "--tiny-shapes", action="store_true", help="with --gpu-7b: tiny shapes on CPU (smoke test)"
    )
    parser.add_argument("--docs", type=int, default=48, help="CPU mode: documents per task")
    parser.add_argument(
        "--sequential-docs", type=int, default=24, help="GPU mode: documents timed one at a time"
    )
    parser.add_argument("--batch-size", type=int, default=None, help="default 16 on CPU, 32 on GPU")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--size", default="tiny", help="CPU mode: tiny VLM size (tiny, small)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: see docs/benchmarks.md on shared machines)"
    )
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    if args.batch_size is None:
        args.batch_size = 32 if args.gpu_7b else 16
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    figures = run(args)
    text = json.dumps(figures, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
