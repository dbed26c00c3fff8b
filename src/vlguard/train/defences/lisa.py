"""Lisa: lazy safety alignment by bi-state optimisation (Huang et al. 2024; git-disl/Lisa ``ADMMTrainer``).

The copy read: git-disl/Lisa @ 2e9c24c, ``trainer.py`` lines 40-212. Optimizer steps alternate
between two states: ``alignment_steps`` steps on alignment (safety) data, then ``finetune_steps``
steps on the user's data, and so on, alignment first (``check_mode``, lines 137-158). A step of the
alignment state trains on an alignment batch instead of the user's batch it was given (line 148: that
user batch is skipped, so the run keeps its number of steps). When a state starts, the weights the
other one ended on are kept (``switch_model``, lines 109-122) and, once more than 10 % of the run's
steps are done (lines 182 and 191), every step adds the proximal term ρ/2 ‖w - w̃‖² pulling the
trained parameters towards them (lines 186 and 196). The step's loss includes the term.

Phases follow the optimizer step (the reference counts ``training_step`` calls, the same thing with
its one micro-batch per step). The alignment batches (``lisa.batch_size``, the per-device batch size in
the reference, line 64) are numbered by the alignment steps before this one, so every alignment
conversation is used once per pass over them, reshuffled per pass, and a resumed run draws the same
ones. The two kept states are saved with every checkpoint (:meth:`Lisa.state_dict`).
"""

from __future__ import annotations

from typing import Any

import torch

from vlguard.errors import ConfigError
from vlguard.train.config import LisaSettings
from vlguard.train.defences.base import (
    SideBatchRule,
    StepTrainer,
    accumulation_scale,
    batch_loss,
    draw_number,
    trainable,
    user_loss,
)
from vlguard.train.safety_loss import SafetyBatches

# The proximal term starts once more than this share of the run's steps is done (Lisa trainer.py:182,191).
PROXIMAL_AFTER = 0.1
ALIGNMENT, FINETUNE = "alignment", "finetune"


class Lisa(SideBatchRule):
    """Alternating alignment / user steps with a proximal term to the other state's weights."""

    name = "lisa"
    keeps_state = True

    def __init__(self, settings: LisaSettings, alignment: SafetyBatches | None, seed: int = 0) -> None:
        super().__init__(alignment)
        self.rho = settings.rho
        self.alignment_steps = settings.alignment_steps
        self.finetune_steps = settings.finetune_steps
        # The weights each state ended on (initially the start weights), by parameter name.
        self.anchors: dict[str, dict[str, torch.Tensor]] = {}
        self._restored = False

    @property
    def cycle(self) -> int:
        """Optimizer steps per alignment + fine-tuning cycle."""
        return self.alignment_steps + self.finetune_steps

    def phase(self, step: int) -> str:
        """The state of optimizer step ``step`` (0-based): alignment first in every cycle."""
        return ALIGNMENT if step % self.cycle < self.alignment_steps else FINETUNE

    def alignment_steps_before(self, step: int) -> int:
        """How many alignment steps come before optimizer step ``step``."""
        cycles, position = divmod(step, self.cycle)
        return cycles * self.alignment_steps + min(position, self.alignment_steps)

    def _keep(self, state: str, params: list[tuple[str, torch.nn.Parameter]]) -> None:
        self.anchors[state] = {name: p.detach().clone() for name, p in params}

    def _place(self, params: list[tuple[str, torch.nn.Parameter]]) -> None:
        """Put the states restored from a checkpoint beside the parameters they belong to."""
        for state, kept in self.anchors.items():
            if set(kept) != {name for name, _ in params}:
                raise ConfigError(
                    f"lisa: the checkpoint's {state} weights are not those of the trained parameters"
                )
            self.anchors[state] = {name: kept[name].to(p.device, p.dtype) for name, p in params}
        self._restored = False

    def step(
        self, trainer: StepTrainer, model: Any, inputs: dict[str, Any], num_items_in_batch: Any
    ) -> torch.Tensor:
        step, micro = self.micro_steps.advance(trainer)
        params = trainable(trainer.accelerator.unwrap_model(model))
        if not self.anchors:  # a fresh run: both states start from the start weights
            self._keep(ALIGNMENT, params)
            self._keep(FINETUNE, params)
        elif self._restored:
            self._place(params)
        phase = self.phase(step)
        if micro == 0 and step > 0 and phase != self.phase(step - 1):
            # The other state ends here: its weights are what this state is pulled towards.
            self._keep(FINETUNE if phase == ALIGNMENT else ALIGNMENT, params)
        if phase == ALIGNMENT:
            batch = self.side_batch(trainer, draw_number(trainer, self.alignment_steps_before(step), micro))
            loss = batch_loss(trainer, model, batch) * accumulation_scale(trainer)
            anchor = self.anchors[FINETUNE]
        else:
            loss = user_loss(trainer, model, inputs, num_items_in_batch)
            anchor = self.anchors[ALIGNMENT]
        if self.rho > 0 and step > PROXIMAL_AFTER * trainer.state.max_steps:
            proximal = sum(((p - anchor[name]) ** 2).sum() for name, p in params)
            loss = loss + self.rho / 2 * proximal * accumulation_scale(trainer)
        trainer.accelerator.backward(loss)
        return loss.detach()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f"{state}/{name}": t for state, kept in self.anchors.items() for name, t in kept.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        anchors: dict[str, dict[str, torch.Tensor]] = {ALIGNMENT: {}, FINETUNE: {}}
        for key, tensor in state.items():
            kind, _, name = key.partition("/")
            if kind not in anchors:
                raise ConfigError(f"lisa: unexpected entry {key!r} in the checkpoint's defence state")
            anchors[kind][name] = tensor
        if not all(anchors.values()):
            raise ConfigError("lisa: the checkpoint's defence state lacks a state's weights")
        self.anchors = anchors
        self._restored = True
