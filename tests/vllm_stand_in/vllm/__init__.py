"""Stand-in for the ``vllm`` package (0.33) in tests: the API shapes vlguard uses, vLLM's argument checks,
and a record of every call (see README.md beside this folder). No model runs: answers are derived from
the prompt, deterministically.

The signatures follow the real package through ``vllm_api_snapshot.json`` (written from the vLLM wheel by
``scripts/vllm_api_snapshot.py``): ``LLM(...)`` accepts exactly its own parameters and ``EngineArgs``'
fields, ``SamplingParams`` exactly its fields, ``LLM.chat`` exactly its parameters; ``tests/
test_vllm_stand_in.py`` checks the rest of the stand-in against the snapshot.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

__version__ = "0.33.0+stand-in"

SNAPSHOT: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[1] / "vllm_api_snapshot.json").read_text(encoding="utf-8")
)

# Every call, in order (tests read and clear it). With VLLM_STAND_IN_LOG set, also appended there as JSON.
CALLS: list[dict[str, Any]] = []
# Tests set this to make the Nth ``chat`` call (1-based, counted over all engines) fail like a crash.
FAIL_ON_CHAT_CALL: int | None = None
_chat_calls = 0

# vLLM 0.33 config/lora.py: MaxLoRARanks.
MAX_LORA_RANKS = tuple(SNAPSHOT["max_lora_ranks"])
# vLLM 0.33 llava.py: hf_to_vllm_mapper (checkpoint names saved by transformers >= 4.52 → vLLM names).
_LLAVA_RENAMES = {
    "model.language_model.": "language_model.model.",
    "model.vision_tower.": "vision_tower.",
    "model.multi_modal_projector.": "multi_modal_projector.",
    "lm_head.": "language_model.lm_head.",
}
_VISION_PARTS = ("vision_tower", "multi_modal_projector")


def _record(event: dict[str, Any]) -> None:
    CALLS.append(event)
    log = os.environ.get("VLLM_STAND_IN_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(json.dumps(event, default=str) + "\n")


def _default(source: str | None) -> Any:
    """A field's default from its source text: the literal, or None for anything computed."""
    if source is None:
        return None
    try:
        return ast.literal_eval(source)
    except (ValueError, SyntaxError):
        return None


class SamplingParams:
    """vLLM's SamplingParams: every field of the real one (from the snapshot), keywords only; an unknown
    keyword is a TypeError, as there."""

    FIELDS: ClassVar[dict[str, Any]] = {f["name"]: _default(f["default"]) for f in SNAPSHOT["SamplingParams"]}

    def __init__(self, **kwargs: Any) -> None:
        unknown = set(kwargs) - set(self.FIELDS)
        if unknown:
            raise TypeError(f"Unexpected keyword argument(s) {sorted(unknown)}")
        self.settings = {**self.FIELDS, **kwargs}
        for key, value in self.settings.items():
            setattr(self, key, value)
        if self.max_tokens is not None and self.min_tokens > self.max_tokens:  # as _verify_args
            raise ValueError(f"min_tokens must be less than or equal to max_tokens={self.max_tokens}")


class VLLMValidationError(Exception):
    """vllm.exceptions.VLLMValidationError: a request the engine refuses when it is added."""


class EngineDeadError(Exception):
    """vllm.v1.engine.exceptions.EngineDeadError: the engine core died (here: an adapter failed to load)."""


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    finish_reason: str | None
    logprobs: list[dict[int, float]] | None = None


@dataclass
class RequestOutput:
    request_id: str
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput] = field(default_factory=list)


def _peft_problems(adapter_dir: str, max_lora_rank: int) -> list[str]:
    """vLLM 0.33's PEFTHelper.validate_legal, on adapter_config.json."""
    config = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())
    problems = []
    saved = [m for m in config.get("modules_to_save") or [] if m not in ("classifier", "score")]
    if saved:
        problems.append(f"Unsupported modules_to_save: {saved}")
    if config.get("use_dora"):
        problems.append("vLLM does not yet support DoRA.")
    if config.get("lora_bias"):
        problems.append("vLLM does not support LoRA bias (lora_bias).")
    init = config.get("init_lora_weights", True)
    if isinstance(init, str) and init.lower() not in ("gaussian", "eva", "orthogonal", "mica", "lora_ga"):
        problems.append(f"vLLM does not support init_lora_weights={init!r}.")
    for key, feature in (("alora_invocation_tokens", "Activated LoRA (aLoRA)"),
                         ("layer_replication", "layer_replication"),
                         ("use_bdlora", "block-diagonal LoRA (BD-LoRA)"), ("use_qalora", "QALoRA")):  # fmt: skip
        if config.get(key):
            problems.append(f"vLLM does not support {feature}.")
    rank = max([config["r"], *(config.get("rank_pattern") or {}).values()])
    if rank > max_lora_rank:
        problems.append(f"LoRA rank {rank} is greater than max_lora_rank {max_lora_rank}.")
    if config.get("bias", "none") != "none":
        problems.append("Adapter bias is not supported.")
    return problems


class _StandInModel:
    """The parameter names of the base checkpoint, as vLLM's LLaVA names them; load_weights checks names
    and shapes like AutoWeightsLoader (an unknown name is a ValueError, except an unexpected ``.bias``,
    which it skips silently) and returns what it loaded."""

    def __init__(self, model_dir: str) -> None:
        from safetensors import safe_open

        self.shapes: dict[str, list[int]] = {}
        with safe_open(str(Path(model_dir) / "model.safetensors"), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 (a safetensors handle is not iterable)
                self.shapes[_to_vllm_name(name)] = list(f.get_slice(name).get_shape())
        self.loaded: list[str] = []

    def load_weights(self, weights: Any) -> set[str]:
        done = set()
        for name, tensor in weights:
            target = _to_vllm_name(name)
            if target not in self.shapes:
                if target.endswith(".bias"):
                    continue  # AutoWeightsLoader.load_weights: ignore_unexpected_suffixes [".bias"]
                raise ValueError(f"There is no module or parameter named '{target}'")
            if list(tensor.shape) != self.shapes[target]:
                raise ValueError(
                    f"shape mismatch for {target}: {list(tensor.shape)} vs {self.shapes[target]}"
                )
            done.add(target)
        self.loaded += sorted(done)
        return done


def _to_vllm_name(name: str) -> str:
    for old, new in _LLAVA_RENAMES.items():
        if name.startswith(old):
            return new + name[len(old) :]
    return name


class _ModelRunner:
    def __init__(self, model: _StandInModel) -> None:
        self._model = model

    def get_model(self) -> _StandInModel:
        return self._model


# What LLM(...) accepts: its own keyword parameters, and EngineArgs' fields through **kwargs.
_LLM_OWN = [
    p["name"] for p in SNAPSHOT["LLM"]["__init__"] if p["kind"] not in ("VAR_KEYWORD", "VAR_POSITIONAL")
]
_LLM_KEYWORDS = (set(_LLM_OWN) | set(SNAPSHOT["EngineArgs"])) - {"model"}
_CHAT_KEYWORDS = {p["name"] for p in SNAPSHOT["LLM"]["chat"]} - {"messages"}


class LLM:
    """vLLM's offline engine, minus the model: records its arguments and calls."""

    def __init__(self, model: str, **kwargs: Any) -> None:
        unknown = sorted(set(kwargs) - _LLM_KEYWORDS)
        if unknown:
            raise TypeError(f"EngineArgs.__init__() got an unexpected keyword argument {unknown[0]!r}")
        settings = {
            "revision": None, "dtype": "auto", "trust_remote_code": False, "tensor_parallel_size": 1,
            "limit_mm_per_prompt": None, "enable_lora": False, "max_lora_rank": 16,
            "enable_tower_connector_lora": False, "worker_extension_cls": "", **kwargs,
        }  # fmt: skip
        max_lora_rank = settings.pop("max_lora_rank")
        if max_lora_rank not in MAX_LORA_RANKS:  # a pydantic Literal in vLLM
            raise ValueError(f"max_lora_rank: Input should be {', '.join(map(str, MAX_LORA_RANKS))}")
        if not (Path(model) / "config.json").is_file():
            raise OSError(f"stand-in: {model} is not a local model folder")
        self.model = model
        self.enable_lora = settings.pop("enable_lora")
        self.max_lora_rank = max_lora_rank
        self.enable_tower_connector_lora = settings.pop("enable_tower_connector_lora")
        self.tensor_parallel_size = settings.pop("tensor_parallel_size")
        self.worker_extension_cls = settings.pop("worker_extension_cls")
        self._model = _StandInModel(model)
        # Adapters by lora_int_id, loaded (and checked) when the first request that uses one runs.
        self._loras: dict[int, list[str]] = {}
        _record(
            {
                "event": "init",
                "model": model,
                "dtype": settings.pop("dtype"),
                "trust_remote_code": settings.pop("trust_remote_code"),
                "tensor_parallel_size": self.tensor_parallel_size,
                "limit_mm_per_prompt": settings.pop("limit_mm_per_prompt"),
                "enable_lora": self.enable_lora,
                "max_lora_rank": max_lora_rank,
                "enable_tower_connector_lora": self.enable_tower_connector_lora,
                "worker_extension_cls": self.worker_extension_cls,
                "engine_kwargs": {k: v for k, v in settings.items() if k != "revision"},
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "multiproc_method": os.environ.get("VLLM_WORKER_MULTIPROC_METHOD"),
                "rank": os.environ.get("RANK"),
            }
        )

    def collective_rpc(
        self, method: Any, timeout: float | None = None, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> list[Any]:
        if not isinstance(method, str):
            raise ValueError("a callable needs VLLM_ALLOW_INSECURE_SERIALIZATION=1")
        if not self.worker_extension_cls:
            raise AttributeError(f"the worker has no method {method!r}")
        module, _, name = self.worker_extension_cls.rpartition(".")
        extension = getattr(importlib.import_module(module), name)
        worker = type("StandInWorker", (extension,), {})()
        worker.model_runner = _ModelRunner(self._model)
        result = getattr(worker, method)(*args, **(kwargs or {}))
        _record({"event": "collective_rpc", "method": method, "args": list(args), "result": result})
        return [result] * self.tensor_parallel_size

    def _load_lora(self, lora_request: Any) -> list[str]:
        """As vLLM's WorkerLoRAManager._load_adapter, the first time a request uses the adapter: read its
        folder, PEFTHelper.validate_legal; a failure kills the engine. Returns the modules it leaves out."""
        if lora_request.lora_int_id not in self._loras:
            if not (Path(lora_request.lora_path) / "adapter_config.json").is_file():
                raise EngineDeadError(f"Loading lora {lora_request.lora_name} failed: No adapter found")
            problems = _peft_problems(lora_request.lora_path, self.max_lora_rank)
            if problems:
                raise EngineDeadError(" ".join(problems))
            # Without tower/connector LoRA, vLLM warns and serves the adapter without those modules.
            ignored = [] if self.enable_tower_connector_lora else _vision_lora_modules(lora_request.lora_path)
            self._loras[lora_request.lora_int_id] = ignored
            _record(
                {"event": "load_lora", "lora_path": lora_request.lora_path, "ignored_lora_modules": ignored}
            )
        return self._loras[lora_request.lora_int_id]

    def chat(
        self,
        messages: list[list[dict[str, Any]]],
        sampling_params: SamplingParams | None = None,
        use_tqdm: bool = True,
        lora_request: Any = None,
        **kwargs: Any,
    ) -> list[RequestOutput]:
        global _chat_calls
        from PIL.Image import Image

        unknown = sorted(set(kwargs) - _CHAT_KEYWORDS)
        if unknown:
            raise TypeError(f"LLM.chat() got an unexpected keyword argument {unknown[0]!r}")
        _chat_calls += 1
        if FAIL_ON_CHAT_CALL is not None and _chat_calls == FAIL_ON_CHAT_CALL:
            raise RuntimeError("stand-in engine failure")
        params = sampling_params or SamplingParams()
        ignored: list[str] = []
        if lora_request is not None:
            if not self.enable_lora:  # InputProcessor._validate_lora, when the request is added
                raise VLLMValidationError(f"Got lora_request {lora_request} but LoRA is not enabled!")
            ignored = self._load_lora(lora_request)
        outputs = []
        images = 0
        for i, conversation in enumerate(messages):
            if not isinstance(conversation, list) or not all(isinstance(m, dict) for m in conversation):
                raise ValueError("each conversation must be a list of messages")
            text, has_image = "", False
            for message in conversation:
                if message.get("role") not in ("system", "user", "assistant"):
                    raise ValueError(f"unknown role {message.get('role')!r}")
                content = message["content"]
                parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
                for part in parts:
                    if part["type"] == "text":
                        text += part["text"]
                    elif part["type"] == "image_pil" and isinstance(part["image_pil"], Image):
                        has_image = True
                    else:
                        raise ValueError(f"unsupported content part {part!r}")
            images += has_image
            digest = hashlib.sha1(f"{text}|{has_image}".encode()).hexdigest()[:8]
            tag = "adapted " if lora_request is not None else ""
            # The "model" ends its answer after 5 tokens; min_tokens holds off the end (never past max_tokens).
            n_new = max(5, params.min_tokens)
            if params.max_tokens is not None:
                n_new = min(n_new, params.max_tokens)
            answer = f" {tag}answer {digest}" + " more" * max(0, n_new - 5)
            outputs.append(
                RequestOutput(
                    request_id=str(i),
                    prompt_token_ids=list(range(len(text.split()) + (16 if has_image else 0))),
                    outputs=[
                        CompletionOutput(
                            0,
                            answer,
                            list(range(n_new)),
                            "length" if n_new == params.max_tokens else "stop",
                            logprobs=None if params.logprobs is None else [{t: 0.0} for t in range(n_new)],
                        )
                    ],
                )
            )
        _record(
            {
                "event": "chat",
                "conversations": len(messages),
                "images": images,
                "lora_path": None if lora_request is None else lora_request.lora_path,
                "lora_name": None if lora_request is None else lora_request.lora_name,
                "ignored_lora_modules": ignored,
                "sampling": params.settings,
                "use_tqdm": use_tqdm,
            }
        )
        return outputs


def _vision_lora_modules(adapter_dir: str) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(Path(adapter_dir) / "adapter_model.safetensors"), framework="pt") as f:
        names = f.keys()
    return sorted({n for n in names if "lora_" in n and any(p in n for p in _VISION_PARTS)})
