"""Booster: attenuating harmful perturbation (Huang et al. 2024; git-disl/Booster ``BoosterAlignmentTrainer``).

For each micro-batch (the copy read: git-disl/Booster @ 30f959e, ``trainer.py``, lines 272-389, the
``perturb_aware`` default ``False`` of ``train.py``), with f the alignment loss on the training batch
and h the loss on a harmful batch:

1. g = ∇h(w) (lines 282-291);
2. g' = ∇h(w - α g / (‖g‖ + 1e-7)), ‖g‖ the norm over every trained parameter, the weights put back
   afterwards (lines 293-319);
3. the update direction is ∇f(w) + λ g - λ g' (lines 364-375): the gradient of
   f(w) + λ (h(w) - h(w - α g/‖g‖)) with the inner g held fixed; the step's loss is f (line 386).

The harmful batches (``booster.batch_size``, 10 in the reference, line 149) are drawn from
``defence.data`` without replacement within each pass over it, reshuffled per pass (the reference's
``RandomSampler`` with a persistent iterator, lines 146-180); which batch a micro-step gets is a
function of the seed and the step, so a resumed run sees the same ones.

The extra passes ask autograd for the parameters' gradients without accumulating them; λ (g - g')
enters the backward pass of f as the linear term λ Σ_p ⟨g_p - g'_p, p⟩, whose gradient it is.
"""

from __future__ import annotations

from typing import Any

import torch

from vlguard.train.config import BoosterSettings
from vlguard.train.defences.base import (
    SideBatchRule,
    StepTrainer,
    accumulation_scale,
    batch_loss,
    draw_number,
    total_norm,
    trainable,
    user_loss,
)
from vlguard.train.safety_loss import SafetyBatches

# Added to the norm before dividing (Booster trainer.py:295).
NORM_EPS = 1e-7


def _gradient(loss: torch.Tensor, params: list[torch.nn.Parameter]) -> list[torch.Tensor]:
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g.detach() for p, g in zip(params, grads, strict=True)]


class Booster(SideBatchRule):
    """f + λ (h(w) - h(w - α ∇h/‖∇h‖)) with a harmful batch per micro-step; three passes each."""

    name = "booster"

    def __init__(self, settings: BoosterSettings, harmful: SafetyBatches | None, seed: int = 0) -> None:
        super().__init__(harmful)
        self.lamb = settings.lamb
        self.alpha = settings.alpha

    def step(
        self, trainer: StepTrainer, model: Any, inputs: dict[str, Any], num_items_in_batch: Any
    ) -> torch.Tensor:
        harmful = self.side_batch(trainer, draw_number(trainer, *self.micro_steps.advance(trainer)))
        inner = trainer.accelerator.unwrap_model(model)
        params = [p for _, p in trainable(inner)]

        grad = _gradient(batch_loss(trainer, inner, harmful), params)
        shift = self.alpha / (total_norm(grad) + NORM_EPS)
        saved = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p, g in zip(params, grad, strict=True):
                p.sub_((g * shift).to(p.dtype))
        try:
            perturbed = _gradient(batch_loss(trainer, inner, harmful), params)
        finally:
            with torch.no_grad():
                for p, w in zip(params, saved, strict=True):
                    p.copy_(w)

        loss = user_loss(trainer, model, inputs, num_items_in_batch)
        weight = self.lamb * accumulation_scale(trainer)
        attenuation = sum(
            ((g - g2) * weight).detach().mul(p).sum()
            for p, g, g2 in zip(params, grad, perturbed, strict=True)
        )
        trainer.accelerator.backward(loss + attenuation)
        return loss.detach()
