"""The vLLM stand-in (tests/vllm_stand_in) and vlguard's vLLM tables against the real vLLM 0.33.0 API.

``tests/vllm_stand_in/vllm_api_snapshot.json`` is written from the vLLM wheel by
``scripts/vllm_api_snapshot.py`` (see its docstring for the command). The stand-in reads the
``SamplingParams`` fields, the ``LLM(...)`` keywords and the ``LLM.chat`` keywords from it; these tests
check the rest: the parameters the stand-in spells out itself, and the tables in ``vlguard.generation``
that were copied from vLLM's source.
"""

from __future__ import annotations

import ast
import inspect
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from conftest import STAND_IN_VLLM

REPO = Path(__file__).resolve().parents[1]
SNAPSHOT = json.loads((STAND_IN_VLLM / "vllm_api_snapshot.json").read_text())


def _names(parameters: list[dict[str, Any]]) -> list[str]:
    return [p["name"] for p in parameters if p["kind"] not in ("VAR_KEYWORD", "VAR_POSITIONAL")]


def test_the_snapshot_is_of_the_pinned_vllm() -> None:
    pyproject = (REPO / "pyproject.toml").read_text()
    assert SNAPSHOT["vllm_version"] == "0.33.0" and "vllm==0.33.0" in pyproject.replace(" ", "")


def test_vlguard_tables_copied_from_vllm_match_the_snapshot() -> None:
    from vlguard.generation.decoding import GREEDY_SETTINGS
    from vlguard.generation.vllm_lora import VLLM_MAX_LORA_RANKS, VLLM_TOWER_CONNECTOR_LORA

    assert list(VLLM_MAX_LORA_RANKS) == SNAPSHOT["max_lora_ranks"]
    assert sorted(VLLM_TOWER_CONNECTOR_LORA) == SNAPSHOT["tower_connector_lora_architectures"]
    fields = {f["name"] for f in SNAPSHOT["SamplingParams"]}
    assert {target for _, target in GREEDY_SETTINGS.values() if target is not None} <= fields


def test_everything_vlguard_asks_of_vllm_exists_in_the_real_api() -> None:
    from vlguard.generation import vllm_backend

    source = inspect.getsource(vllm_backend)
    init_keywords = set(_names(SNAPSHOT["LLM"]["__init__"])) | set(SNAPSHOT["EngineArgs"])
    # Every keyword vlguard passes to LLM(...) and the options it names for LLM are real ones.
    tree = ast.parse(source)
    passed = {
        keyword.arg
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "LLM"
        for keyword in node.keywords
        if keyword.arg is not None
    }
    assert passed and passed <= init_keywords, passed - init_keywords
    assert set(vllm_backend._DERIVED_ENGINE_ARGS) | {"limit_mm_per_prompt"} <= init_keywords
    lora_kwargs = {"enable_lora", "max_lora_rank", "enable_tower_connector_lora", "worker_extension_cls"}
    assert lora_kwargs <= init_keywords
    sampling = {f["name"] for f in SNAPSHOT["SamplingParams"]}
    assert sampling >= vllm_backend._GREEDY_KEYS
    chat = _names(SNAPSHOT["LLM"]["chat"])
    assert chat[:4] == ["messages", "sampling_params", "use_tqdm", "lora_request"]
    rpc = _names(SNAPSHOT["LLM"]["collective_rpc"])
    assert rpc == ["method", "timeout", "args", "kwargs"]


def test_the_stand_in_takes_what_the_real_api_takes(stand_in_vllm: ModuleType, tiny_model_dir: Path) -> None:
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    # Every real SamplingParams field, and nothing else.
    assert list(SamplingParams.FIELDS) == [f["name"] for f in SNAPSHOT["SamplingParams"]]
    params = SamplingParams(presence_penalty=0.5, logprobs=2, min_tokens=7, max_tokens=9)
    assert params.presence_penalty == 0.5 and params.repetition_penalty == 1.0 and params.top_k == 0
    with pytest.raises(TypeError, match="no_such_field"):
        SamplingParams(no_such_field=1)
    # LLM(...): its own parameters and EngineArgs' fields; a repeated keyword is Python's TypeError.
    engine = LLM(str(tiny_model_dir), gpu_memory_utilization=0.5, max_model_len=512, enforce_eager=True)
    with pytest.raises(TypeError, match="unexpected keyword argument 'gpu_memory'"):
        LLM(str(tiny_model_dir), gpu_memory=0.5)
    # The stand-in's explicit signatures are the real ones.
    chat = [p for p in inspect.signature(LLM.chat).parameters if p not in ("self", "kwargs")]
    assert chat == _names(SNAPSHOT["LLM"]["chat"])[: len(chat)]
    rpc = [p for p in inspect.signature(LLM.collective_rpc).parameters if p != "self"]
    assert rpc == _names(SNAPSHOT["LLM"]["collective_rpc"])
    lora = [f.name for f in LoRARequest.__dataclass_fields__.values()]
    assert lora == [f["name"] for f in SNAPSHOT["LoRARequest"]]
    assert list(stand_in_vllm.MAX_LORA_RANKS) == SNAPSHOT["max_lora_ranks"]
    # chat() takes the real keywords only, honours min_tokens and answers logprobs.
    conversation = [[{"role": "user", "content": "hi"}]]
    (out,) = engine.chat(
        conversation, params, use_tqdm=False, chat_template_kwargs={}, add_generation_prompt=True
    )
    assert len(out.outputs[0].token_ids) == 7 and out.outputs[0].finish_reason == "stop"
    assert out.outputs[0].logprobs is not None and len(out.outputs[0].logprobs) == 7
    (short,) = engine.chat(conversation, SamplingParams(max_tokens=3, min_tokens=3))
    assert len(short.outputs[0].token_ids) == 3 and short.outputs[0].finish_reason == "length"
    with pytest.raises(TypeError, match="unexpected keyword argument 'sampling'"):
        engine.chat(conversation, sampling=params)


def test_snapshot_script_follows_inheritance_in_a_source_tree(tmp_path: Path) -> None:
    """The script's reading of vLLM's source, on a miniature tree: a class that inherits the flag, one
    that turns it off, an aliased registry entry, and the signatures it records."""
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import vllm_api_snapshot as script
    finally:
        sys.path.remove(str(REPO / "scripts"))
    root = tmp_path / "vllm"
    files = {
        "model_executor/models/registry.py": '_MULTIMODAL_MODELS = {"A": ("a", "A"), "B": ("b", "B"), '
        '"C": ("b", "C"), "Alias": ("a", "A")}\n_TEXT_GENERATION_MODELS: dict = {"T": ("a", "T")}\n',
        "model_executor/models/a.py": "class A:\n    supports_tower_connector_lora = True\n"
        "class T:\n    pass\n",
        "model_executor/models/b.py": "from .a import A as Base\n"
        "class B(Base):\n    x = 1\n"
        "class C(Base):\n    supports_tower_connector_lora: ClassVar[bool] = False\n",
        "entrypoints/llm.py": "class LLM:\n    def __init__(self, model, *, seed=0, **kwargs): ...\n"
        "    def chat(self, messages, sampling_params=None, use_tqdm=True): ...\n"
        "    def generate(self, prompts, /, *, lora_request=None): ...\n"
        "    def collective_rpc(self, method, timeout=None, args=(), kwargs=None): ...\n",
        "engine/arg_utils.py": "class EngineArgs:\n    model: str = 'x'\n    enable_lora: bool = False\n",
        "sampling_params.py": "class SamplingParams:\n    n: int = 1\n    _private: int = 0\n"
        "    stop: list | None = None\n",
        "lora/request.py": "class LoRARequest:\n    lora_name: str\n    lora_path: str = ''\n",
        "config/lora.py": "MaxLoRARanks = Literal[1, 8, 16]\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    snapshot = script.snapshot(tmp_path)
    assert snapshot["tower_connector_lora_architectures"] == ["A", "Alias", "B"]
    assert snapshot["max_lora_ranks"] == [1, 8, 16]
    assert snapshot["LLM"]["__init__"] == [
        {"name": "model", "kind": "POSITIONAL_OR_KEYWORD", "default": None},
        {"name": "seed", "kind": "KEYWORD_ONLY", "default": "0"},
        {"name": "kwargs", "kind": "VAR_KEYWORD", "default": None},
    ]
    assert [p["kind"] for p in snapshot["LLM"]["generate"]] == ["POSITIONAL_ONLY", "KEYWORD_ONLY"]
    assert snapshot["SamplingParams"] == [{"name": "n", "default": "1"}, {"name": "stop", "default": "None"}]
    assert snapshot["EngineArgs"] == ["model", "enable_lora"]
