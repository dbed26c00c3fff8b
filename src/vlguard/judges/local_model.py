"""Loading and running the transformers models that judges use (WildGuard, Beaver-Dam, Llama Guard).

Weights load from safetensors only and ``trust_remote_code`` is off unless asked. ``device="auto"`` is
CUDA when there is one, else CPU; ``dtype="auto"`` is bf16 on CUDA and fp32 on CPU. The commit that a
Hub id resolved to (``config._commit_hash``; None for a local folder) is kept, so every verdict can
name the exact weights that produced it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlguard.data.sources import hub_errors, looks_like_repo_id
from vlguard.errors import ConfigError


@dataclass
class LoadedModel:
    """A model with its tokenizer, the device it sits on and the commit its weights came from."""

    model: Any
    tokenizer: Any
    device: str
    commit: str | None


@contextlib.contextmanager
def model_load_errors(model_id: str, revision: str | None) -> Iterator[None]:
    """Turn what transformers raises for a model it cannot load (missing folder or repository, no
    safetensors, unknown revision: ``OSError`` / ``ValueError``) into one ``ConfigError`` naming it."""
    try:
        yield
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot load judge model {model_id!r} (revision {revision!r}): {err}") from err


def check_weights(model_id: str, revision: str | None) -> None:
    """A cheap pre-flight check that a judge's weights can be loaded, before anything is generated.

    A local folder must hold a ``config.json`` and safetensors weights. A Hub id must resolve its
    ``config.json`` (downloaded online, which also checks access to a gated repository; from the local
    cache alone with ``HF_HUB_OFFLINE=1``). ``ConfigError`` naming the model otherwise. The weights
    themselves are not read: that is the model load's job, on first use.
    """
    path = Path(model_id).expanduser()
    where = f"cannot load judge model {model_id!r}" + (f" (revision {revision!r})" if revision else "")
    if path.exists():
        if not (path / "config.json").is_file():
            raise ConfigError(f"{where}: {path} has no config.json (not a model folder)")
        if not any(path.glob("*.safetensors")):
            raise ConfigError(f"{where}: {path} has no .safetensors weights")
        return
    if not looks_like_repo_id(model_id):
        raise ConfigError(f"{where}: no such folder (and not a Hub repo id like owner/name)")
    from huggingface_hub import hf_hub_download

    with hub_errors(where, model_id, repo_type="model", filename="config.json", error=ConfigError):
        hf_hub_download(model_id, "config.json", revision=revision)


def device_and_dtype(device: str, dtype: str) -> tuple[str, Any]:
    """The device and torch dtype for the ``auto`` options (CUDA + bf16 when there is a GPU, else CPU + fp32)."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype == "auto":
        return device, torch.bfloat16 if device.startswith("cuda") else torch.float32
    if dtype not in ("float32", "bfloat16", "float16"):
        raise ConfigError(f"dtype must be auto, float32, bfloat16 or float16, not {dtype!r}")
    return device, getattr(torch, dtype)


def load_model(
    model_id: str,
    model_class: str,
    *,
    revision: str | None,
    device: str,
    dtype: str,
    trust_remote_code: bool,
    padding_side: str,
) -> LoadedModel:
    """``model_class`` (``AutoModelForCausalLM``, ``AutoModelForSequenceClassification``) and its tokenizer.

    A model that cannot be loaded (missing folder, no safetensors, unknown revision) is a ``ConfigError``
    naming it. The tokenizer pads on ``padding_side``; a tokenizer without a pad token gets the model
    config's pad token, else its end-of-sequence token.
    """
    import transformers
    from transformers import AutoTokenizer

    resolved_device, torch_dtype = device_and_dtype(device, dtype)
    common: dict[str, Any] = {"revision": revision, "trust_remote_code": trust_remote_code}
    with model_load_errors(model_id, revision):
        model = getattr(transformers, model_class).from_pretrained(
            model_id, dtype=torch_dtype, use_safetensors=True, **common
        )
        tokenizer = AutoTokenizer.from_pretrained(model_id, **common)
    tokenizer.padding_side = padding_side
    if tokenizer.pad_token is None:
        pad_id = getattr(model.config, "pad_token_id", None)
        if pad_id is not None:
            tokenizer.pad_token = tokenizer.convert_ids_to_tokens(pad_id)
        else:
            tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(
        model=model.to(resolved_device).eval(),
        tokenizer=tokenizer,
        device=resolved_device,
        commit=getattr(model.config, "_commit_hash", None),
    )


def greedy_continuations(
    loaded: LoadedModel,
    texts: Sequence[str],
    max_new_tokens: int,
    generate_kwargs: Mapping[str, Any] | None = None,
) -> list[str]:
    """Greedy continuations of ``texts`` (left-padded, one batch; the texts hold their special tokens).

    ``generate_kwargs`` are extra ``generate()`` arguments (e.g. a ``prefix_allowed_tokens_fn`` for
    constrained decoding); greedy decoding and the padding token always win.
    """
    import torch

    tokenizer = loaded.tokenizer
    inputs = tokenizer(list(texts), padding=True, add_special_tokens=False, return_tensors="pt").to(
        loaded.device
    )
    with torch.inference_mode():
        output = loaded.model.generate(
            **inputs,
            **dict(generate_kwargs or {}),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
    new_tokens = output[:, inputs["input_ids"].shape[1] :]
    return [str(t) for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
