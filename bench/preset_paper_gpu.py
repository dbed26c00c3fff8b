"""GPU check of ``--preset paper`` on a LLaVA-1.5-7B-shaped model: fp16, the reference prompt, 50 samples.

    PYTHONPATH=src python3 bench/preset_paper_gpu.py --data ../shared/data/vlguard --out preset_gpu.json
    PYTHONPATH=src python3 bench/preset_paper_gpu.py --tiny-shapes --data ../shared/data/vlguard --out x.json  # CPU smoke test

Builds the 7B-shaped LLaVA of ``bench/eval_throughput.py`` (random weights, built on the GPU in fp16) with
the real chat template of ``llava-hf/llava-1.5-7b-hf``, saves it as safetensors, then runs the real
command ``vlguard eval --preset paper`` on it (VLGuard test, blank images, 50 samples stratified by
subset, one batch). It checks what the preset promises and writes the checks and timings as JSON:

- the run's dtype is float16 on CUDA (float32 under ``--tiny-shapes`` on a CPU), recorded in the manifest;
- the prompt the model's template renders equals the reference llava_v1 prompt (``matches_reference``);
- every answer has at least one new token (``min_new_tokens=1``) and at most 256;
- the judge is ``refusal-paper``.

The answers of a random-weight model are babble: this checks the settings and the speed, not safety.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


def build_and_save(folder: Path, tiny: bool, texts: list[str]) -> dict[str, Any]:
    """Build the 7B-shaped (or tiny-shaped) LLaVA with the llava-1.5 chat template and save it."""
    import torch
    from eval_throughput import build_llava  # the same stand-in as the throughput benchmark

    from vlguard.models.shapes import LLAVA_15_CHAT_TEMPLATE

    device = "cuda" if torch.cuda.is_available() and not tiny else "cpu"
    dtype = torch.float16 if device == "cuda" else torch.float32
    t0 = time.perf_counter()
    model, processor = build_llava("tiny" if tiny else "7b", device, dtype, texts)
    processor.chat_template = LLAVA_15_CHAT_TEMPLATE
    built = time.perf_counter() - t0
    model.save_pretrained(folder, safe_serialization=True)
    processor.save_pretrained(folder)
    saved = time.perf_counter() - t0 - built
    n_params = sum(p.numel() for p in model.parameters())
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return {"n_params": n_params, "build_s": round(built, 1), "save_s": round(saved, 1), "device": device}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default="../shared/data/vlguard", help="folder with VLGuard's test.json")
    parser.add_argument("--out", required=True, help="JSON file for the checks and timings")
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument(
        "--tiny-shapes", action="store_true", help="tiny shapes on CPU: a smoke test of this script"
    )
    parser.add_argument(
        "--work-dir", help="where to save the model and the run (default: a temporary folder)"
    )
    args = parser.parse_args(argv)

    import torch

    from vlguard.cli.main import main as vlguard_main

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="preset-paper-"))
    model_dir, run_dir = work / "llava-7b-shaped", work / "run"
    records = json.loads((Path(args.data) / "test.json").read_text())
    texts = [
        v for r in records for pair in r["instr-resp"] for k, v in pair.items() if k.endswith("instruction")
    ]
    built = build_and_save(model_dir, args.tiny_shapes, texts[:500])

    t0 = time.perf_counter()
    command = [
        "eval", "--model", str(model_dir), "--preset", "paper", "--bench", "vlguard-test", "--data", args.data,
        "--image-mode", "blank", "--limit", str(args.samples), "--batch-size", str(args.samples),
        "--run-dir", str(run_dir), "--no-progress",
    ]  # fmt: skip
    code = vlguard_main(command)
    eval_s = time.perf_counter() - t0

    manifest = json.loads((run_dir / "manifest.json").read_text())
    generations = [json.loads(line) for line in (run_dir / "generations.jsonl").open()]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    tokens = [g["meta"].get("completion_tokens", 0) for g in generations]
    expected_dtype = "float16" if built["device"] == "cuda" else "float32"
    check = manifest.get("preset", {}).get("prompt_check", {})
    checks = {
        "exit_code_0": code == 0,
        "dtype_recorded": manifest["result_fields"]["dtype"]
        == expected_dtype
        == manifest["backend"]["dtype"],
        "ran_on": manifest["backend"]["device"],
        "reference_prompt": check.get("matches_reference") is True,
        "min_new_tokens_1": bool(tokens) and min(tokens) >= 1 and max(tokens) <= 256,
        "judge_refusal_paper": {r["judge"] for r in metrics["metrics"]} == {"refusal-paper"},
        "n_samples": len(generations) == args.samples,
    }
    result = {
        "mode": "tiny-shapes" if args.tiny_shapes else "7b-shapes",
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "versions": {"torch": torch.__version__, **manifest.get("packages", {})},
        **built,
        "eval_s": round(eval_s, 1),
        "completion_tokens": {"min": min(tokens), "max": max(tokens), "mean": sum(tokens) / len(tokens)},
        "rendered_prompt": check.get("rendered_prompt"),
        "checks": checks,
        "all_passed": all(v is True for k, v in checks.items() if k != "ran_on"),
        "command": "vlguard " + " ".join(command),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0 if result["all_passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
