"""Training configuration: dataclasses with a help string per field, YAML files, dotted overrides.

A config is a YAML file (``configs/train/*.yaml``) whose keys mirror :class:`TrainConfig`; the command
line adds dotted ``key=value`` overrides (``lr=1e-5 lora.r=64 data.n_helpfulness=1000``). Every key is
checked: an unknown key or a value of the wrong type raises :class:`~vlguard.errors.ConfigError`
naming the key, before any model is loaded.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import yaml

from vlguard.errors import ConfigError
from vlguard.prompts import PromptFormat

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

# Module-name regexes (matched with re.fullmatch by PEFT) for the common layouts of transformers 5:
# VLMs keep the LLM under `language_model` (LLaVA, Qwen-VL, Gemma 3, PaliGemma, Mllama, InternVL, ...) or
# `text_model` (Idefics3 / SmolVLM); a text-only causal LM has it at `model.layers` (Llama, Qwen2,
# Mistral, ...). Anchoring on `.layers.N.` (and, for LMs, on the root `model.`) keeps the vision encoders'
# projections (also named q_proj, ...) out. Phi-style fused projections (qkv_proj, gate_up_proj) count too.
DEFAULT_LORA_TARGETS = (
    r"(model\.|.*(language_model|text_model)(\.model)?\.)layers\.\d+\."
    r"(self_attn\.(q_proj|k_proj|v_proj|o_proj|qkv_proj)|mlp\.(gate_proj|up_proj|down_proj|gate_up_proj))"
)
DEFAULT_VISION_MODULES = r"(.*\.)?(vision_tower|vision_model|visual)(\..*)?"
# The projector may sit inside the vision module (Qwen2/2.5-VL `visual.merger`, Qwen3-VL also
# `visual.deepstack_merger_list`): the trainer keeps it trainable when the tower is frozen.
DEFAULT_PROJECTOR_MODULES = (
    r"(.*\.)?(multi_modal_projector|connector|visual\.merger|visual\.deepstack_merger_list)(\..*)?"
)

# The config path that means "read the YAML from standard input".
STDIN = "-"

Recipe = Literal["posthoc", "mixed", "instructions"]
Method = Literal["lora", "full"]
Auto = Literal["auto", "true", "false"]
T = TypeVar("T")


def _help(text: str) -> dict[str, str]:
    """Field metadata: the help string shown by ``vlguard train --list-keys`` (as TRL's configs do)."""
    return {"help": text}


@dataclass
class ModelConfig:
    """The model to fine-tune."""

    name_or_path: str = field(
        default="",
        metadata=_help(
            "Hub repo id or local folder of an image-text-to-text model or a text-only causal LM; tiny and "
            "tiny-lm name the built-in tiny models."
        ),
    )
    revision: str | None = field(
        default=None, metadata=_help("Hub revision (branch, tag or commit) of the model.")
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = field(
        default="auto",
        metadata=_help(
            "Weights dtype. auto: LoRA on a bf16 GPU loads the frozen base in bfloat16; full fine-tuning keeps "
            "float32 master weights (bf16 compute via autocast / DeepSpeed / FSDP); float32 on CPU."
        ),
    )
    trust_remote_code: bool = field(
        default=False, metadata=_help("Allow code from the model repository (off: safer).")
    )
    attn_implementation: str | None = field(
        default=None, metadata=_help("e.g. sdpa, flash_attention_2; null = the default.")
    )


@dataclass
class DataConfig:
    """What to train on. See docs/experiments.md for the recipes."""

    recipe: Recipe = field(
        default="posthoc",
        metadata=_help(
            "posthoc: VLGuard train + n_helpfulness instruction samples; mixed: VLGuard train + the full "
            "instruction set; instructions: the instruction set alone (a baseline without safety data)."
        ),
    )
    vlguard: str | None = field(
        default="ys-zong/VLGuard",
        metadata=_help("VLGuard source: a local folder or a Hub dataset repo id (unused by 'instructions')."),
    )
    vlguard_revision: str | None = field(default=None, metadata=_help("Hub revision of the VLGuard dataset."))
    vlguard_split: str = field(default="train", metadata=_help("VLGuard split to train on."))
    instructions: str | None = field(
        default=None,
        metadata=_help(
            "Instruction data in LLaVA or messages format: a JSON/JSONL file, a folder, or a Hub repo id."
        ),
    )
    instructions_revision: str | None = field(
        default=None, metadata=_help("Hub revision of the instruction data.")
    )
    instructions_image_root: str | None = field(
        default=None,
        metadata=_help(
            "Folder that the instruction data's image paths are relative to (default: beside the file)."
        ),
    )
    n_helpfulness: int = field(
        default=5000, metadata=_help("posthoc: number of instruction samples drawn for helpfulness.")
    )
    image_mode: Literal["original", "blank", "none"] = field(
        default="original",
        metadata=_help(
            "original images, a blank image of fixed size, or none (text only); as in evaluation."
        ),
    )
    max_samples: int | None = field(
        default=None, metadata=_help("Use only the first N conversations of the mixture (debugging).")
    )
    check_images: bool = field(
        default=True, metadata=_help("Open every image once before training (fail early on a bad one).")
    )
    seed: int = field(
        default=0, metadata=_help("Seed of the helpfulness draw, the mixture shuffle and the turn order.")
    )


@dataclass
class LoraConfig:
    """LoRA adapters (used when method = lora)."""

    r: int = field(default=128, metadata=_help("LoRA rank (LLaVA-1.5: 128)."))
    alpha: float = field(
        default=256, metadata=_help("LoRA alpha (LLaVA-1.5: 256; Vaccine's GSM8K runs use 0.5).")
    )
    dropout: float = field(default=0.05, metadata=_help("LoRA dropout."))
    target_modules: str = field(
        default=DEFAULT_LORA_TARGETS,
        metadata=_help("Regex (full match) over module names: the language model's linear layers."),
    )


@dataclass
class SafetyLossConfig:
    """An auxiliary loss on safety data at every step: loss + weight × (loss on a batch of safety data).

    Booster's "VLGuard" baseline for harmful fine-tuning (GitHub git-disl/Booster, ``VlguardTrainer``:
    λ × the loss on a 4-sample alignment batch at each step). Off while ``data`` is null.
    """

    data: str | None = field(
        default=None,
        metadata=_help(
            "Safety conversations (LLaVA or messages format, JSON/JSONL file or owner/name/file.json on the "
            "Hub); null = no auxiliary loss."
        ),
    )
    image_root: str | None = field(
        default=None,
        metadata=_help(
            "Folder or zip that the safety data's image paths are relative to (default: beside the file)."
        ),
    )
    weight: float = field(
        default=0.1, metadata=_help("λ: weight of the safety loss (Booster's script: 0.1).")
    )
    batch_size: int = field(
        default=4, metadata=_help("Safety conversations per step and process (Booster: 4).")
    )


# The papers' defences against harmful fine-tuning as training rules (``defence.*``; vlguard.train.defences).
# Each default is the value of the paper's own script; the citations name the copy read (docs/hft.md,
# "The papers' defences": git-disl/Vaccine @ 906f520, git-disl/Lisa @ 2e9c24c, git-disl/Booster @ caf91cd
# (scripts, loss_func) and @ 30f959e (trainer.py, train.py)).
DEFENCE_RULES = ("none", "vaccine", "lisa", "booster", "repnoise")
DefenceRule = Literal["none", "vaccine", "lisa", "booster", "repnoise"]


@dataclass
class VaccineSettings:
    """Vaccine (perturbation-aware alignment): each self-attention output gets ρ × its normalised gradient."""

    rho: float = field(
        default=2.0,
        metadata=_help(
            "ρ: norm of the perturbation over all layers (Vaccine train.py:253 and README.md:62-65: 2)."
        ),
    )


@dataclass
class LisaSettings:
    """Lisa (bi-state optimisation): alignment and user steps alternate, each pulled to the other's weights."""

    rho: float = field(
        default=1.0, metadata=_help("ρ of the proximal term ρ/2 ‖w - w̃‖² (Lisa lisa_poison_ratio.sh:18: 1).")
    )
    alignment_steps: int = field(
        default=100,
        metadata=_help("Optimizer steps on alignment data per cycle (Lisa lisa_poison_ratio.sh:22: 100)."),
    )
    finetune_steps: int = field(
        default=900,
        metadata=_help("Optimizer steps on the user's data per cycle (Lisa lisa_poison_ratio.sh:23: 900)."),
    )
    batch_size: int | None = field(
        default=None,
        metadata=_help(
            "Alignment conversations per micro-batch (null: per_device_batch_size, as Lisa trainer.py:64)."
        ),
    )


@dataclass
class BoosterSettings:
    """Booster (harmful perturbation attenuation): λ × (h(w) - h(w - α ∇h/‖∇h‖)) added to the alignment loss."""

    lamb: float = field(
        default=5.0, metadata=_help("λ: weight of the attenuation term (Booster smooth_align.sh:14: 5).")
    )
    alpha: float = field(
        default=0.1,
        metadata=_help("α: size of the simulated normalised harmful step (Booster smooth_align.sh:15: 0.1)."),
    )
    batch_size: int = field(
        default=10, metadata=_help("Harmful conversations per micro-batch (Booster trainer.py:149: 10).")
    )


@dataclass
class RepNoiseSettings:
    """RepNoise: harmless loss + β × MMD(harmful MLP outputs, Gaussian noise) - α × log(harmful loss + 1)."""

    alpha: float = field(
        default=0.1, metadata=_help("α: weight of the harmful-loss ascent (Booster repNoise.sh:14: 0.1).")
    )
    beta: float = field(
        default=0.001, metadata=_help("β: weight of the noise (MMD) term (Booster repNoise.sh:15: 0.001).")
    )
    batch_size: int | None = field(
        default=None,
        metadata=_help(
            "Harmful conversations per micro-batch (null: per_device_batch_size, as Booster trainer.py:1142)."
        ),
    )


@dataclass
class TrainingDefenceConfig:
    """One of the papers' defences against harmful fine-tuning as the training rule (vlguard.train.defences).

    vaccine, booster, repnoise: alignment-stage methods (train the model that users then fine-tune);
    lisa: a fine-tuning-stage method (trains the user's fine-tuning with alignment steps in between).
    """

    name: DefenceRule = field(
        default="none",
        metadata=_help(
            'none (plain training), vaccine, lisa, booster or repnoise; see docs/hft.md, "The papers\' defences".'
        ),
    )
    data: str | None = field(
        default=None,
        metadata=_help(
            "The rule's second data set (LLaVA or messages format): lisa, the alignment (safety) conversations; "
            "booster and repnoise, harmful conversations; vaccine needs none."
        ),
    )
    image_root: str | None = field(
        default=None,
        metadata=_help("Folder or zip that defence.data's image paths are relative to (default: beside it)."),
    )
    vaccine: VaccineSettings = field(default_factory=VaccineSettings, metadata={"help": "Vaccine."})
    lisa: LisaSettings = field(default_factory=LisaSettings, metadata={"help": "Lisa."})
    booster: BoosterSettings = field(default_factory=BoosterSettings, metadata={"help": "Booster."})
    repnoise: RepNoiseSettings = field(default_factory=RepNoiseSettings, metadata={"help": "RepNoise."})


@dataclass
class TrainConfig:
    """A full training run: model, data, method and the optimisation settings (LLaVA-1.5 defaults)."""

    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "The model."})
    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "The data."})
    lora: LoraConfig = field(default_factory=LoraConfig, metadata={"help": "LoRA settings."})
    method: Method = field(
        default="lora", metadata=_help("lora (adapters on the language model) or full fine-tuning.")
    )
    safety_loss: SafetyLossConfig = field(
        default_factory=SafetyLossConfig,
        metadata={
            "help": "Auxiliary loss on safety data at every step (off unless safety_loss.data is set)."
        },
    )
    defence: TrainingDefenceConfig = field(
        default_factory=TrainingDefenceConfig,
        metadata={
            "help": "One of the papers' defences as the training rule (off unless defence.name is set)."
        },
    )
    prompt_format: PromptFormat = field(
        default="chat",
        metadata=_help(
            "chat: the model's chat template; alpaca: the Stanford Alpaca prompt + response + EOS (one user turn "
            "and one answer per conversation; a second text part of the user turn is the ### Input); "
            "alpaca-newline: the same with a newline after '### Response:' (Booster's)."
        ),
    )
    output_dir: str = field(
        default="runs/train/default",
        metadata=_help("Run folder: checkpoints/, model/ and the resolved config."),
    )

    freeze_vision_tower: bool = field(
        default=True, metadata=_help("Keep the vision encoder frozen (LLaVA-1.5 does).")
    )
    train_projector: bool = field(
        default=True, metadata=_help("Train the vision-language projector (LLaVA-1.5 does, also with LoRA).")
    )
    vision_modules: str = field(
        default=DEFAULT_VISION_MODULES, metadata=_help("Regex over module names of the vision encoder.")
    )
    projector_modules: str = field(
        default=DEFAULT_PROJECTOR_MODULES, metadata=_help("Regex over module names of the projector.")
    )

    lr: float = field(default=2e-4, metadata=_help("Peak learning rate (LLaVA-1.5: 2e-5 full, 2e-4 LoRA)."))
    projector_lr: float | None = field(
        default=None, metadata=_help("Learning rate of the projector; null = lr (LoRA recipe: 2e-5).")
    )
    weight_decay: float = field(default=0.0, metadata=_help("AdamW weight decay."))
    lr_scheduler: str = field(
        default="cosine", metadata=_help("transformers scheduler name: cosine, linear, constant, ...")
    )
    warmup_ratio: float = field(default=0.03, metadata=_help("Share of the steps spent warming up."))
    epochs: float = field(default=1.0, metadata=_help("Number of epochs."))
    max_steps: int = field(
        default=-1, metadata=_help("Stop after this many optimizer steps (-1: run the epochs).")
    )
    global_batch_size: int = field(
        default=128,
        metadata=_help(
            "Samples per optimizer step over all processes; gradient accumulation is derived from it."
        ),
    )
    per_device_batch_size: int = field(
        default=16, metadata=_help("Samples per forward pass on each process.")
    )
    max_length: int = field(
        default=2048,
        metadata=_help("Longest sequence in tokens (image tokens included); longer text is cut."),
    )
    group_by_length: bool = field(
        default=False,
        metadata=_help("Batch conversations of similar length together (less padding, faster)."),
    )
    max_grad_norm: float = field(default=1.0, metadata=_help("Gradient clipping."))
    optim: str = field(
        default="adamw_torch",
        metadata=_help("transformers optimizer name (adamw_torch, adamw_torch_fused, ...)."),
    )
    gradient_checkpointing: Auto = field(default="auto", metadata=_help("auto = on when a GPU is used."))
    bf16: Auto = field(default="auto", metadata=_help("auto = on when the GPU supports it."))
    seed: int = field(default=0, metadata=_help("Seed of initialisation (LoRA), dropout and data order."))

    save_steps: int = field(default=500, metadata=_help("Save a checkpoint every N optimizer steps."))
    save_total_limit: int | None = field(default=2, metadata=_help("Keep at most N checkpoints (null: all)."))
    logging_steps: int = field(default=1, metadata=_help("Log loss and learning rate every N steps."))
    progress: bool = field(
        default=True,
        metadata=_help("Show the Trainer's progress bar and log lines on the console (false: quiet)."),
    )
    report_to: list[str] = field(
        default_factory=list, metadata=_help("Trackers: tensorboard, wandb (empty: console only).")
    )
    run_name: str | None = field(default=None, metadata=_help("Name shown in the trackers."))
    resume_from_checkpoint: str | None = field(
        default="auto",
        metadata=_help(
            "auto (or latest) = resume from the newest complete checkpoint in output_dir/checkpoints when "
            "there is one (made with the same settings), so rerunning a command continues it; a checkpoint "
            "folder; null = start from step 0 (refused when complete checkpoints exist)."
        ),
    )
    dataloader_num_workers: int = field(
        default=0, metadata=_help("Worker processes that load images and build batches.")
    )
    deepspeed: str | None = field(
        default=None, metadata=_help("DeepSpeed JSON config (usually set via accelerate config instead).")
    )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---- loading ----------------------------------------------------------------------------------------


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(value: Any, tp: Any, key: str, from_text: bool) -> Any:
    """Check ``value`` against the annotation ``tp``; strings from the command line are parsed."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if type(None) in options and (
            value is None or (from_text and str(value).lower() in ("null", "none"))
        ):
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key, from_text)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"config key '{key}': invalid value {value!r}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        text = str(value).lower() if isinstance(value, bool) else value
        if text in allowed:
            return text
        raise ConfigError(f"config key '{key}': {value!r} is not one of {', '.join(map(str, allowed))}")
    if origin is list:
        (item_type,) = typing.get_args(tp)
        if from_text and isinstance(value, str):
            value = [] if value.strip() in ("", "[]") else _list_from_text(value, key)
            if isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"config key '{key}': expected a list, got {value!r}")
        return [_coerce(v, item_type, key, from_text=False) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ConfigError(f"config key '{key}': expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"config key '{key}': expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads "2e-5" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"config key '{key}': expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if from_text or (isinstance(value, int | float) and not isinstance(value, bool)):
            return str(value)
        raise ConfigError(f"config key '{key}': expected a string, got {value!r}")
    raise ConfigError(f"config key '{key}': unsupported type {tp!r}")  # pragma: no cover


def _list_from_text(text: str, key: str) -> Any:
    """A list override's text read as YAML (``[0.1, 0.2]``); a malformed one is a ``ConfigError``."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        problem = str(getattr(err, "problem", None) or "not valid YAML").strip()
        raise ConfigError(
            f"config key '{key}': {text!r} is not a list ({problem}); write it as [a, b] or a, b"
        ) from None
    except RecursionError:
        raise ConfigError(f"config key '{key}': {text[:40]!r}... is nested too deeply to read") from None


def _build(cls: type, values: Mapping[str, Any], prefix: str, from_text: set[str]) -> Any:
    """Instantiate the dataclass ``cls`` from a nested mapping, checking every key and value."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if key not in names:
            close = sorted(n for n in names if n.startswith(str(key)[:3]))
            hint = f" (did you mean {', '.join(prefix + c for c in close)}?)" if close else ""
            raise ConfigError(f"unknown config key '{dotted}'{hint}")
        tp = hints[key]
        if _is_section(tp):
            if not isinstance(value, Mapping):
                raise ConfigError(f"config key '{dotted}': expected a section of keys, got {value!r}")
            kwargs[key] = _build(tp, value, f"{dotted}.", from_text)
        else:
            kwargs[key] = _coerce(value, tp, dotted, dotted in from_text)
    return cls(**kwargs)


def parse_overrides(overrides: Sequence[str]) -> dict[str, str]:
    """``["lr=1e-5", "lora.r=64"]`` → ``{"lr": "1e-5", "lora.r": "64"}`` (values stay text)."""
    parsed: dict[str, str] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. lr=1e-5 lora.r=64)")
        parsed[key.strip()] = value
    return parsed


def load_dataclass(
    cls: type[T], path: str | Path | None = None, overrides: Sequence[str] | Mapping[str, Any] = ()
) -> T:
    """Read a YAML file into the config dataclass ``cls`` (or start from its defaults), then apply overrides.

    ``overrides`` is a list of ``key=value`` strings (values parsed by the field's type) or a mapping
    ``{"lora.r": 64}``. ``path`` ``-`` reads the YAML from standard input (how ``vlguard hft`` hands its
    worker processes their config: settings that hold a secret never pass through a file). Raises :class:`ConfigError` naming the file and key on any problem. Every
    config of vlguard (``vlguard train``, ``vlguard hft``) is read through this one function.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            text = sys.stdin.read() if str(path) == STDIN else path.read_text(encoding="utf-8")
            loaded = yaml.safe_load(text)
        except OSError as err:
            raise ConfigError(f"{path}: cannot read config ({err.strerror})") from err
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({err})") from err
        except RecursionError:
            raise ConfigError(f"{path}: not a config: nested too deeply to read") from None
        except UnicodeDecodeError as err:
            raise ConfigError(f"{path}: not UTF-8 text (byte offset {err.start}); save it as UTF-8") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a config is a mapping of keys, got {type(loaded).__name__}")
        raw = loaded or {}
    items = parse_overrides(overrides) if not isinstance(overrides, Mapping) else dict(overrides)
    text_keys = set(items) if not isinstance(overrides, Mapping) else set()
    for dotted, value in items.items():
        node = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override '{dotted}': '{part}' is not a section")
            node = child
        node[leaf] = value
    try:
        return typing.cast(T, _build(cls, raw, "", text_keys))
    except ConfigError as err:
        if path is not None:
            raise ConfigError(f"{path}: {err}") from err
        raise


# (dotted key, lowest allowed, whether the lowest is excluded, highest allowed or None, whether excluded)
_RANGES: tuple[tuple[str, float, bool, float | None, bool], ...] = (
    ("lr", 0, True, None, False),
    ("projector_lr", 0, True, None, False),
    ("weight_decay", 0, False, None, False),
    ("warmup_ratio", 0, False, 1, True),
    ("epochs", 0, True, None, False),
    ("max_grad_norm", 0, False, None, False),
    ("global_batch_size", 1, False, None, False),
    ("per_device_batch_size", 1, False, None, False),
    ("max_length", 1, False, None, False),
    ("save_steps", 1, False, None, False),
    ("save_total_limit", 1, False, None, False),
    ("logging_steps", 1, False, None, False),
    ("dataloader_num_workers", 0, False, None, False),
    ("seed", 0, False, 2**32 - 1, False),
    ("lora.r", 1, False, None, False),
    ("lora.alpha", 0, True, None, False),
    ("lora.dropout", 0, False, 1, True),
    ("data.n_helpfulness", 0, False, None, False),
    ("data.max_samples", 0, False, None, False),
    ("data.seed", 0, False, 2**32 - 1, False),
)
# The defences' settings, relative to a section holding vaccine / lisa / booster / repnoise (``defence.``
# of a training config, ``defence.`` of a vlguard hft config).
_DEFENCE_RANGES: tuple[tuple[str, float, bool, float | None, bool], ...] = (
    ("vaccine.rho", 0, True, None, False),
    ("lisa.rho", 0, False, None, False),
    ("lisa.alignment_steps", 1, False, None, False),
    ("lisa.finetune_steps", 1, False, None, False),
    ("lisa.batch_size", 1, False, None, False),
    ("booster.lamb", 0, False, None, False),
    ("booster.alpha", 0, True, None, False),
    ("booster.batch_size", 1, False, None, False),
    ("repnoise.alpha", 0, False, None, False),
    ("repnoise.beta", 0, False, None, False),
    ("repnoise.batch_size", 1, False, None, False),
)


def check_values(config: TrainConfig, prefix: str = "") -> None:
    """``ConfigError`` naming the key of a value outside its range (``lr=nan``, ``lr=-5``, ``lora.dropout=1``).

    Types are checked when the config is built; the ranges here are checked before anything loads, so
    that a bad value never surfaces after the model has loaded and the run folder has been written.
    ``prefix`` names the section a training config sits in (``finetune.`` in a ``vlguard hft`` config).
    """
    _check_ranges(config, _RANGES, prefix)
    check_defence_ranges(config.defence, prefix + "defence.")
    if config.max_steps != -1 and config.max_steps < 1:
        raise ConfigError(
            f"config key '{prefix}max_steps': must be -1 (run the epochs) or >= 1, got {config.max_steps}"
        )
    if not config.output_dir.strip():
        raise ConfigError(f"config key '{prefix}output_dir': must not be empty")
    for key, text in _strings(config.to_dict()):
        if any("\ud800" <= ch <= "\udfff" for ch in text):
            raise ConfigError(
                f"config key '{prefix}{key}': holds a lone UTF-16 surrogate, which is not Unicode text"
            )


def check_defence_ranges(section: Any, prefix: str) -> None:
    """``ConfigError`` naming the key of a defence setting outside its range (``defence.vaccine.rho=0``).

    ``section`` holds ``vaccine`` / ``lisa`` / ``booster`` / ``repnoise`` settings; ``prefix`` names it.
    """
    _check_ranges(section, _DEFENCE_RANGES, prefix)


def _check_ranges(
    root: Any, ranges: Sequence[tuple[str, float, bool, float | None, bool]], prefix: str
) -> None:
    for key, low, low_open, high, high_open in ranges:
        value: Any = root
        for part in key.split("."):
            value = getattr(value, part)
        if value is None:
            continue  # optional keys (projector_lr, save_total_limit, data.max_samples) may be null
        bounds = ("> " if low_open else ">= ") + f"{low:g}"
        if high is not None:
            bounds += (" and < " if high_open else " and <= ") + f"{high:g}"
        if not math.isfinite(value) or value < low or (low_open and value == low):
            raise ConfigError(f"config key '{prefix}{key}': must be {bounds}, got {value!r}")
        if high is not None and (value > high or (high_open and value == high)):
            raise ConfigError(f"config key '{prefix}{key}': must be {bounds}, got {value!r}")


def _strings(tree: Any, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted key, text) of every string in a config dict, list items included."""
    if isinstance(tree, dict):
        return [item for k, v in tree.items() for item in _strings(v, f"{prefix}{k}.")]
    if isinstance(tree, list):
        return [item for v in tree for item in _strings(v, prefix)]
    return [(prefix.rstrip("."), tree)] if isinstance(tree, str) else []


def load_config(
    path: str | Path | None = None, overrides: Sequence[str] | Mapping[str, Any] = ()
) -> TrainConfig:
    """Read a training config (YAML), apply dotted overrides and check every value's range; see
    :func:`load_dataclass`."""
    config = load_dataclass(TrainConfig, path, overrides)
    try:
        check_values(config)
    except ConfigError as err:
        if path is not None:
            raise ConfigError(f"{path}: {err}") from err
        raise
    return config


def dump_config(config: DataclassInstance, *, keep_secrets: bool = False) -> str:
    """A resolved config dataclass as YAML (loadable again with :func:`load_dataclass`), without secrets
    (``vlguard.redaction``: credentials in URLs, key-like ``KEY=VALUE`` options) unless ``keep_secrets``.

    What is written to a run folder, compared on resume and printed by ``--print-config``.
    """
    from vlguard.redaction import redact

    values = dataclasses.asdict(config)
    return yaml.safe_dump(values if keep_secrets else redact(values), sort_keys=False)


def describe_fields(cls: type = TrainConfig, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, default, help) of every field, for ``vlguard train --list-keys``."""
    rows: list[tuple[str, str, str]] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if _is_section(hints[f.name]):
            rows.extend(describe_fields(hints[f.name], f"{prefix}{f.name}."))
            continue
        factory: Any = f.default_factory
        default = f.default if f.default is not dataclasses.MISSING else factory()
        rows.append((prefix + f.name, repr(default), f.metadata.get("help", "")))
    return rows
