"""Vaccine: perturbation-aware alignment (Huang et al. 2024; git-disl/Vaccine ``trainer.py``, ``VaccineTrainer``).

For each micro-batch (the copy read: git-disl/Vaccine @ 906f520, ``trainer.py``):

1. a forward/backward pass records g_l, the gradient of the loss with respect to the output of every
   decoder layer's self-attention module (``pre_first_step``: a backward hook on each ``LlamaAttention``,
   lines 92-106);
2. each becomes the perturbation e_l = ρ g_l / (‖g‖ + 1e-7), ‖g‖ the norm over all layers together
   (``after_first_step``, lines 137-151, and ``_grad_norm``, lines 169-181); the pass's parameter
   gradients are discarded (``model.zero_grad()``, line 85);
3. the update is the gradient of the loss of a second pass in which every self-attention output is
   replaced by its value + e_l (``pre_second_step``, lines 111-134), reported as the step's loss.

The first pass asks autograd for the gradients of the attention outputs only (no parameter gradient
is computed or accumulated), on the unwrapped model, so that data-parallel gradient hooks fire only in
the second pass. An attention output that does not depend on a trained parameter gets no gradient and
no perturbation, as the reference's hook never fires for it.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from vlguard.train.config import VaccineSettings
from vlguard.train.defences.base import (
    DefenceRule,
    StepTrainer,
    batch_loss,
    first_output,
    forward_hooks,
    layer_parts,
    total_norm,
    user_loss,
)
from vlguard.train.safety_loss import SafetyBatches

logger = logging.getLogger(__name__)

# Added to the norm before dividing (Vaccine trainer.py:149).
NORM_EPS = 1e-7


def attention_perturbations(
    trainer: StepTrainer, model: Any, inputs: dict[str, Any], rho: float
) -> dict[torch.nn.Module, torch.Tensor]:
    """e_l = ρ g_l / (‖g‖ + 1e-7) for every self-attention module whose output has a gradient."""
    attention = layer_parts(model, "self_attn")
    outputs: dict[torch.nn.Module, torch.Tensor] = {}

    def record(module: torch.nn.Module, args: Any, output: Any) -> None:
        outputs.setdefault(module, first_output(output))

    with forward_hooks(attention, record):
        loss = batch_loss(trainer, model, inputs)
    tracked = [(m, t) for m, t in outputs.items() if t.requires_grad]
    if not tracked:
        logger.warning("vaccine: no self-attention output depends on a trained parameter; no perturbation")
        return {}
    grads = torch.autograd.grad(loss, [t for _, t in tracked], allow_unused=True)
    found = {m: g.detach() for (m, _), g in zip(tracked, grads, strict=True) if g is not None}
    scale = rho / (total_norm(found.values()) + NORM_EPS)
    return {m: (g * scale).to(g.dtype) for m, g in found.items()}


class Vaccine(DefenceRule):
    """Two passes per micro-batch: find the attention outputs' gradient, then train under its perturbation."""

    name = "vaccine"

    def __init__(self, settings: VaccineSettings, side: SafetyBatches | None = None, seed: int = 0) -> None:
        self.rho = settings.rho

    def step(
        self, trainer: StepTrainer, model: Any, inputs: dict[str, Any], num_items_in_batch: Any
    ) -> torch.Tensor:
        inner = trainer.accelerator.unwrap_model(model)
        perturbations = attention_perturbations(trainer, inner, inputs, self.rho)

        def perturb(module: torch.nn.Module, args: Any, output: Any) -> Any:
            shifted = first_output(output) + perturbations[module]
            return (shifted, *output[1:]) if isinstance(output, tuple) else shifted

        # The hooks stay while the backward pass runs: activation checkpointing recomputes the forward.
        with forward_hooks(list(perturbations), perturb):
            loss = user_loss(trainer, model, inputs, num_items_in_batch)
            trainer.accelerator.backward(loss)
        return loss.detach()
