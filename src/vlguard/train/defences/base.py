"""What the training rules share: the rule interface, the loss as the Trainer scales it, model parts, hooks.

A rule computes one micro-batch's contribution to the optimizer step's gradient, backward included
(hooks that change the forward pass must stay in place while activation checkpointing recomputes it).

Gradient accumulation: every rule computes its quantities (Vaccine's perturbation, Booster's harmful
step, Lisa's phase, RepNoise's batches) from the micro-batch alone. The plain loss on the user's batch
is scaled as the Trainer scales it (normalised over the tokens of the whole accumulated batch when the
model takes ``num_items_in_batch``, else divided by the accumulation steps); every other term is a
per-micro-batch mean divided by the accumulation steps. An optimizer step thus applies the mean over
its micro-batches of the paper's per-batch update, which is the paper's update exactly with one
micro-batch per step (every script of the papers runs ``gradient_accumulation_steps 1``).

Extra passes run on the unwrapped model (no data-parallel gradient hooks fire); what they contribute
to the update enters the one backward pass of the wrapped model (as a linear term for Booster), so
data-parallel processes average the whole update as they average a plain one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

import torch

from vlguard.errors import ConfigError
from vlguard.train.safety_loss import SafetyBatches


class StepTrainer(Protocol):
    """What a rule uses of the trainer (``vlguard.train.hf_trainer.VLGuardTrainer``, a ``transformers.Trainer``)."""

    state: Any
    args: Any
    accelerator: Any
    current_gradient_accumulation_steps: int
    loss_is_scaled_for_ga: bool | None
    model_accepts_loss_kwargs: bool
    compute_loss_func: Any

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any: ...

    def compute_loss_context_manager(self) -> Any: ...

    def collate_side_batch(self, examples: list[dict[str, Any]]) -> dict[str, Any]: ...


class DefenceRule:
    """One training rule: ``step`` does a micro-batch's forward and backward passes and returns its loss.

    ``state_dict`` / ``load_state_dict``: what a checkpoint must hold for the rule to resume exactly
    (tensors by name; empty for a rule whose every input is a function of the step and the seed).
    """

    name = "none"
    # Whether a checkpoint must hold the rule's state (state_dict) for the run to resume.
    keeps_state = False

    def step(
        self, trainer: StepTrainer, model: Any, inputs: dict[str, Any], num_items_in_batch: Any
    ) -> torch.Tensor:
        """Forward and backward passes of one micro-batch; the (detached) loss to report."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors to save with a checkpoint (none by default)."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`state_dict` returned."""


class MicroSteps:
    """The optimizer step and the micro-step within it of each call, from the trainer's state.

    Side batches are numbered from them, never from iterator state, so a resumed run draws exactly
    the batches of an uninterrupted one (as the auxiliary safety loss does).
    """

    def __init__(self) -> None:
        self._step = -1
        self._micro = 0

    def advance(self, trainer: StepTrainer) -> tuple[int, int]:
        """``(global step, micro-step)`` of this call."""
        step = trainer.state.global_step
        if step != self._step:
            self._step, self._micro = step, 0
        micro = self._micro
        self._micro += 1
        return step, micro


def draw_number(trainer: StepTrainer, steps: int, micro: int) -> int:
    """The side batch of micro-step ``micro`` after ``steps`` optimizer steps that drew one per micro-step."""
    return steps * trainer.args.gradient_accumulation_steps + micro


class SideBatchRule(DefenceRule):
    """A rule that trains with a batch of ``defence.data`` (harmful or alignment conversations) drawn
    beside, or instead of, the user's micro-batch, numbered by :class:`MicroSteps`."""

    def __init__(self, batches: SafetyBatches | None) -> None:
        if batches is None:
            raise ConfigError(f"{self.name}: needs defence.data")
        self.batches = batches
        self.micro_steps = MicroSteps()

    def side_batch(self, trainer: StepTrainer, draw: int) -> dict[str, Any]:
        """Draw number ``draw`` of ``defence.data``, collated and on the training device."""
        return trainer.collate_side_batch(self.batches.examples(draw))


def accumulation_scale(trainer: StepTrainer) -> float:
    """The factor of a per-micro-batch mean term: one over the micro-batches of this optimizer step."""
    return 1.0 / trainer.current_gradient_accumulation_steps


def user_loss(
    trainer: StepTrainer, model: Any, inputs: dict[str, Any], num_items_in_batch: Any
) -> torch.Tensor:
    """The loss on the user's micro-batch scaled exactly as ``Trainer.training_step`` scales it."""
    with trainer.compute_loss_context_manager():
        loss: torch.Tensor = trainer.compute_loss(model, inputs, num_items_in_batch=num_items_in_batch)
    if trainer.args.n_gpu > 1:
        loss = loss.mean()
    if scaled_for_accumulation(trainer, num_items_in_batch):
        return loss
    return loss / trainer.current_gradient_accumulation_steps


def scaled_for_accumulation(trainer: StepTrainer, num_items_in_batch: Any) -> bool:
    """Whether ``compute_loss`` already normalises the loss over the whole accumulated batch (its tokens),
    so that ``Trainer.training_step`` does not divide it by the accumulation steps (its own rule)."""
    if trainer.loss_is_scaled_for_ga is not None:
        return trainer.loss_is_scaled_for_ga
    return (
        trainer.model_accepts_loss_kwargs and num_items_in_batch is not None
    ) or trainer.compute_loss_func is not None


def batch_loss(trainer: StepTrainer, model: Any, batch: dict[str, Any]) -> torch.Tensor:
    """The model's mean token loss on ``batch`` (a side batch, or an extra pass over the user's)."""
    with trainer.compute_loss_context_manager():
        loss: torch.Tensor = model(**batch).loss
    return loss


def total_norm(tensors: Iterable[torch.Tensor]) -> torch.Tensor:
    """The L2 norm of all ``tensors`` together, as one vector (in float32)."""
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t.float()) for t in tensors]))


def trainable(model: Any) -> list[tuple[str, torch.nn.Parameter]]:
    """The parameters the optimizer updates, by name (LoRA: the adapters and the projector)."""
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad]


def decoder(model: Any) -> Any:
    """The language model's decoder (the module holding ``layers`` and ``norm``), of an LM or a VLM."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT
    found = base.get_decoder() if hasattr(base, "get_decoder") else None
    layers = getattr(found, "layers", None)
    if not isinstance(layers, torch.nn.ModuleList) or len(layers) == 0:
        raise ConfigError(
            f"{type(base).__name__}: no decoder with a list of layers found (get_decoder().layers); the "
            "defence rules need one"
        )
    return found


def layer_parts(model: Any, part: str) -> list[torch.nn.Module]:
    """Every decoder layer's submodule ``part`` (``self_attn``, ``mlp``), first layer first."""
    modules = [getattr(layer, part, None) for layer in decoder(model).layers]
    if any(m is None for m in modules):
        raise ConfigError(f"{type(model).__name__}: a decoder layer has no {part!r} module")
    return [m for m in modules if m is not None]


def first_output(output: Any) -> torch.Tensor:
    """The hidden states a module returns (the first item of a tuple, as attention modules return)."""
    return output[0] if isinstance(output, tuple) else output


@contextlib.contextmanager
def forward_hooks(modules: Sequence[torch.nn.Module], hook: Callable[..., Any]) -> Iterator[None]:
    """``hook`` registered as a forward hook on every module while the block runs."""
    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
