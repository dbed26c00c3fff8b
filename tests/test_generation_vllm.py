"""The vllm backend against the stand-in engine (tests/vllm_stand_in; vLLM cannot run here): what it asks
of vLLM, LoRA adapters written by ``vlguard train`` and by PEFT, and the GPUs each engine gets.
"""

from __future__ import annotations

import gc
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from vlguard.errors import ConfigError
from vlguard.generation import GenerationRequest, make_backend
from vlguard.generation.vllm_backend import VLLMBackend, pin_engine_devices, vllm_messages
from vlguard.generation.vllm_lora import (
    VLLM_MAX_LORA_RANKS,
    module_part,
    plan_vllm_adapter,
    vllm_max_lora_rank,
)
from vlguard.models.adapters import read_adapter

REPO = Path(__file__).resolve().parents[1]
LM_TARGETS = r".*language_model.*\.(q_proj|v_proj)"


def _events(vllm: ModuleType, kind: str) -> list[dict[str, Any]]:
    return [c for c in vllm.CALLS if c["event"] == kind]


def _tensors(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


@pytest.fixture(scope="module")
def trained_adapters(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Adapters written by ``vlguard train configs/train/tiny-cpu.yaml`` on the tiny model (one step each).

    ``r128``: rank 128 with the projector trained in full (the LoRA recipe's default, saved in the adapter
    as modules_to_save); ``r8``: the config's rank 8, projector frozen (LoRA weights only).
    """
    from vlguard.train.config import load_config
    from vlguard.train.trainer import train

    out = tmp_path_factory.mktemp("adapters")
    runs = {"r128": {"lora.r": 128, "lora.alpha": 256}, "r8": {"train_projector": False}}
    folders = {}
    for name, overrides in runs.items():
        config = load_config(
            str(REPO / "configs" / "train" / "tiny-cpu.yaml"),
            {
                "model.name_or_path": str(tiny_model_dir),
                "output_dir": str(out / name),
                "max_steps": 1,
                **overrides,
            },
        )
        folders[name] = train(config).model_dir
    return folders


def _peft_adapter(model_dir: Path, folder: Path, **lora: Any) -> Path:
    """An adapter written by PEFT itself on the tiny model (for what ``vlguard train`` never writes)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(model_dir)
    get_peft_model(model, LoraConfig(r=lora.pop("r", 4), lora_alpha=8, **lora)).save_pretrained(folder)
    return folder


# --- what the backend asks of the engine ----------------------------------------------------------------


def test_backend_hands_vllm_one_call_with_pil_images_and_greedy_settings(
    tiny_model_dir: Path, stand_in_vllm: ModuleType
) -> None:
    from PIL import Image

    backend = make_backend(
        "vllm",
        str(tiny_model_dir),
        max_new_tokens=4,
        batch_size=2,  # the hf knob: vLLM sizes its own batches, so this must not chunk the call
        system_prompt="Be safe.",
        tensor_parallel_size=1,
        sampling_options={"min_tokens": 4},
        gpu_memory_utilization=0.8,
    )
    image = Image.new("RGB", (20, 12), "red")
    requests = [
        GenerationRequest("a", "What is shown?", image),
        GenerationRequest("b", "Say hi.", system="Custom."),
        GenerationRequest("c", "Classify.", input="great film"),
    ]
    generations = backend.generate(requests)
    assert [g.sample_id for g in generations] == ["a", "b", "c"]
    assert all(g.response.startswith("answer ") and g.error is None for g in generations)  # stripped
    assert generations[0].meta["prompt_tokens"] > generations[1].meta["prompt_tokens"]  # image tokens
    init = _events(stand_in_vllm, "init")[0]
    assert init["dtype"] == "bfloat16" and init["limit_mm_per_prompt"] == {"image": 1}
    assert init["enable_lora"] is False and init["engine_kwargs"] == {"gpu_memory_utilization": 0.8}
    chat = _events(stand_in_vllm, "chat")
    assert [c["conversations"] for c in chat] == [3] and chat[0]["images"] == 1
    assert chat[0]["sampling"]["temperature"] == 0.0 and chat[0]["sampling"]["max_tokens"] == 4
    assert chat[0]["sampling"]["min_tokens"] == 4 and chat[0]["use_tqdm"] is False
    description = backend.describe()
    assert description["engine_options"] == {"gpu_memory_utilization": 0.8}
    assert description["tensor_parallel_size"] == 1 and description["max_lora_rank"] is None


def test_messages_carry_the_pil_image_the_system_turn_and_the_task_input() -> None:
    from PIL import Image

    image = Image.new("RGB", (4, 4))
    with_image = vllm_messages(GenerationRequest("a", "What?", image), "Be safe.")
    assert with_image[0] == {"role": "system", "content": "Be safe."}
    parts = with_image[1]["content"]
    assert parts[0] == {"type": "image_pil", "image_pil": image} and parts[0]["image_pil"] is image
    assert parts[1] == {"type": "text", "text": "What?"}
    text_only = vllm_messages(GenerationRequest("b", "Label it.", input="a fine day", system="S."), None)
    assert text_only == [
        {"role": "system", "content": "S."},
        {"role": "user", "content": "Label it.\n\na fine day"},
    ]


def test_bad_settings_are_clear_errors_before_any_engine_starts(
    tiny_model_dir: Path, stand_in_vllm: ModuleType
) -> None:
    model = str(tiny_model_dir)
    with pytest.raises(ConfigError, match="CUDA GPUs only"):
        VLLMBackend(model, device="cpu")
    with pytest.raises(ConfigError, match="tensor_parallel_size must be at least 1"):
        VLLMBackend(model, tensor_parallel_size=0)
    with pytest.raises(ConfigError, match="sampling_options cannot set temperature"):
        VLLMBackend(model, sampling_options={"temperature": 0.7})
    with pytest.raises(ConfigError, match="need --adapter"):
        VLLMBackend(model, max_lora_rank=128)
    with pytest.raises(ConfigError, match="requests_per_call"):
        VLLMBackend(model, requests_per_call=-3)
    assert not stand_in_vllm.CALLS


# --- LoRA adapters --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_rank_128_adapter_from_vlguard_train_loads_with_its_trained_projector(
    tiny_model_dir: Path, trained_adapters: dict[str, Path], stand_in_vllm: ModuleType
) -> None:
    adapter = trained_adapters["r128"]
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["r"] == 128 and config["modules_to_save"]  # what `vlguard train` wrote
    # As written, vLLM's own checks refuse it twice: rank above the old fixed 64, and modules_to_save.
    problems = stand_in_vllm._peft_problems(str(adapter), 64)
    assert any("greater than max_lora_rank 64" in p for p in problems)
    assert any("modules_to_save" in p for p in problems)

    backend = VLLMBackend(str(tiny_model_dir), adapter=str(adapter), max_new_tokens=3)
    init = _events(stand_in_vllm, "init")[0]
    assert init["enable_lora"] is True and init["max_lora_rank"] == 128
    assert init["worker_extension_cls"] == "vlguard.generation.vllm_lora.SavedModulesLoader"
    # The projector trained in full is loaded into the engine's model, under vLLM's parameter names.
    (rpc,) = _events(stand_in_vllm, "collective_rpc")
    assert rpc["result"] == [
        "multi_modal_projector.linear_1.bias",
        "multi_modal_projector.linear_1.weight",
        "multi_modal_projector.linear_2.bias",
        "multi_modal_projector.linear_2.weight",
    ]
    # The LoRA part is served from a LoRA-only copy that vLLM accepts, with the same LoRA tensors.
    served = Path(backend.lora_request.lora_path)
    assert served != adapter and not stand_in_vllm._peft_problems(str(served), 128)
    original, copy = _tensors(adapter), _tensors(served)
    lora_keys = {k for k in original if "lora_" in k}
    assert set(copy) == lora_keys and len(lora_keys) < len(original)
    assert all(copy[k].equal(original[k]) for k in lora_keys)

    generations = backend.generate([GenerationRequest("x", "Hello?")])
    assert generations[0].response.startswith("adapted answer")
    (chat,) = _events(stand_in_vllm, "chat")
    assert chat["lora_path"] == str(served) and chat["ignored_lora_modules"] == []
    description = backend.describe()
    assert description["max_lora_rank"] == 128 and description["adapter_saved_tensors"] == 4
    del backend, generations
    gc.collect()
    assert not served.exists()  # the temporary copy goes with the backend

    # The engine cannot be asked for a smaller rank than the adapter has.
    with pytest.raises(ConfigError, match=r"max_lora_rank=64 cannot serve .*rank 128"):
        VLLMBackend(str(tiny_model_dir), adapter=str(adapter), max_lora_rank=64)


@pytest.mark.slow
def test_lora_only_adapter_is_served_from_its_own_folder(
    tiny_model_dir: Path, trained_adapters: dict[str, Path], stand_in_vllm: ModuleType
) -> None:
    adapter = trained_adapters["r8"]
    backend = VLLMBackend(str(tiny_model_dir), adapter=str(adapter))
    init = _events(stand_in_vllm, "init")[0]
    assert init["max_lora_rank"] == 8 and init["worker_extension_cls"] == ""
    assert not _events(stand_in_vllm, "collective_rpc")
    assert backend.lora_request.lora_path == str(adapter)
    assert backend.generate([GenerationRequest("x", "Hi")])[0].response.startswith("adapted answer")


def test_vision_tower_lora_is_refused_naming_the_modules(
    tiny_model_dir: Path, tmp_path: Path, stand_in_vllm: ModuleType
) -> None:
    adapter = _peft_adapter(tiny_model_dir, tmp_path / "tower", target_modules=r".*vision_tower.*\.q_proj")
    # What vLLM itself would do: serve the adapter without those modules, with only a log warning.
    from vllm import LLM
    from vllm.lora.request import LoRARequest

    LLM(str(tiny_model_dir), enable_lora=True, max_lora_rank=8).chat(
        [[{"role": "user", "content": "hi"}]], lora_request=LoRARequest("a", 1, str(adapter))
    )
    assert _events(stand_in_vllm, "chat")[0]["ignored_lora_modules"]
    stand_in_vllm.CALLS.clear()

    with pytest.raises(ConfigError) as caught:
        VLLMBackend(str(tiny_model_dir), adapter=str(adapter))
    message = str(caught.value)
    assert "adapter_config.json" in message and "vision tower / projector" in message
    assert "vision_tower.encoder.layers.0.self_attn.q_proj" in message
    assert "enable_tower_connector_lora=true" in message  # LLaVA supports it in vLLM, as an opt-in
    assert not stand_in_vllm.CALLS  # refused before any engine started

    # Opted in: the engine is told to put LoRA on the tower too, and leaves nothing out.
    backend = VLLMBackend(str(tiny_model_dir), adapter=str(adapter), enable_tower_connector_lora=True)
    assert _events(stand_in_vllm, "init")[0]["enable_tower_connector_lora"] is True
    backend.generate([GenerationRequest("x", "Hi")])
    assert _events(stand_in_vllm, "chat")[0]["ignored_lora_modules"] == []
    assert backend.describe()["enable_tower_connector_lora"] is True


def test_adapters_vllm_cannot_serve_are_refused_with_the_field_or_module(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    lm_head = _peft_adapter(
        tiny_model_dir, tmp_path / "head", target_modules=LM_TARGETS, modules_to_save=["lm_head"]
    )
    with pytest.raises(
        ConfigError, match=r"saves language-model module\(s\) in full \(.*lm_head.*vlguard merge"
    ):
        plan_vllm_adapter(read_adapter(lm_head), ["LlavaForConditionalGeneration"])
    dora = _peft_adapter(tiny_model_dir, tmp_path / "dora", target_modules=LM_TARGETS, use_dora=True)
    with pytest.raises(ConfigError, match=r"field 'use_dora': vLLM does not serve DoRA"):
        plan_vllm_adapter(read_adapter(dora), ["LlavaForConditionalGeneration"])
    # Vision-tower LoRA on an architecture for which vLLM has no tower LoRA at all: no opt-in helps.
    tower = _peft_adapter(tiny_model_dir, tmp_path / "tower", target_modules=r".*vision_tower.*\.q_proj")
    with pytest.raises(ConfigError, match="use --backend hf"):
        plan_vllm_adapter(read_adapter(tower), ["SomeOtherVLM"], enable_tower_connector_lora=True)


def test_max_lora_rank_is_the_smallest_value_vllm_accepts() -> None:
    assert [vllm_max_lora_rank(r) for r in (1, 2, 8, 9, 64, 65, 128, 129, 300, 512)] == [
        1, 8, 8, 16, 64, 128, 128, 256, 320, 512,
    ]  # fmt: skip
    assert set(VLLM_MAX_LORA_RANKS) >= {vllm_max_lora_rank(r) for r in range(1, 513)}
    with pytest.raises(ConfigError, match="above the largest max_lora_rank vLLM serves"):
        vllm_max_lora_rank(513)


def test_rank_pattern_counts_and_broken_adapter_folders_are_clear_errors(tmp_path: Path) -> None:
    from safetensors.torch import save_file
    from torch import zeros

    folder = tmp_path / "a"
    folder.mkdir()
    with pytest.raises(ConfigError, match=r"no adapter_config\.json"):
        read_adapter(folder)
    (folder / "adapter_config.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"adapter_config.json: not readable JSON"):
        read_adapter(folder)
    (folder / "adapter_config.json").write_text(json.dumps({"r": 16, "rank_pattern": {"q_proj": 200}}))
    with pytest.raises(ConfigError, match=r"no adapter_model\.safetensors"):
        read_adapter(folder)
    name = "base_model.model.model.language_model.layers.0.self_attn.q_proj"
    save_file({f"{name}.lora_A.weight": zeros(200, 4), f"{name}.lora_B.weight": zeros(4, 200)},
              str(folder / "adapter_model.safetensors"))  # fmt: skip
    adapter = read_adapter(folder)
    assert adapter.rank == 200 and adapter.lora_modules == ("model.language_model.layers.0.self_attn.q_proj",)
    assert plan_vllm_adapter(adapter, []).max_lora_rank == 256
    (folder / "adapter_config.json").write_text(json.dumps({"r": 0}))
    with pytest.raises(ConfigError, match=r"field 'r': a LoRA rank must be a positive integer"):
        read_adapter(folder)


def test_module_parts() -> None:
    assert module_part("model.vision_tower.encoder.layers.0.self_attn.q_proj") == "vision tower"
    assert module_part("model.multi_modal_projector.linear_1") == "projector"
    assert module_part("model.visual.merger.mlp.0") == "vision tower"  # Qwen2-VL: the merger sits in .visual
    assert module_part("model.connector.modality_projection.proj") == "projector"  # Idefics3
    assert module_part("model.language_model.layers.3.mlp.down_proj") == "language model"
    assert module_part("model.layers.3.self_attn.q_proj") == "language model"  # text-only LLM


# --- several GPUs ---------------------------------------------------------------------------------------


def test_each_data_parallel_process_gets_its_own_gpus() -> None:
    plain: dict[str, str] = {"CUDA_VISIBLE_DEVICES": "4,5"}
    assert pin_engine_devices(2, plain) == ["4", "5"] and plain == {"CUDA_VISIBLE_DEVICES": "4,5"}
    launched = {"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
                "CUDA_VISIBLE_DEVICES": "0,1,2,3"}  # fmt: skip
    assert pin_engine_devices(2, launched) == ["2", "3"]
    assert launched["CUDA_VISIBLE_DEVICES"] == "2,3" and launched["VLLM_WORKER_MULTIPROC_METHOD"] == "spawn"
    one_gpu_each = {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "CUDA_VISIBLE_DEVICES": "6,7"}
    assert pin_engine_devices(1, one_gpu_each) == ["6"]
    too_few = {"WORLD_SIZE": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2", "CUDA_VISIBLE_DEVICES": "0,1,2"}
    with pytest.raises(ConfigError, match=r"need 4 GPUs; 3 visible"):
        pin_engine_devices(2, too_few)


def test_tensor_parallel_size_reaches_the_engine_and_the_manifest(
    tiny_model_dir: Path, stand_in_vllm: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    backend = VLLMBackend(str(tiny_model_dir), tensor_parallel_size=2)
    assert _events(stand_in_vllm, "init")[0]["tensor_parallel_size"] == 2
    assert backend.describe()["tensor_parallel_size"] == 2 and backend.describe()["devices"] == ["0", "1"]


# --- the device, engine options vlguard sets itself, the decoding rule -----------------------------------


def test_cuda_n_runs_the_engine_on_that_gpu(
    tiny_model_dir: Path, stand_in_vllm: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    backend = VLLMBackend(str(tiny_model_dir), device="cuda:1")
    assert _events(stand_in_vllm, "init")[0]["cuda_visible_devices"] == "5"
    assert backend.describe()["devices"] == ["5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    with pytest.raises(ConfigError, match=r"cuda:2: only 2 CUDA device\(s\) are visible"):
        VLLMBackend(str(tiny_model_dir), device="cuda:2")
    with pytest.raises(ConfigError, match="tensor_parallel_size=2 spreads the model over several"):
        VLLMBackend(str(tiny_model_dir), device="cuda:0", tensor_parallel_size=2)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="each process takes its own GPU"):
        VLLMBackend(str(tiny_model_dir), device="cuda:0")
    with pytest.raises(ConfigError, match="use cuda or cuda:N"):
        VLLMBackend(str(tiny_model_dir), device="cuda0")


def test_engine_options_vlguard_sets_itself_are_merged_or_refused(
    tiny_model_dir: Path, stand_in_vllm: ModuleType
) -> None:
    # limit_mm_per_prompt: the option is merged over vlguard's one image per prompt.
    backend = make_backend("vllm", str(tiny_model_dir), limit_mm_per_prompt={"video": 0})
    assert _events(stand_in_vllm, "init")[0]["limit_mm_per_prompt"] == {"image": 1, "video": 0}
    assert backend.describe()["engine_options"] == {"limit_mm_per_prompt": {"image": 1, "video": 0}}
    make_backend("vllm", str(tiny_model_dir), limit_mm_per_prompt={"image": 2})
    assert _events(stand_in_vllm, "init")[1]["limit_mm_per_prompt"] == {"image": 2}
    stand_in_vllm.CALLS.clear()
    # What follows from --adapter is refused in one line, not a "multiple values" TypeError.
    for option in ("enable_lora", "worker_extension_cls"):
        with pytest.raises(ConfigError, match=f"the vllm backend sets {option} itself"):
            make_backend("vllm", str(tiny_model_dir), **{option: True})
    with pytest.raises(ConfigError, match="limit_mm_per_prompt must be a mapping"):
        make_backend("vllm", str(tiny_model_dir), limit_mm_per_prompt=1)
    assert not stand_in_vllm.CALLS


def test_the_models_greedy_settings_are_applied_as_by_the_hf_backend(
    tiny_model_dir: Path, tmp_path: Path, stand_in_vllm: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    config = json.loads((model / "generation_config.json").read_text())
    settings = {"repetition_penalty": 1.3, "min_new_tokens": 2, "no_repeat_ngram_size": 3, "temperature": 0.6}
    (model / "generation_config.json").write_text(json.dumps({**config, **settings}))
    backend = VLLMBackend(str(model), max_new_tokens=8)
    backend.generate([GenerationRequest("a", "Hi")])
    sampling = _events(stand_in_vllm, "chat")[0]["sampling"]
    # vLLM drops them once SamplingParams are passed; vlguard passes them on, greedy still.
    assert (
        sampling["repetition_penalty"] == 1.3 and sampling["min_tokens"] == 2 and sampling["temperature"] == 0
    )
    described = backend.describe()
    assert described["decoding_settings"] == {"repetition_penalty": 1.3, "min_tokens": 2}
    assert described["model_decoding_defaults"] == {
        "repetition_penalty": 1.3, "min_new_tokens": 2, "no_repeat_ngram_size": 3,
    }  # fmt: skip
    # vLLM has no no_repeat_ngram_size: said in the log and the manifest, never silently.
    assert described["decoding_settings_not_applied"] == {"no_repeat_ngram_size": 3}
    assert "no_repeat_ngram_size=3, which vLLM cannot apply" in caplog.text
    # The hf backend applies the same model settings (and records them in its own names).
    from vlguard.generation.hf import HFBackend

    hf = HFBackend(str(model), max_new_tokens=2).describe()
    assert hf["model_decoding_defaults"] == described["model_decoding_defaults"]
    # An option overrides the model's setting in both backends.
    plain = VLLMBackend(str(model), sampling_options={"repetition_penalty": 1.0})
    assert plain.describe()["decoding_settings"] == {"repetition_penalty": 1.0, "min_tokens": 2}


def test_the_engine_loads_an_adapter_when_a_request_first_needs_it(
    tiny_model_dir: Path, tmp_path: Path, stand_in_vllm: ModuleType
) -> None:
    """As vLLM: LoRA is enabled at start, the adapter folder is read and checked at its first use."""
    from vllm import LLM
    from vllm.lora.request import LoRARequest

    adapter = _peft_adapter(tiny_model_dir, tmp_path / "lm", target_modules=LM_TARGETS)
    engine = LLM(str(tiny_model_dir), enable_lora=True, max_lora_rank=8)
    missing = LoRARequest("gone", 2, str(tmp_path / "not-written-yet"))
    assert not _events(stand_in_vllm, "load_lora")  # nothing is read when the request is made
    with pytest.raises(stand_in_vllm.EngineDeadError, match="No adapter found"):
        engine.chat([[{"role": "user", "content": "hi"}]], lora_request=missing)
    request = LoRARequest("a", 1, str(adapter))
    engine.chat([[{"role": "user", "content": "hi"}]], lora_request=request)
    engine.chat([[{"role": "user", "content": "again"}]], lora_request=request)
    assert [e["lora_path"] for e in _events(stand_in_vllm, "load_lora")] == [str(adapter)]  # once
    with pytest.raises(stand_in_vllm.VLLMValidationError, match="LoRA is not enabled"):
        LLM(str(tiny_model_dir)).chat([[{"role": "user", "content": "hi"}]], lora_request=request)


@pytest.mark.slow
def test_a_saved_tensor_the_engine_skips_is_a_clear_error(
    tiny_model_dir: Path, trained_adapters: dict[str, Path], tmp_path: Path, stand_in_vllm: ModuleType
) -> None:
    """vLLM's weight loader skips an unexpected ``.bias`` without a word; vlguard counts what was loaded."""
    import shutil

    from safetensors.torch import save_file

    adapter = tmp_path / "adapter"
    shutil.copytree(trained_adapters["r128"], adapter)
    tensors = _tensors(adapter)
    tensors["base_model.model.model.multi_modal_projector.linear_3.bias"] = tensors[
        "base_model.model.model.multi_modal_projector.linear_2.bias"
    ].clone()
    save_file(tensors, str(adapter / "adapter_model.safetensors"))
    with pytest.raises(ConfigError, match=r"loaded 4 of the 5 saved module tensor\(s\)"):
        VLLMBackend(str(tiny_model_dir), adapter=str(adapter))
