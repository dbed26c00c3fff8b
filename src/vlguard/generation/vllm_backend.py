"""The vLLM backend (optional, CUDA GPUs): ``pip install 'vlguard[vllm]'`` (vLLM 0.33, its own environment).

Uses vLLM's offline chat API (``LLM.chat``), which applies the model's own chat template. Greedy
decoding (temperature 0).

- **Engine-sized calls.** vLLM batches continuously: it keeps as many conversations in flight as its
  KV cache holds and refills slots as answers finish. That only pays off when it sees many
  conversations at once, so this backend asks the eval loop for ``requests_per_call`` requests per
  call (default ``DEFAULT_REQUESTS_PER_CALL``) and hands them all to one ``LLM.chat`` call. The eval
  loop appends after each call, so the option also bounds the work a kill can lose.
- **Images** go as PIL images (``image_pil`` content parts), not base64 PNG data URLs: no encode and
  decode round trip per image on the CPU while the GPU waits.
- **LoRA** adapters are served unmerged with a ``LoRARequest``; ``max_lora_rank`` is derived from the
  adapter's ``adapter_config.json``, and what vLLM cannot serve is refused before the engine starts
  (see ``vlguard.generation.vllm_lora``). Modules the adapter saves in full (the projector of
  vlguard's LoRA recipe) are loaded into the engine's model after it starts.
- **Decoding** follows ``vlguard.generation.decoding``, as the ``hf`` backend: the model's own
  generation-config settings that change greedy decoding (``repetition_penalty``, ``min_new_tokens``)
  go into the ``SamplingParams`` (vLLM itself would drop them once explicit ``SamplingParams`` are
  passed); ``sampling_options`` override them; a setting vLLM has no field for is logged and recorded
  as not applied.
- **Engine options.** Keywords the backend does not take go to ``LLM(...)`` unchanged. vlguard sets some
  ``LLM`` arguments itself: ``limit_mm_per_prompt`` given as an option is merged over vlguard's
  ``{"image": 1}`` (the option wins); ``enable_lora`` and ``worker_extension_cls`` follow from
  ``--adapter`` and given as options are a ``ConfigError``. (``revision``, ``dtype``,
  ``trust_remote_code``, ``tensor_parallel_size``, ``max_lora_rank`` and ``enable_tower_connector_lora``
  are the backend's own options.)
- **Device.** ``auto`` or ``cuda`` use the first visible GPU(s); ``cuda:N`` runs the engine on visible
  GPU ``N`` (``CUDA_VISIBLE_DEVICES`` is narrowed to it before the engine starts), with one GPU per engine.
- **Several GPUs.** ``tensor_parallel_size`` (a backend option) splits one model over that many GPUs.
  Data parallelism runs one engine per process under ``torchrun`` (or ``accelerate launch``), as with the
  ``hf`` backend: each process takes its own ``tensor_parallel_size`` GPUs (``CUDA_VISIBLE_DEVICES`` is
  narrowed to them before the engine starts) and its own shard, and rank 0 merges the shards into the
  run folder (``vlguard.evaluate``).
"""

from __future__ import annotations

import logging
import os
import re
import weakref
from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any

from vlguard.distributed import topology
from vlguard.errors import ConfigError
from vlguard.generation.base import GenerationRequest, requests_per_call_setting
from vlguard.generation.decoding import greedy_settings, model_generation_config, vllm_sampling_settings
from vlguard.prompts import user_text
from vlguard.records import Generation

logger = logging.getLogger(__name__)

# Conversations per LLM.chat call: several times what one H100/H200 holds in flight for a 7B VLM
# (a few hundred), so the engine stays full between refills; about a minute of work at that speed.
DEFAULT_REQUESTS_PER_CALL = 1024
# Sampling settings that make decoding greedy and bounded; sampling_options cannot override them.
_GREEDY_KEYS = frozenset({"temperature", "max_tokens", "n", "top_p", "top_k", "seed"})
# LLM(...) arguments the backend derives from its own settings, with what to use instead.
_DERIVED_ENGINE_ARGS = {
    "enable_lora": "it follows from --adapter",
    "worker_extension_cls": "vlguard sets it to load the modules an adapter saves in full",
}
# vlguard sends at most one image per prompt; an engine option of the same name is merged over this.
_LIMIT_MM_PER_PROMPT = {"image": 1}
_CUDA_DEVICE = re.compile(r"cuda(?::(\d+))?")


class VLLMBackend:
    """Greedy generation with vLLM's ``LLM`` engine (imported only when this backend is chosen).

    ``sampling_options`` are extra ``SamplingParams`` fields (e.g. ``{"min_tokens": 256}`` for
    benchmarks); any other keyword (``gpu_memory_utilization``, ``max_num_seqs``, ``max_model_len``,
    ``enforce_eager``, ...) goes to ``LLM`` unchanged. ``batch_size`` is accepted for a uniform
    interface but unused: the engine sizes its own batches (cap them with ``max_num_seqs``).
    """

    name = "vllm"

    def __init__(
        self,
        model: str,
        *,
        revision: str | None = None,
        adapter: str | None = None,
        dtype: str = "auto",
        device: str = "auto",
        batch_size: int | None = None,
        max_new_tokens: int = 256,
        trust_remote_code: bool = False,
        system_prompt: str | None = None,
        requests_per_call: int | None = None,
        tensor_parallel_size: int = 1,
        max_lora_rank: int | None = None,
        enable_tower_connector_lora: bool = False,
        sampling_options: Mapping[str, Any] | None = None,
        **engine_kwargs: Any,
    ) -> None:
        cuda = _CUDA_DEVICE.fullmatch(device)
        if device != "auto" and cuda is None:
            raise ConfigError(
                f"the vllm backend runs on CUDA GPUs only (device={device!r}; use cuda or cuda:N)"
            )
        device_index = int(cuda.group(1)) if cuda is not None and cuda.group(1) is not None else None
        derived = sorted(set(engine_kwargs) & set(_DERIVED_ENGINE_ARGS))
        if derived:
            raise ConfigError(
                f"the vllm backend sets {derived[0]} itself ({_DERIVED_ENGINE_ARGS[derived[0]]}); "
                "leave it out of the backend options"
            )
        limit_mm = engine_kwargs.pop("limit_mm_per_prompt", None)
        if limit_mm is not None and not isinstance(limit_mm, Mapping):
            raise ConfigError(f'limit_mm_per_prompt must be a mapping like {{"image": 1}}, not {limit_mm!r}')
        self.limit_mm_per_prompt = {**_LIMIT_MM_PER_PROMPT, **dict(limit_mm or {})}
        if isinstance(tensor_parallel_size, bool) or not isinstance(tensor_parallel_size, int):
            raise ConfigError(f"tensor_parallel_size must be a whole number, not {tensor_parallel_size!r}")
        if tensor_parallel_size < 1:
            raise ConfigError(f"tensor_parallel_size must be at least 1, not {tensor_parallel_size}")
        sampling_options = dict(sampling_options or {})
        overridden = sorted(_GREEDY_KEYS & set(sampling_options))
        if overridden:
            raise ConfigError(
                f"sampling_options cannot set {', '.join(overridden)}: the vllm backend decodes greedily "
                "(use --max-new-tokens for the length)"
            )
        self.model_id = model
        self.revision = revision
        self.adapter = adapter
        # vLLM's "auto" picks the checkpoint's dtype; bf16 is what the hf backend uses on GPUs.
        self.dtype = "bfloat16" if dtype == "auto" else dtype
        self.max_new_tokens = max_new_tokens
        self.system_prompt = system_prompt
        self.trust_remote_code = trust_remote_code
        self.tensor_parallel_size = tensor_parallel_size
        self.requests_per_call = requests_per_call_setting(requests_per_call, DEFAULT_REQUESTS_PER_CALL)
        self.sampling_options = sampling_options
        self.engine_options = dict(engine_kwargs)
        if limit_mm is not None:
            self.engine_options["limit_mm_per_prompt"] = self.limit_mm_per_prompt
        # The decoding rule shared with the hf backend: the model's greedy settings, options over them.
        self.model_decoding_defaults = greedy_settings(
            model_generation_config(model, revision, trust_remote_code)
        )
        model_sampling, self.decoding_not_applied = vllm_sampling_settings(self.model_decoding_defaults)
        if self.decoding_not_applied:
            logger.warning(
                "the model's generation config sets %s, which vLLM cannot apply: its answers can differ "
                "from the hf backend's",
                ", ".join(f"{k}={v!r}" for k, v in self.decoding_not_applied.items()),
            )
        self.sampling_settings = {**model_sampling, **sampling_options}

        # The adapter is checked before anything starts: a refusal costs no GPU time.
        plan = lora_adapter = None
        if adapter is not None:
            from vlguard.generation.vllm_lora import plan_vllm_adapter
            from vlguard.models.adapters import check_adapter_base, read_adapter
            from vlguard.models.resolve import safetensors_adapter

            # The same safetensors-only resolution and checks as the hf backend (a Hub id becomes a
            # local folder; an adapter of another base model is refused).
            lora_adapter = read_adapter(safetensors_adapter(adapter))
            check_adapter_base(lora_adapter, model)
            plan = plan_vllm_adapter(
                lora_adapter,
                model_architectures(model, revision),
                max_lora_rank=max_lora_rank,
                enable_tower_connector_lora=bool(enable_tower_connector_lora),
            )
        elif max_lora_rank is not None or enable_tower_connector_lora:
            raise ConfigError("max_lora_rank and enable_tower_connector_lora need --adapter")
        self.max_lora_rank = plan.max_lora_rank if plan is not None else None
        self.enable_tower_connector_lora = bool(plan and plan.enable_tower_connector_lora)
        self.saved_tensors = plan.saved_tensors if plan is not None else ()
        self.devices = pin_engine_devices(tensor_parallel_size, device_index=device_index)

        try:
            from vllm import LLM, SamplingParams
        except ImportError as err:
            raise ConfigError(
                "the vllm backend needs the optional vLLM package: pip install 'vlguard[vllm]' "
                f"(import failed: {err})"
            ) from err
        try:
            import vllm

            self.vllm_version: str | None = str(vllm.__version__)
        except AttributeError:
            self.vllm_version = None

        lora_kwargs: dict[str, Any] = {}
        if plan is not None:
            lora_kwargs.update(enable_lora=True, max_lora_rank=plan.max_lora_rank)
            if plan.enable_tower_connector_lora:
                lora_kwargs["enable_tower_connector_lora"] = True
            if plan.saved_tensors:
                lora_kwargs["worker_extension_cls"] = "vlguard.generation.vllm_lora.SavedModulesLoader"
        self.llm = LLM(
            model=model,
            revision=revision,
            dtype=self.dtype,
            trust_remote_code=trust_remote_code,
            tensor_parallel_size=tensor_parallel_size,
            limit_mm_per_prompt=self.limit_mm_per_prompt,
            **lora_kwargs,
            **engine_kwargs,
        )
        self.sampling = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, **self.sampling_settings)
        self.lora_request = None
        if plan is not None and lora_adapter is not None:
            self.lora_request = self._lora_request(lora_adapter, plan)

    def _lora_request(self, adapter: Any, plan: Any) -> Any:
        """Load the adapter's saved modules into the engine; the ``LoRARequest`` for its LoRA part."""
        from vllm.lora.request import LoRARequest

        from vlguard.generation.vllm_lora import check_saved_modules_loaded, remove_folder, serving_folder
        from vlguard.models.adapters import ADAPTER_WEIGHTS

        if plan.saved_tensors:
            loaded = self.llm.collective_rpc(
                "vlguard_load_saved_modules",
                args=(str(adapter.path / ADAPTER_WEIGHTS), list(plan.saved_tensors)),
            )
            check_saved_modules_loaded(loaded, plan, adapter.path)
            logger.info("loaded %d saved module tensor(s) of the adapter", len(plan.saved_tensors))
        folder, tmp = serving_folder(adapter, plan)
        # vLLM reads the LoRA folder when the first request needs it; keep it as long as the backend.
        weakref.finalize(self, remove_folder, tmp)
        return LoRARequest("vlguard-adapter", 1, str(folder))

    def describe(self) -> dict[str, Any]:
        """Model, adapter, dtype, engine and decoding settings, vLLM version (for the manifest)."""
        return {
            "backend": self.name,
            "model": self.model_id,
            "revision": self.revision,
            "adapter": self.adapter,
            "max_lora_rank": self.max_lora_rank,
            "adapter_saved_tensors": len(self.saved_tensors),
            "enable_tower_connector_lora": self.enable_tower_connector_lora,
            "dtype": self.dtype,
            "tensor_parallel_size": self.tensor_parallel_size,
            "devices": self.devices,
            "requests_per_call": self.requests_per_call,
            "max_new_tokens": self.max_new_tokens,
            "decoding": "greedy",
            "decoding_settings": self.sampling_settings,
            "model_decoding_defaults": self.model_decoding_defaults,
            "decoding_settings_not_applied": self.decoding_not_applied,
            "sampling_options": self.sampling_options,
            "engine_options": self.engine_options,
            "system_prompt": self.system_prompt,
            "trust_remote_code": self.trust_remote_code,
            "vllm_version": self.vllm_version,
        }

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        """Answer every request in one ``LLM.chat`` call (the engine schedules them); request order."""
        if not requests:
            return []
        outputs = self.llm.chat(
            [vllm_messages(r, self.system_prompt) for r in requests],
            self.sampling,
            use_tqdm=False,
            lora_request=self.lora_request,
        )
        results: list[Generation] = []
        for request, output in zip(requests, outputs, strict=True):
            completion = output.outputs[0]
            results.append(
                Generation(
                    sample_id=request.sample_id,
                    response=completion.text.strip(),
                    meta={
                        "prompt_tokens": len(output.prompt_token_ids or []),
                        "completion_tokens": len(completion.token_ids),
                        "finish_reason": completion.finish_reason,
                    },
                )
            )
        return results


def vllm_messages(request: GenerationRequest, default_system: str | None) -> list[dict[str, Any]]:
    """The conversation for ``LLM.chat``: an optional system turn, then the user turn.

    The image (if any) is an ``image_pil`` part before the text, as the ``hf`` backend places it; a
    text-only turn is a plain string, which every chat template accepts.
    """
    messages: list[dict[str, Any]] = []
    system = request.system_or(default_system)
    if system:
        messages.append({"role": "system", "content": system})
    text = user_text(request.prompt, request.input)
    if request.image is None:
        messages.append({"role": "user", "content": text})
    else:
        messages.append(
            {
                "role": "user",
                "content": [
                    {"type": "image_pil", "image_pil": request.image},
                    {"type": "text", "text": text},
                ],
            }
        )
    return messages


def model_architectures(model: str, revision: str | None = None) -> list[str]:
    """The ``architectures`` of a model's ``config.json`` (a local folder, or fetched from the Hub)."""
    import json

    folder = Path(model)
    if folder.is_dir():
        config_file = folder / "config.json"
    else:
        from huggingface_hub import hf_hub_download

        from vlguard.data.sources import hub_errors

        where = f"cannot read the config of model {model!r} (revision {revision!r})"
        with hub_errors(where, model, repo_type="model", filename="config.json", error=ConfigError):
            config_file = Path(hf_hub_download(model, "config.json", revision=revision))
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"{config_file}: cannot read the model config ({err})") from err
    architectures = config.get("architectures") if isinstance(config, dict) else None
    return [str(a) for a in architectures] if isinstance(architectures, list) else []


def pin_engine_devices(
    tensor_parallel_size: int,
    environ: MutableMapping[str, str] | None = None,
    *,
    device_index: int | None = None,
) -> list[str] | None:
    """Give this process's engine its own GPUs under a data-parallel launcher; the GPUs it will use.

    Launched plainly (``WORLD_SIZE`` unset or 1) nothing changes and vLLM takes the first
    ``tensor_parallel_size`` visible GPUs, or, with ``device_index`` N (``--device cuda:N``), visible GPU
    N alone (``CUDA_VISIBLE_DEVICES`` narrowed to it). Under ``torchrun``/``accelerate launch``, local
    process ``k`` of ``n`` gets visible GPUs ``k·tp … k·tp + tp − 1``: ``CUDA_VISIBLE_DEVICES`` is
    narrowed to them (vLLM's engine processes inherit it), and vLLM is told to spawn rather than fork its
    engine, so the engine does not inherit this process's own process group. ``ConfigError`` when the
    node has too few GPUs for ``n × tp``, or for a ``device_index`` that cannot hold the engine.
    """
    env = os.environ if environ is None else environ
    visible_env = env.get("CUDA_VISIBLE_DEVICES")
    where = topology(env)
    world = where.world_size

    def visible_gpus() -> list[str]:
        if visible_env is not None:
            return [d.strip() for d in visible_env.split(",") if d.strip()]
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]

    if device_index is not None:
        if tensor_parallel_size > 1:
            raise ConfigError(
                f"--device cuda:{device_index} names one GPU, but tensor_parallel_size={tensor_parallel_size} "
                "spreads the model over several: use --device cuda (and CUDA_VISIBLE_DEVICES to choose them)"
            )
        if world > 1:
            raise ConfigError(
                f"--device cuda:{device_index} under a data-parallel launch: each process takes its own GPU; "
                "use --device auto or cuda"
            )
        visible = visible_gpus()
        if device_index >= len(visible):
            raise ConfigError(f"--device cuda:{device_index}: only {len(visible)} CUDA device(s) are visible")
        env["CUDA_VISIBLE_DEVICES"] = visible[device_index]
        return [visible[device_index]]
    if world <= 1:
        return [d.strip() for d in visible_env.split(",") if d.strip()] if visible_env is not None else None
    local_rank, local_world = where.local_rank, where.local_world_size
    visible = visible_gpus()
    needed = local_world * tensor_parallel_size
    if len(visible) < needed:
        raise ConfigError(
            f"{local_world} data-parallel process(es) on this node × tensor_parallel_size "
            f"{tensor_parallel_size} need {needed} GPUs; {len(visible)} visible"
        )
    devices = visible[local_rank * tensor_parallel_size : (local_rank + 1) * tensor_parallel_size]
    env["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
    env["VLLM_WORKER_MULTIPROC_METHOD"] = "spawn"
    logger.info("data-parallel rank %d: vLLM engine on GPU(s) %s", local_rank, ",".join(devices))
    return devices
