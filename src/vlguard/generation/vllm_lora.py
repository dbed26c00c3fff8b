"""Serving a PEFT LoRA adapter with vLLM: what vLLM can serve, checked before the engine starts.

vLLM applies LoRA itself (``LLM(enable_lora=True, max_lora_rank=...)`` + ``LoRARequest``), but it
serves a narrower set of adapters than PEFT writes. As read from vLLM 0.33's source (``lora/``,
``config/lora.py``):

- ``max_lora_rank`` must be one of ``VLLM_MAX_LORA_RANKS`` and at least the adapter's largest rank
  (``r`` and ``rank_pattern``), else loading fails. vlguard derives it from ``adapter_config.json``.
- LoRA on a multimodal model's vision tower or projector is applied only with the experimental
  ``enable_tower_connector_lora`` and only for some architectures; otherwise vLLM logs a warning and
  serves the adapter *without* those modules, which would silently evaluate another model. vlguard
  refuses such an adapter unless that option is on and the architecture supports it.
- ``modules_to_save`` (modules trained in full beside the adapter) are refused by vLLM. vlguard's LoRA
  recipe trains the projector in full (LLaVA-1.5's recipe), so vlguard serves those modules itself:
  the engine gets a LoRA-only copy of the adapter, and the saved projector / vision-tower weights are
  loaded into the engine's model after it starts (``SavedModulesLoader``, a vLLM worker extension).
  Saved modules of the language model (e.g. ``lm_head``) cannot be loaded that way (vLLM wraps them
  for LoRA): merge the adapter first (``vlguard merge``) and serve the merged model.
- DoRA, LoRA bias, layer replication and PiSSA-style inits are refused by vLLM; vlguard says so first.

Module names are classified by their path: a part in ``TOWER_PARTS`` is the vision tower, one in
``PROJECTOR_PARTS`` the projector (connector), anything else the language model.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlguard.errors import ConfigError
from vlguard.models.adapters import ADAPTER_CONFIG, ADAPTER_WEIGHTS, PEFT_PREFIX, LoraAdapter

logger = logging.getLogger(__name__)

# vLLM 0.33: config/lora.py ``MaxLoRARanks``.
VLLM_MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
# The architectures (config.json ``architectures``, vLLM's registry names) whose vLLM 0.33 model class, or a
# base class, sets ``supports_tower_connector_lora = True``; checked against the snapshot of the wheel
# (tests/vllm_stand_in/vllm_api_snapshot.json, scripts/vllm_api_snapshot.py).
VLLM_TOWER_CONNECTOR_LORA = frozenset(
    {
        "Alpamayo2Super",
        "Blip2ForConditionalGeneration",
        "ClefFlashForJointSchema",
        "ClefOmniForJointSchema",
        "ColPaliForRetrieval",
        "ColQwen3",
        "ColQwen3_5",
        "Cosmos3ForConditionalGeneration",
        "DotsOCRForCausalLM",
        "Exaone4_5_ForConditionalGeneration",
        "Gemma3ForConditionalGeneration",
        "Gemma4ForConditionalGeneration",
        "Gemma4UnifiedForConditionalGeneration",
        "Glm4vForConditionalGeneration",
        "Glm4vMoeForConditionalGeneration",
        "GlmOcrForConditionalGeneration",
        "H2OVLChatModel",
        "Idefics3ForConditionalGeneration",
        "InternS1ProForConditionalGeneration",
        "InternS2MobiusForConditionalGeneration",
        "InternS2PreviewForConditionalGeneration",
        "InternVLChatModel",
        "JinaVLForRanking",
        "KeyeForConditionalGeneration",
        "KeyeVL1_5ForConditionalGeneration",
        "Lfm2VlForConditionalGeneration",
        "Llama4ForConditionalGeneration",
        "LlavaForConditionalGeneration",
        "LlavaNextForConditionalGeneration",
        "LlavaNextVideoForConditionalGeneration",
        "NVLM_D",
        "OpenCUAForConditionalGeneration",
        "OpsColQwen3Model",
        "PaliGemmaForConditionalGeneration",
        "PixtralForConditionalGeneration",
        "QianfanOCRForConditionalGeneration",
        "Qwen2VLForConditionalGeneration",
        "Qwen2_5_VLForConditionalGeneration",
        "Qwen3ASRForConditionalGeneration",
        "Qwen3ASRForcedAlignerForTokenClassification",
        "Qwen3ASRRealtimeGeneration",
        "Qwen3OmniMoeForConditionalGeneration",
        "Qwen3VLForConditionalGeneration",
        "Qwen3VLMoeForConditionalGeneration",
        "Qwen3VLNemotronEmbedModel",
        "Qwen3_5ForConditionalGeneration",
        "Qwen3_5MoeForConditionalGeneration",
        "SmolVLMForConditionalGeneration",
        "UltravoxModel",
    }
)
TOWER_PARTS = frozenset({"vision_tower", "vision_model", "visual", "vision_encoder", "image_encoder", "vpm"})
PROJECTOR_PARTS = frozenset({"multi_modal_projector", "mm_projector", "connector", "merger", "projector"})
# Fields vLLM refuses (peft_helper.py ``_validate_features``) with the value that is fine.
_UNSUPPORTED_FLAGS = {
    "use_dora": "DoRA",
    "lora_bias": "LoRA bias (lora_bias)",
    "layer_replication": "layer replication",
    "alora_invocation_tokens": "Activated LoRA (aLoRA)",
    "use_bdlora": "block-diagonal LoRA",
    "use_qalora": "QALoRA",
}
_SUPPORTED_STRING_INITS = ("gaussian", "eva", "orthogonal", "mica", "lora_ga")


def module_part(module: str) -> str:
    """``vision tower``, ``projector`` or ``language model``: which part of a VLM a module belongs to."""
    parts = module.split(".")
    for part in parts:
        if part in TOWER_PARTS:
            return "vision tower"
        if part in PROJECTOR_PARTS:
            return "projector"
    return "language model"


def vllm_max_lora_rank(rank: int) -> int:
    """The smallest ``max_lora_rank`` vLLM accepts that serves ``rank`` (one of ``VLLM_MAX_LORA_RANKS``)."""
    for allowed in VLLM_MAX_LORA_RANKS:
        if allowed >= rank:
            return allowed
    raise ConfigError(
        f"LoRA rank {rank} is above the largest max_lora_rank vLLM serves ({VLLM_MAX_LORA_RANKS[-1]}); "
        "merge the adapter (vlguard merge) and serve the merged model"
    )


@dataclass(frozen=True)
class VLLMAdapterPlan:
    """How vlguard serves an adapter with vLLM: engine settings and what is loaded outside LoRA."""

    max_lora_rank: int
    enable_tower_connector_lora: bool
    saved_tensors: tuple[str, ...]  # loaded into the engine's model by ``SavedModulesLoader``


def plan_vllm_adapter(
    adapter: LoraAdapter,
    architectures: Sequence[str],
    *,
    max_lora_rank: int | None = None,
    enable_tower_connector_lora: bool = False,
) -> VLLMAdapterPlan:
    """Check that vLLM can serve ``adapter`` on a model of ``architectures``; how to serve it.

    ``max_lora_rank`` None derives it from the adapter; a given value must be one vLLM accepts and at
    least the adapter's rank. Every refusal is a ``ConfigError`` that names the adapter file, the field
    or the modules, and what to do instead.
    """
    where = adapter.path / ADAPTER_CONFIG
    problems: list[str] = []
    for field, feature in _UNSUPPORTED_FLAGS.items():
        if adapter.config.get(field):
            problems.append(f"field '{field}': vLLM does not serve {feature}")
    if adapter.config.get("bias", "none") != "none":
        problems.append(f"field 'bias': vLLM does not serve adapter biases ({adapter.config['bias']!r})")
    init = adapter.config.get("init_lora_weights", True)
    if isinstance(init, str) and init.lower() not in _SUPPORTED_STRING_INITS:
        problems.append(
            f"field 'init_lora_weights': {init!r} changes the base weights when PEFT loads the adapter, "
            "which vLLM does not do"
        )
    if problems:
        raise ConfigError(f"{where}: the vllm backend cannot serve this adapter: " + "; ".join(problems))

    needed = vllm_max_lora_rank(adapter.rank)
    if max_lora_rank is None:
        chosen = needed
    elif max_lora_rank not in VLLM_MAX_LORA_RANKS or max_lora_rank < adapter.rank:
        raise ConfigError(
            f"max_lora_rank={max_lora_rank!r} cannot serve {where} (rank {adapter.rank}): vLLM accepts "
            f"{', '.join(map(str, VLLM_MAX_LORA_RANKS))}; leave it unset to use {needed}"
        )
    else:
        chosen = max_lora_rank

    if not adapter.lora_modules:
        raise ConfigError(f"{adapter.path / ADAPTER_WEIGHTS}: holds no LoRA weights (lora_A / lora_B)")
    vision_lora = [m for m in adapter.lora_modules if module_part(m) != "language model"]
    arch = ", ".join(architectures) or "unknown"
    if vision_lora:
        supported = any(a in VLLM_TOWER_CONNECTOR_LORA for a in architectures)
        if not (enable_tower_connector_lora and supported):
            how = (
                "pass --backend-option enable_tower_connector_lora=true (experimental in vLLM) or use "
                "--backend hf"
                if supported
                else f"vLLM serves such LoRA only for {len(VLLM_TOWER_CONNECTOR_LORA)} architectures "
                f"({_some(sorted(VLLM_TOWER_CONNECTOR_LORA), 6)}); use --backend hf"
            )
            raise ConfigError(
                f"{where}: the adapter puts LoRA on {len(vision_lora)} vision tower / projector "
                f"module(s) ({_some(vision_lora)}), which vLLM would silently leave out for this "
                f"model ({arch}): {how}"
            )
    lm_saved = [m for m in adapter.saved_modules if module_part(m) == "language model"]
    if lm_saved:
        raise ConfigError(
            f"{where}: the adapter saves language-model module(s) in full ({_some(lm_saved)}, "
            "modules_to_save), which vLLM cannot serve beside LoRA: merge the adapter into the base "
            "model (vlguard merge) and evaluate the merged model, or use --backend hf"
        )
    if adapter.saved_modules and enable_tower_connector_lora:
        raise ConfigError(
            f"{where}: enable_tower_connector_lora puts LoRA layers on the vision modules that this "
            f"adapter saves in full ({_some(adapter.saved_modules)}); turn the option off"
        )
    return VLLMAdapterPlan(
        max_lora_rank=chosen,
        enable_tower_connector_lora=enable_tower_connector_lora,
        saved_tensors=adapter.saved_tensors,
    )


def _some(names: Sequence[str], limit: int = 4) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def write_lora_only_adapter(adapter: LoraAdapter, folder: str | Path) -> Path:
    """Write a copy of ``adapter`` that vLLM's LoRA loader accepts: LoRA tensors only, no ``modules_to_save``.

    Returns ``folder``. The saved modules are served separately (``SavedModulesLoader``).
    """
    from safetensors import safe_open
    from safetensors.torch import save_file

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    config = dict(adapter.config)
    config["modules_to_save"] = None
    (out / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    saved = {PEFT_PREFIX + name for name in adapter.saved_tensors} | set(adapter.saved_tensors)
    with safe_open(str(adapter.path / ADAPTER_WEIGHTS), framework="pt") as handle:
        names = handle.keys()  # a safetensors handle is not iterable itself
        tensors = {name: handle.get_tensor(name) for name in names if name not in saved}
        metadata = handle.metadata()
    save_file(tensors, str(out / ADAPTER_WEIGHTS), metadata=metadata)
    return out


def serving_folder(adapter: LoraAdapter, plan: VLLMAdapterPlan) -> tuple[Path, Path | None]:
    """The folder to hand vLLM's ``LoRARequest``, and a temporary folder to delete afterwards (or None).

    The adapter folder itself when it holds LoRA weights only; else a LoRA-only copy in a new
    temporary folder (private to this user).
    """
    if not plan.saved_tensors:
        return adapter.path, None
    tmp = Path(tempfile.mkdtemp(prefix="vlguard-vllm-adapter-"))
    try:
        write_lora_only_adapter(adapter, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp, tmp


class SavedModulesLoader:
    """A vLLM worker extension (``LLM(worker_extension_cls=...)``): load full module weights saved with an
    adapter into the engine's model, in each worker (every tensor-parallel rank).

    Called through ``LLM.collective_rpc("vlguard_load_saved_modules", args=(file, names))``: only a
    path and tensor names cross the process boundary. The names are as in the adapter file without
    ``base_model.model.``, i.e. Hugging Face checkpoint names, which the model's own ``load_weights``
    maps to vLLM's (as when it loads the base checkpoint). Returns the vLLM names it loaded.
    """

    model_runner: Any  # set by vLLM's worker, which this class is mixed into

    def vlguard_load_saved_modules(self, adapter_file: str, names: list[str]) -> list[str]:
        """Load the tensors ``names`` of ``adapter_file`` into the running model (in place)."""
        from safetensors import safe_open

        wanted = set(names)
        weights = []
        with safe_open(adapter_file, framework="pt") as handle:
            keys = handle.keys()  # a safetensors handle is not iterable itself
            for key in keys:
                bare = key.removeprefix(PEFT_PREFIX)
                if bare in wanted:
                    weights.append((bare, handle.get_tensor(key)))
        model = self.model_runner.get_model()
        loaded = model.load_weights(iter(weights))
        return sorted(loaded or ())


def check_saved_modules_loaded(
    results: Sequence[Sequence[str]], plan: VLLMAdapterPlan, adapter: Path
) -> None:
    """``ConfigError`` unless every worker loaded as many tensors as the adapter saves."""
    want = len(plan.saved_tensors)
    for worker, loaded in enumerate(results):
        if len(loaded) != want:
            raise ConfigError(
                f"{adapter / ADAPTER_WEIGHTS}: vLLM worker {worker} loaded {len(loaded)} of the {want} "
                f"saved module tensor(s) ({_some(list(plan.saved_tensors))}); use --backend hf"
            )


def remove_folder(path: Path | None) -> None:
    """Delete a temporary folder made by ``serving_folder`` (nothing for None)."""
    if path is not None and path.is_dir() and path.name.startswith("vlguard-vllm-adapter-"):
        shutil.rmtree(path, ignore_errors=True)
