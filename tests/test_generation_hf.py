"""The hf backend: batched greedy generation equals one-at-a-time, adapters apply unmerged, clear errors."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from vlguard.errors import ConfigError
from vlguard.generation import make_backend
from vlguard.generation.base import GenerationRequest
from vlguard.generation.hf import STATIC_CACHE_STEP, HFBackend, resolve_dtype
from vlguard.models.resolve import ensure_tiny_model


def _requests() -> list[GenerationRequest]:
    """Prompts of different lengths; images of different sizes and colours; some text-only."""
    requests = []
    for i in range(11):
        prompt = "What is shown here? " + "Please describe every detail. " * (i % 4) + f"Item {i}."
        image = (
            None
            if i % 4 == 3
            else Image.new("RGB", (17 + 13 * i, 40 + 7 * (i % 3)), (25 * i, 200 - 9 * i, 90))
        )
        requests.append(GenerationRequest(sample_id=f"s{i}", prompt=prompt, image=image))
    return requests


@pytest.fixture(scope="module")
def backend(tiny_model_dir: Path) -> HFBackend:
    return HFBackend(str(tiny_model_dir), batch_size=4, max_new_tokens=10)


def test_batched_outputs_equal_one_at_a_time(backend: HFBackend) -> None:
    requests = _requests()
    batched = backend.generate(requests)
    sequential = [backend.generate([r])[0] for r in requests]
    assert [g.sample_id for g in batched] == [r.sample_id for r in requests]
    assert batched == sequential
    # Random weights rarely emit EOS: the texts are real, distinct generations, not empty strings.
    assert len({g.response for g in batched}) > 5
    assert all(g.error is None and g.meta["completion_tokens"] > 0 for g in batched)


def test_prompt_has_image_placeholder_only_with_an_image(backend: HFBackend) -> None:
    with_image = backend.prompt_text(GenerationRequest("a", "Hi?", Image.new("RGB", (8, 8))))
    text_only = backend.prompt_text(GenerationRequest("b", "Hi?", None))
    assert "<image>" in with_image
    assert "<image>" not in text_only
    assert text_only.rstrip().endswith("ASSISTANT:")


def test_system_prompt_goes_into_the_template(tiny_model_dir: Path) -> None:
    b = HFBackend(str(tiny_model_dir), max_new_tokens=2, system_prompt="Be safe.")
    assert b.prompt_text(GenerationRequest("a", "Hi?")).startswith("Be safe.\nUSER: Hi?")


def test_lora_adapter_is_applied_without_merging(
    tiny_model_dir: Path, tmp_path: Path, backend: HFBackend
) -> None:
    from peft import LoraConfig, PeftModel, get_peft_model
    from safetensors.torch import load_file
    from transformers import AutoModelForImageTextToText

    base = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    config = LoraConfig(
        r=4,
        lora_alpha=64,
        target_modules=r".*language_model.*\.(q_proj|v_proj)",
        init_lora_weights=False,  # random A and B: a non-zero update
    )
    torch.manual_seed(1)
    get_peft_model(base, config).save_pretrained(tmp_path / "adapter")

    adapted = HFBackend(
        str(tiny_model_dir), adapter=str(tmp_path / "adapter"), batch_size=4, max_new_tokens=10
    )
    assert isinstance(adapted.model, PeftModel)
    assert any("lora_A" in name for name, _ in adapted.model.named_parameters())
    # Not merged: the base weights inside the wrapped model are still the checkpoint's.
    saved = load_file(tiny_model_dir / "model.safetensors")
    q_key = next(k for k in saved if "language_model" in k and k.endswith("q_proj.weight"))
    inner = dict(adapted.model.get_base_model().named_parameters())
    inner_key = next(
        k
        for k in inner
        if k.endswith(q_key.split("language_model.", 1)[1].replace("weight", "base_layer.weight"))
    )
    assert torch.equal(inner[inner_key].detach(), saved[q_key])

    requests = _requests()
    assert [g.response for g in adapted.generate(requests)] != [
        g.response for g in backend.generate(requests)
    ]
    assert adapted.describe()["adapter"] == str(tmp_path / "adapter")

    # Pickled adapters are refused (safetensors only).
    pickled = tmp_path / "pickled"
    shutil.copytree(tmp_path / "adapter", pickled)
    (pickled / "adapter_model.safetensors").rename(pickled / "adapter_model.bin")
    with pytest.raises(ConfigError, match="safetensors"):
        HFBackend(str(tiny_model_dir), adapter=str(pickled))


def test_hub_adapter_is_fetched_as_safetensors_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    from vlguard.models.resolve import safetensors_adapter

    calls: list[dict[str, Any]] = []
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    (snapshot / "adapter_config.json").write_text("{}")

    def fake_snapshot_download(repo_id: str, **kwargs: Any) -> str:
        calls.append({"repo_id": repo_id, **kwargs})
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    # The repository has only a pickled adapter: it is never downloaded, and the adapter is refused.
    with pytest.raises(ConfigError, match="safetensors"):
        safetensors_adapter("owner/pickled-adapter")
    assert calls[0]["repo_id"] == "owner/pickled-adapter"
    assert not any(p.endswith(".bin") or "*" in p for p in calls[0]["allow_patterns"])
    (snapshot / "adapter_model.safetensors").write_bytes(b"")
    assert safetensors_adapter("owner/safe-adapter") == snapshot


def test_hub_adapter_not_available_offline_is_a_clear_error() -> None:
    from vlguard.models.resolve import safetensors_adapter

    with pytest.raises(ConfigError, match="cannot load LoRA adapter 'no-such-owner/no-such-adapter'"):
        safetensors_adapter("no-such-owner/no-such-adapter")


def test_model_without_chat_template_is_a_clear_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "no-template"
    shutil.copytree(tiny_model_dir, copy)
    (copy / "chat_template.jinja").unlink()
    with pytest.raises(ConfigError, match="no chat template"):
        HFBackend(str(copy))


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    # A missing local folder is named as such, not as a malformed Hub repo id.
    with pytest.raises(ConfigError, match=r"nothing-here'?: no such file or folder") as info:
        HFBackend(str(tmp_path / "nothing-here"))
    assert "Repo id" not in str(info.value)


def test_dtype_defaults() -> None:
    assert resolve_dtype("auto", "cpu") == "float32"
    assert resolve_dtype("auto", "cuda:0") == "bfloat16"
    assert resolve_dtype("bfloat16", "cpu") == "bfloat16"
    with pytest.raises(ConfigError):
        resolve_dtype("fp8", "cpu")


def test_tiny_model_is_built_once_per_build_arguments(tmp_path: Path) -> None:
    first = ensure_tiny_model("tiny", cache_root=tmp_path)
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert ensure_tiny_model("tiny", cache_root=tmp_path) == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp  # reused, not rebuilt
    other = ensure_tiny_model("tiny", seed=1, cache_root=tmp_path)
    assert other != first
    with pytest.raises(ConfigError, match="unknown tiny model size"):
        ensure_tiny_model("tiny:huge", cache_root=tmp_path)


def test_tiny_backend_loads_through_the_hf_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLGUARD_CACHE", str(tmp_path))
    b = make_backend("tiny", "tiny", max_new_tokens=3)
    assert isinstance(b, HFBackend)
    assert Path(b.describe()["model_path"]).parent == tmp_path / "models"
    assert len(b.generate([GenerationRequest("x", "Hello?")])) == 1


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed")
def test_vllm_backend_without_vllm_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"pip install 'vlguard\[vllm\]'"):
        make_backend("vllm", "llava-hf/llava-1.5-7b-hf")


def test_unknown_backend_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="unknown backend"):
        make_backend("nope", "x")


@pytest.mark.slow
def test_gpu_benchmark_path_runs_end_to_end_with_tiny_shapes(tmp_path: Path) -> None:
    """bench/eval_throughput.py --gpu-7b, shrunk to tiny shapes on the CPU: the lead runs the real one."""
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "gpu.json"
    command = [
        sys.executable, str(root / "bench" / "eval_throughput.py"), "--gpu-7b", "--hf-probes", "--tiny-shapes",
        "--samples", "6", "--max-new-tokens", "3", "--batch-sizes", "2,4", "--seq-samples", "1",
        "--data", str(tmp_path / "no-data"), "--out", str(out),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(root / "src"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["samples"] == 6 and report["best_batch_size"] in (2, 4)
    assert report["all_answers_full_length"] is True  # min_new_tokens forced every answer to 3 tokens
    assert report["whole_set_s"] > 0 and report["sequential_whole_set_s_extrapolated"] > 0


# --- speed options: static cache, attention implementation, batch size from memory -------------------


def test_static_cache_gives_the_default_cache_outputs_and_is_recorded(
    backend: HFBackend, tiny_model_dir: Path
) -> None:
    static = HFBackend(str(tiny_model_dir), batch_size=4, max_new_tokens=10, cache_implementation="static")
    requests = _requests()
    assert static.generate(requests) == backend.generate(requests)
    # transformers really built a static cache, sized in steps of STATIC_CACHE_STEP tokens.
    assert static.model._previous_max_cache_length % STATIC_CACHE_STEP == 0
    described = static.describe()
    assert described["cache_implementation"] == "static" and described["cache_fallback_reason"] is None
    assert described["compiled_decoding"] is False  # compiled only on CUDA
    assert backend.describe()["cache_implementation"] == "dynamic"
    with pytest.raises(ConfigError, match="cache_implementation must be one of dynamic, static"):
        HFBackend(str(tiny_model_dir), cache_implementation="paged")
    with pytest.raises(ConfigError, match="generate_kwargs cannot set cache_implementation"):
        HFBackend(str(tiny_model_dir), generate_kwargs={"cache_implementation": "static"})


def test_attention_implementation_is_an_option_recorded_with_its_effective_value(
    backend: HFBackend, tiny_model_dir: Path
) -> None:
    eager = make_backend(
        "hf", str(tiny_model_dir), batch_size=4, max_new_tokens=10, attn_implementation="eager"
    )
    assert eager.describe()["attn_implementation"] == "eager"
    assert backend.describe()["attn_implementation"] == "sdpa"  # transformers' own choice
    requests = _requests()[:4]
    assert [g.response for g in eager.generate(requests)] == [g.response for g in backend.generate(requests)]
    with pytest.raises(
        ConfigError, match="attn_implementation must be one of sdpa, eager, flash_attention_2"
    ):
        make_backend("hf", str(tiny_model_dir), attn_implementation="fast")
    if not importlib.util.find_spec("flash_attn"):
        with pytest.raises(ConfigError, match="needs the flash-attn package"):
            make_backend("hf", str(tiny_model_dir), attn_implementation="flash_attention_2")


def test_kv_cache_bytes_and_the_batch_that_fits_in_memory() -> None:
    from transformers import LlamaConfig

    from vlguard.generation.hf import batch_size_for_memory, kv_cache_bytes_per_token

    llama_7b = LlamaConfig(hidden_size=4096, num_attention_heads=32, num_hidden_layers=32)
    # keys + values × 32 layers × 32 heads × 128 dims × 2 bytes (bf16): half a MiB per token.
    assert kv_cache_bytes_per_token(llama_7b, 2) == 2 * 32 * 32 * 128 * 2 == 512 * 1024
    grouped = LlamaConfig(
        hidden_size=4096, num_attention_heads=32, num_key_value_heads=8, num_hidden_layers=32
    )
    assert kv_cache_bytes_per_token(grouped, 2) == 128 * 1024  # grouped-query attention: a quarter
    # 64 GiB free, 1,280 tokens per sequence (1,024 prompt + 256 new): 0.85 × 64 GiB / 640 MiB = 87 → 80.
    assert batch_size_for_memory(64 * 2**30, 512 * 1024, 1280) == 80
    assert batch_size_for_memory(64 * 2**30, 512 * 1024, 1280, fraction=1.0, multiple=1) == 102
    assert batch_size_for_memory(10 * 2**30, 512 * 1024, 1280, largest=4) == 4
    assert batch_size_for_memory(2**20, 512 * 1024, 1280) == 1  # nothing fits: one at a time
    assert batch_size_for_memory(7 * 640 * 2**20, 512 * 1024, 1280, fraction=1.0) == 7  # under a multiple


def test_auto_batch_size_keeps_the_default_off_cuda(tiny_model_dir: Path) -> None:
    auto = make_backend("hf", str(tiny_model_dir), batch_size="auto", max_new_tokens=2)
    assert auto.batch_size == 16 and auto.requests_per_call == 64
    assert "default" in auto.describe()["batch_size_auto"]["rule"]
    with pytest.raises(ConfigError, match="batch_size must be a whole number of at least 1 or auto"):
        make_backend("hf", str(tiny_model_dir), batch_size="many")


def test_requests_are_ordered_images_first_then_longest_first(backend: HFBackend) -> None:
    requests = [GenerationRequest(f"s{i}", "word " * n) for i, n in enumerate([3, 9, 1, 9, 5])]
    with_image = [False, False, True, False, True]
    # Images first (longest first among them), then the text-only ones longest first; ties keep their order.
    assert backend.order_requests(requests, with_image) == [4, 2, 1, 3, 0]


def test_model_generation_config_settings_are_applied_and_recorded(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    config = json.loads((model / "generation_config.json").read_text())
    (model / "generation_config.json").write_text(json.dumps({**config, "repetition_penalty": 1.3}))
    penalised = HFBackend(str(model), max_new_tokens=8)
    assert penalised.describe()["decoding_settings"] == {"repetition_penalty": 1.3}
    assert penalised.describe()["model_decoding_defaults"] == {"repetition_penalty": 1.3}
    # An option overrides the model's setting, and the record says what was applied.
    plain = HFBackend(str(model), max_new_tokens=8, generate_kwargs={"repetition_penalty": 1.0})
    assert plain.describe()["decoding_settings"] == {}
    assert plain.describe()["model_decoding_defaults"] == {"repetition_penalty": 1.3}
    # Applied under greedy decoding: the tiny model repeats a word without the penalty, not with it.
    requests = [GenerationRequest(f"s{i}", "the it re the it " * (i + 1)) for i in range(2)]
    assert penalised.generate(requests) != plain.generate(requests)


def test_a_failed_compile_falls_back_to_uncompiled_decoding_and_says_so(
    backend: HFBackend, tiny_model_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from torch._dynamo.exc import BackendCompilerFailed

    static = HFBackend(str(tiny_model_dir), batch_size=4, max_new_tokens=10, cache_implementation="static")
    generate = static.model.generate
    seen: list[dict[str, Any]] = []

    def compile_fails(**kwargs: Any) -> Any:
        # What torch.compile raises when the decoding step cannot be built (e.g. no C compiler for Triton).
        seen.append(kwargs)
        if not kwargs.get("disable_compile"):
            raise BackendCompilerFailed(lambda: None, RuntimeError("no C compiler"), None)
        return generate(**kwargs)

    static.model.generate = compile_fails
    requests = _requests()[:4]
    with caplog.at_level("WARNING", logger="vlguard.generation.hf"):
        assert static.generate(requests) == backend.generate(requests)
    assert "compiling the decoding step failed" in caplog.text and "no C compiler" in caplog.text
    assert "no C compiler" in static.describe()["compile_fallback_reason"]
    assert static.describe()["cache_implementation"] == "static" and static.stats["batch_fallbacks"] == 0
    seen.clear()
    static.generate(requests)  # from now on uncompiled, without trying again
    assert seen and all(kwargs["disable_compile"] is True for kwargs in seen)
