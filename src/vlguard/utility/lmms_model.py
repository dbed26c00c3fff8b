"""A model class for lmms-eval that answers through vlguard's ``hf`` backend.

lmms-eval's own Hugging Face classes take one request at a time (``llava_hf`` asserts a batch size of
1) and cannot apply a LoRA adapter. This class hands lmms-eval's requests to the ``HFBackend`` that
``vlguard eval`` uses: any ``AutoModelForImageTextToText`` model with a chat template, base + adapter
without merging, batched greedy generation with left padding. So a capability score and a safety
score of the same run come from the same loaded weights and the same prompt format.

Importing this module imports lmms-eval: it is imported only when lmms-eval is the engine.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from lmms_eval.api.instance import GenerationResult, Instance, TokenCounts
from lmms_eval.api.model import lmms

from vlguard.generation.base import GenerationRequest
from vlguard.generation.hf import HFBackend
from vlguard.utility.engines import UtilityTaskError

logger = logging.getLogger(__name__)

# New tokens when a task sets no max_new_tokens (the same default as `vlguard eval`).
DEFAULT_MAX_NEW_TOKENS = 256


class VLGuardLMMS(lmms):
    """lmms-eval's model interface over an ``HFBackend`` (``generate_until`` and ``loglikelihood``)."""

    def __init__(self, backend: HFBackend) -> None:
        super().__init__()
        self.backend = backend
        # Requests whose generation failed (answered with an empty string, so they score as wrong);
        # the run records how many per task.
        self.failed: list[str] = []

    @property
    def batch_size(self) -> int:
        """Requests per forward pass (lmms-eval reads it)."""
        return self.backend.batch_size

    @property
    def device(self) -> str:
        """The model's device (lmms-eval reads it)."""
        return self.backend.device

    def _image(self, doc_to_visual: Any, doc_id: int, task: str, split: str) -> Any:
        """The one image of a document, or None for a text-only document."""
        from PIL import Image

        visuals = doc_to_visual(self.task_dict[task][split][doc_id]) if callable(doc_to_visual) else []
        visuals = [v for v in (visuals or []) if v is not None]
        if not visuals:
            return None
        if len(visuals) > 1 or not isinstance(visuals[0], Image.Image):
            kinds = ", ".join(sorted({type(v).__name__ for v in visuals}))
            raise UtilityTaskError(
                f"task {task!r}, document {doc_id}: gives {len(visuals)} visual input(s) ({kinds}); vlguard's "
                "lmms-eval model answers with one image per question"
            )
        return visuals[0].convert("RGB")

    def generate_until(self, requests: list[Instance]) -> list[GenerationResult]:
        """Greedy answers, batched by the backend; generation stops at the task's stop strings (``until``)."""
        prepared: list[GenerationRequest] = []
        groups: dict[tuple[int, tuple[str, ...]], list[int]] = {}
        for index, request in enumerate(requests):
            context, gen_kwargs, doc_to_visual, doc_id, task, split = request.args
            until = gen_kwargs.get("until") or ()
            stops = (until,) if isinstance(until, str) else tuple(until)
            max_new = int(gen_kwargs.get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS)
            image = self._image(doc_to_visual, doc_id, task, split)
            prepared.append(GenerationRequest(sample_id=f"{task}/{doc_id}", prompt=context, image=image))
            groups.setdefault((max_new, stops), []).append(index)
        results: list[GenerationResult | None] = [None] * len(requests)
        for (max_new, stops), indices in groups.items():
            # The task sets the answer length and where answers end; the other settings stay as loaded.
            with self.backend.overrides(max_new_tokens=max_new, stop_strings=stops):
                generations = self.backend.generate([prepared[i] for i in indices])
            for i, generation in zip(indices, generations, strict=True):
                if generation.error:
                    logger.warning("generation failed for %s: %s", generation.sample_id, generation.error)
                    self.failed.append(generation.sample_id)
                tokens = generation.meta.get("completion_tokens")
                results[i] = GenerationResult(
                    text=generation.response,
                    token_counts=TokenCounts(output_tokens=tokens) if tokens is not None else None,
                )
        return [r if r is not None else GenerationResult(text="") for r in results]

    def loglikelihood(self, requests: list[Instance]) -> list[GenerationResult]:
        """The negative log-likelihood of each continuation after its (chat-formatted) context, and
        whether greedy decoding would produce it; batched with right padding so that padding never
        moves a real token.

        lmms-eval scores multiple choice by the *lowest* value (``argmin``), because its own model
        classes return a loss here. So this returns the summed negative log-probability of the
        continuation's tokens: the lowest one is the most likely choice, which is lm-eval's rule
        (``argmax`` of the summed log-probability), and ``acc_norm`` divides it by the choice's length
        as lm-eval does.

        Each ``(nll, is_greedy)`` pair travels inside a ``GenerationResult``: lmms-eval 0.7.3's evaluator
        turns any other model output that is not a string into ``str(output)``
        (``unwrap_generation_output``), which breaks the scoring of plain tuples, while it passes a
        ``GenerationResult``'s ``text`` on untouched.
        """
        items: list[tuple[str, str, Any]] = []
        for request in requests:
            context, continuation, doc_to_visual, doc_id, task, split = request.args
            if not isinstance(continuation, str):  # a loglikelihood task passes its doc_to_target
                continuation = str(continuation(self.task_dict[task][split][doc_id]))
            items.append((context, continuation, self._image(doc_to_visual, doc_id, task, split)))
        # Longest first within image / text-only groups: less padding, and out-of-memory shows up early.
        order = sorted(
            range(len(items)), key=lambda i: (items[i][2] is None, -len(items[i][0]) - len(items[i][1]))
        )
        scores: list[tuple[float, bool] | None] = [None] * len(items)
        batch: list[int] = []
        for i in order:
            if batch and (
                len(batch) == self.backend.batch_size or (items[batch[0]][2] is None) != (items[i][2] is None)
            ):
                self._score_or_split(batch, items, scores)
                batch = []
            batch.append(i)
        if batch:
            self._score_or_split(batch, items, scores)
        return [GenerationResult(text=s if s is not None else (float("inf"), False)) for s in scores]

    def _score_or_split(
        self, batch: list[int], items: Sequence[tuple[str, str, Any]], scores: list[tuple[float, bool] | None]
    ) -> None:
        """Score a batch; halve it when it does not fit on the device (scores do not depend on batching)."""
        import torch

        try:
            self._score_batch(batch, items, scores)
        except torch.cuda.OutOfMemoryError:
            if len(batch) == 1:
                raise
            logger.warning("out of memory scoring %d requests; retrying in halves", len(batch))
            torch.cuda.empty_cache()
            half = len(batch) // 2
            self._score_or_split(batch[:half], items, scores)
            self._score_or_split(batch[half:], items, scores)

    def _score_batch(
        self, batch: list[int], items: Sequence[tuple[str, str, Any]], scores: list[tuple[float, bool] | None]
    ) -> None:
        import torch

        backend = self.backend
        device = backend.device
        encoded: list[dict[str, Any]] = []
        spans: list[tuple[int, list[int]]] = []
        for i in batch:
            context, continuation, image = items[i]
            prompt = backend.prompt_text(GenerationRequest(sample_id="", prompt=context, image=image))
            # The prompt encoded exactly as for generation (BOS rule, image inputs), on the device, unpadded.
            inputs = dict(backend.model_inputs([prompt], [image]))
            continuation_ids = backend.tokenizer(continuation, add_special_tokens=False)["input_ids"]
            if not continuation_ids:
                raise UtilityTaskError(f"empty continuation {continuation!r} after context {context[-60:]!r}")
            spans.append((int(inputs["input_ids"].shape[1]), list(continuation_ids)))
            encoded.append(inputs)
        length = max(n + len(ids) for n, ids in spans)
        pad_id = backend.tokenizer.pad_token_id or 0
        input_ids = torch.full((len(batch), length), pad_id, dtype=torch.long, device=device)
        attention = torch.zeros((len(batch), length), dtype=torch.long, device=device)
        extra: dict[str, list[Any]] = {}
        for row, (inputs, (n_context, continuation_ids)) in enumerate(zip(encoded, spans, strict=True)):
            tail = torch.tensor(continuation_ids, dtype=torch.long, device=device)
            ids = torch.cat([inputs["input_ids"][0], tail])
            input_ids[row, : len(ids)] = ids
            attention[row, : len(ids)] = 1
            for key, value in inputs.items():
                if key in ("input_ids", "attention_mask"):
                    continue
                if isinstance(value, torch.Tensor) and value.dim() >= 2 and value.shape[:2] == (1, n_context):
                    # a per-token input (e.g. token type ids): text zeros for the continuation and padding
                    padded = torch.zeros(
                        (1, length, *value.shape[2:]), dtype=value.dtype, device=value.device
                    )
                    padded[:, :n_context] = value
                    value = padded
                extra.setdefault(key, []).append(value)
        model_inputs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention}
        for key, values in extra.items():
            if all(isinstance(v, torch.Tensor) for v in values):
                model_inputs[key] = torch.cat(
                    values, dim=0
                )  # already on the device, pixels in the model dtype
            else:
                model_inputs[key] = [x for v in values for x in (v if isinstance(v, list) else [v])]
        with torch.inference_mode():
            logits = backend.model(**model_inputs).logits.float()
        log_probs = torch.log_softmax(logits, dim=-1)
        for row, (i, (n_context, continuation_ids)) in enumerate(zip(batch, spans, strict=True)):
            # The logits at position p predict token p + 1.
            positions = torch.arange(n_context - 1, n_context - 1 + len(continuation_ids))
            targets = torch.tensor(continuation_ids, device=log_probs.device)
            picked = log_probs[row, positions.to(log_probs.device), targets]
            greedy = bool((log_probs[row, positions.to(log_probs.device)].argmax(dim=-1) == targets).all())
            scores[i] = (-float(picked.sum()), greedy)

    def generate_until_multi_round(self, requests: list[Instance]) -> list[str]:
        """Multi-round tasks are not supported."""
        raise UtilityTaskError("multi-round lmms-eval tasks are not supported by vlguard's model class")
