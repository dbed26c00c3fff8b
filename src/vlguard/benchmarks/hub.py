"""Benchmark files from a Hugging Face Hub dataset repository, through the huggingface_hub cache.

``hub_snapshot`` fetches only the files a benchmark needs (``allow_patterns``) at a revision and returns
the local snapshot folder; with ``HF_HUB_OFFLINE=1`` it reads the cache alone. Every failure becomes a
``DataSourceError`` that names the repository and says what to do instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vlguard.data.sources import hub_dataset, hub_errors


def hub_snapshot(
    repo_id: str, *, revision: str | None, allow_patterns: Sequence[str], benchmark: str, what: str
) -> tuple[Path, dict[str, Any]]:
    """The local folder holding ``allow_patterns`` of Hub dataset ``repo_id`` and its source record.

    ``what`` names the files for error messages (e.g. "the question files"). The record has
    ``kind="hub"``, ``repo_id``, the ``revision`` asked for and the ``commit`` it resolved to.
    """
    from huggingface_hub import snapshot_download

    hint = f"(benchmark {benchmark!r}: {what}; a local folder of them works too)"
    with hub_errors(hub_dataset(repo_id, revision), repo_id, hint=hint):
        folder = Path(
            snapshot_download(
                repo_id, repo_type="dataset", revision=revision, allow_patterns=list(allow_patterns)
            )
        )
    commit = folder.name if folder.parent.name == "snapshots" else None
    return folder, {"kind": "hub", "repo_id": repo_id, "revision": revision, "commit": commit}
