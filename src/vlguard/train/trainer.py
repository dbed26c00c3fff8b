"""The training recipe, top to bottom: setup → train → save.

``train(config)`` below is the whole recipe; the helpers follow in its order.

1. setup: check the config, build and check the data (before any model loads), load the model and
   its processor (a VLM) or tokenizer (a text-only causal LM: the config picks the auto class), freeze
   the vision tower, add LoRA adapters (language model only) or train fully;
2. train: ``transformers.Trainer`` with :class:`~vlguard.train.collator.ConversationCollator` (labels on
   assistant tokens only, chat template or Alpaca prompt), checkpoints every ``save_steps`` with a
   completion marker, resume;
3. save: the final model (full weights, or the LoRA adapter alone) and its processor go to a temporary
   folder that is renamed to ``OUTPUT/model`` once complete, with the resolved config and provenance.

Rerunning a command resumes it (``resume_from_checkpoint=auto``, the default): from the newest
complete checkpoint, after checking that it was made with the same settings. A run killed during its
final save resumes from its last checkpoint without training further, and ``train_loss`` is the mean
over every step of the run, not only those after the resume (see ``whole_run_loss``).

The same command runs on one CPU, one GPU, or many under ``accelerate launch`` (DDP, DeepSpeed ZeRO-3,
FSDP): the Trainer reads the launcher's environment.

The run folder's names, its checkpoints and the resume bookkeeping are ``vlguard.train.checkpoints``;
the ``Trainer`` subclass and its callbacks are ``vlguard.train.hf_trainer`` (imported when training
starts, so that the CLI loads without transformers).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import math
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlguard import distributed
from vlguard.distributed import ProcessGroup
from vlguard.errors import ConfigError, VLGuardError
from vlguard.fileio import check_output_dir
from vlguard.models.loading import ModelKind, detect_kind, save_processor, sees_images
from vlguard.models.resolve import check_model_reference, resolve_model_path
from vlguard.redaction import redact, redact_text
from vlguard.runs import RunLockedError, lock_run_folder
from vlguard.train.checkpoints import (
    CHECKPOINTS_DIR,
    COMPLETE_MARKER,
    CONFIG_FILE,
    MODEL_DIR,
    PROVENANCE_FILE,
    AlreadyFinished,
    checkpoint_step,
    find_checkpoint,
    is_complete,
    load_defence_state,
    run_state,
    whole_run_loss,
)
from vlguard.train.collator import ConversationCollator, check_answers_fit
from vlguard.train.config import TrainConfig, check_values, dump_config
from vlguard.train.data import ConversationDataset, TrainingData, build_training_data, check_data_config
from vlguard.train.defences import DEFENCE_SOURCE, build_rule, check_defence_config
from vlguard.train.safety_loss import (
    SafetyBatches,
    check_safety_loss_config,
    load_safety_data,
    load_side_data,
)

if TYPE_CHECKING:
    from vlguard.train.hf_trainer import VLGuardTrainer  # imports transformers: loaded when training starts

logger = logging.getLogger(__name__)

_PACKAGES = ("vlguard", "torch", "transformers", "peft", "accelerate", "trl", "deepspeed")


@dataclass(frozen=True)
class TrainResult:
    """Where the model went and what the run did."""

    model_dir: Path
    global_step: int
    train_loss: float | None
    counts: dict[str, int]
    world_size: int


# ---- the recipe ------------------------------------------------------------------------------------------


def train(config: TrainConfig, data: TrainingData | None = None) -> TrainResult:
    """Fine-tune ``config.model`` on ``config.data`` (or on ``data`` when given); return the result.

    One process trains in an output folder at a time: once the settings and the data are checked, and
    before the model loads, the main process takes the folder's lock (``vlguard.runs.lock_run_folder``),
    so a second run there stops at once naming the first.
    """
    with contextlib.ExitStack() as held:
        return _train(config, data, held)


def _train(config: TrainConfig, data: TrainingData | None, held: contextlib.ExitStack) -> TrainResult:
    import torch
    from transformers import set_seed

    # 1. setup: everything a user can get wrong is checked before the (slow) model load.
    check_config(config)
    output_dir = Path(config.output_dir)
    checkpoints_dir = output_dir / CHECKPOINTS_DIR
    seen = run_state(output_dir)
    config_yaml = dump_config(config)  # as given (``tiny`` stays ``tiny``), so that it can be rerun
    resume = check_run_folder(config)
    requested_model = config.model.name_or_path
    config = dataclasses.replace(
        config, model=dataclasses.replace(config.model, name_or_path=resolve_model_path(requested_model))
    )
    kind = detect_kind(
        config.model.name_or_path,
        revision=config.model.revision,
        trust_remote_code=config.model.trust_remote_code,
    )
    processor = load_processor(config, kind)
    data = data if data is not None else build_training_data(config.data)
    dataset = ConversationDataset(data, config.data.image_mode)
    collator = ConversationCollator(
        processor, max_length=config.max_length, prompt_format=config.prompt_format
    )
    check_answers_fit(collator, dataset)
    logger.info("training on %d conversations %s", len(dataset), data.counts)
    safety_data = load_safety_data(config.safety_loss, config.data.image_mode)
    if safety_data is not None:
        logger.info(
            "auxiliary safety loss: weight %g, %d conversations per step from %d",
            config.safety_loss.weight,
            config.safety_loss.batch_size,
            len(safety_data.conversations),
        )
    defence_data = load_defence_data(config)
    world_size = distributed.world_size()
    cuda = torch.cuda.is_available()
    bf16 = _resolve_auto(config.bf16, cuda and torch.cuda.is_bf16_supported())
    gradient_checkpointing = _resolve_auto(config.gradient_checkpointing, cuda)
    # The arguments before the model: they check names (optimizer, scheduler) that would otherwise fail
    # after the load, and DeepSpeed ZeRO-3 needs them to exist when the model is loaded.
    args = _training_arguments(config, checkpoints_dir, world_size, cuda, bf16, gradient_checkpointing)
    _lock_output(output_dir, seen, held)  # everything above only read the folder
    set_seed(config.seed)
    model, modules = load_model(config, _model_dtype(config, cuda, bf16), gradient_checkpointing, kind)
    if distributed.is_main_process():
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / CONFIG_FILE).write_text(config_yaml, encoding="utf-8")

    # 2. train, from the checkpoint to resume (if any).
    trainer = _make_trainer(
        config, config_yaml, model, modules, args, dataset, collator, processor, safety_data, defence_data
    )
    if resume is not None and trainer.defence_rule is not None and trainer.defence_rule.keeps_state:
        trainer.defence_rule.load_state_dict(load_defence_state(resume))
    resumed_step = checkpoint_step(resume)
    started = time.time()
    try:
        outcome = trainer.train(resume_from_checkpoint=resume)
        steps_now, loss_now = outcome.global_step - resumed_step, outcome.training_loss
    except AlreadyFinished:
        # Killed during its final save: the checkpoint holds the finished weights, now loaded.
        logger.info("%s is already at max_steps: saving it as the final model without training", resume)
        steps_now, loss_now = 0, None
    elapsed = time.time() - started
    global_step = trainer.state.global_step
    train_loss = whole_run_loss(trainer.state.log_history, resumed_step, steps_now, loss_now, global_step)

    # 3. save the final model with its provenance.
    safety_loss = None
    if safety_data is not None:
        safety_loss = {
            "weight": config.safety_loss.weight,
            "batch_size": config.safety_loss.batch_size,
            "counts": safety_data.counts,
            "source": safety_data.sources,
        }
    defence = None
    if config.defence.name != "none":
        defence = {
            "name": config.defence.name,
            "settings": dataclasses.asdict(getattr(config.defence, config.defence.name)),
            "counts": defence_data.counts if defence_data is not None else {},
            "source": defence_data.sources if defence_data is not None else {},
        }
    return _save_final(
        trainer, processor, config, config_yaml, requested_model, data, output_dir, kind,
        global_step=global_step, train_loss=train_loss, elapsed=elapsed, world_size=world_size,
        safety_loss=safety_loss, defence=defence,
    )  # fmt: skip


# ---- 1. setup --------------------------------------------------------------------------------------------


def gradient_accumulation_steps(config: TrainConfig, world_size: int) -> int:
    """Steps to accumulate so that per-device batch × steps × world size = the global batch."""
    per_step = config.per_device_batch_size * world_size
    if config.global_batch_size < per_step:
        raise ConfigError(
            f"global_batch_size={config.global_batch_size} is smaller than per_device_batch_size × world size "
            f"= {config.per_device_batch_size} × {world_size}; lower per_device_batch_size"
        )
    steps = config.global_batch_size // per_step
    if steps * per_step != config.global_batch_size:
        logger.warning(
            "global batch %d is not a multiple of %d; using %d",
            config.global_batch_size,
            per_step,
            steps * per_step,
        )
    return steps


def check_config(config: TrainConfig) -> None:
    """Every value in its range, and settings that are valid one by one but not together."""
    check_values(config)
    if not config.model.name_or_path:
        raise ConfigError("model.name_or_path is required (a Hub repo id or a local model folder)")
    check_model_reference(config.model.name_or_path, "model.name_or_path")
    check_output_dir(config.output_dir, "output_dir")
    if config.method == "lora" and not config.freeze_vision_tower:
        raise ConfigError(
            "method=lora adapts the language model only; freeze_vision_tower=false needs method=full"
        )
    for key in ("vision_modules", "projector_modules"):
        try:
            re.compile(getattr(config, key))
        except re.error as err:
            raise ConfigError(f"config key '{key}': invalid regex ({err})") from err
    try:
        re.compile(config.lora.target_modules)
    except re.error as err:
        raise ConfigError(f"config key 'lora.target_modules': invalid regex ({err})") from err
    check_data_config(config.data)
    check_safety_loss_config(config.safety_loss)
    check_defence_config(config)
    _check_report_to(config.report_to)
    _check_deepspeed(config.deepspeed)


def load_defence_data(config: TrainConfig) -> TrainingData | None:
    """The conversations of ``defence.data`` (None when the defence has none), checked before training."""
    if config.defence.data is None:
        return None
    data = load_side_data(
        config.defence.data, config.defence.image_root, config.data.image_mode, DEFENCE_SOURCE, "defence.data"
    )
    logger.info("defence %s: %d conversations in defence.data", config.defence.name, len(data.conversations))
    return data


def _lock_output(output_dir: Path, seen: tuple[bool, tuple[str, ...]], held: contextlib.ExitStack) -> None:
    """Take the output folder's lock into ``held`` (the main process); every rank fails alike without it.

    What to resume was decided from the folder as it was before (``seen``): if another run finished or
    saved a checkpoint since, stop rather than act on the old state.
    """
    procs = ProcessGroup.join(dt.timedelta(minutes=30))  # the launch's group (TrainingArguments started it)
    refused = None
    if procs.is_main:
        try:
            held.enter_context(lock_run_folder(output_dir, elsewhere="output_dir"))
        except RunLockedError as err:
            refused = str(err)
        else:
            if run_state(output_dir) != seen:
                refused = (
                    f"{output_dir} changed while this run got ready (another run saved a checkpoint or "
                    "finished there); rerun to go on from where it is now"
                )
    refused = procs.from_main(refused)
    if refused is not None:
        raise RunLockedError(refused)


# Trackers transformers knows but cannot tell whether they are installed (no availability check).
_UNLISTED_TRACKERS = frozenset({"flyte", "kubeflow"})


def _check_report_to(names: list[str]) -> None:
    """Every tracker of ``report_to`` is one transformers knows and one installed here (else the Trainer
    fails after the model has loaded, with a traceback)."""
    if not names or names == ["none"]:
        return
    from transformers.integrations.integration_utils import (
        INTEGRATION_TO_CALLBACK,
        get_available_reporting_integrations,
    )

    known = {*INTEGRATION_TO_CALLBACK, "all", "none"}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(
            f"config key 'report_to': unknown tracker(s) {', '.join(map(repr, unknown))}; known: "
            f"{', '.join(sorted(known))} (empty: console only)"
        )
    available = set(get_available_reporting_integrations()) | _UNLISTED_TRACKERS | {"all", "none"}
    missing = [n for n in names if n not in available]
    if missing:
        raise ConfigError(
            f"config key 'report_to': {', '.join(missing)} is not installed (pip install {' '.join(missing)}), "
            "or leave it out of report_to"
        )


def _check_deepspeed(deepspeed: str | None) -> None:
    """``deepspeed`` names a readable JSON config file, and DeepSpeed is installed."""
    if deepspeed is None:
        return
    from vlguard.fileio import JsonError, parse_json, read_text

    path = Path(deepspeed).expanduser()
    if not path.is_file():
        raise ConfigError(f"config key 'deepspeed': {deepspeed}: no such file (a DeepSpeed JSON config)")
    try:
        parsed = parse_json(read_text(path))
    except JsonError as err:
        raise ConfigError(f"config key 'deepspeed': {path}: not valid JSON ({err.message})") from None
    if not isinstance(parsed, dict):
        raise ConfigError(f"config key 'deepspeed': {path}: a DeepSpeed config is a JSON object")
    import importlib.util

    if importlib.util.find_spec("deepspeed") is None:
        raise ConfigError(
            "config key 'deepspeed' is set, but DeepSpeed is not installed (pip install deepspeed)"
        )


def check_run_folder(config: TrainConfig) -> str | None:
    """The output folder before anything loads: ``ConfigError`` when it already holds a finished model,
    or when its checkpoints cannot be resumed as asked (``find_checkpoint``); the checkpoint to resume from."""
    output_dir = Path(config.output_dir)
    final_dir = output_dir / MODEL_DIR
    if is_complete(final_dir):
        raise ConfigError(f"{final_dir} already holds a finished model; choose another output_dir")
    return find_checkpoint(config.resume_from_checkpoint, output_dir / CHECKPOINTS_DIR, dump_config(config))


def _resolve_auto(value: str, default: bool) -> bool:
    return default if value == "auto" else value == "true"


def _model_dtype(config: TrainConfig, cuda: bool, bf16: bool) -> str:
    if config.model.dtype != "auto":
        return config.model.dtype
    # LoRA: frozen base in bf16, adapters kept in fp32 by PEFT. Full: fp32 master weights; bf16 compute
    # comes from autocast (or from DeepSpeed / FSDP mixed precision).
    return "bfloat16" if cuda and bf16 and config.method == "lora" else "float32"


def load_processor(config: TrainConfig, kind: ModelKind | None = None) -> Any:
    """The model's processor (a VLM) or tokenizer (a text-only LM); a missing chat template is an error.

    The Alpaca prompt format needs no chat template.
    """
    from vlguard.models.loading import load_processor as load

    path = config.model.name_or_path
    kind = kind or detect_kind(
        path, revision=config.model.revision, trust_remote_code=config.model.trust_remote_code
    )
    processor = load(
        path, kind, revision=config.model.revision, trust_remote_code=config.model.trust_remote_code
    )
    template = getattr(processor, "chat_template", None) or getattr(
        getattr(processor, "tokenizer", None), "chat_template", None
    )
    if not template and config.prompt_format == "chat":
        raise ConfigError(
            f"model {path} has no chat template: training needs one to place the assistant turns (add "
            "chat_template.jinja to the model folder, or use prompt_format=alpaca for a base model)"
        )
    if kind.sees_images and not sees_images(processor):
        raise ConfigError(f"{path}: its processor has no image processor; not a VLM")
    if not sees_images(processor) and config.data.image_mode != "none":
        raise ConfigError(
            f"model {path} is a text-only {kind.name} model: set data.image_mode=none (its conversations are "
            "trained without their images)"
        )
    return processor


def _matching_modules(model: Any, pattern: str) -> list[str]:
    """Outermost module names that fully match ``pattern`` (children of a match are skipped)."""
    regex = re.compile(pattern)
    names: list[str] = []
    for name, _ in model.named_modules():
        if name and regex.fullmatch(name) and not any(name.startswith(n + ".") for n in names):
            names.append(name)
    return names


def _freeze(model: Any, config: TrainConfig, kind: ModelKind) -> dict[str, list[str]]:
    """requires_grad per the config; returns the vision / projector module names found.

    The projector may sit inside the vision module (Qwen2-VL's ``visual.merger``, Qwen3-VL's deepstack
    mergers): it is then carved out of the frozen tower and follows ``train_projector``.
    """
    vision = _matching_modules(model, config.vision_modules)
    projector = _matching_modules(model, config.projector_modules)
    if not vision and kind.sees_images:
        logger.warning(
            "no module matches vision_modules=%r; nothing frozen as the vision tower", config.vision_modules
        )
    if not projector and kind.sees_images and config.train_projector:
        logger.warning(
            "no module matches projector_modules=%r; no projector is trained", config.projector_modules
        )
    frozen_prefixes = []
    if config.freeze_vision_tower:
        frozen_prefixes += vision
    if not config.train_projector:
        frozen_prefixes += projector
    if getattr(model.config, "model_type", "") in ("llava", "llava_next", "llava_onevision"):
        # LLaVA feeds the LLM from a hidden layer of CLIP: the final post_layernorm never gets a gradient,
        # which DDP would report as an unused parameter.
        frozen_prefixes += [
            n
            for v in vision
            for n, _ in model.named_modules()
            if n.startswith(v) and n.endswith("post_layernorm")
        ]
    trained_projector = projector if config.train_projector else []
    for name, param in model.named_parameters():
        if any(name.startswith(prefix + ".") for prefix in trained_projector):
            param.requires_grad_(True)  # a projector inside the vision tower is trained all the same
        elif any(name.startswith(prefix + ".") for prefix in frozen_prefixes):
            param.requires_grad_(False)
    return {"vision": vision, "projector": projector}


def _saveable(model: Any, names: list[str]) -> list[str]:
    """Module names PEFT can train fully beside the adapters: a container (Qwen3-VL's list of deepstack
    mergers) is replaced by its children, which PEFT can wrap."""
    import torch

    modules = dict(model.named_modules())
    result: list[str] = []
    for name in names:
        module = modules[name]
        if isinstance(module, torch.nn.ModuleList | torch.nn.ModuleDict):
            result.extend(f"{name}.{child}" for child, _ in module.named_children())
        else:
            result.append(name)
    return result


def check_lora_targets(model: Any, config: TrainConfig) -> list[str]:
    """The modules ``lora.target_modules`` adapts in ``model`` (its weights may be on the meta device):
    ``ConfigError`` when it matches none, or also matches a module of the vision tower."""
    targets = [n for n, _ in model.named_modules() if re.fullmatch(config.lora.target_modules, n)]
    if not targets:
        raise ConfigError(
            f"lora.target_modules={config.lora.target_modules!r} matches no module of the model"
        )
    vision = _matching_modules(model, config.vision_modules)
    hit_vision = [t for t in targets if any(t.startswith(v + ".") for v in vision)]
    if hit_vision:
        raise ConfigError(
            f"lora.target_modules also matches vision modules (e.g. {hit_vision[0]}); narrow it"
        )
    return targets


def load_model(
    config: TrainConfig, dtype: str, gradient_checkpointing: bool, kind: ModelKind | None = None
) -> tuple[Any, dict[str, list[str]]]:
    """The model with the vision tower frozen and, for ``method=lora``, LoRA adapters on the LLM.

    ``kind`` (default: read from the model's config) picks the auto class: a VLM or a text-only causal LM.
    """
    import torch

    from vlguard.models.loading import load_model as load

    path, revision = config.model.name_or_path, config.model.revision
    kind = kind or detect_kind(path, revision=revision, trust_remote_code=config.model.trust_remote_code)
    model = load(
        path,
        kind,
        revision=revision,
        dtype=getattr(torch, dtype),
        trust_remote_code=config.model.trust_remote_code,
        attn_implementation=config.model.attn_implementation,
    )
    modules = _freeze(model, config, kind)
    if config.method == "lora":
        from peft import LoraConfig, get_peft_model

        check_lora_targets(model, config)
        lora = LoraConfig(
            r=config.lora.r,
            # PEFT annotates an int, but only uses alpha / r: Vaccine's GSM8K runs pass 0.5
            lora_alpha=config.lora.alpha,  # type: ignore[arg-type]
            lora_dropout=config.lora.dropout,
            target_modules=config.lora.target_modules,
            # The projector is trained fully beside the adapters (LLaVA-1.5's LoRA recipe) and saved with them.
            modules_to_save=(_saveable(model, modules["projector"]) or None)
            if config.train_projector
            else None,
            task_type="CAUSAL_LM",
        )
        if gradient_checkpointing:
            model.enable_input_require_grads()
        model = get_peft_model(model, lora)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    logger.info(
        "trainable parameters: %s of %s (%.2f%%)", f"{trainable:,}", f"{total:,}", 100 * trainable / total
    )
    return model, modules


# ---- 2. train --------------------------------------------------------------------------------------------


def _training_arguments(
    config: TrainConfig,
    checkpoints_dir: Path,
    world_size: int,
    cuda: bool,
    bf16: bool,
    gradient_checkpointing: bool,
) -> Any:
    """``TrainingArguments`` for the config; ``ConfigError`` for a name transformers does not know."""
    from transformers import TrainingArguments

    try:
        return TrainingArguments(
            output_dir=str(checkpoints_dir),
            per_device_train_batch_size=config.per_device_batch_size,
            gradient_accumulation_steps=gradient_accumulation_steps(config, world_size),
            learning_rate=config.lr,
            weight_decay=config.weight_decay,
            lr_scheduler_type=config.lr_scheduler,
            warmup_steps=config.warmup_ratio,  # transformers 5: a float < 1 is a ratio of the total steps
            num_train_epochs=config.epochs,
            max_steps=config.max_steps,
            max_grad_norm=config.max_grad_norm,
            optim=config.optim,
            bf16=bf16,
            activation_checkpointing=gradient_checkpointing,
            activation_checkpointing_kwargs={"use_reentrant": False} if gradient_checkpointing else None,
            seed=config.seed,
            data_seed=config.seed,
            save_strategy="steps",
            save_steps=config.save_steps,
            save_total_limit=config.save_total_limit,
            logging_steps=config.logging_steps,
            logging_first_step=True,
            disable_tqdm=not config.progress,
            report_to=config.report_to or "none",
            # the Trainer pickles its arguments into every checkpoint (training_args.bin): no secret there
            run_name=None if config.run_name is None else redact_text(config.run_name),
            remove_unused_columns=False,  # the collator needs the raw messages and images
            dataloader_num_workers=config.dataloader_num_workers,
            ddp_find_unused_parameters=False,
            deepspeed=config.deepspeed,
            use_cpu=not cuda,
        )
    except ValueError as err:
        raise ConfigError(f"invalid training settings: {err}") from err


def _make_trainer(
    config: TrainConfig,
    config_yaml: str,
    model: Any,
    modules: dict[str, list[str]],
    args: Any,
    dataset: ConversationDataset,
    collator: ConversationCollator,
    processor: Any,
    safety_data: TrainingData | None,
    defence_data: TrainingData | None = None,
) -> VLGuardTrainer:
    """The Trainer of this run: vlguard's subclass with the projector's learning rate, the safety loss and
    the defence's training rule."""
    from transformers import PrinterCallback

    from vlguard.train.hf_trainer import CompletionMarker, DefenceStateSaver, StopAtMaxSteps, VLGuardTrainer

    rule = build_rule(config, defence_data, rank=args.process_index, world_size=args.world_size)
    saver = [DefenceStateSaver(rule)] if rule is not None and rule.keeps_state else []
    trainer = VLGuardTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=collator,
        processing_class=processor,
        callbacks=[StopAtMaxSteps(), *saver, CompletionMarker(config_yaml)],
    )
    if rule is not None and (trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled):
        raise ConfigError(
            f"defence.name={rule.name} runs extra passes outside the FSDP / DeepSpeed engine; use one process "
            "or DDP"
        )
    trainer.defence_rule = rule
    if not config.progress:
        # Without the bar the Trainer prints each log dict instead (PrinterCallback): quiet means neither.
        trainer.remove_callback(PrinterCallback)
    trainer.projector_names = tuple(modules["projector"]) if config.train_projector else ()
    trainer.projector_lr = config.projector_lr
    trainer.group_by_length = config.group_by_length
    if safety_data is not None:
        trainer.safety_weight = config.safety_loss.weight
        trainer.safety_batches = SafetyBatches(
            ConversationDataset(safety_data, config.data.image_mode),
            batch_size=config.safety_loss.batch_size,
            seed=config.seed,
            rank=trainer.args.process_index,
            world_size=trainer.args.world_size,
        )
    return trainer


# ---- 3. save ---------------------------------------------------------------------------------------------


def _save_final(
    trainer: Any,
    processor: Any,
    config: TrainConfig,
    config_yaml: str,
    requested_model: str,
    data: TrainingData,
    output_dir: Path,
    kind: ModelKind,
    *,
    global_step: int,
    train_loss: float | None,
    elapsed: float,
    world_size: int,
    safety_loss: dict[str, Any] | None = None,
    defence: dict[str, Any] | None = None,
) -> TrainResult:
    """Save the final model to ``output_dir/model`` (through a temporary folder) with its provenance."""
    final_dir = output_dir / MODEL_DIR
    sharded = bool(config.deepspeed) or trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled
    fingerprints = _rank_fingerprints(trainer.model, sharded)
    if fingerprints is not None and len(set(fingerprints)) > 1:
        logger.error("data-parallel ranks hold different weights: %s", fingerprints)

    # Write to a temporary folder and rename: a crash never leaves a half-written "final" model.
    tmp_dir = output_dir / ".model.tmp"
    if trainer.is_world_process_zero() and tmp_dir.exists():
        shutil.rmtree(tmp_dir)
    trainer.save_model(str(tmp_dir))  # every rank takes part (ZeRO-3 / FSDP gather the weights)
    if trainer.is_world_process_zero():
        save_processor(processor, tmp_dir, config.model.name_or_path, config.model.revision)
        # Trainer.save_model also pickles the TrainingArguments; the final folder holds no pickles.
        (tmp_dir / "training_args.bin").unlink(missing_ok=True)
        provenance: dict[str, Any] = {
            "config": config.to_dict(),
            "method": config.method,
            "base_model": config.model.name_or_path,
            "requested_model": requested_model,
            "base_revision": config.model.revision,
            "model_kind": kind.name,
            "counts": data.counts,
            "data_sources": data.sources,
            "safety_loss": safety_loss,
            "defence": defence,
            "global_step": global_step,
            "train_loss": train_loss,
            "train_seconds": round(elapsed, 1),
            "world_size": world_size,
            "rank_fingerprints": fingerprints,
            "seed": config.seed,
            "git_commit": _git_commit(),
            "versions": _versions(),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        # without secrets (vlguard.redaction), as every record vlguard writes
        (tmp_dir / PROVENANCE_FILE).write_text(json.dumps(redact(provenance), indent=2, default=str) + "\n")
        (tmp_dir / CONFIG_FILE).write_text(config_yaml, encoding="utf-8")
        (tmp_dir / COMPLETE_MARKER).write_text(provenance["finished"] + "\n")
        if final_dir.exists():
            shutil.rmtree(final_dir)  # an unfinished leftover (no marker: checked at the start)
        tmp_dir.rename(final_dir)
        logger.info("saved the %s to %s", "adapter" if config.method == "lora" else "model", final_dir)
    trainer.accelerator.wait_for_everyone()
    return TrainResult(
        model_dir=final_dir,
        global_step=global_step,
        train_loss=None if train_loss is None or math.isnan(train_loss) else float(train_loss),
        counts=data.counts,
        world_size=world_size,
    )


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def weights_fingerprint(model: Any) -> str:
    """SHA-256 over every parameter (name, bytes): equal on all data-parallel ranks after a step."""
    digest = hashlib.sha256()
    for name, param in sorted(model.named_parameters(), key=lambda item: item[0]):
        digest.update(name.encode())
        digest.update(param.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _rank_fingerprints(model: Any, sharded: bool) -> list[str] | None:
    """Each data-parallel rank's weights fingerprint (None when the weights are sharded)."""
    import torch.distributed as dist

    if sharded:
        return None
    mine = weights_fingerprint(model)
    if not (dist.is_available() and dist.is_initialized()):
        return [mine]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, mine)
    return [str(g) for g in gathered]


__all__ = [
    "TrainResult",
    "VLGuardError",
    "check_config",
    "check_lora_targets",
    "check_run_folder",
    "gradient_accumulation_steps",
    "load_model",
    "load_processor",
    "train",
    "weights_fingerprint",
]
