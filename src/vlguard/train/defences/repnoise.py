"""RepNoise: representation noising (Rosati et al. 2024), as Booster runs it for its comparison.

The loss of one micro-batch, with a harmful batch (``defence.data``) beside the training (harmless)
batch (the copy read: git-disl/Booster @ caf91cd, ``loss_func/repnoise_loss.py`` ``rep_noise_loss``,
lines 100-182, called by ``RepNoiseTrainer``, ``trainer.py`` @ 30f959e lines 1156-1192; the RepNoise
repository's own ``representation_noising/loss.py`` @ a1c3298 has the same terms)::

    loss = ℓ_harmless + β × noise - α × log(ℓ_harmful)

* the masks: a token of the harmful batch counts where its id differs from the harmless batch's id at
  the same place (the harmless ids cut or zero-padded to the harmful batch's shape,
  ``adapt_dimension_b2a``, lines 80-98, 121-122), and the other way round for the harmless batch (lines
  162-163): with paired data, the answer tokens; with unpaired data, everything after the shared prompt
  template;
* noise: for every decoder layer, the MMD (Gaussian kernels, ``MMD_loss``, lines 20-52) between the
  masked output of its MLP on the harmful batch, flattened per sequence, and Gaussian noise masked the
  same way; the mean over layers (lines 114-129);
* ℓ_harmful: the masked token cross-entropy of the harmful batch's logits plus that of the logit lens
  (final norm then output embeddings) of every hidden state, divided by the number of hidden states,
  plus 1 (lines 134-158);
* ℓ_harmless: the masked token cross-entropy of the harmless batch (lines 165-172);
* ``masked_token_ce_loss`` (lines 56-77): labels are the input ids shifted, ignored where the mask is
  off; the logits of a position whose own token is masked are multiplied by 0 (as in the reference).

Deliberate differences, documented in docs/hft.md: padding never counts (the reference's mask can
include pad tokens where the other batch is shorter), a token id of 0 is not ignored (the reference
ignores every label equal to 0, Llama's ``<unk>``), an empty mask gives a zero term instead of NaN, and
the noise comes from a generator seeded by the run's seed and the draw (so a resumed run draws the
same noise) instead of the global random state.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
import torch.nn.functional as F

from vlguard.train.config import RepNoiseSettings
from vlguard.train.defences.base import (
    SideBatchRule,
    StepTrainer,
    accumulation_scale,
    decoder,
    draw_number,
    first_output,
    forward_hooks,
    layer_parts,
)
from vlguard.train.safety_loss import SafetyBatches

# The Gaussian kernels of the MMD (repnoise_loss.py:21-25: kernel_mul 2, kernel_num 5).
KERNEL_MUL = 2.0
KERNEL_NUM = 5


def mmd(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MMD between two batches of vectors with 5 Gaussian kernels around the mean squared distance."""
    n = source.shape[0]
    total = torch.cat([source, target], dim=0)
    distances = ((total.unsqueeze(0) - total.unsqueeze(1)) ** 2).sum(2)
    samples = total.shape[0]
    bandwidth = distances.detach().sum() / (samples**2 - samples)
    bandwidth = bandwidth / KERNEL_MUL ** (KERNEL_NUM // 2)
    kernels = sum(torch.exp(-distances / (bandwidth * KERNEL_MUL**i)) for i in range(KERNEL_NUM))
    assert isinstance(kernels, torch.Tensor)
    xx, yy = kernels[:n, :n], kernels[n:, n:]
    xy, yx = kernels[:n, n:], kernels[n:, :n]
    return torch.mean(xx + yy - xy - yx)


def masked_token_loss(logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy over the positions whose target token is in ``mask``."""
    shift_logits = logits[:, :-1, :] * mask[:, :-1].unsqueeze(-1).to(logits.dtype)
    labels = ids[:, 1:].masked_fill(~mask[:, 1:], -100)
    if not bool((labels != -100).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(shift_logits.reshape(-1, shift_logits.shape[-1]).float(), labels.reshape(-1))


def differing(ids: torch.Tensor, attention_mask: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """Tokens of ``ids`` (not padding) whose id differs from ``other`` cut or zero-padded to its shape."""
    aligned = torch.zeros_like(ids)
    rows, cols = min(ids.shape[0], other.shape[0]), min(ids.shape[1], other.shape[1])
    aligned[:rows, :cols] = other[:rows, :cols]
    return (ids != aligned) & attention_mask.bool()


def repnoise_loss(
    model: Any,
    inner: Any,
    harmful: dict[str, Any],
    harmless: dict[str, Any],
    *,
    alpha: float,
    beta: float,
    noise: torch.Generator,
) -> torch.Tensor:
    """The RepNoise loss of one harmful and one harmless batch (see the module docstring).

    ``model`` runs the forward passes (the data-parallel wrapper, if any); ``inner`` is the model
    itself, whose decoder layers, final norm and output embeddings the loss reads.
    """
    mlps = layer_parts(inner, "mlp")
    activations: dict[torch.nn.Module, torch.Tensor] = {}

    def record(module: torch.nn.Module, args: Any, output: Any) -> None:
        activations.setdefault(module, first_output(output))

    ids, harmless_ids = harmful["input_ids"], harmless["input_ids"]
    with forward_hooks(mlps, record):
        outputs = model(input_ids=ids, attention_mask=harmful["attention_mask"], output_hidden_states=True)
    mask = differing(ids, harmful["attention_mask"], harmless_ids)

    noise_loss: Any = 0.0
    if bool(mask.any()):
        for module in mlps:
            hidden = activations[module]
            keep = mask.unsqueeze(-1).expand(hidden.shape).to(hidden.dtype)
            hiddens = hidden * keep
            gaussian = (
                torch.randn(hiddens.shape, generator=noise, device=hidden.device, dtype=hidden.dtype) * keep
            )
            noise_loss = noise_loss + mmd(
                hiddens.view(hiddens.shape[0], -1), gaussian.view(gaussian.shape[0], -1)
            )
        noise_loss = noise_loss / len(mlps)

    norm = decoder(inner).norm
    head = inner.get_output_embeddings()
    harmful_loss = masked_token_loss(outputs.logits, ids, mask)
    for hidden in outputs.hidden_states:
        harmful_loss = harmful_loss + masked_token_loss(head(norm(hidden)), ids, mask)
    harmful_loss = harmful_loss / len(outputs.hidden_states) + 1

    harmless_mask = differing(harmless_ids, harmless["attention_mask"], ids)
    harmless_out = model(**{k: v for k, v in harmless.items() if k != "labels"})
    harmless_loss = masked_token_loss(harmless_out.logits, harmless_ids, harmless_mask)
    loss: torch.Tensor = harmless_loss + beta * noise_loss - alpha * torch.log(harmful_loss)
    return loss


def noise_seed(seed: int, draw: int) -> int:
    """The seed of the noise generator of draw ``draw`` of a run with ``seed``."""
    digest = hashlib.sha256(f"repnoise:{seed}:{draw}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


class RepNoise(SideBatchRule):
    """The RepNoise loss on the training batch (harmless) and a harmful batch per micro-step."""

    name = "repnoise"

    def __init__(self, settings: RepNoiseSettings, harmful: SafetyBatches | None, seed: int = 0) -> None:
        super().__init__(harmful)
        self.alpha = settings.alpha
        self.beta = settings.beta
        self.seed = seed

    def step(
        self, trainer: StepTrainer, model: Any, inputs: dict[str, Any], num_items_in_batch: Any
    ) -> torch.Tensor:
        draw = draw_number(trainer, *self.micro_steps.advance(trainer))
        harmful = self.side_batch(trainer, draw)
        inner = trainer.accelerator.unwrap_model(model)
        device = inputs["input_ids"].device
        generator = torch.Generator(device=device).manual_seed(noise_seed(self.seed, draw))
        with trainer.compute_loss_context_manager():
            loss = repnoise_loss(
                model, inner, harmful, inputs, alpha=self.alpha, beta=self.beta, noise=generator
            )
        loss = loss * accumulation_scale(trainer)
        trainer.accelerator.backward(loss)
        return loss.detach()
