"""Benchmark files from a Hugging Face Hub dataset repository, through the huggingface_hub cache.

``hub_snapshot`` fetches only the files a benchmark needs (``allow_patterns``) at a revision and returns
the local snapshot folder; with ``HF_HUB_OFFLINE=1`` it reads the cache alone. Every failure becomes a
``DataSourceError`` that names the repository and says what to do instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vlguard.data.sources import DataSourceError, gated_message


def hub_snapshot(
    repo_id: str, *, revision: str | None, allow_patterns: Sequence[str], benchmark: str, what: str
) -> tuple[Path, dict[str, Any]]:
    """The local folder holding ``allow_patterns`` of Hub dataset ``repo_id`` and its source record.

    ``what`` names the files for error messages (e.g. "the question files"). The record has
    ``kind="hub"``, ``repo_id``, the ``revision`` asked for and the ``commit`` it resolved to.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        IncompleteSnapshotError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"Hub dataset {repo_id}" + (f" at revision {revision}" if revision else "")
    hint = f"(benchmark {benchmark!r}: {what}); or pass a local folder instead"
    try:
        folder = Path(
            snapshot_download(
                repo_id, repo_type="dataset", revision=revision, allow_patterns=list(allow_patterns)
            )
        )
    except GatedRepoError as err:  # a subclass of RepositoryNotFoundError: first
        raise DataSourceError(f"{gated_message(where, repo_id)} {hint}") from err
    except RepositoryNotFoundError as err:
        raise DataSourceError(f"{where}: repository not found, or private {hint}") from err
    except RevisionNotFoundError as err:
        raise DataSourceError(f"{where}: revision not found {hint}") from err
    except (LocalEntryNotFoundError, IncompleteSnapshotError) as err:
        raise DataSourceError(
            f"{where}: not in the local huggingface_hub cache and cannot be downloaded "
            f"(HF_HUB_OFFLINE=1, or the Hub is unreachable) {hint}"
        ) from err
    except (HfHubHTTPError, OSError, ValueError) as err:
        raise DataSourceError(f"{where}: download failed: {err} {hint}") from err
    commit = folder.name if folder.parent.name == "snapshots" else None
    return folder, {"kind": "hub", "repo_id": repo_id, "revision": revision, "commit": commit}
