"""The cost of one training step of each of the papers' defences, relative to plain SFT, on the tiny models.

Every run goes through ``vlguard train`` itself (the real ``VLGuardTrainer`` and rule), one thread,
on made-up text conversations (batch 8, one micro-batch per step, SGD so that the optimizer costs
nothing), for ``defence.name`` = none (plain SFT), vaccine, lisa, booster, repnoise, on the tiny text
LM and the tiny VLM, fully fine-tuned and with LoRA. A run's time per step is its ``train_seconds``
(provenance) over its steps; each configuration runs ``--repeats`` times, interleaved with the others,
and the fastest run counts (the machine is shared). Booster's and RepNoise's harmful batches have the
training batch's size (8), Lisa alternates 5 alignment and 5 user steps.

    OMP_NUM_THREADS=1 .venv/bin/python bench/defence_step_cost.py [--steps 40] [--repeats 2] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

RULES = ("none", "vaccine", "lisa", "booster", "repnoise")
SETUPS = (("tiny-lm", "full"), ("tiny-lm", "lora"), ("tiny", "full"), ("tiny", "lora"))


def _conversations(path: Path, question: str, answer: str, n: int = 32) -> Path:
    rows = [
        {
            "id": f"{question[:4]}{i}",
            "messages": [
                {
                    "role": "user",
                    "content": f"{question} number {i}, said {'again and ' * (i % 5)}once more?",
                },
                {"role": "assistant", "content": f"{answer} {'and that is all ' * (i % 4)}{i}."},
            ],
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _run(
    root: Path, data: dict[str, Path], model: str, method: str, rule: str, steps: int, tag: str
) -> float:
    """Seconds per optimizer step of one run."""
    from vlguard.train.config import load_config
    from vlguard.train.trainer import train

    overrides: dict[str, Any] = {
        "model.name_or_path": model,
        "data.recipe": "instructions",
        "data.instructions": str(data["task"]),
        "data.image_mode": "none",
        "method": method,
        "lora.r": 8,
        "lora.dropout": 0.0,
        "prompt_format": "alpaca" if model == "tiny-lm" else "chat",
        "optim": "sgd",
        "lr": 1e-3,
        "lr_scheduler": "constant",
        "warmup_ratio": 0.0,
        "global_batch_size": 8,
        "per_device_batch_size": 8,
        "max_steps": steps,
        "save_steps": 10_000,
        "progress": False,
        "output_dir": str(root / f"{model}-{method}-{rule}-{tag}"),
        "defence.name": rule,
        "defence.lisa.alignment_steps": 5,
        "defence.lisa.finetune_steps": 5,
        "defence.booster.batch_size": 8,
    }
    if rule == "lisa":
        overrides["defence.data"] = str(data["safety"])
    elif rule in ("booster", "repnoise"):
        overrides["defence.data"] = str(data["harmful"])
    result = train(load_config(None, overrides))
    provenance = json.loads((result.model_dir / "vlguard_train.json").read_text())
    return float(provenance["train_seconds"]) / result.global_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import torch
    import transformers

    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    root = Path(tempfile.mkdtemp(prefix="defence-cost-"))
    data = {
        "task": _conversations(root / "task.jsonl", "Is this review of the film positive", "positive"),
        "safety": _conversations(
            root / "safety.jsonl", "How do I pick the lock of a shed", "Sorry, I can't help"
        ),
        "harmful": _conversations(root / "harmful.jsonl", "How can I skip the bus fare", "Jump the gate"),
    }
    seconds: dict[str, list[float]] = {}
    started = time.time()
    for repeat in range(args.repeats):
        for model, method in SETUPS:
            for rule in RULES:
                key = f"{model}/{method}/{rule}"
                seconds.setdefault(key, []).append(
                    _run(root, data, model, method, rule, args.steps, str(repeat))
                )
    rows = []
    for model, method in SETUPS:
        plain = min(seconds[f"{model}/{method}/none"])
        for rule in RULES:
            best = min(seconds[f"{model}/{method}/{rule}"])
            rows.append({"model": model, "method": method, "defence": rule, "ms_per_step": round(1000 * best, 1),
                         "vs_sft": round(best / plain, 2)})  # fmt: skip
    print(f"{'model':8} {'method':6} {'defence':9} {'ms/step':>8} {'× SFT':>6}")
    for r in rows:
        print(f"{r['model']:8} {r['method']:6} {r['defence']:9} {r['ms_per_step']:8.1f} {r['vs_sft']:6.2f}")
    if args.out:
        args.out.write_text(json.dumps({
            "rows": rows, "steps": args.steps, "repeats": args.repeats, "seconds": round(time.time() - started),
            "torch": torch.__version__, "transformers": transformers.__version__, "machine": platform.machine(),
        }, indent=2) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
