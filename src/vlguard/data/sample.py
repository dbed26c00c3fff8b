"""The small VLGuard-format dataset shipped with the package (for the demo and machines without the data).

Written by us (mild wording, images drawn by ``scripts/make_sample_data.py``). Test: 9 harmful images, one
per subcategory, and 9 safe images, so 9 samples in each of the 3 subsets. Train: 27 harmful images (3
wordings per subcategory) and 27 safe ones. No instruction or response is shared between the splits.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def sample_dataset_dir() -> Path:
    """The folder of the bundled sample dataset: usable as ``source`` of ``load_vlguard``."""
    path = Path(str(files("vlguard") / "sample_data"))
    if not (path / "test.json").is_file():
        raise FileNotFoundError(f"the bundled sample dataset is missing from {path} (broken installation?)")
    return path
