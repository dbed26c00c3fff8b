"""``vlguard curate``: VLGuard-style safety data for your own images, any VLM as the writer, vlguard's
judges as the checkers (docs/curate.md).

``run_curate(CurateConfig(images_dir, out, model, ...))`` labels each image (safe, or harmful with a
category of the taxonomy), writes its instruction/response pairs as the VLGuard paper describes, checks
every pair with the judges and against the released VLGuard instructions, and writes a dataset in the
VLGuard layout (``train.json`` + ``train/``) with the rejects and their reasons beside it.
"""

from vlguard.curate.folder import CuratedFolder, is_curated_folder
from vlguard.curate.run import CurateConfig, CurateResult, check_curate_settings, run_curate
from vlguard.curate.taxonomy import DEFAULT_TAXONOMY, Taxonomy, load_taxonomy

__all__ = [
    "DEFAULT_TAXONOMY",
    "CurateConfig",
    "CurateResult",
    "CuratedFolder",
    "Taxonomy",
    "check_curate_settings",
    "is_curated_folder",
    "load_taxonomy",
    "run_curate",
]
