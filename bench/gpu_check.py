"""One GPU check of the fast paths, in parts, into ONE JSON file; run it through ``bench/gpu_check.sh``.

Parts, in order (each writes its result into the JSON as soon as it is done; a second call skips the
parts already there and finishes the rest, so a call cut off by a time limit loses at most one part):

- ``versions``: python, torch (CUDA), transformers, peft, the GPU; and a vLLM probe: its version, or why
  it cannot be imported ("not installable here" is a result, not a failure).
- ``build``: a LLaVA-1.5-7B-shaped model (CLIP ViT-L/14-336 + Llama-2-7B shapes) with random weights in
  bf16, built from a config on the GPU (no download), saved to the work folder for the eval part.
- ``hf_dynamic`` and ``hf_static``: vlguard's ``hf`` backend with the default dynamic KV cache and with
  ``cache_implementation=static`` (compiled decoding with CUDA graphs), on the same batches: the first
  batch cold, warm and as prefill alone (ms per decoding step cold and warm, the cold overhead = the
  compile time for the static cache), then all the prompts timed warm with peak memory.
- ``hf_agreement``: identical answers and identical refusal labels between the two (from per-answer
  digests and labels kept in the JSON).
- ``lora_step``: a rank-128 LoRA (the LLM's linear layers) training step under bf16 autocast, AdamW,
  gradient checkpointing; the adapter is saved (safetensors) for the next part.
- ``eval_adapter``: the real ``vlguard eval --adapter`` on the saved model and adapter (bundled sample
  benchmark, blank images), checked for a complete run folder that records the adapter.

``--cpu-smoke``: the same parts with tiny shapes on the CPU in well under a minute (the test of this
script's plumbing, ``tests/test_gpu_check.py``); its timings mean nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling bench scripts

import eval_throughput as throughput

logger = logging.getLogger("gpu_check")

PARTS = ("versions", "build", "hf_dynamic", "hf_static", "hf_agreement", "lora_step", "eval_adapter")
REPO_ROOT = Path(__file__).resolve().parents[1]


class Check:
    """The shared state of one call: settings, the JSON so far, the model once built or loaded."""

    def __init__(self, args: argparse.Namespace) -> None:
        import torch

        self.args = args
        self.smoke = args.cpu_smoke
        self.cuda = torch.cuda.is_available() and not self.smoke
        if not self.cuda and not self.smoke:
            raise SystemExit("gpu_check needs a CUDA GPU (use --cpu-smoke for the CPU dry run)")
        self.device = "cuda" if self.cuda else "cpu"
        self.dtype = torch.bfloat16 if self.cuda else torch.float32
        self.work = Path(args.work_dir)
        self.work.mkdir(parents=True, exist_ok=True)
        self.samples = args.samples or (8 if self.smoke else 128)
        self.batch_size = args.batch_size or (4 if self.smoke else 64)
        self.tokens = args.max_new_tokens or (4 if self.smoke else 256)
        self.prompts, self.prompt_source = throughput.load_prompts(self.samples, args.data)
        self._model: tuple[Any, Any] | None = None

    def sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    @property
    def model_dir(self) -> Path:
        return self.work / "model"

    def model(self) -> tuple[Any, Any]:
        """The model and processor: built (and saved) once, else loaded from the work folder."""
        if self._model is None:
            if (self.model_dir / "config.json").is_file():
                from transformers import AutoProcessor, LlavaForConditionalGeneration

                model = LlavaForConditionalGeneration.from_pretrained(self.model_dir, dtype=self.dtype)
                self._model = (model.to(self.device).eval(), AutoProcessor.from_pretrained(self.model_dir))
            else:
                self.build()
        assert self._model is not None
        return self._model

    def build(self) -> dict[str, Any]:
        started = time.perf_counter()
        model, processor = throughput.build_llava(
            "tiny" if self.smoke else "7b", self.device, self.dtype, self.prompts
        )
        build_s = time.perf_counter() - started
        started = time.perf_counter()
        tmp = self.work / "model.tmp"
        model.save_pretrained(tmp)  # safetensors
        processor.save_pretrained(tmp)
        tmp.rename(self.model_dir)  # complete or absent
        self._model = (model.eval(), processor)
        return {
            "parameters": sum(p.numel() for p in model.parameters()),
            "dtype": str(self.dtype).removeprefix("torch."),
            "build_s": round(build_s, 1),
            "save_s": round(time.perf_counter() - started, 1),
        }

    def peak_gib(self) -> float | None:
        import torch

        return round(torch.cuda.max_memory_allocated() / 2**30, 2) if self.cuda else None

    def reset_peak(self) -> None:
        import torch

        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()


def part_versions(check: Check) -> dict[str, Any]:
    import importlib.metadata as metadata

    import torch

    found: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("transformers", "peft", "accelerate", "tokenizers", "safetensors"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    found["cuda"] = torch.version.cuda
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        found["gpu"] = props.name
        found["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
    try:
        import vllm

        found["vllm"] = {"importable": True, "version": str(getattr(vllm, "__version__", "?"))}
    except Exception as err:  # any failure to import is the answer, not a failure of the check
        found["vllm"] = {
            "importable": False,
            "reason": f"not installable here: {type(err).__name__}: {err}",
            "why": "the vLLM wheel (336 MB, its own torch pin) exceeds what this machine can carry (64 MiB, "
            "no network); the vllm backend is checked against tests/vllm_stand_in instead",
        }
    found["commit"] = _git_commit()
    return found


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def part_build(check: Check) -> dict[str, Any]:
    if (check.model_dir / "config.json").is_file():
        check.model()
        return {"note": "the model folder was already there (an earlier call built it)"}
    return check.build()


def _hf(check: Check, cache: str) -> dict[str, Any]:
    """One cache implementation: probes on the first batch, then every prompt, warm."""
    import torch

    from vlguard.generation.hf import HFBackend
    from vlguard.judges import make_judge
    from vlguard.judges.base import JudgeInput

    model, processor = check.model()
    backend = HFBackend.from_objects(
        model,
        processor,
        model_id="llava-1.5-7b-shaped-random" if not check.smoke else "llava-tiny-shapes-random",
        batch_size=check.batch_size,
        max_new_tokens=check.tokens,
        # Random weights would stop at a random EOS: every answer is the full length.
        generate_kwargs={"min_new_tokens": check.tokens},
        cache_implementation=cache,
    )
    requests = throughput.ordered_requests(backend, check.prompts, distinct=True)
    check.reset_peak()
    probes = throughput.step_probes(backend, requests[: check.batch_size], check.tokens, check.sync)
    check.reset_peak()
    timed = throughput.timed_generation(backend, requests, {"max_new_tokens": check.tokens}, check.sync)
    responses = timed.pop("responses")
    judged = make_judge("refusal").judge(
        [JudgeInput(f"p{i}", check.prompts[i], r) for i, r in enumerate(responses)]
    )
    described = backend.describe()
    del backend
    if check.cuda:
        torch.cuda.empty_cache()
    settings = ("cache_implementation", "cache_fallback_reason", "compiled_decoding", "attn_implementation",
                "batch_size", "dtype")  # fmt: skip
    return {
        **{k: described[k] for k in settings},
        "prompts": check.prompt_source,
        "samples": len(requests),
        "new_tokens_per_sample": check.tokens,
        "probes": probes,
        **timed,
        "peak_torch_allocated_gib": check.peak_gib(),
        # What the agreement part compares (the texts themselves would bloat the JSON).
        "answer_sha1": [hashlib.sha1(r.encode()).hexdigest()[:12] for r in responses],
        "refusal_labels": [j.label for j in judged],
    }


def part_hf_dynamic(check: Check) -> dict[str, Any]:
    return _hf(check, "dynamic")


def part_hf_static(check: Check) -> dict[str, Any]:
    return _hf(check, "static")


def part_hf_agreement(check: Check, results: dict[str, Any]) -> dict[str, Any]:
    dynamic, static = results.get("hf_dynamic") or {}, results.get("hf_static") or {}
    if "answer_sha1" not in dynamic or "answer_sha1" not in static:
        return {"error": "needs both hf_dynamic and hf_static without errors"}
    n = len(dynamic["answer_sha1"])
    pairs = list(zip(dynamic["answer_sha1"], static["answer_sha1"], strict=True))
    labels = list(zip(dynamic["refusal_labels"], static["refusal_labels"], strict=True))
    speedup = round(dynamic["whole_set_s"] / static["whole_set_s"], 2) if static.get("whole_set_s") else None
    return {
        "samples": n,
        "identical_answers": round(sum(a == b for a, b in pairs) / n, 4),
        "identical_refusal_labels": round(sum(a == b for a, b in labels) / n, 4),
        "static_speedup_whole_set": speedup,
        "warm_ms_per_step": {
            "dynamic": dynamic["probes"]["warm_ms_per_step"],
            "static": static["probes"]["warm_ms_per_step"],
        },
        "note": "bf16 on a GPU: the two caches run differently shaped attention, so a near-tie between two "
        "tokens can flip and the answers fork; on random weights near-ties are common (fp32 on the CPU "
        "gives identical answers, tests/test_architectures.py)",
    }


def lora_step(check: Check, steps: int) -> dict[str, Any]:
    """Rank-128 LoRA on the LLM's linear layers, bf16 autocast (CUDA), AdamW; the adapter is saved."""
    import torch
    import train_throughput as training
    from peft import LoraConfig, get_peft_model

    model, _ = check.model()
    rank = 128 if not check.smoke else 8
    model.config.use_cache = False
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    lora = get_peft_model(
        model,
        LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0,
                   target_modules=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"),
    )  # fmt: skip
    lora.enable_input_require_grads()
    lora.train()  # gradient checkpointing is on in training mode only
    run = training._Autocast(lora) if check.cuda else lora
    optimizer = torch.optim.AdamW(
        [p for p in lora.parameters() if p.requires_grad], lr=2e-4, fused=check.cuda
    )
    text_tokens = 128 if not check.smoke else 8
    inputs = training._inputs(model.config, 4, text_tokens, torch.device(check.device), check.dtype)
    losses: list[float] = []
    check.reset_peak()
    check.sync()
    started = time.perf_counter()
    losses.append(_train_step(run, optimizer, inputs))  # cold: allocations, kernels, optimizer state
    check.sync()
    cold = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(steps):
        losses.append(_train_step(run, optimizer, inputs))
    check.sync()
    warm = (time.perf_counter() - started) / steps
    adapter = check.work / "adapter"
    lora.save_pretrained(adapter)  # safetensors
    trainable = sum(p.numel() for p in lora.parameters() if p.requires_grad)
    seq_len = inputs["input_ids"].shape[1]
    del optimizer, inputs  # before the adapter goes: the optimizer holds its states
    restored = lora.unload()  # the base model again, for anything after
    restored.gradient_checkpointing_disable()
    restored.config.use_cache = True
    check._model = (restored.eval(), check.model()[1])
    if check.cuda:
        torch.cuda.empty_cache()
    return {
        "r": rank,
        "alpha": 2 * rank,
        "bf16_autocast": check.cuda,
        "optimizer": "AdamW (fp32 adapter weights and states)",
        "batch_size": 4,
        "seq_len": seq_len,
        "trainable_params": trainable,
        "cold_step_s": round(cold, 3),
        "warm_step_s": round(warm, 4),
        "tokens_per_s": round(4 * seq_len / warm),
        "losses": [round(x, 4) for x in losses],
        "losses_finite": all(x == x and abs(x) != float("inf") for x in losses),
        "peak_torch_allocated_gib": check.peak_gib(),
        "adapter_files": sorted(p.name for p in adapter.iterdir()),
    }


def _train_step(run: Any, optimizer: Any, inputs: dict[str, Any]) -> float:
    """Forward, backward, optimizer step; the loss."""
    loss = run(**inputs).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def part_lora_step(check: Check) -> dict[str, Any]:
    return lora_step(check, steps=3 if not check.smoke else 1)


def part_eval_adapter(check: Check) -> dict[str, Any]:
    """``vlguard eval --adapter`` as a user runs it, in its own process."""
    from vlguard.data.sample import sample_dataset_dir

    adapter = check.work / "adapter"
    if not (adapter / "adapter_model.safetensors").is_file():
        lora_step(check, steps=1)  # a fresh machine: the adapter of an earlier call is gone
    check.model()  # the model folder must exist
    run_dir = check.work / "eval-adapter"
    limit = 16 if not check.smoke else 4
    command = [
        sys.executable, "-m", "vlguard.cli.main", "eval", "--model", str(check.model_dir),
        "--adapter", str(adapter), "--data", str(sample_dataset_dir()), "--image-mode", "blank",
        "--limit", str(limit), "--max-new-tokens", str(32 if not check.smoke else 3),
        "--batch-size", str(limit), "--judge", "refusal", "--no-progress", "--run-dir", str(run_dir),
    ]  # fmt: skip
    if check.smoke:
        command += ["--device", "cpu"]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    started = time.perf_counter()
    completed = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=check.args.eval_timeout
    )
    seconds = time.perf_counter() - started
    result: dict[str, Any] = {
        "returncode": completed.returncode,
        "seconds": round(seconds, 1),
        "limit": limit,
    }
    if completed.returncode != 0:
        result["error"] = completed.stderr[-2000:]
        return result
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    generations = (run_dir / "generations.jsonl").read_text(encoding="utf-8").splitlines()
    result.update(
        adapter_recorded=manifest["backend"].get("adapter") == str(adapter),
        device=manifest["backend"].get("device"),
        dtype=manifest["backend"].get("dtype"),
        generations=len(generations),
        generation_errors=sum(json.loads(line).get("error") is not None for line in generations),
        metrics_written=(run_dir / "metrics.json").is_file(),
    )
    return result


RUNNERS: dict[str, Callable[..., dict[str, Any]]] = {
    "versions": part_versions,
    "build": part_build,
    "hf_dynamic": part_hf_dynamic,
    "hf_static": part_hf_static,
    "hf_agreement": part_hf_agreement,
    "lora_step": part_lora_step,
    "eval_adapter": part_eval_adapter,
}


def write_json(path: Path, results: dict[str, Any]) -> None:
    """Replace ``path`` atomically: a cut-off call never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="the JSON file (read first: finished parts are skipped)"
    )
    parser.add_argument("--work-dir", default="/tmp/vlguard-gpu-check", help="the saved model and adapter")
    parser.add_argument(
        "--cpu-smoke", action="store_true", help="tiny shapes on the CPU (tests the plumbing)"
    )
    parser.add_argument("--parts", type=lambda s: [p for p in s.split(",") if p], default=list(PARTS),
                        help=f"which parts to run, comma-separated (default all: {','.join(PARTS)})")  # fmt: skip
    parser.add_argument("--redo", type=lambda s: [p for p in s.split(",") if p], default=[],
                        help="parts to run again even if the JSON has them")  # fmt: skip
    parser.add_argument("--samples", type=int, help="prompts for the hf parts (default 128; smoke 8)")
    parser.add_argument("--batch-size", type=int, help="hf batch size (default 64; smoke 4)")
    parser.add_argument("--max-new-tokens", type=int, help="new tokens per answer (default 256; smoke 4)")
    parser.add_argument(
        "--data", type=Path, default=throughput.DEFAULT_DATA if throughput.DEFAULT_DATA.is_dir() else None
    )
    parser.add_argument("--eval-timeout", type=float, default=240, help="seconds for the eval part's command")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.parts + args.redo) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; known: {', '.join(PARTS)}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    results: dict[str, Any] = json.loads(args.out.read_text(encoding="utf-8")) if args.out.is_file() else {}
    if results and results.get("cpu_smoke", False) != args.cpu_smoke:
        parser.error(
            f"{args.out} holds a {'smoke' if results.get('cpu_smoke') else 'GPU'} run; use another file"
        )
    results["cpu_smoke"] = args.cpu_smoke
    results.setdefault("parts", {})
    check = Check(args)
    for name in PARTS:
        if name not in args.parts:
            continue
        if name in results["parts"] and name not in args.redo:
            logger.info("part %s: already done, skipped", name)
            continue
        logger.info("part %s: running", name)
        started = time.perf_counter()
        try:
            runner = RUNNERS[name]
            value = runner(check, results["parts"]) if name == "hf_agreement" else runner(check)
        except Exception as err:  # recorded, and the next parts still run (a rerun with --redo retries it)
            logger.exception("part %s failed", name)
            value = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()[-3000:]}
        value["part_s"] = round(time.perf_counter() - started, 1)
        results["parts"][name] = value
        write_json(args.out, results)
        logger.info("part %s: done in %.1f s", name, value["part_s"])
    results["complete"] = all(p in results["parts"] for p in PARTS)
    write_json(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
