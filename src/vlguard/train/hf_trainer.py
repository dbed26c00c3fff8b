"""The ``transformers.Trainer`` subclass and callbacks of ``vlguard train`` (imports transformers).

``vlguard.train.trainer`` imports this module when training starts, so that the CLI and the config
checks load without transformers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from transformers import Trainer, TrainerCallback
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices

from vlguard.train.checkpoints import AlreadyFinished, mark_checkpoint_complete, save_defence_state
from vlguard.train.data import ConversationDataset
from vlguard.train.defences.base import DefenceRule, MicroSteps, draw_number, scaled_for_accumulation
from vlguard.train.safety_loss import SafetyBatches


class VLGuardTrainer(Trainer):
    """``transformers.Trainer`` with vlguard's additions, each off unless set on the instance:

    - the projector's own learning rate (``projector_lr``, LLaVA-1.5's LoRA recipe);
    - the auxiliary safety loss (``safety_batches`` / ``safety_weight``: λ × a safety batch's loss per step);
    - one of the papers' defences as the training rule (``defence_rule``: how each micro-batch's gradient
      is computed; ``vlguard.train.defences``);
    - batches grouped by length (``group_by_length``) for vlguard's conversation dataset, in an order
      that depends only on the seed and the epoch (:class:`SeededLengthGroupedSampler`);
    - resuming plain checkpoints through ``from_pretrained`` (transformers 5's legacy key names).
    """

    projector_names: tuple[str, ...] = ()
    projector_lr: float | None = None
    group_by_length: bool = False
    # The auxiliary safety loss (safety_loss.* in the config): None = off.
    safety_batches: SafetyBatches | None = None
    safety_weight: float = 0.0
    # The defence's training rule (defence.* in the config): None = the Trainer's own step.
    defence_rule: DefenceRule | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._safety_micro_steps = MicroSteps()

    def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
        if self.defence_rule is None:
            return super().training_step(model, inputs, num_items_in_batch)
        model.train()
        return self.defence_rule.step(self, model, self._prepare_inputs(inputs), num_items_in_batch)

    def collate_side_batch(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        """A batch of conversations other than the training set's (safety, alignment or harmful data),
        collated as the training batches and placed on the training device."""
        return dict(self._prepare_inputs(self.data_collator(examples)))

    def compute_loss(
        self,
        model: Any,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        result: Any = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if self.safety_batches is None or not model.training:
            return result
        loss, outputs = result if return_outputs else (result, None)
        safety_loss: Any = super().compute_loss(model, self._next_safety_batch())
        # When the user loss is already normalised over the whole accumulated batch (token-count
        # normalisation), the Trainer does not divide it by the accumulation steps: the safety term,
        # a per-batch mean, is divided here so that each optimizer step adds λ × one mean safety loss.
        term = self.safety_weight * safety_loss
        if scaled_for_accumulation(self, num_items_in_batch):
            term = term / self.current_gradient_accumulation_steps
        loss = loss + term
        return (loss, outputs) if return_outputs else loss

    def _next_safety_batch(self) -> dict[str, Any]:
        # The draw number comes from the optimizer step (restored on resume) and the micro-step
        # within it, so a resumed run draws the same safety batches as an uninterrupted one.
        assert self.safety_batches is not None
        draw = draw_number(self, *self._safety_micro_steps.advance(self))
        return self.collate_side_batch(self.safety_batches.examples(draw))

    def create_optimizer(self, model: Any = None) -> Any:
        opt_model: Any = self.model if model is None else model
        if self.optimizer is not None or self.projector_lr is None or not self.projector_names:
            return super().create_optimizer(model)
        decay = set(self.get_decay_parameter_names(opt_model))
        groups: dict[tuple[bool, bool], list[Any]] = {}
        for name, param in opt_model.named_parameters():
            if param.requires_grad:
                is_projector = any(f"{p}." in name for p in self.projector_names)
                groups.setdefault((is_projector, name in decay), []).append(param)
        param_groups = [
            {
                "params": params,
                "weight_decay": self.args.weight_decay if has_decay else 0.0,
                **({"lr": self.projector_lr} if is_projector else {}),
            }
            for (is_projector, has_decay), params in groups.items()
        ]
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        self.optimizer = optimizer_cls(param_groups, **optimizer_kwargs)
        return self.optimizer

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        # Batches of similar length waste less compute on padding (LLaVA groups by length too).
        # Trainer only knows how to get lengths from a `datasets.Dataset`; ours computes them.
        dataset = self.train_dataset if train_dataset is None else train_dataset
        if not (self.group_by_length and isinstance(dataset, ConversationDataset)):
            return super()._get_train_sampler(train_dataset)
        return SeededLengthGroupedSampler(
            self.args.train_batch_size * self.args.gradient_accumulation_steps,
            lengths=dataset.lengths(),
            seed=self.args.data_seed if self.args.data_seed is not None else self.args.seed,
        )

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        # transformers 5 saves LLaVA-style models with their legacy key names (save_pretrained maps
        # them back), but Trainer reloads the raw file without the mapping and silently loads
        # nothing. Load through from_pretrained, which applies the mapping, and copy strictly.
        model = self.model if model is None else model
        plain = not (self.is_deepspeed_enabled or self.is_fsdp_enabled or hasattr(model, "peft_config"))
        folder = Path(resume_from_checkpoint)
        has_weights = (folder / "model.safetensors").is_file() or (
            folder / "model.safetensors.index.json"
        ).is_file()
        if not (plain and has_weights):
            super()._load_from_checkpoint(resume_from_checkpoint, model)
            return
        reloaded = type(model).from_pretrained(resume_from_checkpoint, dtype=next(model.parameters()).dtype)
        model.load_state_dict(reloaded.state_dict(), strict=True)
        del reloaded


class SeededLengthGroupedSampler(LengthGroupedSampler):
    """``LengthGroupedSampler`` whose order depends only on the seed and the epoch.

    The plain sampler draws its permutation from the global random state when an epoch's iteration
    starts. A run resumed in a later epoch starts that iteration at another point of the random
    state than the uninterrupted run did (the checkpoint's state is restored only after the skipped
    batches), so it would train on other batches. Here every epoch has its own generator, seeded with
    ``seed + epoch`` (as accelerate's seedable random sampler does); the Trainer calls ``set_epoch``.
    """

    def __init__(self, batch_size: int, *, lengths: list[int], seed: int) -> None:
        super().__init__(batch_size, lengths=lengths)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch``'s order for the next iteration."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        import torch

        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))


class StopAtMaxSteps(TrainerCallback):
    """Never start a step beyond ``max_steps``, and log the loss whenever a checkpoint is saved.

    Resumed from a checkpoint already at ``max_steps`` (a run killed during its final save),
    transformers 5 runs one more step when the epoch is not over, and saves checkpoint-N+1. The
    checkpoint is loaded by then (on every rank, sharded or not): stopping here leaves exactly its
    weights to save. Logging at every save makes each checkpoint's log history cover all its
    steps, which ``whole_run_loss`` needs.
    """

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if state.max_steps > 0 and state.global_step >= state.max_steps:
            raise AlreadyFinished
        return control

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if control.should_save:
            control.should_log = True
        return control


class DefenceStateSaver(TrainerCallback):
    """Saves what the defence's training rule needs to resume (Lisa's two states) into each checkpoint.

    Registered before :class:`CompletionMarker`, so that a checkpoint is marked complete only with it.
    """

    def __init__(self, rule: DefenceRule) -> None:
        self.rule = rule

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if state.is_world_process_zero:
            save_defence_state(
                Path(args.output_dir) / f"checkpoint-{state.global_step}", self.rule.state_dict()
            )
        return control


class CompletionMarker(TrainerCallback):
    """Marks a checkpoint folder complete once every rank has written its part of it."""

    def __init__(self, config_yaml: str) -> None:
        self.config_yaml = config_yaml

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()
        if state.is_world_process_zero:
            mark_checkpoint_complete(
                Path(args.output_dir) / f"checkpoint-{state.global_step}", self.config_yaml
            )
        return control
