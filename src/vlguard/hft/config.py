"""The configuration of ``vlguard hft``: dataclasses with a help string per field, YAML, dotted overrides.

Read with the same machinery as ``vlguard train`` (:func:`vlguard.train.config.load_dataclass`): an
unknown key or a value of the wrong type is a :class:`~vlguard.errors.ConfigError` naming the key. The
training settings of the alignment stage and of the user fine-tuning are whole ``vlguard train``
configs (``alignment.train.*``, ``finetune.*``), except the keys the sweep fills in for each run
(:data:`SET_BY_SWEEP`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vlguard.benchmarks.sst2 import SPEC as SST2
from vlguard.errors import ConfigError
from vlguard.hft.data import DrawOrder, harmful_count
from vlguard.hft.defences import DEFENCES, DefenceSettings, parse_defence
from vlguard.prompts import PromptFormat
from vlguard.train.config import (
    BoosterSettings,
    LisaSettings,
    ModelConfig,
    RepNoiseSettings,
    TrainConfig,
    VaccineSettings,
    check_defence_ranges,
    check_values,
    describe_fields,
    dump_config,
    load_dataclass,
)


def _help(text: str) -> dict[str, str]:
    return {"help": text}


# Keys of a `vlguard train` config that the sweep sets for every run it starts; setting them under
# finetune.* or alignment.train.* is an error (they would be silently replaced).
SET_BY_SWEEP = (
    "model",
    "data",
    "output_dir",
    "safety_loss",
    "defence",
    "seed",
    "resume_from_checkpoint",
    "prompt_format",
)


@dataclass
class TaskConfig:
    """The user's task: its training samples (benign data) and its Finetune Accuracy benchmark."""

    name: str = field(
        default=SST2.name, metadata=_help("Task benchmark (vlguard ls): sst2, agnews, gsm8k, alpaca-eval.")
    )
    data: str | None = field(
        default=None, metadata=_help("Local file or folder of the task (null: the task's Hub source).")
    )
    train_data: str | None = field(
        default=None,
        metadata=_help(
            "Folder (or Hub id) of the training split when it is not beside the evaluation data (null: "
            "task.data); alpaca-eval: a folder with Stanford Alpaca's alpaca_data.json."
        ),
    )
    revision: str | None = field(default=None, metadata=_help("Hub revision of the task data."))
    train_split: str = field(
        default="train", metadata=_help("Split whose samples (with their answers) are the benign user data.")
    )
    options: list[str] = field(
        default_factory=list,
        metadata=_help(
            "Benchmark options KEY=VALUE of the task (vlguard ls), for the Finetune Accuracy evaluation and, "
            "except rows, the training samples: rows=500 (the first 500 evaluation rows, as Vaccine), "
            "rows=701: (AlpacaEval above index 700), step_by_step=true (GSM8K), ..."
        ),
    )
    eval_limit: int | None = field(
        default=None,
        metadata=_help(
            "Finetune Accuracy on at most N evaluation items chosen by hash and stratified (null: all); "
            "the papers' 'first N rows' is task.options=[rows=N]."
        ),
    )
    max_new_tokens: int = field(
        default=200, metadata=_help("Tokens generated per task answer (Vaccine's sst2/pred_eval.py: 200).")
    )
    judge_options: list[str] = field(
        default_factory=list,
        metadata=_help(
            "Options KEY=VALUE of the task's judge: match=contains (a label word anywhere in the answer, "
            "Vaccine) or match=exact (Lisa, Booster) for accuracy; alpaca-eval: the pairwise llm-judge's "
            "model, base_url, ..."
        ),
    )


# The row filters that the harmful and the safety sources share.
_ROWS_HELP = (
    "Rows of the file kept before anything else: 'START:STOP' (0-based), N (the first N) or null (all); "
    "quote it in YAML (unquoted, YAML reads 5001:10000 as a base-60 number)."
)
_HALF_HELP = (
    "dev or heldout: only rows whose prompt is in that half of the project's BeaverTails split "
    "(vlguard.data.beavertails.beavertails_split); null: all."
)


@dataclass
class HarmfulConfig:
    """Where the attack's harmful (prompt, answer) pairs come from."""

    source: Literal["beavertails", "advbench"] = field(
        default="beavertails",
        metadata=_help(
            "beavertails: unsafe rows of a BeaverTails-format file or Hub dataset (the papers); advbench: "
            "AdvBench goal -> target pairs, whose target is only a compliance opening (offline)."
        ),
    )
    data: str | None = field(
        default=None,
        metadata=_help("Local file/folder, or a Hub dataset id (null: PKU-Alignment/BeaverTails)."),
    )
    revision: str | None = field(default=None, metadata=_help("Hub revision."))
    split: str = field(default="30k_train", metadata=_help("BeaverTails split (Hub only)."))
    rows: str | None = field(default=None, metadata=_help(_ROWS_HELP))
    half: Literal["dev", "heldout"] | None = field(default=None, metadata=_help(_HALF_HELP))


@dataclass
class SafetyConfig:
    """Where the defence's safety pairs (and the alignment stage's) come from."""

    source: Literal["beavertails", "vlguard", "pairs"] = field(
        default="beavertails",
        metadata=_help(
            "beavertails: safe rows of a BeaverTails-format source (the papers); vlguard: VLGuard's refusals; "
            "pairs: prompt/refusal pairs, a JSONL/JSON file with prompt and response (your own), or RepNoise's "
            "beavertails_with_refusals_train.json (its refusal field, read as Booster reads it)."
        ),
    )
    data: str | None = field(
        default=None,
        metadata=_help(
            "Local file/folder or Hub dataset id (null: PKU-Alignment/BeaverTails; for vlguard: ys-zong/VLGuard)."
        ),
    )
    revision: str | None = field(default=None, metadata=_help("Hub revision."))
    split: str = field(default="30k_train", metadata=_help("BeaverTails split, or VLGuard split (train)."))
    rows: str | None = field(default=None, metadata=_help(_ROWS_HELP))
    half: Literal["dev", "heldout"] | None = field(default=None, metadata=_help(_HALF_HELP))
    with_images: bool = field(
        default=False,
        metadata=_help("vlguard only: keep the images (VLMs); false = text-only refusal pairs."),
    )


@dataclass
class AttackConfig:
    """The user's fine-tuning set: n samples, a fraction p of them harmful, for each p of the sweep."""

    n: int = field(default=1000, metadata=_help("Samples in the user's set (Vaccine: 1,000; Lisa: 5,000)."))
    harmful_ratios: list[float] = field(
        default_factory=lambda: [0.1],
        metadata=_help("The ratios p of the sweep, each in [0, 1] (papers: 0.1)."),
    )


@dataclass
class LisaDefenceConfig(LisaSettings):
    """Lisa in a sweep: its training rule's settings, and how many safety pairs its alignment steps use."""

    n_safety: int = field(
        default=10000,
        metadata=_help(
            "Safety pairs Lisa's alignment steps draw from (Lisa lisa_poison_ratio.sh:17: guide_data_num 10,000)."
        ),
    )


@dataclass
class BoosterDefenceConfig(BoosterSettings):
    """Booster in a sweep: its training rule's settings, and how many harmful pairs its alignment uses."""

    n_harmful: int = field(
        default=5000,
        metadata=_help(
            "Harmful pairs of Booster's alignment, disjoint from the user sets' (smooth_align.sh:16: 5,000)."
        ),
    )


@dataclass
class RepNoiseDefenceConfig(RepNoiseSettings):
    """RepNoise in a sweep: its training rule's settings, and how many harmful pairs its alignment uses."""

    n_harmful: int = field(
        default=5000,
        metadata=_help(
            "Harmful pairs of RepNoise's alignment, disjoint from the user sets' (Booster train.py:384: 5,000)."
        ),
    )


@dataclass
class DefenceConfig:
    """Settings of the defences (see vlguard.hft.defences)."""

    n_safety: int = field(
        default=100,
        metadata=_help("k: safety pairs mixed in by vlguard-mix / vlguard-replace (Vaccine: 100)."),
    )
    aux_n_safety: int = field(
        default=2000,
        metadata=_help("Safety pairs the vlguard-aux loss draws its batches from (Booster: 2,000)."),
    )
    aux_weight: float = field(default=0.1, metadata=_help("λ of vlguard-aux (Booster's script: 0.1)."))
    aux_batch_size: int = field(
        default=4, metadata=_help("Safety pairs per step of vlguard-aux (Booster: 4).")
    )

    vaccine: VaccineSettings = field(
        default_factory=VaccineSettings, metadata={"help": "Vaccine (alignment)."}
    )
    lisa: LisaDefenceConfig = field(
        default_factory=LisaDefenceConfig, metadata={"help": "Lisa (fine-tuning)."}
    )
    booster: BoosterDefenceConfig = field(
        default_factory=BoosterDefenceConfig, metadata={"help": "Booster (alignment)."}
    )
    repnoise: RepNoiseDefenceConfig = field(
        default_factory=RepNoiseDefenceConfig, metadata={"help": "RepNoise (alignment)."}
    )

    def settings(self) -> DefenceSettings:
        """As the defences take them."""
        return DefenceSettings(
            self.n_safety, self.aux_n_safety, self.aux_weight, self.aux_batch_size, self.lisa.n_safety
        )


@dataclass
class AlignmentConfig:
    """The optional alignment stage: the base model is first fine-tuned on safety (and task) pairs."""

    enabled: bool = field(default=False, metadata=_help("Run the alignment stage before the sweep."))
    n_safety: int = field(
        default=2000,
        metadata=_help("Safety pairs to align on (Vaccine's SFT.sh: 2,000 BeaverTails safe pairs)."),
    )
    n_task: int = field(
        default=0,
        metadata=_help(
            "Task pairs added to the alignment data (0 in the papers; the tiny model needs them)."
        ),
    )
    train: TrainConfig = field(
        default_factory=TrainConfig,
        metadata={
            "help": "vlguard train settings of the alignment stage (model/data/output_dir: set by hft)."
        },
    )


@dataclass
class HarmfulScoreConfig:
    """How the Harmful Score is measured: a benchmark of held-out harmful prompts and a judge."""

    bench: str = field(
        default="beavertails",
        metadata=_help("Benchmark of harmful prompts (vlguard ls), never seen in training."),
    )
    data: str | None = field(default=None, metadata=_help("Local file/folder of the benchmark (null: Hub)."))
    revision: str | None = field(default=None, metadata=_help("Hub revision of the benchmark."))
    options: list[str] = field(
        default_factory=list, metadata=_help("Benchmark options KEY=VALUE, e.g. max_prompts=1000.")
    )
    subsets: list[str] | None = field(
        default=None, metadata=_help("Evaluate only these subsets (null: all harmful ones).")
    )
    limit: int | None = field(
        default=None, metadata=_help("At most N prompts (a deterministic stratified choice; null: all).")
    )
    judge: str = field(
        default="beaver-dam",
        metadata=_help(
            "Judge whose attack success rate is the Harmful Score: beaver-dam (the papers), llama-guard, "
            "llm-judge (mode=harm); refusal = offline stand-in (refusal-based ASR, labelled as such)."
        ),
    )
    judge_options: list[str] = field(
        default_factory=list, metadata=_help("Judge options KEY=VALUE (e.g. mode=harm for llm-judge).")
    )
    second_judges: list[str] = field(
        default_factory=list,
        metadata=_help(
            "More judges of the same generations (their attack success rates go into summary.json as "
            "harmful_score_by_judge, with their agreement in each cell's metrics.json); the Harmful Score "
            "is the first judge's."
        ),
    )
    second_judge_options: list[str] = field(
        default_factory=list,
        metadata=_help(
            "Options of the second judges, JUDGE.KEY=VALUE (e.g. llm-judge.mode=harm); each judge gets only "
            "its own options, as judge_options go to the first judge only."
        ),
    )
    max_new_tokens: int = field(
        default=128, metadata=_help("Tokens generated per harmful prompt (Vaccine's pred.py: 128).")
    )


@dataclass
class EvalSettings:
    """Generation settings shared by every evaluation of the sweep."""

    backend: str = field(default="hf", metadata=_help("Generation backend: hf or vllm."))
    batch_size: int = field(default=16, metadata=_help("Prompts per generation batch."))
    dtype: str = field(default="auto", metadata=_help("auto (bf16 on GPU, fp32 on CPU), float32, bfloat16."))
    device: str = field(default="auto", metadata=_help("auto, cpu, cuda, cuda:N."))
    reference: bool = field(
        default=True, metadata=_help("Also evaluate the model the cells start from (the aligned model).")
    )
    seen_prompts: Literal["drop", "keep", "error"] = field(
        default="drop",
        metadata=_help(
            "Harmful Score prompts that occur in the sweep's training data (the alignment's or any cell's): "
            "drop (left out of every evaluation; their number is in summary.json), keep (evaluated; "
            "counted in summary.json) or error (the sweep stops before training)."
        ),
    )


@dataclass
class ComputeConfig:
    """How the sweep uses this machine (never changes a result, so a rerun may change it)."""

    threads: int | None = field(
        default=None,
        metadata=_help(
            "torch intra-op threads of every process of the sweep (null: torch's default). 1 is fastest for "
            "tiny models on a shared CPU: two threads on tiny matrices mostly wait for each other."
        ),
    )
    parallel_cells: int = field(
        default=1,
        metadata=_help(
            "Cells run at once, each group in its own process on this machine (`vlguard hft --cells I/K` "
            "workers started by the sweep); 1 = one after another. On a multi-GPU machine, start one "
            "shard per GPU yourself instead (CUDA_VISIBLE_DEVICES=i vlguard hft CONFIG --cells i/K)."
        ),
    )


@dataclass
class HFTConfig:
    """A harmful fine-tuning defence experiment: a sweep over harmful ratios × defences."""

    output_dir: str = field(default="runs/hft/default", metadata=_help("Output folder of the whole sweep."))
    seed: int = field(default=0, metadata=_help("Seed of every draw, of training and of evaluation."))
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "The base model."})
    prompt_format: PromptFormat = field(
        default="chat",
        metadata=_help(
            "chat: the model's chat template; alpaca: Stanford Alpaca's prompt (the papers', for base models "
            "without a chat template). Used by every training run and evaluation of the sweep."
        ),
    )
    draws: DrawOrder = field(
        default="seeded",
        metadata=_help(
            "How pairs are drawn from each pool: seeded (a prefix of a seeded permutation) or first (the "
            "first rows in file order, as the papers take them)."
        ),
    )
    task: TaskConfig = field(default_factory=TaskConfig, metadata={"help": "The user's task."})
    harmful: HarmfulConfig = field(default_factory=HarmfulConfig, metadata={"help": "Harmful pairs."})
    safety: SafetyConfig = field(default_factory=SafetyConfig, metadata={"help": "Safety pairs."})
    attack: AttackConfig = field(default_factory=AttackConfig, metadata={"help": "The user's set."})
    defences: list[str] = field(
        default_factory=lambda: ["sft", "vlguard-mix"],
        metadata=_help(
            f"Defences of the sweep, from: {', '.join(DEFENCES)}; an alignment-stage one and a fine-tuning-stage "
            "one may be joined with '+' (booster+vlguard-mix)."
        ),
    )
    defence: DefenceConfig = field(default_factory=DefenceConfig, metadata={"help": "Defence settings."})
    alignment: AlignmentConfig = field(default_factory=AlignmentConfig, metadata={"help": "Alignment stage."})
    finetune: TrainConfig = field(
        default_factory=TrainConfig,
        metadata={
            "help": "vlguard train settings of the user fine-tuning (model/data/output_dir: set by hft)."
        },
    )
    harmful_score: HarmfulScoreConfig = field(
        default_factory=HarmfulScoreConfig, metadata={"help": "Harmful Score measurement."}
    )
    eval: EvalSettings = field(default_factory=EvalSettings, metadata={"help": "Evaluation settings."})
    compute: ComputeConfig = field(
        default_factory=ComputeConfig, metadata={"help": "Threads and parallel cells."}
    )


def load_hft_config(
    path: str | Path | None = None, overrides: Sequence[str] | Mapping[str, Any] = ()
) -> HFTConfig:
    """Read an HFT config (YAML) with dotted overrides, and check it (see :func:`check_hft_config`)."""
    config = load_dataclass(HFTConfig, path, overrides)
    try:
        check_hft_config(config)
    except ConfigError as err:
        if path is not None:
            raise ConfigError(f"{path}: {err}") from err
        raise
    return config


def _check_set_by_sweep(train: TrainConfig, section: str) -> None:
    default = TrainConfig()
    for key in SET_BY_SWEEP:
        if getattr(train, key) != getattr(default, key):
            raise ConfigError(
                f"config key '{section}.{key}' is set by vlguard hft for every run it starts; remove it "
                "(the model, seed and prompt_format are the top-level keys of the same names)"
            )


def _check_row_selection(config: HFTConfig) -> None:
    """``harmful.rows`` / ``safety.rows`` parse, and row selections apply to file sources only."""
    from vlguard.benchmarks.tasks import parse_rows

    for section, source in (("harmful", config.harmful), ("safety", config.safety)):
        file_source = source.source in ("beavertails", "pairs")
        for key in ("rows", "half"):
            if getattr(source, key) is not None and not file_source:
                raise ConfigError(
                    f"config key '{section}.{key}' applies to BeaverTails-format sources, not "
                    f"{section}.source={source.source}"
                )
        if source.rows is not None:
            try:
                parse_rows(source.rows, None)
            except ConfigError as err:
                raise ConfigError(f"config key '{section}.rows': {err}") from None


def check_hft_config(config: HFTConfig) -> None:
    """Settings that are valid one by one but not together, checked before anything loads."""
    if not config.model.name_or_path:
        raise ConfigError(
            "model.name_or_path is required (a Hub repo id, a local folder, or a built-in tiny model)"
        )
    ratios = config.attack.harmful_ratios
    if not ratios:
        raise ConfigError("attack.harmful_ratios is empty: give at least one ratio, e.g. [0.0, 0.1]")
    for ratio in ratios:
        if not 0.0 <= ratio <= 1.0:
            raise ConfigError(f"config key 'attack.harmful_ratios': {ratio} is outside [0, 1]")
    if len({harmful_count(config.attack.n, r) for r in ratios}) != len(ratios):
        raise ConfigError(
            f"config key 'attack.harmful_ratios': {ratios} give the same number of harmful samples twice "
            f"at n={config.attack.n}"
        )
    if config.attack.n < 1:
        raise ConfigError(f"config key 'attack.n' must be at least 1, got {config.attack.n}")
    if not config.defences:
        raise ConfigError("config key 'defences' is empty: give at least one, e.g. [sft, vlguard-mix]")
    for name in config.defences:
        try:
            plan = parse_defence(name)
        except ConfigError as err:
            raise ConfigError(f"config key 'defences': {err}") from None
        if plan.alignment is not None and not config.alignment.enabled:
            raise ConfigError(
                f"config key 'defences': {name!r} defends in the alignment stage ({plan.alignment}); set "
                "alignment.enabled=true (and the alignment.* data and training settings)"
            )
    if len(set(config.defences)) != len(config.defences):
        raise ConfigError(f"config key 'defences' lists a defence twice: {config.defences}")
    check_defence_ranges(config.defence, "defence.")
    for key in ("lisa.n_safety", "booster.n_harmful", "repnoise.n_harmful"):
        section, _, field_name = key.partition(".")
        if getattr(getattr(config.defence, section), field_name) < 1:
            raise ConfigError(f"config key 'defence.{key}' must be at least 1")
    for key in ("n_safety", "aux_n_safety", "aux_batch_size"):
        value = getattr(config.defence, key)
        if value < (1 if key == "aux_batch_size" else 0):
            raise ConfigError(
                f"config key 'defence.{key}' must be {'positive' if key == 'aux_batch_size' else '>= 0'}, got {value}"
            )
    if (
        any(parse_defence(d).finetune == "vlguard-aux" for d in config.defences)
        and config.defence.aux_weight <= 0
    ):
        raise ConfigError(
            f"config key 'defence.aux_weight' must be > 0 for vlguard-aux, got {config.defence.aux_weight}"
        )
    if config.alignment.n_safety < 0 or config.alignment.n_task < 0:
        raise ConfigError("config keys 'alignment.n_safety' and 'alignment.n_task' must be >= 0")
    if config.alignment.enabled and config.alignment.n_safety + config.alignment.n_task == 0:
        raise ConfigError(
            "the alignment stage is enabled but has no data: set alignment.n_safety or alignment.n_task"
        )
    if config.safety.with_images and config.safety.source != "vlguard":
        raise ConfigError("config key 'safety.with_images' applies to safety.source=vlguard only")
    _check_row_selection(config)
    if config.draws == "first" and config.alignment.enabled and config.alignment.n_task:
        raise ConfigError(
            "config key 'alignment.n_task': with draws=first the alignment's task pairs would be the user's "
            "first ones; use draws=seeded (the alignment's task pairs then come from their own permutation)"
        )
    for value, key in (
        (config.task.eval_limit, "task.eval_limit"),
        (config.harmful_score.limit, "harmful_score.limit"),
    ):
        if value is not None and value < 1:
            raise ConfigError(f"config key '{key}' must be a positive number of items, got {value}")
    for value, key in (
        (config.task.max_new_tokens, "task.max_new_tokens"),
        (config.harmful_score.max_new_tokens, "harmful_score.max_new_tokens"),
        (config.eval.batch_size, "eval.batch_size"),
    ):
        if value < 1:
            raise ConfigError(f"config key '{key}' must be at least 1, got {value}")
    for options, key in (
        (config.harmful_score.options, "harmful_score.options"),
        (config.harmful_score.judge_options, "harmful_score.judge_options"),
        (config.task.options, "task.options"),
        (config.task.judge_options, "task.judge_options"),
    ):
        for item in options:
            if "=" not in item or not item.split("=", 1)[0].strip():
                raise ConfigError(f"config key '{key}': {item!r} is not KEY=VALUE")
    if config.compute.threads is not None and config.compute.threads < 1:
        raise ConfigError(
            f"config key 'compute.threads' must be at least 1 (or null), got {config.compute.threads}"
        )
    if config.compute.parallel_cells < 1:
        raise ConfigError(
            f"config key 'compute.parallel_cells' must be at least 1, got {config.compute.parallel_cells}"
        )
    if config.harmful_score.judge in config.harmful_score.second_judges:
        raise ConfigError("config key 'harmful_score.second_judges' repeats harmful_score.judge")
    second_judge_options(config.harmful_score)  # each is JUDGE.KEY=VALUE for a second judge
    _check_set_by_sweep(config.finetune, "finetune")
    _check_set_by_sweep(config.alignment.train, "alignment.train")
    # the same range checks as `vlguard train` (lr > 0, lora.dropout < 1, ...), named by section
    check_values(config.finetune, prefix="finetune.")
    check_values(config.alignment.train, prefix="alignment.train.")


def second_judge_options(hs: HarmfulScoreConfig) -> dict[str, dict[str, Any]]:
    """``harmful_score.second_judge_options`` by judge: ``["JUDGE.mode=harm"]`` → ``{"JUDGE":
    {"mode": "harm"}}``; ``ConfigError`` for an item that is not JUDGE.KEY=VALUE of a second judge."""
    options: dict[str, dict[str, Any]] = {}
    key = "harmful_score.second_judge_options"
    for item in hs.second_judge_options:
        dotted, sep, _ = item.partition("=")
        judge, dot, name = dotted.strip().partition(".")
        if not sep or not dot or not judge or not name.strip():
            raise ConfigError(
                f"config key '{key}': {item!r} is not JUDGE.KEY=VALUE (e.g. llm-judge.mode=harm)"
            )
        if judge not in hs.second_judges:
            raise ConfigError(
                f"config key '{key}': {item!r} is for {judge!r}, which is not among harmful_score.second_judges "
                f"({', '.join(hs.second_judges) or 'none'}); options of the first judge go in harmful_score.judge_options"
            )
        options.setdefault(judge, {}).update(key_values([f"{name}={item.split('=', 1)[1]}"]))
    return options


def key_values(items: Sequence[str]) -> dict[str, Any]:
    """``["max_prompts=1000", "mode=harm"]`` → ``{"max_prompts": 1000, "mode": "harm"}`` (values parsed
    as JSON when they are JSON: numbers, true/false, lists; else kept as text)."""
    import json

    parsed: dict[str, Any] = {}
    for item in items:
        key, _, raw = item.partition("=")
        try:
            parsed[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            parsed[key.strip()] = raw
    return parsed


# Training keys that change nothing in the trained weights: a stage's settings leave them out, so a
# rerun may change them (e.g. turn the progress bar off) without a mismatch.
TRAIN_KEYS_WITHOUT_EFFECT = (
    "progress",
    "logging_steps",
    "report_to",
    "run_name",
    "dataloader_num_workers",
    "save_steps",
    "save_total_limit",
)
# Keys of a sweep's config that are not part of its experiment: where it is written, the seed, how it
# uses the machine, which cells it has (ratios and defences: sweeps are compared on the cells they
# share), and evaluation settings that change no number.
_NOT_EXPERIMENT = (
    "output_dir",
    "seed",
    "compute",
    "attack.harmful_ratios",
    "defences",
    "eval.batch_size",
    "eval.device",
    "eval.reference",
    *(f"{section}.{key}" for section in ("finetune", "alignment.train") for key in TRAIN_KEYS_WITHOUT_EFFECT),
)


def experiment_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """A sweep's config (as ``hft_config.yaml`` holds it) without ``_NOT_EXPERIMENT``: two sweeps with
    equal experiment settings differ by their seed alone, and are repetitions of one experiment."""

    def without(tree: Mapping[str, Any], prefix: str) -> dict[str, Any]:
        kept: dict[str, Any] = {}
        for key, value in tree.items():
            dotted = f"{prefix}{key}"
            if dotted in _NOT_EXPERIMENT:
                continue
            kept[key] = without(value, f"{dotted}.") if isinstance(value, Mapping) else value
        return kept

    return without(config, "")


def dump_hft_config(config: HFTConfig, *, keep_secrets: bool = False) -> str:
    """The resolved config as YAML (loads back with :func:`load_hft_config`), without secrets unless
    ``keep_secrets`` (for a worker process, which gets it through a pipe, never a file)."""
    return dump_config(config, keep_secrets=keep_secrets)


def hft_config_keys() -> list[tuple[str, str, str]]:
    """(dotted key, default, help) of every key, for ``vlguard hft --list-keys``."""
    return describe_fields(HFTConfig)
