"""The curated folder: a VLGuard-layout dataset plus the files that say how each sample was made.

::

    OUT/
      train.json        the accepted records, VLGuard's fields (rewritten whole at the end of each run)
      train/<path>      their images, copied under the same relative path as in IMAGES_DIR
      rejects.jsonl     one line per rejected image: stage, reasons, the writer's raw answers
      manifest.json     kind "curate": writer, prompt versions, taxonomy hash, checks, seed, usage, cost
      labels.jsonl      stage 1, one line per image: the label and who gave it, or why it was rejected
      pairs.jsonl       stage 2, one line per labelled image: the written pairs and every attempt
      checks.jsonl      stage 3, one line per written image: each judge's verdict, near-duplicates, the decision
      usage.jsonl       calls and tokens of the writer model, one line per backend call group
      retried.jsonl     rejects set aside by --retry-rejects (the history of every earlier attempt)
      .vlguard.lock     held by the one process writing to the folder

The stage files are append-only ``JsonlStore``s keyed by ``image_id``: a run killed at any moment
(``kill -9``) leaves at worst a torn last line, dropped on resume, and the rerun does each image's
remaining stages once. ``train.json`` and ``rejects.jsonl`` are views of the stage files, written
atomically: every image that reached a decision is in exactly one of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlguard.runs import MANIFEST, JsonlStore, RunFolder, dedupe

KIND = "curate"
TRAIN_JSON = "train.json"
IMAGES_SUBDIR = "train"
REJECTS = "rejects.jsonl"
STAGES = ("labels", "pairs", "checks")


class CuratedFolder:
    """Paths and stores of a curated folder (creating the object touches nothing on disk)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.run = RunFolder(self.path)

    @property
    def manifest_path(self) -> Path:
        """``manifest.json``."""
        return self.path / MANIFEST

    @property
    def train_json(self) -> Path:
        """``train.json``: the dataset."""
        return self.path / TRAIN_JSON

    @property
    def images(self) -> Path:
        """``train/``: the dataset's images."""
        return self.path / IMAGES_SUBDIR

    def stage(self, name: str) -> JsonlStore:
        """The store of stage ``name`` (``labels``, ``pairs`` or ``checks``)."""
        if name not in STAGES:
            raise ValueError(f"unknown stage {name!r}")
        return JsonlStore(self.path / f"{name}.jsonl", required=("image_id", "status"))

    @property
    def usage(self) -> JsonlStore:
        """Calls and tokens of the writer model."""
        return JsonlStore(self.path / "usage.jsonl", required=("stage",))

    @property
    def retried(self) -> JsonlStore:
        """Rejects set aside by ``--retry-rejects``."""
        return JsonlStore(self.path / "retried.jsonl", required=("image_id",))

    @property
    def rejects(self) -> JsonlStore:
        """``rejects.jsonl``: one line per rejected image (a view, rewritten whole)."""
        return JsonlStore(self.path / REJECTS, required=("image_id",))

    def has_results(self) -> bool:
        """Whether any stage has written a line."""
        return any(self.stage(name).exists() and self.stage(name).path.stat().st_size > 0 for name in STAGES)

    def read_stage(self, name: str) -> dict[str, dict[str, Any]]:
        """A stage's records by image id, in file order (first record of an id wins)."""
        return {r["image_id"]: r for r in dedupe(self.stage(name).read(), key="image_id")}


def is_curated_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder written by ``vlguard curate`` (its manifest says kind "curate")."""
    manifest = Path(path) / MANIFEST
    if not manifest.is_file():
        return False
    manifest_data = RunFolder(path).read_manifest()
    return isinstance(manifest_data, dict) and manifest_data.get("kind") == KIND


@dataclass(frozen=True)
class CuratedImage:
    """Everything the folder says about one image: label, pairs, verdicts and, if rejected, why."""

    image_id: str
    image: str
    status: str  # accepted / rejected / pending
    stage: str | None  # where it was rejected (image, label, write, check), or None
    label: dict[str, Any] | None
    pairs: tuple[dict[str, Any], ...]
    verdicts: dict[str, Any]
    reasons: tuple[dict[str, Any], ...]
    attempts: tuple[dict[str, Any], ...]


def read_images(folder: CuratedFolder) -> list[CuratedImage]:
    """Every image the stage files know, in path order, with what happened to it."""
    labels, pairs, checks = (folder.read_stage(name) for name in STAGES)
    found = []
    for image_id, label_record in labels.items():
        pair_record, check_record = pairs.get(image_id), checks.get(image_id)
        stage, status, reasons = None, "pending", ()
        attempts = tuple(label_record.get("attempts", ()))
        if label_record["status"] == "rejected":
            stage, status, reasons = (
                label_record.get("stage", "label"),
                "rejected",
                label_record.get("reasons", ()),
            )
        elif pair_record is not None:
            attempts += tuple(pair_record.get("attempts", ()))
            if pair_record["status"] == "rejected":
                stage, status, reasons = "write", "rejected", pair_record.get("reasons", ())
            elif check_record is not None:
                status = "accepted" if check_record["status"] == "accepted" else "rejected"
                stage = "check" if status == "rejected" else None
                reasons = check_record.get("reasons", ())
        found.append(
            CuratedImage(
                image_id=image_id,
                image=label_record["image"],
                status=status,
                stage=stage,
                label=label_record.get("label"),
                pairs=tuple((pair_record or {}).get("pairs", ())),
                verdicts=(check_record or {}).get("verdicts", {}),
                reasons=tuple(reasons),
                attempts=attempts,
            )
        )
    found.sort(key=lambda image: image.image)
    return found
