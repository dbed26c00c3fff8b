"""The bookkeeping of a training run folder: its names, complete checkpoints, resuming, the whole run's loss.

Run folder::

    OUTPUT/
      train_config.yaml          the resolved config (CONFIG_FILE)
      checkpoints/checkpoint-N/  Trainer checkpoints; COMPLETE marks a finished one (CHECKPOINTS_DIR)
      model/                     the final weights or adapter + processor + vlguard_train.json (MODEL_DIR)

A checkpoint is trusted only once it is marked complete (``mark_checkpoint_complete``, after every rank has
written its part), so resuming never starts from a half-written save. ``find_checkpoint`` picks the
checkpoint to resume from and refuses one made with other settings; ``whole_run_loss`` gives the mean
training loss over every step of a run that was resumed.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from vlguard.errors import ConfigError

logger = logging.getLogger(__name__)

CONFIG_FILE = "train_config.yaml"
CHECKPOINTS_DIR = "checkpoints"
MODEL_DIR = "model"
COMPLETE_MARKER = "COMPLETE"
PROVENANCE_FILE = "vlguard_train.json"
TRAINER_STATE = "trainer_state.json"
# What a defence's training rule needs to resume (Lisa's two states), beside the Trainer's files.
DEFENCE_STATE = "defence_state.safetensors"
# Keys that may differ between a checkpoint and the run resuming it: where and how it is watched or
# stored, not what is trained.
RESUME_MAY_CHANGE = frozenset(
    {
        "output_dir",
        "resume_from_checkpoint",
        "progress",
        "report_to",
        "run_name",
        "dataloader_num_workers",
        "save_steps",
        "save_total_limit",
        "logging_steps",
        "deepspeed",
    }
)


class AlreadyFinished(Exception):
    """Raised inside ``Trainer.train`` when a resumed run has no step left (see ``StopAtMaxSteps``)."""


def is_complete(folder: Path) -> bool:
    """Whether ``folder`` (a checkpoint or the final model) is marked complete."""
    return (folder / COMPLETE_MARKER).is_file()


def mark_checkpoint_complete(folder: Path, config_yaml: str) -> None:
    """Record the settings a checkpoint was made with, then mark it complete (once every rank saved it)."""
    (folder / CONFIG_FILE).write_text(config_yaml, encoding="utf-8")
    (folder / COMPLETE_MARKER).write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + "\n")


def save_defence_state(checkpoint: Path, tensors: dict[str, Any]) -> None:
    """Write a defence rule's state into ``checkpoint`` (nothing when the rule keeps none)."""
    if not tensors:
        return
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(checkpoint / DEFENCE_STATE))


def load_defence_state(checkpoint: str | Path) -> dict[str, Any]:
    """The defence rule's state saved in ``checkpoint`` (``ConfigError`` when it has none)."""
    path = Path(checkpoint) / DEFENCE_STATE
    if not path.is_file():
        raise ConfigError(
            f"{checkpoint} holds no {DEFENCE_STATE}, which the defence needs to resume; delete the checkpoint "
            "to start over"
        )
    from safetensors.torch import load_file

    return dict(load_file(str(path)))


def run_state(output_dir: Path) -> tuple[bool, tuple[str, ...]]:
    """What resuming a run folder depends on: whether its final model is complete, and its complete
    checkpoints (their names)."""
    checkpoints = (output_dir / CHECKPOINTS_DIR).glob(f"checkpoint-*/{COMPLETE_MARKER}")
    return is_complete(output_dir / MODEL_DIR), tuple(sorted(p.parent.name for p in checkpoints))


def complete_checkpoints(checkpoints_dir: Path) -> list[Path]:
    """Complete checkpoint folders, newest first; incomplete ones (no marker: a killed save) are skipped."""
    found = sorted(
        (p for p in checkpoints_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
        key=lambda p: int(p.name.split("-")[-1]),
        reverse=True,
    )
    complete = []
    for folder in found:
        if is_complete(folder):
            complete.append(folder)
        else:
            logger.warning("skipping %s: incomplete checkpoint (no %s marker)", folder, COMPLETE_MARKER)
    return complete


def find_checkpoint(spec: str | None, checkpoints_dir: Path, config_yaml: str | None = None) -> str | None:
    """The checkpoint to resume from, per ``resume_from_checkpoint``.

    - ``auto`` (the default) or ``latest``: the newest complete checkpoint (None when there is none).
      With ``config_yaml``, it must have been made with the same settings (``RESUME_MAY_CHANGE``
      aside), or ``ConfigError`` names the keys that differ: resuming would mix two runs.
    - ``None`` (``null``): start from step 0; ``ConfigError`` when complete checkpoints exist, rather than
      training beside (and over) them.
    - a path: that checkpoint, which must be complete.
    """
    if spec in ("auto", "latest"):
        complete = complete_checkpoints(checkpoints_dir)
        if not complete:
            if checkpoints_dir.is_dir():
                logger.info("no complete checkpoint in %s; starting from scratch", checkpoints_dir)
            return None
        newest = complete[0]
        if config_yaml is not None:
            _check_same_settings(newest, config_yaml)
        logger.info("resuming from %s", newest)
        return str(newest)
    if spec is None:
        complete = complete_checkpoints(checkpoints_dir)
        if complete:
            raise ConfigError(
                f"{checkpoints_dir} holds complete checkpoints (newest: {complete[0].name}) and "
                "resume_from_checkpoint=null asks to start from step 0: resume them with "
                "resume_from_checkpoint=auto, or delete that folder (or pick another output_dir) to start over"
            )
        return None
    folder = Path(spec)
    if not folder.is_dir():
        raise ConfigError(f"resume_from_checkpoint: {folder} is not a folder")
    if not is_complete(folder):
        raise ConfigError(
            f"resume_from_checkpoint: {folder} is incomplete (no {COMPLETE_MARKER} marker); pick another"
        )
    return str(folder)


def _check_same_settings(checkpoint: Path, config_yaml: str) -> None:
    """``ConfigError`` when ``checkpoint`` was made with settings that differ from ``config_yaml``."""
    import yaml

    saved_file = checkpoint / CONFIG_FILE
    if not saved_file.is_file():
        logger.warning("%s records no settings (%s); resuming without checking them", checkpoint, CONFIG_FILE)
        return
    try:
        saved = yaml.safe_load(saved_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as err:
        raise ConfigError(f"{saved_file}: unreadable ({err}); delete the checkpoint to start over") from None
    current = yaml.safe_load(config_yaml)
    differing = [
        key
        for key in _flat_keys(saved) | _flat_keys(current)
        if key not in RESUME_MAY_CHANGE and _get(saved, key) != _get(current, key)
    ]
    if differing:
        details = "; ".join(
            f"{key}: checkpoint has {_get(saved, key)!r}, now {_get(current, key)!r}"
            for key in sorted(differing)
        )
        raise ConfigError(
            f"{checkpoint} was made with other settings ({details}). Resuming would mix two runs: use another "
            "output_dir, or delete its checkpoints/ to start over"
        )


def _flat_keys(tree: Any, prefix: str = "") -> set[str]:
    if not isinstance(tree, dict):
        return {prefix} if prefix else set()
    keys: set[str] = set()
    for key, value in tree.items():
        keys |= _flat_keys(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}"}
    return keys


def _get(tree: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(tree, dict):
            return None
        tree = tree.get(part)
    return tree


def checkpoint_step(checkpoint: str | None) -> int:
    """The global step a checkpoint was saved at (0 for no checkpoint)."""
    if checkpoint is None:
        return 0
    state_file = Path(checkpoint) / TRAINER_STATE
    try:
        return int(json.loads(state_file.read_text(encoding="utf-8"))["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return int(Path(checkpoint).name.split("-")[-1])


def whole_run_loss(
    log_history: list[dict[str, Any]],
    resumed_step: int,
    steps_now: int,
    loss_now: float | None,
    global_step: int,
) -> float | None:
    """The mean training loss over every step of a run, also when it was resumed.

    ``Trainer`` reports the mean over the steps of one ``train()`` call only. The steps before the
    resume are taken from the checkpoint's log history: each logged ``loss`` is the mean over the
    steps since the previous log, and every checkpoint logs at its step (see ``StopAtMaxSteps``).
    ``steps_now`` / ``loss_now``: the steps run by this call and their mean loss.
    """
    if global_step <= 0:
        return None
    total, counted, previous = 0.0, 0, 0
    for entry in sorted((e for e in log_history if "loss" in e and "step" in e), key=lambda e: e["step"]):
        step = int(entry["step"])
        if step > resumed_step:
            break
        total += float(entry["loss"]) * (step - previous)
        counted += step - previous
        previous = step
    if resumed_step > 0 and counted < resumed_step:
        if counted == 0:
            return loss_now if steps_now > 0 else None
        # A checkpoint of an older version that did not log at its step: its mean stands in for the rest.
        total += total / counted * (resumed_step - counted)
    if steps_now > 0:
        if loss_now is None or math.isnan(loss_now):
            return None
        total += loss_now * steps_now
    return total / global_step
