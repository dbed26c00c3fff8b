"""The VLGuard data layer: loading and validation, images and image modes, export, mixtures.

Public entry points: ``load_vlguard`` (a local folder or the Hub dataset), ``samples_from_records``,
``vlguard.data.images.prepare_image``, ``vlguard.data.export`` (LLaVA / messages / JSONL),
``vlguard.data.conversations.load_conversations``, ``vlguard.data.mix.build_mixture`` and
``vlguard.data.sample.sample_dataset_dir`` (the small dataset shipped with the package).
"""

from vlguard.data.vlguard import (
    VLGuardDataset,
    dataset_stats,
    load_vlguard,
    parse_vlguard_records,
    sample_id,
    samples_from_records,
)

__all__ = [
    "VLGuardDataset",
    "dataset_stats",
    "load_vlguard",
    "parse_vlguard_records",
    "sample_id",
    "samples_from_records",
]
