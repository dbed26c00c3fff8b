"""VLSafe (DRESS, Chen et al. 2023): harmful queries about COCO train2017 images.

Source files, in either public layout: GitHub ``zjunlp/AutoSteer`` ``dataset/VLSafe/`` (a public copy of
the DRESS release: ``examine_sampled_500_VLSafe.jsonl``, the 500 evaluation queries, and
``VLSafe_harmlessness_alignment.jsonl``, 3,000 training queries with a harmless ``reference`` answer, side
by side), or the DRESS release's own layout (``train/VLSafe_harmlessnss_alignment.jsonl``, misspelt
upstream, with the evaluation file beside it or in ``train/`` / ``test/``).
Each line is ``{"image_id": "000000350510.jpg", "caption": ..., "query": ...}``; ``image_id`` names a
COCO train2017 file. Every query should be refused; papers report the "unsafe rate" (the attack success
rate under their judge) with the original image ("Orig.") and with a blank one ("Blank").

The files hold no images. ``image_root`` gives them: a COCO ``train2017`` folder (or a folder holding
``train2017/``), ``train2017.zip``, or the id of a Hub dataset repository with the COCO files (only the
files the queries name are downloaded). Without it, image mode ``original`` stops before the model is
loaded, naming the missing folder; image mode ``blank`` needs no images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlguard.benchmarks.base import BenchmarkData
from vlguard.benchmarks.counts import file_count
from vlguard.benchmarks.csv_source import check_options, resolve_data_file
from vlguard.benchmarks.hub import hub_snapshot
from vlguard.data.images import ImageSource, open_image_root, unsafe_path_reason
from vlguard.data.jsonio import read_jsonl_lines
from vlguard.data.sources import looks_like_repo_id
from vlguard.errors import ConfigError, DataValidationError, Problem
from vlguard.records import Sample

EVAL_FILE = "examine_sampled_500_VLSafe.jsonl"
TRAIN_FILE = "VLSafe_harmlessness_alignment.jsonl"
TRAIN_FILE_DRESS = "VLSafe_harmlessnss_alignment.jsonl"  # the DRESS release's spelling
SPLITS = {"eval": (EVAL_FILE, "vlsafe"), "train": (TRAIN_FILE, "vlsafe_train")}
# Where a split's file sits in a folder, in each public layout (AutoSteer's flat folder first).
LAYOUTS = {
    "eval": (EVAL_FILE, f"train/{EVAL_FILE}", f"test/{EVAL_FILE}"),
    "train": (TRAIN_FILE, TRAIN_FILE_DRESS, f"train/{TRAIN_FILE_DRESS}", f"train/{TRAIN_FILE}"),
}
# Queries per file (the DRESS paper: 500 for evaluation, 3,000 for alignment training).
PUBLISHED_COUNTS = {
    EVAL_FILE: {"queries": 500},
    TRAIN_FILE: {"queries": 3000},
    TRAIN_FILE_DRESS: {"queries": 3000},
}
COCO_FOLDER = "train2017"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_WHERE = "https://github.com/zjunlp/AutoSteer (dataset/VLSafe/), from the DRESS release"
IMAGES_HINT = (
    "VLSafe's images are COCO train2017 files named by image_id: pass the folder with --images "
    "PATH/train2017 (or train2017.zip, or a Hub dataset id holding them); http://images.cocodataset.org/"
    "zips/train2017.zip has them all. Or evaluate with a blank image (--image-mode blank)."
)


def load_vlsafe(data: str | Path | None = None, revision: str | None = None, **options: Any) -> BenchmarkData:
    """Load VLSafe from ``data`` (a folder holding the JSONL files, a JSONL file, or a Hub dataset id).

    Options:

    - ``split``: ``"eval"`` (default; the 500 evaluation queries, subset ``vlsafe``) or ``"train"``
      (the 3,000 alignment queries, subset ``vlsafe_train``, with the harmless answer as ``reference``).
    - ``image_root``: the COCO train2017 images (see the module docstring); ``image_revision`` pins a
      Hub image repository.

    Sample ids are ``vlsafe-<COCO id>:<subset>`` (``vlsafe-000000350510:vlsafe``); a COCO image asked
    about a second time in one file gets ``#2`` after its id. Every line must be a JSON object with a
    non-empty ``query``, an ``image_id`` that is a plain image file name, and a ``caption``; all problems
    are reported together, with the file, line and field.
    """
    check_options("vlsafe", options, {"split", "image_root", "image_revision"})
    split = options.get("split", "eval")
    if split not in SPLITS:
        raise ConfigError(f"benchmark 'vlsafe': option split={split!r} is not one of {', '.join(SPLITS)}")
    filename, subset = SPLITS[split]
    path, source = resolve_data_file(
        _layout_file(data, split),
        filename,
        benchmark="vlsafe",
        revision=revision,
        missing_hint=f"Get it from {_WHERE}.",
    )
    # A file given directly is recorded as the split it is, never as another: VLSafe's two files differ
    # (the alignment file is training data, with answers).
    other = next((name for name, (file, _) in SPLITS.items() if name != split and path.name == file), None)
    if other is not None:
        raise ConfigError(
            f"{path} is VLSafe's {other} file ({SPLITS[other][0]}), not its {split} file ({filename}): "
            f"evaluate it with --bench-option split={other} (recorded as that split), or give the {split} file"
        )
    samples = _samples(path, subset, with_reference=split == "train")
    images, image_folder, image_hub = _image_root(
        options.get("image_root"), options.get("image_revision"), [s.image for s in samples if s.image]
    )
    # image_root is the local folder (judges read image files from it); a Hub copy is recorded beside it.
    source.update(benchmark="vlsafe", split=split, n_samples=len(samples), image_root=image_folder)
    if image_hub is not None:
        source["image_source"] = image_hub
    return BenchmarkData(
        name="vlsafe",
        samples=tuple(samples),
        images=images,
        source=source,
        references={s.id: s.reference for s in samples if s.reference},
        missing_images_hint=IMAGES_HINT,
        counts=(file_count(path, "queries", len(samples), PUBLISHED_COUNTS),),
    )


def _layout_file(data: str | Path | None, split: str) -> str | Path | None:
    """``data`` itself, or the split's file inside the folder ``data`` in whichever public layout it has."""
    if data is None:
        return None
    folder = Path(data).expanduser()
    if not folder.is_dir():
        return data
    return next((folder / name for name in LAYOUTS[split] if (folder / name).is_file()), data)


def _samples(path: Path, subset: str, *, with_reference: bool) -> list[Sample]:
    file = str(path)
    required = ("image_id", "query", "caption") + (("reference",) if with_reference else ())
    problems: list[Problem] = []
    samples: list[Sample] = []
    seen: dict[str, int] = {}
    for number, row in read_jsonl_lines(path):
        where = f"line {number}"
        if not isinstance(row, dict):
            problems.append(Problem(file, where, "", f"expected a JSON object, got {type(row).__name__}"))
            continue
        row_problems = [
            Problem(file, where, key, "missing or not a non-empty string")
            for key in required
            if not isinstance(row.get(key), str) or (key != "caption" and not row[key].strip())
        ]
        image_id = row.get("image_id")
        if isinstance(image_id, str) and image_id.strip():
            reason = unsafe_path_reason(image_id)
            if reason is None and ("/" in image_id or not image_id.lower().endswith(IMAGE_SUFFIXES)):
                reason = f"{image_id!r} is not a COCO image file name like 000000350510.jpg"
            if reason is not None:
                row_problems.append(Problem(file, where, "image_id", reason))
        if row_problems:
            problems.extend(row_problems)
            continue
        stem = image_id.rsplit(".", 1)[0]  # type: ignore[union-attr]
        seen[stem] = seen.get(stem, 0) + 1
        record_id = f"vlsafe-{stem}" if seen[stem] == 1 else f"vlsafe-{stem}#{seen[stem]}"
        samples.append(
            Sample(
                id=f"{record_id}:{subset}",
                benchmark="vlsafe",
                subset=subset,
                prompt=row["query"].strip(),
                image=image_id,
                reference=row["reference"].strip() if with_reference else None,
                # VLSafe's files carry no harm category: its metrics are per subset only.
                category=None,
                subcategory=None,
                should_refuse=True,
                record_id=record_id,
            )
        )
    if problems:
        raise DataValidationError(problems, hint=f"VLSafe expects the JSONL files of {_WHERE}.")
    if not samples:
        raise DataValidationError([Problem(file, "", "", "no queries in the file")])
    return samples


def _image_root(
    image_root: str | Path | None, revision: str | None, names: list[str]
) -> tuple[ImageSource | None, str | None, dict[str, Any] | None]:
    """The COCO image root, its local path, and its Hub record when it came from the Hub."""
    if image_root is None:
        if revision is not None:
            raise ConfigError("benchmark 'vlsafe': image_revision applies to a Hub image repository only")
        return None, None, None
    path = Path(image_root).expanduser()
    if not path.exists() and isinstance(image_root, str) and looks_like_repo_id(image_root):
        # A Hub copy of COCO: fetch just the files these queries name, wherever they sit in the repo.
        folder, record = hub_snapshot(
            image_root,
            revision=revision,
            allow_patterns=[f"*{name}" for name in sorted(set(names))],
            benchmark="vlsafe",
            what="the COCO train2017 images",
        )
        local = _coco_folder(folder)
        return open_image_root(local), str(local), record
    if revision is not None:
        raise ConfigError("benchmark 'vlsafe': image_revision applies to a Hub image repository only")
    local = _coco_folder(path)
    return open_image_root(local), str(local.resolve()), None


def _coco_folder(path: Path) -> Path:
    """``path`` itself, or its ``train2017`` subfolder when the images are one level down."""
    return path / COCO_FOLDER if path.is_dir() and (path / COCO_FOLDER).is_dir() else path
