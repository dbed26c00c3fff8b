"""The papers' defences against harmful fine-tuning as training rules of ``vlguard train`` (``defence.*``).

Each rule replaces how one micro-batch's gradient is computed (``VLGuardTrainer.training_step``); the
optimizer, scheduler, clipping, checkpoints and data parallelism stay the ``transformers.Trainer``'s:

* ``vaccine`` (alignment stage; Vaccine, git-disl/Vaccine ``trainer.py`` ``VaccineTrainer``): a first
  pass finds the gradient of the loss with respect to every decoder layer's self-attention output; the
  update is the gradient of the loss with each output perturbed by ρ × its gradient / the norm over all
  layers (two forward/backward passes per micro-batch);
* ``lisa`` (fine-tuning stage; Lisa, git-disl/Lisa ``trainer.py`` ``ADMMTrainer``): ``alignment_steps``
  optimizer steps on alignment data, then ``finetune_steps`` on the user's data, in turn; after the first
  10 % of the steps each step adds the proximal term ρ/2 ‖w - w̃‖², w̃ the weights the other phase ended on;
* ``booster`` (alignment stage; Booster, git-disl/Booster ``trainer.py`` ``BoosterAlignmentTrainer``):
  the gradient of f(w) + λ (h(w) - h(w - α ∇h(w)/‖∇h(w)‖)), f the alignment loss, h the loss on a
  harmful batch, the inner gradient held fixed (three forward/backward passes);
* ``repnoise`` (alignment stage; RepNoise as Booster runs it, ``loss_func/repnoise_loss.py``): the
  harmless loss + β × MMD(MLP outputs on harmful text, Gaussian noise) - α × log(harmful loss + 1).

``DEFENCE_RULES`` is the registry (``vlguard.registry``): each entry names its class (imported when
training starts), its stage and what its ``defence.data`` holds. The modules of the rules import torch;
this one does not, so that configs are checked without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from vlguard.errors import ConfigError
from vlguard.registry import Entry, Registry
from vlguard.train.config import TrainConfig
from vlguard.train.data import ConversationDataset, TrainingData
from vlguard.train.safety_loss import SafetyBatches

if TYPE_CHECKING:
    from vlguard.train.defences.base import DefenceRule

# The source tag of the defence's own conversations (defence.data).
DEFENCE_SOURCE = "defence"


@dataclass(frozen=True)
class DefenceRuleEntry(Entry):
    """A training rule: its class, when it is used, and what ``defence.data`` holds for it (None: nothing)."""

    stage: Literal["alignment", "finetune"] = "alignment"
    data_role: Literal["safety", "harmful"] | None = None
    passes: str = ""


DEFENCE_RULES: Registry[DefenceRuleEntry] = Registry(
    "defence rule",
    DefenceRuleEntry,
    {
        "vaccine": DefenceRuleEntry(
            "vlguard.train.defences.vaccine:Vaccine",
            "Vaccine: the loss with every self-attention output perturbed by ρ × its normalised gradient",
            stage="alignment",
            passes="2 forward, 2 backward",
        ),
        "lisa": DefenceRuleEntry(
            "vlguard.train.defences.lisa:Lisa",
            "Lisa: alignment and user steps in turn, each with ρ/2 ‖w - w̃‖² to the other phase's weights",
            stage="finetune",
            data_role="safety",
            passes="1 forward, 1 backward",
        ),
        "booster": DefenceRuleEntry(
            "vlguard.train.defences.booster:Booster",
            "Booster: alignment loss + λ × (h(w) - h(w - α ∇h/‖∇h‖)) on a harmful batch",
            stage="alignment",
            data_role="harmful",
            passes="3 forward, 3 backward",
        ),
        "repnoise": DefenceRuleEntry(
            "vlguard.train.defences.repnoise:RepNoise",
            "RepNoise: harmless loss + β × MMD(harmful MLP outputs, noise) - α × log(harmful loss + 1)",
            stage="alignment",
            data_role="harmful",
            passes="2 forward, 1 backward",
        ),
    },
)


def check_defence_config(config: TrainConfig) -> None:
    """Settings of ``defence.*`` that are valid one by one but not together (checked before anything loads)."""
    defence = config.defence
    if defence.name == "none":
        if defence.data is not None:
            raise ConfigError("config key 'defence.data' is set but defence.name is none; set defence.name")
        return
    entry = DEFENCE_RULES.entry(defence.name)
    if entry.data_role is not None and defence.data is None:
        raise ConfigError(
            f"defence.name={defence.name} needs defence.data: the {entry.data_role} conversations it trains with"
        )
    if entry.data_role is None and defence.data is not None:
        raise ConfigError(f"defence.name={defence.name} uses no defence.data; remove it")
    if config.safety_loss.data is not None:
        raise ConfigError(
            f"defence.name={defence.name} and safety_loss.data cannot be combined: each defines the step's "
            "gradient (vlguard hft composes a defence with vlguard-mix or vlguard-replace instead)"
        )
    if config.deepspeed:
        raise ConfigError(
            f"defence.name={defence.name} runs extra passes outside the DeepSpeed engine; it supports a single "
            "process or DDP, not deepspeed"
        )


def side_batch_size(config: TrainConfig) -> int | None:
    """Conversations per side batch of the configured rule (None: it draws none)."""
    name = config.defence.name
    if name == "none" or DEFENCE_RULES.entry(name).data_role is None:
        return None
    size: int | None = getattr(config.defence, name).batch_size
    return size if size is not None else config.per_device_batch_size


def build_rule(
    config: TrainConfig, data: TrainingData | None, *, rank: int = 0, world_size: int = 1
) -> DefenceRule | None:
    """The training rule of ``config.defence`` (None for ``none``), drawing its batches from ``data``."""
    name = config.defence.name
    if name == "none":
        return None
    entry = DEFENCE_RULES.entry(name)
    batches = None
    size = side_batch_size(config)
    if size is not None:
        if data is None:
            raise ConfigError(f"defence.name={name} needs defence.data")
        batches = SafetyBatches(
            ConversationDataset(data, config.data.image_mode),
            batch_size=size,
            seed=config.seed,
            rank=rank,
            world_size=world_size,
            stream=f"defence-{name}",
        )
    rule: DefenceRule = entry.load()(getattr(config.defence, name), batches, config.seed)
    return rule
