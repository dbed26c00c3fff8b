"""One decoding rule for the ``hf`` and ``vllm`` backends: greedy, with the model's own generation-config
settings that change greedy decoding applied in both.

A model's ``generation_config.json`` can set more than sampling: ``repetition_penalty``,
``no_repeat_ngram_size``, ``min_new_tokens``, suppressed tokens, ... transformers' ``generate`` applies
them under greedy decoding too; vLLM applies them only when no ``SamplingParams`` are passed (its
``generation_config="auto"`` defaults), and vlguard always passes its own. Without a rule the two
backends would answer differently for a model that sets one of them. The rule: **both apply the model's
settings** (what its authors ship and what ``generate`` does), the options override them
(``generate_kwargs`` for ``hf``, ``sampling_options`` for ``vllm``, e.g. ``repetition_penalty=1.0`` for
plain greedy), and the manifest records the effective settings. A setting vLLM has no equivalent for is
recorded as not applied and logged (the answers can then differ from ``hf``'s).

The settings that only steer sampling (temperature, top-p, top-k) change nothing under greedy decoding
and are not carried over; ``max_new_tokens`` is always vlguard's own.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

logger = logging.getLogger(__name__)

# transformers GenerationConfig fields that change greedy decoding (a logits processor or a stopping
# rule), with the value that changes nothing and the name of vLLM 0.33's SamplingParams field that does
# the same (None: vLLM has none).
GREEDY_SETTINGS: dict[str, tuple[Any, str | None]] = {
    "repetition_penalty": (1.0, "repetition_penalty"),
    "min_new_tokens": (0, "min_tokens"),
    "no_repeat_ngram_size": (0, None),
    "min_length": (0, None),
    "bad_words_ids": (None, None),
    "suppress_tokens": (None, None),
    "begin_suppress_tokens": (None, None),
    "sequence_bias": (None, None),
    "forced_bos_token_id": (None, None),
    "forced_eos_token_id": (None, None),
    "exponential_decay_length_penalty": (None, None),
    "encoder_repetition_penalty": (1.0, None),
    "encoder_no_repeat_ngram_size": (0, None),
}


def greedy_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of ``config`` (a generation config as a dict) that change greedy decoding: those of
    ``GREEDY_SETTINGS`` present with a value other than their neutral one."""
    found: dict[str, Any] = {}
    for name, (neutral, _) in GREEDY_SETTINGS.items():
        value = config.get(name)
        if value is not None and value != neutral and value != []:
            found[name] = value
    return found


def model_generation_config(
    model: str, revision: str | None = None, trust_remote_code: bool = False
) -> dict[str, Any]:
    """The model's generation config as a dict, read as transformers (and vLLM) read it:
    ``generation_config.json``, else derived from ``config.json``, else empty."""
    from transformers import AutoConfig, GenerationConfig

    pinned: dict[str, Any] = {} if revision is None else {"revision": revision}
    try:
        return dict(GenerationConfig.from_pretrained(model, **pinned).to_dict())
    except OSError:
        pass
    try:
        config = AutoConfig.from_pretrained(model, trust_remote_code=trust_remote_code, **pinned)
    except (OSError, ValueError):
        return {}
    return dict(GenerationConfig.from_model_config(config).to_dict())


def vllm_sampling_settings(model_settings: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The model's greedy settings as vLLM ``SamplingParams`` fields, and those vLLM has no field for."""
    mapped: dict[str, Any] = {}
    unmapped: dict[str, Any] = {}
    for name, value in model_settings.items():
        target = GREEDY_SETTINGS[name][1]
        if target is None:
            unmapped[name] = value
        else:
            mapped[target] = value
    return mapped, unmapped
