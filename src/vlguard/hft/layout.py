"""Where everything of a harmful fine-tuning sweep lives: the one home of its folder and file names.

::

    OUTPUT/
      hft_config.yaml                 the resolved config                      Layout.config_file
      alignment/                      the alignment stage                      Layout.alignment
        stage.json, train.jsonl, train/ (vlguard train), merged/ (LoRA only)
      alignment-booster/              an alignment-stage defence's alignment   Layout.alignment_with("booster")
        the same, and defence_data.jsonl (booster / repnoise: its harmful pairs)
      reference/                      the start model's evaluations            Layout.reference
        stage.json, hs/ and fa/ (vlguard eval run folders)
      reference-booster/              the evaluations of alignment-booster/'s model
      cells/p0.1-vlguard-mix/         one cell                                 Layout.cell(cell)
        stage.json                    the cell's settings, counts and data hashes
        train.jsonl                   the cell's training set (messages format, `source` = role)
        aux_safety.jsonl              vlguard-aux only: the safety pairs of the auxiliary loss
        defence_data.jsonl            lisa only: the safety pairs of its alignment steps
        train/                        vlguard train run folder (model/ = the fine-tuned weights)
        hs/ fa/                       vlguard eval run folders: Harmful Score, Finetune Accuracy
      workers/                        config.yaml and shard-<i>.log of parallel cells
      summary.json                                                             Layout.summary

The alignment, the reference and every cell are each a :class:`Stage` folder, with the same names
inside. The names inside the training and evaluation run folders are theirs
(``vlguard.train.checkpoints``, ``vlguard.runs``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vlguard.runs import METRICS
from vlguard.train.checkpoints import MODEL_DIR, PROVENANCE_FILE, is_complete

CONFIG_FILE = "hft_config.yaml"
SUMMARY_FILE = "summary.json"
STAGE_FILE = "stage.json"
ALIGNMENT_DIR = "alignment"


@dataclass(frozen=True)
class Cell:
    """One cell of the sweep: a harmful ratio and a defence."""

    ratio: float
    defence: str

    @property
    def name(self) -> str:
        """The cell's folder name, e.g. ``p0.1-vlguard-mix``."""
        return f"p{self.ratio:g}-{self.defence}"


@dataclass(frozen=True)
class Stage:
    """The folder of one stage (the alignment, the reference evaluations, or a cell) and its parts."""

    path: Path

    @property
    def settings_file(self) -> Path:
        """``stage.json``: the settings the stage was made with (a rerun must match them)."""
        return self.path / STAGE_FILE

    @property
    def train_data(self) -> Path:
        """The stage's training set (JSONL, messages format)."""
        return self.path / "train.jsonl"

    @property
    def aux_safety_data(self) -> Path:
        """The safety pairs of the auxiliary loss (``vlguard-aux`` cells only)."""
        return self.path / "aux_safety.jsonl"

    @property
    def defence_data(self) -> Path:
        """The pairs of the stage's training rule (``defence.data``: Lisa's safety pairs, Booster's and
        RepNoise's harmful pairs)."""
        return self.path / "defence_data.jsonl"

    @property
    def train_run(self) -> Path:
        """The ``vlguard train`` run folder."""
        return self.path / "train"

    @property
    def model(self) -> Path:
        """The trained model (full weights) or LoRA adapter, in the training run folder."""
        return self.train_run / MODEL_DIR

    @property
    def provenance(self) -> Path:
        """The trained model's ``vlguard_train.json`` (counts, loss, seconds)."""
        return self.model / PROVENANCE_FILE

    @property
    def merged(self) -> Path:
        """The base model with the LoRA alignment merged in (alignment with ``method=lora`` only)."""
        return self.path / "merged"

    @property
    def hs(self) -> Path:
        """The ``vlguard eval`` run folder of the Harmful Score."""
        return self.path / "hs"

    @property
    def fa(self) -> Path:
        """The ``vlguard eval`` run folder of the Finetune Accuracy."""
        return self.path / "fa"

    def trained(self) -> bool:
        """Whether the stage's model is trained (its folder is marked complete)."""
        return is_complete(self.model)

    def evaluated(self) -> bool:
        """Whether both evaluations have their metrics."""
        return all((run / METRICS).is_file() for run in (self.hs, self.fa))


@dataclass(frozen=True)
class Layout:
    """Where each stage of a sweep lives under ``root``."""

    root: Path

    @property
    def config_file(self) -> Path:
        """The resolved config as given (its presence marks a sweep folder)."""
        return self.root / CONFIG_FILE

    @property
    def summary(self) -> Path:
        """``summary.json``, written once every cell is finished."""
        return self.root / SUMMARY_FILE

    @property
    def alignment(self) -> Stage:
        """The alignment stage."""
        return Stage(self.root / ALIGNMENT_DIR)

    def alignment_with(self, defence: str | None) -> Stage:
        """The alignment stage of an alignment-stage defence (``alignment-booster/``; None: the plain one)."""
        return self.alignment if defence is None else Stage(self.root / f"alignment-{defence}")

    @property
    def reference(self) -> Stage:
        """The evaluations of the model the cells start from."""
        return Stage(self.root / "reference")

    def reference_with(self, defence: str | None) -> Stage:
        """The evaluations of an alignment-stage defence's aligned model (``reference-booster/``)."""
        return self.reference if defence is None else Stage(self.root / f"reference-{defence}")

    def cell(self, cell: Cell) -> Stage:
        """The folder of one cell."""
        return Stage(self.root / "cells" / cell.name)

    @property
    def workers(self) -> Path:
        """The parallel cells' config (``config.yaml``) and logs (``shard-<i>.log``)."""
        return self.root / "workers"

    @property
    def worker_config(self) -> Path:
        """The resolved config the workers read (one cell process each)."""
        return self.workers / "config.yaml"

    def worker_log(self, index: int) -> Path:
        """The log of worker ``index``."""
        return self.workers / f"shard-{index}.log"

    def relative(self, path: Path) -> str:
        """``path`` relative to the sweep folder (as ``summary.json`` records where numbers come from)."""
        return str(path.relative_to(self.root))
